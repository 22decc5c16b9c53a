"""Geometry checks for a stack of slices: spacing, orientation, positions, thickness.

Impossible values are errors: the stack is shown as plain images (no patient
geometry, distances in pixels) and every consumer that needs millimetres (the
detector, measurements in mm) is told why. Doubtful values are warnings the
viewer shows. The limits are wide: a real scanner never comes near them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MAX_COORD_MM = 1e6  # no patient is a kilometre across
SPACING_MM = (1e-4, 1e3)  # 0.1 micrometre .. 1 m per pixel
UNIT_TOLERANCE = 1e-3  # direction cosines off unit length / right angle by more than this: a warning
UNIT_LIMIT = 0.1  # ... by more than this: an error (the vectors do not define a plane)


@dataclass
class GeometryCheck:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _finite(values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def check_pixel_spacing(spacing) -> str:
    """An error text for an impossible Pixel Spacing, or ""."""
    if spacing is None:
        return ""
    lo, hi = SPACING_MM
    if not _finite(spacing) or not all(lo <= v <= hi for v in spacing):
        shown = ", ".join(f"{v:g}" for v in spacing)
        return (f"Pixel Spacing {shown} mm is impossible (expected {lo:g} to {hi:g} mm): "
                "distances are shown in pixels")
    return ""


def check_orientation(orientation, check: GeometryCheck) -> None:
    if orientation is None:
        return
    if not _finite(orientation) or max(abs(v) for v in orientation) > 1e3:
        check.errors.append("Image Orientation holds values that are not direction cosines "
                            f"({', '.join(f'{v:g}' for v in orientation)})")
        return
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    norms = (float(np.linalg.norm(row)), float(np.linalg.norm(col)))
    dot = float(row @ col) / max(norms[0] * norms[1], 1e-12)
    if min(norms) < 1e-6:
        check.errors.append("Image Orientation has a zero direction vector: the slice plane is unknown")
    elif abs(dot) > UNIT_LIMIT or any(abs(n - 1) > UNIT_LIMIT for n in norms):
        check.errors.append(f"Image Orientation's row and column directions are not perpendicular unit "
                            f"vectors (lengths {norms[0]:.3g}, {norms[1]:.3g}; cosine {dot:.3g})")
    elif abs(dot) > UNIT_TOLERANCE or any(abs(n - 1) > UNIT_TOLERANCE for n in norms):
        check.warnings.append(f"Image Orientation is not quite orthonormal (lengths {norms[0]:.4f}, "
                              f"{norms[1]:.4f}; cosine {dot:.4f}): used as it is")


def check_positions(positions, check: GeometryCheck) -> None:
    bad = [p for p in positions
           if p is not None and (not _finite(p) or max(abs(v) for v in p) > MAX_COORD_MM)]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[0])
        check.errors.append(f"{len(bad)} slice position(s) are impossible (for example {shown}): "
                            "the slices cannot be placed in the patient")


def check_thickness(thickness, check: GeometryCheck) -> None:
    if thickness is not None and (not math.isfinite(thickness) or thickness <= 0 or thickness > 1e3):
        check.warnings.append(f"Slice Thickness {thickness:g} mm is impossible: ignored")


def check_stack(orientation, positions, pixel_spacing, thickness) -> GeometryCheck:
    """Everything above, for the first header's orientation and every slice's position."""
    check = GeometryCheck()
    error = check_pixel_spacing(pixel_spacing)
    if error:
        check.errors.append(error)
    check_orientation(orientation, check)
    check_positions(positions, check)
    check_thickness(thickness, check)
    return check
