"""The detector's pre-processing, as its manifest (``input``) says: resample to the model's pixel
and slice spacing, window to its HU range, skip slices that hold no lung and crop every slice to
the box around the lungs (+ margin); ``stack_channels`` makes the 2.5D inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from medstation.core.errors import ModelError
from medstation.core.volume import Volume

#: lungs: voxels below this HU inside the body
AIR_HU = -400.0
#: slices with less lung than this (mm^2) are skipped
MIN_LUNG_AREA_MM2 = 150.0
#: margin around the lungs kept in the crop (mm): juxtapleural nodules sit on the edge
CROP_MARGIN_MM = 12.0


# -- pre-processing -----------------------------------------------------------

@dataclass
class Prepared:
    """A volume at the model's spacing, windowed, cropped to the lungs."""

    images: torch.Tensor  # (slices, rows, cols) float32 in 0..1, model spacing
    kept: list[int]  # model slice indices that hold lung
    crop: tuple[int, int]  # (row, col) offset of the crop in the resampled slice
    scale: tuple[float, float, float]  # volume index per model index along k, i, j
    model_spacing: tuple[float, float, float]
    seconds: float = 0.0
    #: per kept slice: (r0, r1, c0, c1) in ``images`` around the lungs of it and its neighbours
    slice_boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


def check_volume(volume: Volume, input_spec: dict) -> None:
    where = volume.series_uid or "this series"
    if volume.is_color or volume.voxels.ndim != 3:
        raise ModelError(f"{where}: the detector needs a grey image volume", "open a CT series")
    if input_spec.get("modality") and volume.modality and volume.modality != input_spec["modality"]:
        raise ModelError(f"{where}: the detector is for {input_spec['modality']}, "
                         f"this series is {volume.modality}",
                         "open a chest CT series")
    if volume.shape[0] < 3:
        raise ModelError(f"{where}: {volume.shape[0]} slice(s); the detector needs a stack of axial slices",
                         "open a thin-slice chest CT series")
    if volume.geometry_errors or not volume.has_geometry:
        why = "; ".join(volume.geometry_errors) or "no slice positions or orientation in the files"
        raise ModelError(f"{where}: the series has no valid patient geometry ({why})",
                         "the detector measures in mm: fix or re-export the series with its geometry")
    repeats = [w for w in volume.warnings if "repeat a position" in w]
    if repeats:  # two images at one position: not one volume, sizes and scores would be invented
        raise ModelError(f"{where}: {repeats[0]}; the stack is not one volume",
                         "open one acquisition of the series (split by echo or phase, or without the copies)")
    if not all(math.isfinite(s) and s > 0 for s in volume.spacing):
        raise ModelError(f"{where}: impossible voxel spacing {volume.spacing}",
                         "re-export the series from the scanner or PACS")
    if abs(float(volume.direction[0][2])) < 0.9:
        raise ModelError(f"{where}: the slices are not axial; the detector reads axial chest CT",
                         "open the axial series of the study")


def prepare(volume: Volume, input_spec: dict, check: Callable[[], None] | None = None, *,
            crop_to_lungs: bool = True) -> Prepared:
    """Resample to the model's spacing, window, find the lungs and crop to them."""
    t0 = time.perf_counter()
    check_volume(volume, input_spec)
    sk, si, sj = (abs(s) for s in volume.spacing)
    px = float(input_spec["pixel_spacing_mm"])
    dz = float(input_spec["slice_spacing_mm"])
    lo, hi = (float(v) for v in input_spec["window"])
    n, rows, cols = volume.shape
    out_rows = max(8, int(round(rows * si / px)))
    out_cols = max(8, int(round(cols * sj / px)))
    out_n = max(1, int(math.floor((n - 1) * sk / dz)) + 1)
    src_k = np.arange(out_n) * dz / sk  # fractional source slice of every model slice
    needed = sorted({int(math.floor(f)) for f in src_k}
                    | {min(n - 1, int(math.floor(f)) + 1) for f in src_k if f - math.floor(f) > 1e-6})
    planes: dict[int, torch.Tensor] = {}
    vox = volume.voxels
    for start in range(0, len(needed), 32):
        if check:
            check()
        ks = needed[start:start + 32]
        block = torch.from_numpy(np.ascontiguousarray(vox[ks], dtype=np.float32))[:, None]
        block = F.interpolate(block, size=(out_rows, out_cols), mode="bilinear", align_corners=False,
                              antialias=(out_rows < rows or out_cols < cols))[:, 0]
        block = ((block - lo) / (hi - lo)).clamp_(0.0, 1.0)
        for k, plane in zip(ks, block):
            planes[k] = plane
    images = torch.empty((out_n, out_rows, out_cols), dtype=torch.float32)
    for m, f in enumerate(src_k):
        k0 = int(math.floor(f))
        w = f - k0
        if w < 1e-6 or k0 + 1 >= n:
            images[m] = planes[min(k0, n - 1)]
        else:
            torch.lerp(planes[k0], planes[k0 + 1], float(w), out=images[m])
    del planes
    # lungs: air enclosed by the body along both its row and its column (found on every
    # second pixel: the mask only decides which slices to run and where to crop)
    step = 2
    air = images[:, ::step, ::step] < (AIR_HU - lo) / (hi - lo)
    body = ~air
    inside = _between(body, 2) & _between(body, 1)
    lung = air & inside
    area = lung.sum(dim=(1, 2)).numpy() * (px * step) ** 2
    kept = [int(m) for m in np.nonzero(area >= MIN_LUNG_AREA_MM2)[0]]
    crop = (0, 0)
    slice_boxes: dict[int, tuple[int, int, int, int]] = {}
    if kept and crop_to_lungs:
        margin = int(round(CROP_MARGIN_MM / px))
        rows_any = lung.any(dim=2).repeat_interleave(step, dim=1)[:, :out_rows]  # (slices, rows)
        cols_any = lung.any(dim=1).repeat_interleave(step, dim=1)[:, :out_cols]  # (slices, cols)
        r0, r1, c0, c1 = _extent(rows_any[kept].any(dim=0), cols_any[kept].any(dim=0), margin,
                                 out_rows, out_cols)
        images = images[:, r0:r1, c0:c1].contiguous()
        crop = (r0, c0)
        half = int(input_spec["channels"]) // 2
        for m in kept:  # each slice cropped to the lungs it and its neighbours hold
            lo, hi = max(0, m - half), min(out_n, m + half + 1)
            a0, a1, b0, b1 = _extent(rows_any[lo:hi].any(dim=0), cols_any[lo:hi].any(dim=0), margin,
                                     out_rows, out_cols)
            slice_boxes[m] = (max(0, a0 - r0), min(r1, a1) - r0, max(0, b0 - c0), min(c1, b1) - c0)
    scale = (dz / sk, rows / out_rows, cols / out_cols)
    spacing = (dz, si * rows / out_rows, sj * cols / out_cols)
    return Prepared(images, kept, crop, scale, spacing, time.perf_counter() - t0, slice_boxes)


def _extent(rows: torch.Tensor, cols: torch.Tensor, margin: int, n_rows: int,
            n_cols: int) -> tuple[int, int, int, int]:
    r = torch.nonzero(rows).flatten()
    c = torch.nonzero(cols).flatten()
    if not len(r) or not len(c):
        return 0, n_rows, 0, n_cols
    return (max(0, int(r[0]) - margin), min(n_rows, int(r[-1]) + 1 + margin),
            max(0, int(c[0]) - margin), min(n_cols, int(c[-1]) + 1 + margin))


def _between(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """True between the first and the last True along ``dim`` (inclusive): the first and last
    indices by ``argmax`` (the first maximum), compared with a position ramp; a line with no True
    stays False. The same as a forward and a backward running maximum, several times faster."""
    n = mask.shape[dim]
    if mask.numel() == 0:
        return mask.clone()
    m = mask.to(torch.uint8)
    first = m.argmax(dim=dim, keepdim=True)
    last = (n - 1) - m.flip(dim).argmax(dim=dim, keepdim=True)
    shape = [1] * mask.dim()
    shape[dim] = n
    pos = torch.arange(n).view(shape)
    return (pos >= first) & (pos <= last) & mask.any(dim=dim, keepdim=True)


def stack_channels(images: torch.Tensor, slices: list[int], channels: int) -> torch.Tensor:
    """``(len(slices), channels, rows, cols)``: each slice with its neighbours (edges repeated)."""
    half = channels // 2
    idx = torch.tensor(slices)[:, None] + torch.arange(-half, half + 1)[None, :]
    idx = idx.clamp_(0, images.shape[0] - 1)
    return images[idx]


