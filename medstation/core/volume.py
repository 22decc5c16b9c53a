"""The ``Volume``: voxels plus the geometry that puts them in the patient.

Axis convention (used everywhere in medstation): numpy index order
``(slice, row, column)``, written ``(k, i, j)``.

* ``spacing`` is ``(dk, di, dj)`` in mm: slice spacing, row spacing, column
  spacing (DICOM PixelSpacing is ``[row spacing, column spacing]`` = ``(di, dj)``).
* ``direction`` is a 3x3 matrix whose *rows* are unit vectors in patient
  space (DICOM LPS): ``direction[0]`` the slice normal (direction of
  increasing ``k``), ``direction[1]`` the direction of increasing row index
  ``i`` (DICOM "column cosines"), ``direction[2]`` the direction of increasing
  column index ``j`` (DICOM "row cosines").
* ``origin`` is the patient position (mm, LPS) of voxel ``(0, 0, 0)``'s centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medstation.core.geometry import Grid

#: direction of an image stack with unknown geometry: slices stacked along z, image rows
#: down (+y), columns across (+x), so it displays as stored
AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


@dataclass
class Volume:
    """Voxels with their patient-space geometry.

    ``voxels`` has shape ``(slices, rows, columns)`` for grey images and
    ``(slices, rows, columns, 3)`` for colour (RGB) images. Grey CT voxels are
    in Hounsfield units (rescale applied); ``units`` says what they are.
    """

    voxels: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: AXIAL.copy())
    frame_of_reference_uid: str = ""
    series_uid: str = ""
    modality: str = ""
    units: str = ""
    #: position of every slice along ``direction[0]`` (mm), in slice order
    slice_positions: np.ndarray | None = None
    #: window presets stored in the DICOM: list of (centre, width, name)
    windows: list[tuple[float, float, str]] = field(default_factory=list)
    #: geometry notes a reader should know about (uneven spacing, tilt, ...)
    warnings: list[str] = field(default_factory=list)
    #: False when the geometry had to be guessed (no position/orientation)
    has_geometry: bool = True
    #: where each slice came from: (file path, frame index), in slice order
    sources: list[tuple[str, int]] = field(default_factory=list)
    #: DICOM PhotometricInterpretation of the stored pixels (MONOCHROME1 displays inverted)
    photometric: str = ""
    #: why the geometry is unknown or impossible (empty: spacing, orientation and positions are real)
    geometry_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.voxels.shape[:3])  # type: ignore[return-value]

    @property
    def is_color(self) -> bool:
        return self.voxels.ndim == 4

    @property
    def nbytes(self) -> int:
        return int(self.voxels.nbytes)

    @property
    def grid(self) -> Grid:
        """The volume's geometry (the one patient <-> index conversion, ``core.geometry``)."""
        return Grid.of(self.shape, self.spacing, self.origin, self.direction)

    def affine(self) -> np.ndarray:
        """4x4 matrix mapping ``(k, i, j, 1)`` to patient ``(x, y, z, 1)`` in mm."""
        return self.grid.affine()

    def index_to_patient(self, index) -> np.ndarray:
        """Patient position (mm, LPS) of fractional voxel index ``(k, i, j)``."""
        return self.grid.index_to_patient(index)

    def patient_to_index(self, point) -> np.ndarray:
        """Fractional voxel index ``(k, i, j)`` of a patient position."""
        return self.grid.patient_to_index(point)
