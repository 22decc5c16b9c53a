"""A nodule's extent from its voxels: region growing from the centre, then true sizes in mm.

A detector's box says where a lesion is, not how big it is (boxes ran 25% small on an
independent generator). Here the lesion is segmented in a region of interest around
the detection: the threshold lies halfway between the lung around it and the
lesion's core (so ground glass at -600 HU and solid tissue near 0 HU both work),
the region grows from the centre, a one-voxel opening cuts it from touching
vessels, and only the component holding the centre is kept. From the mask:

* the long-axis diameter in the axial plane (the longest chord of the largest axial
  cross-section, the measure Lung-RADS and Fleischner use),
* the short axis perpendicular to it,
* the volume (voxel count x voxel volume) and the sphere-equivalent diameter,
* mean and max HU, and the type: solid (80% or more of it above -300 HU), ground glass
  (5% or less), part-solid (between: with its solid component's long axis), calcified (its
  densest tenth above 200 HU).

``None`` when no lesion stands out from its surroundings (the caller keeps the box).

Real lesions lean on the chest wall, the mediastinum or vessels, and masses run far beyond
the detector's box; :func:`segment_lesion` adds a second attempt for those when the first one
runs out of its region: seeded at the densest spot of the detection, the region confined to
the lungs' envelope (each lung's convex hull on every slice: a lesion bulging into the lung is
inside it, the chest wall and the spine are not), the region of interest widened step by step
up to a 10 cm mass. A result that still runs out, or that has almost no lung around it (grown
into the mediastinum or the heart), is refused with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from medstation.core.volume import Volume
from medstation.imaging.hull import inside_polygon, slice_hulls

#: above this a voxel is soft tissue (the solid component), above CALCIFIED_HU it is calcium
SOLID_HU = -300.0
CALCIFIED_HU = 200.0
GROUND_GLASS_CORE_HU = -550.0  # a typical ground-glass density (the halo is grown halfway to it)


@dataclass(frozen=True)
class NoduleSize:
    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    equivalent_diameter_mm: float
    voxels: int
    threshold_hu: float
    touches_edge: bool  # the mask reached the region's border: a leak or a lesion larger than the box
    mean_hu: float = 0.0
    max_hu: float = 0.0
    nodule_type: str = ""  # solid, part-solid, ground-glass, calcified
    solid_long_axis_mm: float = 0.0  # the solid component's long axis (part-solid nodules)
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)  # boolean, the ROI's shape
    origin: tuple[int, int, int] = (0, 0, 0)  # the ROI's first voxel (k, i, j) in the volume
    widened: bool = False  # found by the second try (the lungs' envelope, a wider region)

    @property
    def mean_diameter_mm(self) -> float:
        """Lung-RADS' mean diameter: the average of long and short axis, to 0.1 mm."""
        return round((self.long_axis_mm + self.short_axis_mm) / 2, 1)


#: the widest region a lesion is looked for in (radius, mm): a mass up to about 10 cm
MAX_RADIUS_MM = 65.0
#: a lesion has lung around much of it: less of its outline than this against lung air is a leak
MIN_LUNG_CONTACT = 0.15


def _roi(volume: Volume, centre, radius_mm: float):
    sk, si, sj = (abs(float(s)) for s in volume.spacing)
    half = [max(2, int(math.ceil(radius_mm / s))) for s in (sk, si, sj)]
    c = [int(round(v)) for v in centre]
    lo = [max(0, c[a] - half[a]) for a in range(3)]
    hi = [min(volume.shape[a], c[a] + half[a] + 1) for a in range(3)]
    block = np.asarray(volume.voxels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
    seed = tuple(c[a] - lo[a] for a in range(3))
    return block, seed, (sk, si, sj), tuple(lo)


def _longest_chord(points: np.ndarray) -> tuple[float, np.ndarray]:
    """Longest distance between two of ``points`` (n x 2, mm) and its unit direction."""
    if len(points) < 2:
        return 0.0, np.array([1.0, 0.0])
    if len(points) > 400:  # the hull's extremes are on the boundary: sample it
        points = points[np.linspace(0, len(points) - 1, 400).astype(int)]
    d = points[:, None, :] - points[None, :, :]
    dist = np.sqrt((d ** 2).sum(-1))
    a, b = np.unravel_index(int(np.argmax(dist)), dist.shape)
    vec = points[b] - points[a]
    n = float(np.linalg.norm(vec))
    return n, (vec / n if n > 0 else np.array([1.0, 0.0]))


def _touches(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())


def _grow(image, block: np.ndarray, seed, threshold: float, radius_mm: float, spacing) -> np.ndarray:
    """Region growing from ``seed`` above ``threshold``, opened until it comes free of the ROI's
    border (vessels up to ~a quarter of its radius thick, a chest wall or mediastinum it leans on:
    the opening grows from 0.12 to half the radius), the seed's component."""
    import SimpleITK as sitk

    sk, si, sj = spacing
    k0, i0, j0 = seed
    grown = sitk.ConnectedThreshold(image, seedList=[(int(j0), int(i0), int(k0))], lower=float(threshold),
                                    upper=float(block.max()) + 1)
    mask = None
    for factor in (0.12, 0.25, 0.4, 0.5):
        r_mm = max(0.8, factor * radius_mm / 1.5)
        kernel = [max(1, int(round(r_mm / sj))), max(1, int(round(r_mm / si))),
                  0 if sk > 2.5 * max(si, sj) else max(1, int(round(r_mm / sk)))]
        opened = sitk.BinaryMorphologicalOpening(grown, kernel)
        mask_labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(opened))
        label = int(mask_labels[k0, i0, j0])
        if label == 0:
            break  # opened away the lesion itself: keep the last mask that held it
        mask = mask_labels == label
        if not _touches(mask):
            break
    if mask is None:  # a lesion a few voxels wide: the grown region as it is
        mask = sitk.GetArrayFromImage(grown).astype(bool)
    return mask


def measure_nodule(volume: Volume, centre, radius_mm: float, *, halo: bool = True) -> NoduleSize | None:
    """Segment the lesion at voxel ``centre`` (k, i, j) within ``radius_mm`` (about 1.5x the
    detected radius) and measure it; ``halo``: look for a part-solid nodule's ground-glass halo."""
    import SimpleITK as sitk

    if volume.is_color or volume.voxels.ndim != 3:
        return None
    block, seed, (sk, si, sj), origin = _roi(volume, centre, radius_mm)
    if min(block.shape) < 1:
        return None
    k0, i0, j0 = seed
    core_region = block[max(0, k0 - 1):k0 + 2, max(0, i0 - 1):i0 + 2, max(0, j0 - 1):j0 + 2]
    core = float(np.median(core_region))
    background = float(np.percentile(block, 10))
    if core - background < 150:  # nothing stands out (or the centre missed the lesion)
        return None
    threshold = (core + background) / 2
    image = sitk.GetImageFromArray(block)
    image.SetSpacing((sj, si, sk))
    mask = _grow(image, block, seed, threshold, radius_mm, (sk, si, sj))
    # a ground-glass halo around a solid core (part-solid): grown again at the ground-glass
    # level, the region is clearly larger and still free of the border
    halo_threshold = (background + GROUND_GLASS_CORE_HU) / 2
    if halo and core > SOLID_HU and halo_threshold < threshold - 100:
        halo = _grow(image, block, seed, halo_threshold, radius_mm, (sk, si, sj))
        if halo.sum() > 2.0 * mask.sum() and not _touches(halo):
            mask, threshold = halo, halo_threshold
    count = int(mask.sum())
    if count == 0:
        return None
    touches = _touches(mask)
    volume_mm3 = count * sk * si * sj
    areas = mask.sum(axis=(1, 2))
    k_best = int(np.argmax(areas))
    rows, cols = np.nonzero(mask[k_best])
    # boundary points of the cross-section, in mm (pixel corners: a chord spans whole pixels)
    pts = np.stack([rows * si, cols * sj], axis=1).astype(float)
    long_axis, direction = _longest_chord(pts)
    long_axis += (abs(direction[0]) * si + abs(direction[1]) * sj)  # centre-to-centre -> edge-to-edge
    perp = np.array([-direction[1], direction[0]])
    proj = pts @ perp
    short_axis = float(proj.max() - proj.min()) + abs(perp[0]) * si + abs(perp[1]) * sj if len(pts) else 0.0
    values = block[mask]
    mean_hu, max_hu = float(values.mean()), float(values.max())
    solid = mask & (block >= SOLID_HU)
    solid_fraction = float(solid.sum()) / count
    if solid.any():  # the solid component: the largest connected piece (not scattered bright voxels)
        pieces = sitk.GetArrayFromImage(sitk.RelabelComponent(
            sitk.ConnectedComponent(sitk.GetImageFromArray(solid.astype(np.uint8))), sortByObjectSize=True))
        solid = pieces == 1
    solid_long = 0.0
    if solid.any():
        s_rows, s_cols = np.nonzero(solid[int(np.argmax(solid.sum(axis=(1, 2))))])
        chord, d = _longest_chord(np.stack([s_rows * si, s_cols * sj], axis=1).astype(float))
        solid_long = chord + abs(d[0]) * si + abs(d[1]) * sj
    if float(np.percentile(values, 90)) >= CALCIFIED_HU:
        kind = "calcified"
    elif solid_fraction >= 0.8:
        kind = "solid"
    elif solid_fraction <= 0.05:
        kind = "ground-glass"
    else:
        kind = "part-solid"
    return NoduleSize(round(long_axis, 1), round(short_axis, 1), round(volume_mm3, 1),
                      round((6 * volume_mm3 / math.pi) ** (1 / 3), 1), count, round(threshold, 1), touches,
                      round(mean_hu, 1), round(max_hu, 1), kind,
                      round(solid_long, 1) if kind == "part-solid" else 0.0, mask, origin)


def segment_lesion(volume: Volume, centre, radius_mm: float, lungs: np.ndarray | LungEnvelope | None = None
                   ) -> tuple[NoduleSize | None, str]:
    """:func:`measure_nodule`, then for a lesion it cannot contain (it runs out of its region) a
    second attempt in the lungs' envelope with a widening region (``lungs``: the volume's lung mask,
    ``imaging.lungs``, or its :class:`LungEnvelope` shared by the lesions of one volume). Returns the
    size, or None and why it could not be segmented."""
    size = measure_nodule(volume, centre, radius_mm)
    if size is not None and not size.touches_edge:
        return size, ""
    why = ("no lesion stands out from its surroundings at the centre" if size is None else
           "its region runs beyond the search region (a leak, or a lesion far larger than the box)")
    if lungs is None or volume.is_color or volume.voxels.ndim != 3:
        return None, why
    envelope = lungs if isinstance(lungs, LungEnvelope) else LungEnvelope(lungs)
    if not envelope.mask.any():
        return None, why
    seed = _densest(volume, centre, max(3.0, radius_mm / 1.5))
    r = radius_mm
    while True:
        r = min(MAX_RADIUS_MM, r * 1.6)
        block, _seed, spacing, origin = _roi(volume, seed, r)
        allowed = envelope.on_block(origin, block.shape, spacing)
        if not allowed[tuple(seed[a] - origin[a] for a in range(3))]:
            return None, (why + "; its densest part lies outside the lungs' envelope "
                          "(chest wall or mediastinum)")
        confined = np.where(allowed, block, -1000.0).astype(np.float32)
        local_seed = tuple(seed[a] - origin[a] for a in range(3))
        size = measure_nodule(_Block(confined, volume.spacing), local_seed, r)
        if size is not None and not size.touches_edge:
            contact = _lung_contact(size.mask, block)
            if contact < MIN_LUNG_CONTACT:
                return None, ("grown into the mediastinum, the heart or the chest wall "
                              f"(only {contact:.0%} of its "
                              "outline borders lung)")
            return _shifted(size, origin), ""
        if r >= MAX_RADIUS_MM:
            return None, why + f"; still unbounded at a {2 * MAX_RADIUS_MM:.0f} mm search region"


#: a detection this large (its box's long axis, mm) is segmented in its own per-slice boxes
BOXED_MIN_MM = 25.0
#: ... each grown by this much in-plane, and allowed this far beyond the lungs' envelope (a mass
#: on the mediastinum or the chest wall reaches past each lung's hull; the envelope grown by this
#: still stops it at the far side of the mediastinum)
BOX_MARGIN_MM = 3.0
BEYOND_ENVELOPE_MM = 10.0


def segment_in_boxes(volume: Volume, boxes, envelope: LungEnvelope) -> tuple[NoduleSize | None, str]:
    """A large lesion (a mass) segmented through every slice the detector boxed it on.

    ``boxes`` are the finding's per-slice boxes ``(k, i0, j0, i1, j1, score)`` in volume voxels. On
    each of those slices (and one slice beyond either end) the region is the slice's box (the
    nearest slice's at the ends) grown by ``BOX_MARGIN_MM``, within the lungs' envelope grown by
    ``BEYOND_ENVELOPE_MM``; the lesion is grown in it from its densest voxel
    (:func:`measure_nodule`: halfway between the lung and the core, opened from vessels). Where a
    threshold alone would run along the mediastinum, the detector's boxes say where the lesion
    ends. Returns the size (``widened``) or None and why."""
    if not boxes or volume.is_color or volume.voxels.ndim != 3:
        return None, "no per-slice boxes to segment in"
    sk, si, sj = (abs(float(s)) for s in volume.spacing)
    by_k: dict[int, tuple[float, float, float, float]] = {}
    for b in boxes:
        k = int(round(float(b[0])))
        old = by_k.get(k)
        box = tuple(float(v) for v in b[1:5])
        by_k[k] = box if old is None else (min(old[0], box[0]), min(old[1], box[1]),
                                           max(old[2], box[2]), max(old[3], box[3]))
    ks = sorted(by_k)
    k_lo, k_hi = max(0, ks[0] - 1), min(volume.shape[0] - 1, ks[-1] + 1)
    mi, mj = BOX_MARGIN_MM / si, BOX_MARGIN_MM / sj
    i0 = max(0, int(math.floor(min(b[0] for b in by_k.values()) - mi)))
    j0 = max(0, int(math.floor(min(b[1] for b in by_k.values()) - mj)))
    i1 = min(volume.shape[1], int(math.ceil(max(b[2] for b in by_k.values()) + mi)) + 1)
    j1 = min(volume.shape[2], int(math.ceil(max(b[3] for b in by_k.values()) + mj)) + 1)
    # one voxel of frame around the region, so that the mask never touches the block's border
    lo = (max(0, k_lo - 1), max(0, i0 - 1), max(0, j0 - 1))
    hi = (min(volume.shape[0], k_hi + 2), min(volume.shape[1], i1 + 1), min(volume.shape[2], j1 + 1))
    block = np.asarray(volume.voxels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
    allowed = np.zeros(block.shape, bool)
    rows = np.arange(lo[1], hi[1])[:, None]
    cols = np.arange(lo[2], hi[2])[None, :]
    hull = envelope.on_block(lo, block.shape, (sk, si, sj))
    grow = [max(1, int(round(BEYOND_ENVELOPE_MM / si))), max(1, int(round(BEYOND_ENVELOPE_MM / sj)))]
    for n in range(block.shape[0]):
        k = lo[0] + n
        if not k_lo <= k <= k_hi:
            continue
        near = min(ks, key=lambda kk: abs(kk - k))
        b = by_k[near]
        in_box = (rows >= b[0] - mi) & (rows <= b[2] + mi) & (cols >= b[1] - mj) & (cols <= b[3] + mj)
        allowed[n] = in_box & _dilate2d(hull[n], grow)
    allowed[0] = allowed[-1] = False
    allowed[:, 0] = allowed[:, -1] = False
    allowed[:, :, 0] = allowed[:, :, -1] = False
    if not allowed.any():
        return None, "its boxes lie outside the lungs' envelope (chest wall or mediastinum)"
    kc = int(round(float(np.median(ks))))
    b = by_k[min(ks, key=lambda kk: abs(kk - kc))]
    centre = (kc, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    radius = 0.5 * max((b[2] - b[0]) * si, (b[3] - b[1]) * sj)
    seed = _densest(volume, centre, max(3.0, radius / 2))
    local = tuple(seed[a] - lo[a] for a in range(3))
    if not all(0 <= local[a] < block.shape[a] for a in range(3)) or not allowed[local]:
        return None, "its densest part lies outside its boxes within the lungs' envelope"
    confined = np.where(allowed, block, -1000.0).astype(np.float32)
    # the region's reach for the opening: the lesion's half-size, not the block's
    size = measure_nodule(_Block(confined, volume.spacing), local, radius * 1.5, halo=False)
    if size is None:
        return None, "no lesion stands out from its surroundings in its boxes"
    o, m = size.origin, size.mask.shape
    contact = _lung_contact(size.mask, block[o[0]:o[0] + m[0], o[1]:o[1] + m[1], o[2]:o[2] + m[2]])
    if contact < MIN_LUNG_CONTACT:
        return None, f"grown into the mediastinum, the heart or the chest wall (only {contact:.0%} of its " \
                     "outline borders lung)"
    return _shifted(size, lo), ""


def _dilate2d(mask: np.ndarray, radius: list[int]) -> np.ndarray:
    """``mask`` (rows, cols) grown by an ellipse of ``radius`` (rows, cols) pixels."""
    if not mask.any():
        return mask
    import SimpleITK as sitk

    img = sitk.BinaryDilate(sitk.GetImageFromArray(mask.astype(np.uint8)), [int(radius[1]), int(radius[0])],
                            sitk.sitkBall)
    return sitk.GetArrayFromImage(img).astype(bool)


class _Block:
    """The little of ``Volume`` that :func:`measure_nodule` reads: voxels and spacing."""

    def __init__(self, voxels: np.ndarray, spacing) -> None:
        self.voxels, self.spacing = voxels, spacing
        self.shape = voxels.shape
        self.is_color = False


def _shifted(size: NoduleSize, origin) -> NoduleSize:
    from dataclasses import replace

    return replace(size, origin=tuple(int(a) + int(b) for a, b in zip(size.origin, origin)), widened=True)


def _densest(volume: Volume, centre, radius_mm: float) -> tuple[int, int, int]:
    """The voxel within ``radius_mm`` of ``centre`` whose 3x3x3 mean is highest (bone excluded):
    a detection's centre may sit in the lesion's ground-glass rim or beside a mass's core."""
    sk, si, sj = (abs(float(s)) for s in volume.spacing)
    c = [int(round(float(v))) for v in centre]
    half = [max(1, int(math.ceil(radius_mm / s))) for s in (sk, si, sj)]
    lo = [max(0, c[a] - half[a]) for a in range(3)]
    hi = [min(volume.shape[a], c[a] + half[a] + 1) for a in range(3)]
    b = np.asarray(volume.voxels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], np.float32)
    p = np.pad(b, 1, mode="edge")
    n = b.shape
    mean = sum(p[dk:dk + n[0], di:di + n[1], dj:dj + n[2]] for dk in range(3) for di in range(3)
               for dj in range(3)) / 27.0
    kk, ii, jj = np.meshgrid(*(np.arange(lo[a], hi[a]) for a in range(3)), indexing="ij")
    dist = np.sqrt(((kk - float(centre[0])) * sk) ** 2 + ((ii - float(centre[1])) * si) ** 2
                   + ((jj - float(centre[2])) * sj) ** 2)
    mean = np.where((dist <= radius_mm) & (mean < CALCIFIED_HU), mean, -np.inf)
    at = np.unravel_index(int(np.argmax(mean)), mean.shape)
    return tuple(int(lo[a] + at[a]) for a in range(3))  # type: ignore[return-value]


def _lung_contact(mask: np.ndarray, block: np.ndarray) -> float:
    """The share of the mask's in-plane outline that borders lung air (below -500 HU)."""
    inner = mask.copy()
    inner[:, 1:-1, 1:-1] = (mask[:, 1:-1, 1:-1] & mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1]
                            & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:])
    outline = mask & ~inner
    air = block < -500.0
    near_air = air.copy()
    for d in (1, 2):
        near_air[:, d:, :] |= air[:, :-d, :]
        near_air[:, :-d, :] |= air[:, d:, :]
        near_air[:, :, d:] |= air[:, :, :-d]
        near_air[:, :, :-d] |= air[:, :, d:]
    n = int(outline.sum())
    return float((outline & near_air).sum()) / n if n else 0.0


class LungEnvelope:
    """The convex hull of each lung, slice by slice (the lungs split at the mediastinum's column;
    the thin strip where they meet in front of it is not part of either). A lesion that bulges into
    a lung lies inside; the chest wall, the spine and the far side of the mediastinum do not. A
    slice's hulls are found once and kept, for every lesion sized on the same lung mask."""

    def __init__(self, lungs: np.ndarray, *, step: int = 2) -> None:
        self.mask = lungs
        self.step = step
        self._hulls: dict[tuple[int, float, float], list[np.ndarray]] = {}

    def on_block(self, origin, shape, spacing) -> np.ndarray:
        out = np.zeros(shape, bool)
        rows = np.arange(origin[1], origin[1] + shape[1])
        cols = np.arange(origin[2], origin[2] + shape[2])
        for n in range(shape[0]):
            for hull in self.hulls(origin[0] + n, spacing):
                out[n] |= inside_polygon(hull, rows, cols)
        return out

    def hulls(self, k: int, spacing) -> list[np.ndarray]:
        key = (int(k), float(spacing[1]), float(spacing[2]))
        if key not in self._hulls:
            self._hulls[key] = slice_hulls(self.mask[int(k)], spacing, self.step)
        return self._hulls[key]
