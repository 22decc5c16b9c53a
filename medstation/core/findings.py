"""``Finding``: one lesion candidate found by a detector in one series.

Positions are kept twice: in patient coordinates (mm, LPS; what a report and a
prior study share) and as fractional voxel indices ``(k, i, j)`` of the series
the detector ran on (what the viewer draws). Per-slice boxes are in voxel
indices of that series: ``(k, i0, j0, i1, j1, score)``.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from enum import Enum

import numpy as np


class Review(str, Enum):
    """What a reader decided about an AI finding: one name from the viewer to the label table.

    The same word is the finding's ``status`` in the findings list, the review stored in the study
    database (``finding_reviews.status``), the DICOM SR's review code (``dicom.sr_groups.REVIEW_VALUES``)
    and the ``source`` of the label the review becomes for fine-tuning and evaluation
    (``dicom.labels.collect_labels``): ``accepted`` is a nodule the AI found and a reader confirmed,
    ``rejected`` a known non-nodule (a hard negative). Before schema 8 those labels' sources were
    ``accepted-ai`` / ``rejected-ai``; opening an older database renames them.
    """

    NONE = ""  # not reviewed
    ACCEPTED = "accepted"
    REJECTED = "rejected"


#: what a reader decided about a finding (``Review``'s values)
STATUSES = tuple(r.value for r in Review)

#: Fleischner Society glossary (Hansell et al., Radiology 2008;246:697): "nodule ... a rounded or
#: irregular opacity ... measuring up to 3 cm in diameter"; "mass: any pulmonary ... lesion ... greater
#: than 3 cm in diameter". Read on the long axis (the largest diameter), in mm.
MASS_MIN_MM = 30.0


@dataclass
class Finding:
    finding_id: str  # stable within one run: "F1", "F2", ... by descending score
    center_mm: tuple[float, float, float]
    center_voxel: tuple[float, float, float]
    diameter_mm: float  # long-axis diameter in the axial plane
    score: float  # 0..1
    slice_range: tuple[int, int]  # first and last slice index (inclusive)
    volume_mm3: float | None  # the segmentation's volume (None: not segmented; a box gives no volume)
    boxes: list[tuple[int, float, float, float, float, float]] = field(default_factory=list)
    model_name: str = ""
    model_version: str = ""
    status: str = ""  # a ``Review`` value: "", "accepted", "rejected"
    # Sizes: ``None`` is "not measured" (shown "-"), never 0. ``diameter_mm`` is always set: the
    # segmentation's long axis, or the longest side of the detector's boxes (``size_method`` "box").
    short_axis_mm: float | None = None  # perpendicular to the long axis, same axial cross-section
    equivalent_diameter_mm: float | None = None  # of the sphere with the lesion's volume
    size_method: str = "box"  # "segmentation" (from the lesion's voxels) or "box" (the detector's boxes)
    mean_diameter_mm: float | None = None  # Lung-RADS: (long + short axis) / 2, to 0.1 mm
    mean_hu: float | None = None
    max_hu: float | None = None
    nodule_type: str | None = None  # solid, part-solid, ground-glass, calcified (None: not segmented)
    solid_diameter_mm: float | None = None  # long axis of the solid component of a part-solid nodule
    #: why the lesion could not be segmented (``size_method`` "box"), for the reader
    size_note: str = ""
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
        d["size"] = self.size.to_dict()
        d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Finding:
        if str(d.get("size_method", "box")) != "segmentation":  # older files wrote 0 for "not measured"
            d = {**d, **{k: None for k in _SEGMENTATION_ONLY}}
        return cls(
            finding_id=str(d["finding_id"]),
            center_mm=tuple(float(v) for v in d["center_mm"]),  # type: ignore[arg-type]
            center_voxel=tuple(float(v) for v in d["center_voxel"]),  # type: ignore[arg-type]
            diameter_mm=float(d["diameter_mm"]),
            score=float(d["score"]),
            slice_range=(int(d["slice_range"][0]), int(d["slice_range"][1])),
            volume_mm3=_opt(d.get("volume_mm3")),
            boxes=[(int(b[0]), *(float(v) for v in b[1:6])) for b in d.get("boxes", [])],  # type: ignore[misc]
            model_name=str(d.get("model_name", "")),
            model_version=str(d.get("model_version", "")),
            status=str(d.get("status", "")),
            short_axis_mm=_opt(d.get("short_axis_mm")),
            equivalent_diameter_mm=_opt(d.get("equivalent_diameter_mm")),
            size_method=str(d.get("size_method", "box")),
            mean_diameter_mm=_opt(d.get("mean_diameter_mm")),
            mean_hu=_opt(d.get("mean_hu"), zero_is_unmeasured=False),
            max_hu=_opt(d.get("max_hu"), zero_is_unmeasured=False),
            nodule_type=str(d["nodule_type"]) if d.get("nodule_type") else None,
            solid_diameter_mm=_opt(d.get("solid_diameter_mm")),
            size_note=str(d.get("size_note", "")),
            mask=d.get("mask") if isinstance(d.get("mask"), dict) else None,
        )

    @property
    def size(self) -> NamedSize:
        """The one size of this finding that the list shows, a label stores, the SR writes first and
        Lung-RADS reads: the segmentation's mean diameter, or the box's long side when not segmented."""
        return size_of({"size_method": self.size_method, "mean_diameter_mm": self.mean_diameter_mm,
                        "diameter_mm": self.diameter_mm})

    @property
    def kind(self) -> str:
        """"mass" above 3 cm on the long axis, "nodule" up to it (:data:`MASS_MIN_MM`)."""
        return lesion_kind(self.diameter_mm)

    def summary(self) -> str:
        return f"{self.kind} {self.size.text()}, score {self.score:.2f}, slice {self.center_slice + 1}"


#: what only a segmentation measures (a box-sized finding has none of them)
_SEGMENTATION_ONLY = ("short_axis_mm", "equivalent_diameter_mm", "mean_diameter_mm", "mean_hu", "max_hu",
                      "nodule_type", "solid_diameter_mm", "volume_mm3")


@dataclass(frozen=True)
class NamedSize:
    """A size that says what it is and how it was measured."""

    mm: float
    what: str  # "mean diameter", "long axis", ...
    method: str  # "segmentation", "box", "reader"

    def text(self) -> str:
        how = "" if self.method == "segmentation" else f", {self.method}"
        return f"{self.mm:.1f} mm ({self.what}{how})"

    def to_dict(self) -> dict:
        return {"mm": round(self.mm, 2), "what": self.what, "method": self.method}


def lesion_kind(long_axis_mm: float | None) -> str:
    """"mass" when the long axis is over 30 mm, "nodule" otherwise (an unmeasured size: "nodule")."""
    return "mass" if long_axis_mm is not None and long_axis_mm > MASS_MIN_MM else "nodule"


def size_of(d: dict) -> NamedSize:
    """:attr:`Finding.size` of a stored finding (``Finding.to_dict``, or an older, shorter one)."""
    mean = d.get("mean_diameter_mm")
    if d.get("size_method") == "segmentation" and mean:
        return NamedSize(float(mean), "mean diameter", "segmentation")
    return NamedSize(float(d["diameter_mm"]), "long axis", str(d.get("size_method") or "box"))


def _opt(value, *, zero_is_unmeasured: bool = True) -> float | None:
    """A stored size: ``None`` stays None; so does 0 from files written before sizes were optional
    (a measured size is never 0 mm; 0 HU is a real density, kept)."""
    if value is None:
        return None
    v = float(value)
    return None if (zero_is_unmeasured and v == 0.0) else v


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    """``value`` for a reader: "-" when it was not measured."""
    return "-" if value is None else f"{value:{spec}}{unit}"
