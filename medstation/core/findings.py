"""``Finding``: one lesion candidate found by a detector in one series.

Positions are kept twice: in patient coordinates (mm, LPS; what a report and a
prior study share) and as fractional voxel indices ``(k, i, j)`` of the series
the detector ran on (what the viewer draws). Per-slice boxes are in voxel
indices of that series: ``(k, i0, j0, i1, j1, score)``.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field

import numpy as np

#: what a reader decided about a finding
STATUSES = ("", "accepted", "rejected")


@dataclass
class Finding:
    finding_id: str  # stable within one run: "F1", "F2", ... by descending score
    center_mm: tuple[float, float, float]
    center_voxel: tuple[float, float, float]
    diameter_mm: float  # long-axis diameter in the axial plane
    score: float  # 0..1
    slice_range: tuple[int, int]  # first and last slice index (inclusive)
    volume_mm3: float
    boxes: list[tuple[int, float, float, float, float, float]] = field(default_factory=list)
    model_name: str = ""
    model_version: str = ""
    status: str = ""  # "", "accepted", "rejected"
    short_axis_mm: float = 0.0  # perpendicular to the long axis, same axial cross-section
    equivalent_diameter_mm: float = 0.0  # of the sphere with the lesion's volume
    size_method: str = "box"  # "segmentation" (from the lesion's voxels) or "box" (the detector's boxes)
    mean_diameter_mm: float = 0.0  # Lung-RADS: (long + short axis) / 2, to 0.1 mm
    mean_hu: float = 0.0
    max_hu: float = 0.0
    nodule_type: str = ""  # solid, part-solid, ground-glass, calcified ("" when not segmented)
    solid_diameter_mm: float = 0.0  # long axis of the solid component of a part-solid nodule
    #: the segmentation: ``{"origin": [k, i, j], "shape": [nk, ni, nj], "bits": base64 of packed bits}``
    #: in voxel indices of the series (None: not segmented; exports fall back to the boxes)
    mask: dict | None = None

    def set_mask(self, mask: np.ndarray, origin: tuple[int, int, int]) -> None:
        """Store a boolean block ``mask`` whose first voxel is ``origin`` (k, i, j), cropped to its extent."""
        nz = np.nonzero(mask)
        if not len(nz[0]):
            self.mask = None
            return
        lo = [int(a.min()) for a in nz]
        hi = [int(a.max()) + 1 for a in nz]
        block = np.ascontiguousarray(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=bool)
        self.mask = {"origin": [int(o) + a for o, a in zip(origin, lo)], "shape": list(block.shape),
                     "bits": base64.b64encode(np.packbits(block.ravel()).tobytes()).decode("ascii")}

    def mask_array(self) -> tuple[np.ndarray, tuple[int, int, int]] | None:
        """``(boolean block, origin k, i, j)`` of the stored segmentation, or None."""
        if not self.mask:
            return None
        shape = tuple(int(v) for v in self.mask["shape"])
        bits = np.frombuffer(base64.b64decode(self.mask["bits"]), np.uint8)
        block = np.unpackbits(bits)[: int(np.prod(shape))].astype(bool).reshape(shape)
        return block, tuple(int(v) for v in self.mask["origin"])  # type: ignore[return-value]

    @property
    def center_slice(self) -> int:
        return int(round(self.center_voxel[0]))

    def bbox(self) -> tuple[float, float, float, float, float, float]:
        """``(k0, i0, j0, k1, i1, j1)`` in voxel indices over all slices."""
        if not self.boxes:
            k, i, j = self.center_voxel
            r = 0.0
            return (k, i - r, j - r, k, i + r, j + r)
        ks = [b[0] for b in self.boxes]
        return (min(ks), min(b[1] for b in self.boxes), min(b[2] for b in self.boxes),
                max(ks), max(b[3] for b in self.boxes), max(b[4] for b in self.boxes))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["center_slice"] = self.center_slice
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Finding:
        return cls(
            finding_id=str(d["finding_id"]),
            center_mm=tuple(float(v) for v in d["center_mm"]),  # type: ignore[arg-type]
            center_voxel=tuple(float(v) for v in d["center_voxel"]),  # type: ignore[arg-type]
            diameter_mm=float(d["diameter_mm"]),
            score=float(d["score"]),
            slice_range=(int(d["slice_range"][0]), int(d["slice_range"][1])),
            volume_mm3=float(d.get("volume_mm3", 0.0)),
            boxes=[(int(b[0]), *(float(v) for v in b[1:6])) for b in d.get("boxes", [])],  # type: ignore[misc]
            model_name=str(d.get("model_name", "")),
            model_version=str(d.get("model_version", "")),
            status=str(d.get("status", "")),
            short_axis_mm=float(d.get("short_axis_mm", 0.0)),
            equivalent_diameter_mm=float(d.get("equivalent_diameter_mm", 0.0)),
            size_method=str(d.get("size_method", "box")),
            mean_diameter_mm=float(d.get("mean_diameter_mm", 0.0)),
            mean_hu=float(d.get("mean_hu", 0.0)),
            max_hu=float(d.get("max_hu", 0.0)),
            nodule_type=str(d.get("nodule_type", "")),
            solid_diameter_mm=float(d.get("solid_diameter_mm", 0.0)),
            mask=d.get("mask") if isinstance(d.get("mask"), dict) else None,
        )

    def summary(self) -> str:
        return f"{self.diameter_mm:.1f} mm, score {self.score:.2f}, slice {self.center_slice + 1}"
