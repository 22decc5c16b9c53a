"""Thick slabs: maximum, minimum and average intensity projections over N mm of a plane.

A sliding thick-slab MIP is how a reader tells a nodule (a blob that comes and
goes as the slab slides) from a vessel (a line that runs on); MinIP shows the
airways and emphysema; an average slab is a thick reconstruction. RadiAnt, Horos,
OHIF, Weasis and Slicer all have it, on every plane.

The slab is centred on the shown plane: ``N`` mm covers ``round(N / step)`` planes
(at least one), from ``depth - (n - 1) // 2`` to ``depth + n // 2``, clipped at the
volume's ends, so an even count leans one plane deeper. Slices that have not
arrived yet (``ready``) are left out of an axial slab rather than counted as air.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mpr import Plane

#: slab modes, in the order the key cycles them; "off" is the plain plane
SLAB_MODES = ("off", "mip", "minip", "avg")
SLAB_NAMES = {"off": "Off", "mip": "MIP", "minip": "MinIP", "avg": "Average"}
MIN_MM, MAX_MM = 1.0, 100.0


@dataclass(frozen=True)
class Slab:
    """How each view projects: ``mode`` over ``thickness_mm`` (centred on the shown plane)."""

    mode: str = "off"
    thickness_mm: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in SLAB_MODES:
            raise ValueError(f"unknown slab mode {self.mode!r}; one of {', '.join(SLAB_MODES)}")

    @property
    def active(self) -> bool:
        return self.mode != "off"

    def label(self, plane: Plane | None = None, depth: int | None = None) -> str:
        """"MIP 10.0 mm" (with the planes it covers when a plane is given): shown in the corner."""
        if not self.active:
            return ""
        text = f"{SLAB_NAMES[self.mode]} {self.thickness_mm:.1f} mm"
        if plane is not None and depth is not None:
            lo, hi = slab_range(plane, depth, self)
            text += f" ({hi - lo + 1} im)"
        return text


def slab_range(plane: Plane, depth: int, slab: Slab) -> tuple[int, int]:
    """First and last plane index (inclusive) of the slab centred on ``depth``."""
    depth = int(depth)
    if not slab.active:
        return depth, depth
    n = max(1, int(round(slab.thickness_mm / max(plane.step_mm, 1e-6))))
    lo = max(0, depth - (n - 1) // 2)
    hi = min(plane.depth - 1, depth + n // 2)
    return lo, hi


def slab_image(plane: Plane, voxels: np.ndarray, depth: int, slab: Slab,
               ready: np.ndarray | None = None) -> np.ndarray:
    """The projected slab as a plane image (same shape and orientation as ``plane.image``).

    int16 stays int16 (the average is rounded), so the display lookup table applies.
    """
    if not slab.active:
        return plane.image(voxels, depth)
    lo, hi = slab_range(plane, depth, slab)
    sel: list = [slice(None)] * 3
    sel[plane.axis] = slice(lo, hi + 1)
    block = voxels[tuple(sel)]
    if ready is not None and plane.axis == 0:
        arrived = np.asarray(ready[lo:hi + 1], bool)
        if not arrived.all():
            if not arrived.any():
                return plane.image(voxels, depth)
            block = block[arrived]
    axis = plane.axis
    if slab.mode == "mip":
        img = block.max(axis=axis)
    elif slab.mode == "minip":
        img = block.min(axis=axis)
    else:
        count = block.shape[axis]
        if np.issubdtype(block.dtype, np.integer):
            total = block.sum(axis=axis, dtype=np.int64)
            img = np.floor_divide(total * 2 + count, 2 * count).astype(block.dtype)  # rounded half up
        else:
            img = block.mean(axis=axis).astype(block.dtype)
    return plane.orient(img)
