"""Label masks (NIfTI, NRRD, MetaImage): imported as nodule labels, written from labels and findings.

A mask is a volume of small integers: 0 is background, every other value a
structure (nnU-Net, MONAI, TotalSegmentator and Slicer write them so). Import
cuts each value into its 3-D connected components (26-connected, as ITK's
``ConnectedComponent`` with full connectivity) and stores one label per
component: its centroid in patient mm, and its size as the diameter of the
sphere of the same volume (``size_name`` "equivalent diameter", measured from
the mask's voxels), with the volume and the largest 3-D extent (Feret diameter)
kept beside it. A mask finds its series by geometry: the database series whose
voxel grid covers the same patient box with the same matrix (axes may be flipped
or in another order, as converters write them), or the one ``series`` names.

Export writes one label map per series on the series' own grid, with a JSON
sidecar saying which value is which label or finding and what its size is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medstation.core import jsonout
from medstation.core.errors import LabelError, LoadError
from medstation.core.files import atomic_write_text
from medstation.core.geometry import Grid
from medstation.dicom.series_geometry import plan_label_export, series_geometry
from medstation.dicom.volume_files import FORMATS, suffix_of, write_volume_file

#: a label map holds background and a few structures, not an image's thousands of grey values
MAX_VALUES = 255
#: components smaller than this many voxels are noise of a painting tool, not a lesion (named, not kept)
MIN_VOXELS = 3
SIZE_NAME = "equivalent diameter"
SIZE_METHOD = "mask voxels: the diameter of the sphere of the component's volume"


def is_mask_file(path: str | Path) -> bool:
    return suffix_of(path) in FORMATS


@dataclass(frozen=True)
class MaskComponent:
    """One connected structure of a mask."""

    value: int
    center_mm: tuple[float, float, float]
    voxels: int
    volume_mm3: float
    equivalent_diameter_mm: float
    feret_diameter_mm: float


@dataclass
class Mask:
    path: Path
    array: np.ndarray  # (k, i, j) integers
    grid: Grid
    image: object  # the SimpleITK image (for the component filters)


def read_mask(path: str | Path) -> Mask:
    """The label map in ``path``; ``LabelError`` when it is unreadable or not a label map."""
    import SimpleITK as sitk

    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        from medstation.dicom.volume_files import _itk_reason

        raise LabelError(f"{path}: SimpleITK cannot read the mask: {_itk_reason(exc)}",
                         "export the mask again as .nii.gz or .nrrd") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        values = image.GetNumberOfComponentsPerPixel()
        raise LabelError(f"{path}: a {image.GetDimension()}-D image with {values} value(s) per voxel, not a "
                         "3-D label map", "save one 3-D label map per file")
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise LabelError(f"{path}: fractional voxel values: a probability map or an image, not a "
                             "label map", "threshold it into integer labels (0 = background) first")
        array = array.astype(np.int64)
    values = np.unique(array)
    if values.size and values.min() < 0:
        raise LabelError(f"{path}: negative voxel values (down to {values.min()}): an image, not a label "
                         "map", "import a mask whose background is 0 and whose structures are 1, 2, ...")
    if values.size > MAX_VALUES + 1:
        raise LabelError(f"{path}: {values.size} distinct values: an image, not a label map",
                         f"a label map holds 0 and at most {MAX_VALUES} structure values")
    spacing, origin = image.GetSpacing(), image.GetOrigin()
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    grid = Grid.of(array.shape, (spacing[2], spacing[1], spacing[0]), origin,
                   np.stack([d[:, 2], d[:, 1], d[:, 0]]))
    return Mask(path, array.astype(np.uint16), grid, sitk.Cast(image, sitk.sitkUInt16))


def components(mask: Mask) -> tuple[list[MaskComponent], int]:
    """The mask's connected structures (largest first) and how many specks were left out."""
    import SimpleITK as sitk

    out, specks = [], 0
    for value in (int(v) for v in np.unique(mask.array) if v):
        cc = sitk.ConnectedComponent(mask.image == value, True)
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.ComputeFeretDiameterOn()
        stats.Execute(cc)
        for lab in stats.GetLabels():
            n = int(stats.GetNumberOfPixels(lab))
            if n < MIN_VOXELS:
                specks += 1
                continue
            volume = float(stats.GetPhysicalSize(lab))
            out.append(MaskComponent(value, tuple(float(v) for v in stats.GetCentroid(lab)), n, volume,
                                     float((6 * volume / math.pi) ** (1 / 3)),
                                     float(stats.GetFeretDiameter(lab))))
    out.sort(key=lambda c: -c.volume_mm3)
    return out, specks


def _same_box(a: Grid, b: Grid) -> bool:
    """The two grids cover the same patient box with the same matrix (any axis order or flip)."""
    if sorted(a.shape) != sorted(b.shape):
        return False
    (alo, ahi), (blo, bhi) = a.bounds_mm(), b.bounds_mm()
    tol = max(max(a.spacing), max(b.spacing)) / 2 + 0.01
    return bool(np.all(np.abs(alo - blo) <= tol) and np.all(np.abs(ahi - bhi) <= tol))


def series_for_mask(db, mask: Mask, series_uid: str | None = None):
    """The database series the mask lies on (a ``SeriesGeometry``), or ``LabelError`` saying why not."""
    if series_uid:
        g = series_geometry(db, series_uid)
        if g is None:
            raise LabelError(f"{mask.path}: series {series_uid} is not in the study database (or has no "
                             "geometry)", "import the series first")
        return g
    for uid in sorted({r.series_uid for r in db.index.series()}):
        g = series_geometry(db, uid)
        if g is not None and _same_box(g.grid, mask.grid):
            return g
    raise LabelError(f"{mask.path}: no series in the study database lies on the mask's grid "
                     f"({mask.grid.describe()})",
                     "import the series the mask was drawn on first, or name it with --series UID")


def rows_from_mask(db, path: str | Path, series_uid: str | None = None) -> list[dict]:
    """Label rows (as ``import_labels`` stores them) for every structure of the mask."""
    mask = read_mask(path)
    g = series_for_mask(db, mask, series_uid)
    found, specks = components(mask)
    if not found:
        raise LabelError(f"{path}: the mask holds no structure of {MIN_VOXELS} voxels or more"
                         + (f" ({specks} smaller specks)" if specks else ""),
                         "check it is the right file: 0 is background, structures are 1, 2, ...")
    rows, problems = [], []
    for n, c in enumerate(found, start=1):
        if not g.inside(c.center_mm):
            problems.append(f"structure {n} (value {c.value}) at {c.center_mm} mm lies outside series "
                            f"{g.series_uid}")
            continue
        rows.append({"series_key": g.key, "center_mm": list(c.center_mm),
                     "diameter_mm": round(c.equivalent_diameter_mm, 3), "is_nodule": True,
                     "extra": {"size_name": SIZE_NAME, "size_method": SIZE_METHOD,
                               "volume_mm3": round(c.volume_mm3, 3), "voxels": c.voxels,
                               "feret_diameter_mm": round(c.feret_diameter_mm, 3), "mask_value": c.value}})
    if problems:
        raise LabelError(f"{path}: {len(problems)} structure(s) cannot be used; nothing was imported: "
                         f"{problems[0]}", "name the series the mask was drawn on with --series UID",
                         problems)
    return rows


# -- export -----------------------------------------------------------------------------------

def _write(array: np.ndarray, grid: Grid, out: Path, legend: list[dict], series_uid: str) -> Path:
    write_volume_file(array, grid, out)
    atomic_write_text(out.with_name(out.name[: -len(suffix_of(out))] + ".json"),
                      jsonout.dumps({"mask": out.name, "series_uid": series_uid, "background": 0,
                                     "geometry": "patient LPS (NIfTI files carry it as RAS+)",
                                     "values": legend}, indent=1))
    return out


def sphere_map(grid: Grid, spheres: list[tuple[tuple[float, float, float], float]]) -> np.ndarray:
    """Label values 1..n: sphere ``n`` (centre mm, diameter mm) on ``grid`` (later ones on top)."""
    out = np.zeros(grid.shape, np.uint16)
    for n, (centre, diameter) in enumerate(spheres, start=1):
        k, i, j = grid.patient_to_index(centre)
        r = diameter / 2
        reach = [int(math.ceil(r / s)) + 1 for s in grid.spacing]
        lo = [max(0, int(math.floor(c)) - e) for c, e in zip((k, i, j), reach)]
        hi = [min(s, int(math.ceil(c)) + e + 1) for c, e, s in zip((k, i, j), reach, grid.shape)]
        if any(a >= b for a, b in zip(lo, hi)):
            continue
        kk, ii, jj = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
        pts = grid.index_to_patient(np.stack([kk, ii, jj], -1).reshape(-1, 3)).reshape(*kk.shape, 3)
        inside = np.sum((pts - np.asarray(centre)) ** 2, axis=-1) <= r * r
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = n
    return out


def export_label_masks(db, labels, out_dir: str | Path, suffix: str = ".nii.gz") -> list[str]:
    """One label map per series holding nodule labels (a sphere of each label's size), checked first."""
    plans = plan_label_export(db, labels, "masks")
    written = []
    for uid, g, labs in plans:
        legend = [{"value": n, "label_id": lab.id, "center_mm": list(lab.center_mm),
                   "diameter_mm": lab.diameter_mm, "size_name": lab.size_name, "source": lab.source,
                   "drawn_as": "a sphere of the label's diameter"} for n, lab in enumerate(labs, start=1)]
        array = sphere_map(g.grid, [(lab.center_mm, lab.diameter_mm) for lab in labs])
        written.append(str(_write(array, g.grid, Path(out_dir) / f"{uid}-labels{suffix}", legend, uid)))
    return written


def export_findings_mask(volume, findings, series_uid: str, out: str | Path) -> Path:
    """The findings as one label map on the volume's grid (value n = the n-th finding), with a sidecar:
    each finding's segmentation where it has one, else its boxes' dense voxels (as the SEG has them)."""
    from medstation.dicom.results import finding_mask

    if not volume.has_geometry:
        raise LoadError(out, "the series has no patient geometry: a mask would lie nowhere",
                        "export the findings as JSON instead")
    array = np.zeros(volume.shape, np.uint16)
    legend = []
    for n, f in enumerate(findings, start=1):
        for k, m in finding_mask(volume.voxels, f).items():
            array[int(k)][m] = n
        legend.append({"value": n, "finding_id": f.finding_id, "score": f.score,
                       "center_mm": list(f.center_mm), "size_mm": f.size.mm, "size_name": f.size.what,
                       "size_method": f.size.method, "model": f"{f.model_name}@{f.model_version}"})
    return _write(array, volume.grid, Path(out), legend, series_uid)


def mask_on_grid(mask: Mask, grid: Grid) -> np.ndarray:
    """The mask resampled (nearest neighbour, in patient mm) onto ``grid``: ``(k, i, j)`` uint16.
    ``LabelError`` when none of its structures lands inside the grid (the mask is of another series)."""
    import SimpleITK as sitk

    ref = sitk.Image(int(grid.shape[2]), int(grid.shape[1]), int(grid.shape[0]), sitk.sitkUInt16)
    ref.SetSpacing(tuple(float(s) for s in (grid.spacing[2], grid.spacing[1], grid.spacing[0])))
    ref.SetOrigin(tuple(float(v) for v in grid.origin))
    ref.SetDirection(grid.sitk_direction())
    out = sitk.GetArrayFromImage(sitk.Resample(mask.image, ref, sitk.Transform(), sitk.sitkNearestNeighbor,
                                               0, sitk.sitkUInt16))
    if mask.array.any() and not out.any():
        raise LabelError(f"{mask.path}: none of the mask's structures lies inside the shown series "
                         f"({grid.describe()})", "open the series the mask was drawn on, then the mask")
    return out
