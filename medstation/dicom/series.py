"""Series assembly: instance headers -> ordered stacks of slices with geometry.

Slices are sorted by their position along the slice normal (never by file name
or Instance Number alone). A series UID that holds several orientations,
image sizes or repeated positions (echoes, phases) is split into stacks; uneven
spacing and gantry tilt are reported, not hidden.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from medstation.core.volume import AXIAL
from medstation.dicom.geometry import check_pixel_spacing, check_stack
from medstation.dicom.header import InstanceHeader, series_key_of
from medstation.dicom.volume_files import is_volume_header

_TILT_DEGREES = 0.1  # below this, slices count as stacked along the normal


@dataclass(frozen=True)
class SliceRef:
    """One 2D image: a file, and a frame in it."""

    header: InstanceHeader
    frame: int = 0

    @property
    def position(self):
        h = self.header
        if h.frame_positions is not None:
            return h.frame_positions[self.frame]
        return h.position if h.frames == 1 else None

    @property
    def rescale(self) -> tuple[float, float]:
        h = self.header
        if h.frame_rescale is not None:
            return h.frame_rescale[self.frame]
        return (h.rescale_slope, h.rescale_intercept)


@dataclass
class SeriesStack:
    """An ordered stack of same-sized, same-oriented slices: one ``Volume`` to be."""

    series_uid: str
    part: int
    slices: list[SliceRef]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    has_geometry: bool
    dtype: str
    warnings: list[str] = field(default_factory=list)
    slice_positions: np.ndarray | None = None
    #: impossible or missing geometry (the stack is shown as plain images; nothing measures in mm)
    geometry_errors: list[str] = field(default_factory=list)
    #: files left out because they repeat an instance of the series (same SOP Instance UID)
    duplicates: list[str] = field(default_factory=list)

    @property
    def first(self) -> InstanceHeader:
        return self.slices[0].header

    @property
    def shape(self) -> tuple[int, ...]:
        h = self.first
        base = (len(self.slices), h.rows, h.columns)
        return base + ((3,) if self.color else ())

    @property
    def color(self) -> bool:
        return self.first.is_color

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(s.header.path for s in self.slices))

    @property
    def transfer_syntaxes(self) -> list[str]:
        return sorted({s.header.transfer_syntax for s in self.slices})

    @property
    def units(self) -> str:
        h = self.first
        if self.color:
            return "RGB"
        if h.rescale_type:
            return h.rescale_type
        return "HU" if h.modality == "CT" else ""

    def summary(self) -> dict:
        h = self.first
        return {
            "series_uid": self.series_uid,
            "part": self.part,
            "modality": h.modality,
            "series_number": h.series_number,
            "description": h.series_description,
            "shape": list(self.shape),
            "spacing_mm": [round(s, 4) for s in self.spacing],
            "origin_mm": [round(o, 3) for o in self.origin],
            "orientation": [round(float(v), 4) for v in
                            (list(self.direction[2]) + list(self.direction[1]))],
            "has_geometry": self.has_geometry,
            "slices": len(self.slices),
            "files": len(self.files),
            "dtype": self.dtype,
            "units": self.units,
            "transfer_syntaxes": self.transfer_syntaxes,
            "warnings": list(self.warnings),
            "geometry_errors": list(self.geometry_errors),
            "duplicates": list(self.duplicates),
        }


def assemble(headers: list[InstanceHeader]) -> list[SeriesStack]:
    """Group headers with pixel data into sorted stacks (non-image instances are skipped)."""
    by_series: dict[str, list[InstanceHeader]] = defaultdict(list)
    for h in headers:
        if h.has_pixels and h.rows > 0:
            by_series[series_key_of(h)].append(h)
    stacks: list[SeriesStack] = []
    for uid, members in by_series.items():
        members, duplicates = _drop_duplicates(members)
        groups = _split(members)
        notes = []
        if duplicates:
            notes.append(f"{len(duplicates)} file(s) repeat an instance already in the series (same SOP "
                         "Instance UID): each instance is used once, from its most readable copy")
        if len(groups) > 1:
            notes.append(f"series holds {len(groups)} stacks of different orientation, size, "
                         "echo or phase; split into parts")
        for part, slices in enumerate(groups, start=1):
            stack = _build_stack(uid if not uid.startswith("(no") else "", part, slices)
            stack.warnings[:0] = notes
            stack.duplicates = duplicates if part == 1 else []
            stacks.append(stack)
    stacks.sort(key=lambda s: (s.first.patient_id, s.first.study_date, s.first.study_uid,
                               s.first.series_number if s.first.series_number is not None else 1 << 30,
                               s.series_uid, s.part))
    return stacks


#: transfer syntaxes from the most to the least dependable to decode (lossless, then lossy)
_DECODE_RANK = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
                "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.70",
                "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.91",
                "1.2.840.10008.1.2.4.51"]


def _drop_duplicates(members: list[InstanceHeader]) -> tuple[list[InstanceHeader], list[str]]:
    """One header per SOP Instance UID: the copy that decodes most dependably (uncompressed first);
    and the paths left out."""
    best: dict[str, InstanceHeader] = {}
    keep: list[InstanceHeader] = []
    dropped: list[InstanceHeader] = []

    def rank(h: InstanceHeader) -> tuple:
        ts = _DECODE_RANK.index(h.transfer_syntax) if h.transfer_syntax in _DECODE_RANK else len(_DECODE_RANK)
        return (not h.fast_native, ts, h.path)

    for h in members:
        uid = h.sop_instance_uid
        if not uid:
            keep.append(h)
            continue
        if uid in best:
            if rank(h) < rank(best[uid]):
                dropped.append(best[uid])
                best[uid] = h
            else:
                dropped.append(h)
        else:
            best[uid] = h
    return keep + list(best.values()), [h.path for h in dropped]


def _orientation_key(h: InstanceHeader):
    if h.orientation is None:
        return None
    return tuple(round(v, 3) for v in h.orientation)


def _split(members: list[InstanceHeader]) -> list[list[SliceRef]]:
    """Split a series into groups that can each form one volume."""
    groups: dict[tuple, list[SliceRef]] = defaultdict(list)
    for h in members:
        localizer = "LOCALIZER" in h.image_type.upper()
        base = (h.rows, h.columns, h.samples_per_pixel, h.is_color, h.bits_allocated if h.is_color else 0,
                _orientation_key(h), localizer)
        has_positions = h.frame_positions is not None or (h.frames == 1 and h.position is not None)
        if h.frames > 1 and not has_positions:
            # a cine or a multi-frame image without per-frame geometry: its own stack
            groups[base + ("file", h.path)] = [SliceRef(h, f) for f in range(h.frames)]
            continue
        if not has_positions:
            base += ("nopos",)
        for f in range(h.frames):
            groups[base].append(SliceRef(h, f))
    out: list[list[SliceRef]] = []
    for slices in groups.values():
        out.extend(_split_repeats(slices))
    return out


def _split_repeats(slices: list[SliceRef]) -> list[list[SliceRef]]:
    """Split slices that repeat positions (echoes, phases, acquisitions) when a tag tells them apart."""
    positions = [s.position for s in slices]
    if any(p is None for p in positions):
        return [slices]
    keys = {tuple(round(v, 2) for v in p) for p in positions}
    if len(keys) == len(slices):
        return [slices]
    for attr in ("echo_number", "temporal_position", "acquisition_number"):
        values = {getattr(s.header, attr) for s in slices}
        if len(values) > 1:
            parts: dict = defaultdict(list)
            for s in slices:
                parts[getattr(s.header, attr)].append(s)
            if all(len({tuple(round(v, 2) for v in s.position) for s in p}) == len(p)
                   for p in parts.values()):
                return [parts[k] for k in sorted(parts, key=lambda v: (v is None, v))]
    return [slices]


def _normal(orientation) -> np.ndarray:
    r = np.asarray(orientation[:3], float)
    c = np.asarray(orientation[3:], float)
    n = np.cross(r, c)
    norm = np.linalg.norm(n)
    return n / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])


def _build_stack(series_uid: str, part: int, slices: list[SliceRef]) -> SeriesStack:
    h0 = slices[0].header
    warnings: list[str] = []
    if not h0.series_uid:
        warnings.append("the files have no Series Instance UID: grouped into this series by folder, frame "
                        "of reference, orientation, pixel spacing and matrix (check that it is one series)")
    orientation = h0.orientation
    positions = [s.position for s in slices]
    if is_volume_header(h0):  # what a NIfTI / MetaImage / NRRD file does not say, and its geometry
        warnings += h0.notes
    check = check_stack(orientation, positions, h0.pixel_spacing, h0.slice_thickness)
    warnings += [f"geometry error: {e}" for e in check.errors] + check.warnings
    spacing_ok = h0.pixel_spacing is not None and not check_pixel_spacing(h0.pixel_spacing)
    ps = h0.pixel_spacing if spacing_ok else (1.0, 1.0)
    if h0.pixel_spacing is None:
        warnings.append("no pixel spacing in the file: distances are in pixels, not mm")
    thickness = h0.slice_thickness if h0.slice_thickness and math.isfinite(h0.slice_thickness) and \
        0 < h0.slice_thickness <= 1e3 else None
    if not check.ok:  # impossible orientation or positions: shown as plain images, in file order
        orientation = None
        positions = [None] * len(slices)
    has_geometry = orientation is not None and all(p is not None for p in positions)
    if has_geometry:
        row = np.asarray(orientation[:3], float)
        col = np.asarray(orientation[3:], float)
        normal = _normal(orientation)
        pos = np.asarray(positions, float)
        dist = pos @ normal
        order = np.lexsort((np.array([s.header.instance_number or 0 for s in slices]), dist))
        slices = [slices[i] for i in order]
        pos, dist = pos[order], dist[order]
        step_dir = normal
        dk = float(thickness or 1.0)
        if len(slices) > 1:
            gaps = np.diff(dist)
            positive = gaps[gaps > 1e-3]
            dk = float(np.median(positive)) if positive.size else dk
            if positive.size < gaps.size:
                warnings.append(f"{gaps.size - positive.size} slices repeat a position already in "
                                "the series")
            if positive.size and (positive.max() - positive.min()) > 0.01 * dk + 0.01:
                warnings.append(f"uneven slice spacing: gaps from {positive.min():.3g} to "
                                f"{positive.max():.3g} mm (missing slices?); shown at "
                                f"{dk:.3g} mm")
            span = pos[-1] - pos[0]
            if np.linalg.norm(span) > 1e-3:
                cosang = abs(float(span @ normal)) / float(np.linalg.norm(span))
                tilt = math.degrees(math.acos(min(1.0, cosang)))
                if cosang < 0.1:
                    warnings.append("slices lie side by side in one plane, not stacked along "
                                    "their normal: shown as separate images")
                elif tilt > _TILT_DEGREES:
                    warnings.append(f"gantry tilt of {tilt:.1f} degrees: slices are sheared; "
                                    "patient coordinates follow the real slice positions")
                    step_dir = span / float(span @ normal)  # one unit per mm along the normal
                    step_dir = step_dir / np.linalg.norm(step_dir)
                    dk = float(np.linalg.norm(span)) / (len(slices) - 1)
        direction = np.vstack([step_dir, col, row])
        origin = tuple(float(v) for v in pos[0])
        slice_positions = dist
    else:
        slices.sort(key=lambda s: (s.header.instance_number if s.header.instance_number is not None
                                   else 1 << 30, s.header.path, s.frame))
        if len(slices) > 1 and slices[0].header.frames == 1:
            warnings.append("no slice positions: ordered by Instance Number")
        direction = AXIAL.copy()
        origin = (0.0, 0.0, 0.0)
        dk = float(thickness or 1.0)
        slice_positions = None
        if orientation is not None:
            direction = np.vstack([_normal(orientation), orientation[3:], orientation[:3]])
    stack = SeriesStack(series_uid, part, slices, (dk, float(ps[0]), float(ps[1])), origin,
                        direction, has_geometry, _output_dtype(slices), warnings, slice_positions)
    stack.geometry_errors = list(check.errors)
    if h0.pixel_spacing is None:
        stack.geometry_errors.append("no pixel spacing: sizes in mm are unknown")
    return stack


def _output_dtype(slices: list[SliceRef]) -> str:
    """int16 where every value fits after rescale, float32 otherwise; colour keeps its depth."""
    h0 = slices[0].header
    if h0.is_color:
        if h0.photometric == "PALETTE COLOR":
            return "uint16"
        return {8: "uint8", 16: "uint16"}.get(h0.bits_allocated, "uint32")
    lo_hi = []
    for h in {id(s.header): s.header for s in slices}.values():
        if h.bits_allocated > 16 and h.bits_stored > 16:
            return "float32"
        bs = h.bits_stored
        lo, hi = ((-(1 << (bs - 1)), (1 << (bs - 1)) - 1) if h.pixel_representation
                  else (0, (1 << bs) - 1))
        pairs = h.frame_rescale or [(h.rescale_slope, h.rescale_intercept)]
        for slope, intercept in pairs:
            if not (float(slope).is_integer() and float(intercept).is_integer()):
                return "float32"
            a, b = lo * slope + intercept, hi * slope + intercept
            lo_hi += [a, b]
    if min(lo_hi) >= -32768 and max(lo_hi) <= 32767:
        return "int16"
    return "float32"
