"""Measurements on plane images: length, angle and ROI statistics, in mm and stored units."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from medstation.core.volume import Volume


def length_mm(volume: Volume, a, b) -> float:
    """Distance in mm between two fractional volume indices (true patient-space distance)."""
    pa, pb = volume.index_to_patient(a), volume.index_to_patient(b)
    return float(np.linalg.norm(pb - pa))


def angle_deg(volume: Volume, a, vertex, b) -> float:
    """Angle at ``vertex`` (degrees) between the rays to ``a`` and ``b``, in patient space."""
    v = volume.index_to_patient(vertex)
    u1, u2 = volume.index_to_patient(a) - v, volume.index_to_patient(b) - v
    n = float(np.linalg.norm(u1) * np.linalg.norm(u2))
    if n == 0:
        return 0.0
    return math.degrees(math.acos(max(-1.0, min(1.0, float(u1 @ u2) / n))))


@dataclass
class RoiStats:
    mean: float
    sd: float
    min: float
    max: float
    pixels: int
    area_mm2: float

    def to_dict(self) -> dict:
        return asdict(self)


def roi_mask(shape: tuple[int, int], p0, p1, kind: str) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Mask of the pixels whose centres lie inside a rectangle or ellipse spanned by two corners.

    Corners are (row, column) plane coordinates, pixel centres at integers.
    Returns the mask over its bounding box and the box's slices.
    """
    # rounded so that float noise from screen <-> plane round trips cannot flip edge pixels
    r0, r1 = sorted((round(float(p0[0]), 6), round(float(p1[0]), 6)))
    c0, c1 = sorted((round(float(p0[1]), 6), round(float(p1[1]), 6)))
    rs = slice(max(0, math.ceil(r0)), min(shape[0], math.floor(r1) + 1))
    cs = slice(max(0, math.ceil(c0)), min(shape[1], math.floor(c1) + 1))
    rr = np.arange(rs.start, max(rs.start, rs.stop))[:, None]
    cc = np.arange(cs.start, max(cs.start, cs.stop))[None, :]
    if kind == "ellipse":
        a, b = (r1 - r0) / 2, (c1 - c0) / 2
        if a <= 0 or b <= 0:
            return np.zeros((rr.size, cc.size), bool), (rs, cs)
        mask = ((rr - (r0 + r1) / 2) / a) ** 2 + ((cc - (c0 + c1) / 2) / b) ** 2 <= 1.0
    else:
        mask = np.ones((rr.size, cc.size), bool)
    return mask, (rs, cs)


def roi_stats(image: np.ndarray, p0, p1, kind: str, spacing: tuple[float, float]) -> RoiStats | None:
    """Statistics of a rectangle or ellipse ROI on a 2D plane image; None when it holds no pixel.

    ``area_mm2`` is the area of the drawn shape; the statistics cover the pixels
    whose centres fall inside it (SD is the population SD, as numpy computes it).
    """
    mask, (rs, cs) = roi_mask(image.shape[:2], p0, p1, kind)
    values = image[rs, cs][mask]
    if values.size == 0:
        return None
    h = abs(float(p1[0]) - float(p0[0])) * spacing[0]
    w = abs(float(p1[1]) - float(p0[1])) * spacing[1]
    area = math.pi * h * w / 4 if kind == "ellipse" else h * w
    v = values.astype(np.float64)
    return RoiStats(float(v.mean()), float(v.std()), float(v.min()), float(v.max()), int(v.size), area)


#: measurement kinds and how many points each takes
#: a ``nodule`` is a reader's nodule label: a circle from its centre to its edge (a label for
#: fine-tuning and evaluation, stored with its centre in patient mm and its diameter)
KINDS = {"length": 2, "rect": 2, "ellipse": 2, "angle": 3, "nodule": 2}
KIND_NAMES = {"length": "Length", "rect": "Rectangle ROI", "ellipse": "Ellipse ROI", "angle": "Angle",
              "nodule": "Nodule label"}


@dataclass
class Measurement:
    """A reader's measurement on one plane of a volume.

    Points are fractional volume indices ``(k, i, j)``, so a measurement stays
    put whatever the zoom, pan or screen layout; ``axis`` and ``depth`` say on
    which plane it was drawn (the index axis held fixed and its index).
    """

    kind: str
    axis: int
    depth: int
    points: list[tuple[float, float, float]]
    id: int | None = None

    def to_dict(self, volume: Volume | None = None) -> dict:
        """The stored form; a nodule label with a ``volume`` also gets its centre in patient mm and
        its diameter (what the label store reads)."""
        d = {"kind": self.kind, "axis": self.axis, "depth": self.depth,
             "points": [list(map(float, p)) for p in self.points]}
        if self.kind == "nodule" and volume is not None and volume.has_geometry:
            d["center_mm"] = [round(float(v), 3) for v in volume.index_to_patient(self.points[0])]
            d["diameter_mm"] = round(2 * length_mm(volume, *self.points), 2)
        return d

    @classmethod
    def from_dict(cls, data: dict, mid: int | None = None) -> Measurement:
        kind = str(data["kind"])
        if kind not in KINDS:
            raise ValueError(f"unknown measurement kind {kind!r}")
        points = [tuple(float(v) for v in p) for p in data["points"]]
        if len(points) != KINDS[kind] or any(len(p) != 3 for p in points):
            raise ValueError(f"a {kind} needs {KINDS[kind]} points of 3 coordinates")
        return cls(kind, int(data["axis"]), int(data["depth"]), points, mid)

    def values(self, volume: Volume, plane) -> dict:
        """Numbers for the panel and the overlay: ``length_mm``, ``angle_deg`` or ROI statistics."""
        if self.kind == "length":
            return {"length_mm": length_mm(volume, *self.points)}
        if self.kind == "nodule":
            return {"diameter_mm": 2 * length_mm(volume, *self.points)}
        if self.kind == "angle":
            return {"angle_deg": angle_deg(volume, *self.points)}
        image = plane.image(volume.voxels, self.depth)
        if image.ndim == 3:  # colour: statistics of the luminance are not meaningful in HU
            return {}
        p0, p1 = (plane.to_plane(p)[:2] for p in self.points)
        stats = roi_stats(image, p0, p1, self.kind, plane.spacing)
        return stats.to_dict() if stats else {"pixels": 0, "area_mm2": 0.0}

    def summary(self, volume: Volume, plane, units: str = "") -> str:
        v = self.values(volume, plane)
        if "length_mm" in v:
            return f"{v['length_mm']:.1f} mm"
        if "diameter_mm" in v:
            return f"nodule {v['diameter_mm']:.1f} mm"
        if "angle_deg" in v:
            return f"{v['angle_deg']:.1f}°"
        if not v.get("pixels"):
            return f"area {v.get('area_mm2', 0.0):.1f} mm²"
        u = f" {units}" if units else ""
        return (f"mean {v['mean']:.1f}{u}, SD {v['sd']:.1f}, min {v['min']:.0f}, max {v['max']:.0f}, "
                f"area {v['area_mm2']:.1f} mm²")
