"""Multi-planar reformatting: the three index planes of a volume, shown the radiological way.

A ``Volume`` is indexed ``(k, i, j)``; each index axis points somewhere in patient
space (``direction``). The axial, coronal and sagittal views are the index planes
whose normals lie closest to the patient's z, y and x axes, turned and flipped so
that the screen shows the patient as radiologists expect: axial and coronal with
the patient's right on the screen's left, sagittal with anterior on the left,
head up. The orientation letters at each edge come from the real direction
cosines, so an oblique or flipped acquisition is labelled as what it is.

Plane images are numpy views (no copy); ``Plane.to_index`` and
``Plane.to_plane`` convert between a plane's (row, column) pixel coordinates
(pixel centres at integers) and volume indices.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from medstation.core.volume import Volume

# LPS: +x is the patient's left, +y posterior, +z superior.
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))

# plane name -> (patient axis of its normal, screen-right vector, screen-down vector)
_TARGETS = {
    "axial": (2, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": (1, (1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": (0, (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
PLANE_NAMES = ("axial", "coronal", "sagittal")


def orientation_label(vec, threshold: float = 0.05) -> str:
    """Letters for a patient-space direction, strongest first: (0.9, -0.3, 0) -> "LA"."""
    v = np.asarray(vec, dtype=float)
    order = sorted(range(3), key=lambda a: -abs(v[a]))
    return "".join(_LETTERS[a][int(v[a] > 0)] for a in order if abs(v[a]) > threshold)


@dataclass(frozen=True)
class Plane:
    """One reformat of a volume: which index axis is fixed and how the other two map to the screen."""

    name: str
    axis: int  # index axis held fixed (the plane's normal)
    row_axis: int  # index axis running down the screen
    col_axis: int  # index axis running across the screen
    flip_row: bool
    flip_col: bool
    shape: tuple[int, int]  # (rows, columns) of the plane image
    depth: int  # number of planes along ``axis``
    spacing: tuple[float, float]  # (row, column) pixel size in mm
    right: tuple[float, float, float]  # patient direction of screen-right
    down: tuple[float, float, float]  # patient direction of screen-down
    normal: tuple[float, float, float]  # patient direction of increasing depth
    step_mm: float = 1.0  # distance between neighbouring planes along ``axis``

    def image(self, voxels: np.ndarray, depth: int) -> np.ndarray:
        """The plane image at ``depth`` as a view of ``voxels`` (grey or colour)."""
        sel: list = [slice(None)] * 3
        sel[self.axis] = int(depth)
        return self.orient(voxels[tuple(sel)])

    def orient(self, img: np.ndarray) -> np.ndarray:
        """An image of the two in-plane index axes (in index order) turned to the screen's way."""
        if self.row_axis > self.col_axis:
            img = img.swapaxes(0, 1)
        if self.flip_row:
            img = img[::-1]
        if self.flip_col:
            img = img[:, ::-1]
        return img

    def to_plane(self, index) -> tuple[float, float, float]:
        """``(row, column, depth)`` in this plane of a fractional volume index ``(k, i, j)``."""
        r = float(index[self.row_axis])
        c = float(index[self.col_axis])
        if self.flip_row:
            r = self.shape[0] - 1 - r
        if self.flip_col:
            c = self.shape[1] - 1 - c
        return r, c, float(index[self.axis])

    def to_index(self, row: float, col: float, depth: float) -> np.ndarray:
        """Fractional volume index ``(k, i, j)`` of a plane position."""
        if self.flip_row:
            row = self.shape[0] - 1 - row
        if self.flip_col:
            col = self.shape[1] - 1 - col
        idx = np.zeros(3)
        idx[self.row_axis], idx[self.col_axis], idx[self.axis] = row, col, depth
        return idx

    def edge_labels(self) -> dict[str, str]:
        """Orientation letters at the screen edges: keys left, right, top, bottom."""
        r, d = np.asarray(self.right), np.asarray(self.down)
        return {"right": orientation_label(r), "left": orientation_label(-r),
                "bottom": orientation_label(d), "top": orientation_label(-d)}


def _axis_assignment(direction: np.ndarray) -> tuple[int, int, int]:
    """Index axis best aligned with patient x, y, z (a permutation maximising alignment)."""
    best, best_score = (2, 1, 0), -1.0
    for perm in itertools.permutations(range(3)):
        score = sum(abs(direction[perm[a]][a]) for a in range(3))
        if score > best_score + 1e-9:
            best, best_score = perm, score
    return best  # best[a] = index axis for patient axis a


def planes_for(volume: Volume) -> dict[str, Plane]:
    """The axial, coronal and sagittal planes of ``volume``."""
    d = np.asarray(volume.direction, dtype=float)
    shape = volume.shape[:3]
    spacing = volume.spacing
    of_patient = _axis_assignment(d)
    out = {}
    for name, (normal_axis, right, down) in _TARGETS.items():
        axis = of_patient[normal_axis]
        col_axis = of_patient[int(np.argmax(np.abs(right)))]
        row_axis = of_patient[int(np.argmax(np.abs(down)))]
        flip_col = float(d[col_axis] @ np.asarray(right)) < 0
        flip_row = float(d[row_axis] @ np.asarray(down)) < 0
        right_vec = d[col_axis] * (-1 if flip_col else 1)
        down_vec = d[row_axis] * (-1 if flip_row else 1)
        out[name] = Plane(
            name=name, axis=axis, row_axis=row_axis, col_axis=col_axis,
            flip_row=flip_row, flip_col=flip_col,
            shape=(shape[row_axis], shape[col_axis]), depth=shape[axis],
            spacing=(float(spacing[row_axis]), float(spacing[col_axis])),
            right=tuple(float(v) for v in right_vec), down=tuple(float(v) for v in down_vec),
            normal=tuple(float(v) for v in d[axis]), step_mm=float(spacing[axis]))
    return out
