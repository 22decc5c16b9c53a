"""``Grid``: the one conversion between patient mm (DICOM LPS) and voxel index ``(k, i, j)``.

Every place that turns a patient position into a voxel index or back (labels, findings,
measurements, SR / SEG, registration, the views) goes through :class:`Grid`, so real-world
geometry (anisotropic voxels, flipped rows or columns, coronal and sagittal acquisitions,
gantry tilt) is handled once.

Conventions (as :mod:`medstation.core.volume`):

* index order ``(k, i, j)`` = (slice, row, column);
* ``spacing = (dk, di, dj)`` in mm, each along the matching row of ``direction``;
* ``direction`` rows are unit vectors in patient space: ``direction[0]`` the way ``k``
  grows (the slice normal, or the tilted stacking direction), ``direction[1]`` the way the
  row index ``i`` grows (DICOM's column cosines, the second half of Image Orientation
  (Patient)), ``direction[2]`` the way the column index ``j`` grows (the row cosines, its
  first half);
* ``origin`` is the patient position of voxel ``(0, 0, 0)``'s centre (Image Position
  (Patient) of the first slice).

So ``patient = origin + k * dk * direction[0] + i * di * direction[1] + j * dj * direction[2]``
(DICOM PS3.3 C.7.6.2.1.1, extended along the stack).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Where a voxel array lies in the patient: no voxels, only geometry."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    @classmethod
    def of(cls, shape, spacing, origin, direction) -> Grid:
        return cls(tuple(int(s) for s in shape[:3]),  # type: ignore[arg-type]
                   tuple(float(s) for s in spacing),  # type: ignore[arg-type]
                   tuple(float(o) for o in origin),  # type: ignore[arg-type]
                   np.asarray(direction, dtype=float).reshape(3, 3))

    @property
    def matrix(self) -> np.ndarray:
        """3x3 ``M`` with ``patient - origin = M @ (k, i, j)``: column ``a`` is axis ``a``'s step in mm."""
        return self.direction.T * np.asarray(self.spacing, dtype=float)

    def affine(self) -> np.ndarray:
        """4x4 matrix mapping ``(k, i, j, 1)`` to patient ``(x, y, z, 1)`` in mm."""
        a = np.eye(4)
        a[:3, :3] = self.matrix
        a[:3, 3] = self.origin
        return a

    def index_to_patient(self, index) -> np.ndarray:
        """Patient position (mm, LPS) of fractional voxel index ``(k, i, j)`` (or an n x 3 array)."""
        idx = np.asarray(index, dtype=float)
        return idx @ self.matrix.T + np.asarray(self.origin, dtype=float)

    def patient_to_index(self, point) -> np.ndarray:
        """Fractional voxel index ``(k, i, j)`` of a patient position (or an n x 3 array)."""
        p = np.asarray(point, dtype=float) - np.asarray(self.origin, dtype=float)
        m = self.matrix
        return np.linalg.solve(m, p.T).T if p.ndim > 1 else np.linalg.solve(m, p)

    def contains_index(self, index, margin: float = 0.5) -> bool:
        """Whether fractional ``index`` lies within the voxels (``margin`` voxels beyond the
        outer voxel centres: 0.5 is the voxels' outer faces)."""
        return bool(all(-margin <= float(v) <= s - 1 + margin for v, s in zip(index, self.shape)))

    def contains(self, point, margin: float = 0.5) -> bool:
        """Whether the patient position lies within the voxels (see :meth:`contains_index`)."""
        idx = self.patient_to_index(point)
        return bool(np.all(np.isfinite(idx))) and self.contains_index(idx, margin)

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """The patient-space box (min, max corner) of the voxel centres."""
        corners = np.array([[k, i, j] for k in (0, self.shape[0] - 1) for i in (0, self.shape[1] - 1)
                            for j in (0, self.shape[2] - 1)], dtype=float)
        pts = self.index_to_patient(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def sitk_direction(self) -> tuple[float, ...]:
        """The direction as SimpleITK wants it (row-major 3x3 whose columns are the x = j,
        y = i, z = k image axes), for an image made with ``GetImageFromArray`` of ``(k, i, j)``."""
        d = self.direction
        return tuple(np.stack([d[2], d[1], d[0]], axis=1).ravel())

    def describe(self) -> str:
        lo, hi = self.bounds_mm()
        return (f"{self.shape[0]} x {self.shape[1]} x {self.shape[2]} voxels of "
                f"{self.spacing[0]:g} x {self.spacing[1]:g} x {self.spacing[2]:g} mm, "
                f"x {lo[0]:.1f}..{hi[0]:.1f}, y {lo[1]:.1f}..{hi[1]:.1f}, z {lo[2]:.1f}..{hi[2]:.1f} mm")
