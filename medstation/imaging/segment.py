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
* the volume (voxel count x voxel volume) and the sphere-equivalent diameter.

``None`` when no lesion stands out from its surroundings (the caller keeps the box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medstation.core.volume import Volume


@dataclass(frozen=True)
class NoduleSize:
    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    equivalent_diameter_mm: float
    voxels: int
    threshold_hu: float
    touches_edge: bool  # the mask reached the region's border: a leak or a lesion larger than the box


def _roi(volume: Volume, centre, radius_mm: float):
    sk, si, sj = (abs(float(s)) for s in volume.spacing)
    half = [max(2, int(math.ceil(radius_mm / s))) for s in (sk, si, sj)]
    c = [int(round(v)) for v in centre]
    lo = [max(0, c[a] - half[a]) for a in range(3)]
    hi = [min(volume.shape[a], c[a] + half[a] + 1) for a in range(3)]
    block = np.asarray(volume.voxels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
    seed = tuple(c[a] - lo[a] for a in range(3))
    return block, seed, (sk, si, sj)


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


def measure_nodule(volume: Volume, centre, radius_mm: float) -> NoduleSize | None:
    """Segment the lesion at voxel ``centre`` (k, i, j) within ``radius_mm`` (about 1.5x the
    detected radius) and measure it."""
    import SimpleITK as sitk

    if volume.is_color or volume.voxels.ndim != 3:
        return None
    block, seed, (sk, si, sj) = _roi(volume, centre, radius_mm)
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
    grown = sitk.ConnectedThreshold(image, seedList=[(int(j0), int(i0), int(k0))], lower=threshold,
                                    upper=float(block.max()) + 1)
    # the opening grows with the lesion: it cuts vessels up to ~a quarter of its radius thick; a
    # region that still reaches the border of the ROI (a lesion on the chest wall or the
    # mediastinum) is opened harder, up to half the radius, until it comes free
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
    return NoduleSize(round(long_axis, 1), round(short_axis, 1), round(volume_mm3, 1),
                      round((6 * volume_mm3 / math.pi) ** (1 / 3), 1), count, round(threshold, 1), touches)
