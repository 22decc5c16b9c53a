"""Header scan: everything medstation needs from one file, without its pixels.

``scan_dicom_file`` (through ``scan.scan_file``) runs inside a loader worker process (see
``_pool``); it returns an ``InstanceHeader`` (plain values, cheap to pickle and to store in the study
database) or raises ``LoadError``. It records where native pixel data lies in
the file so slices can later be read straight into the volume.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

from medstation.core.errors import LoadError
from medstation.dicom.instance import InstanceHeader  # noqa: F401 (re-exported: callers import it from here)

#: refuse to decode anything whose declared decoded size is above this
MAX_DECODED_BYTES = 4 * 1024**3

_DEFER = 2048  # bytes: values longer than this are not read during the scan


class NotDicomError(LoadError):
    """The file is not DICOM at all (a README, a thumbnail, ...): skipped, not broken."""


def read_head(path, size: int) -> bytes:
    """The first ``size`` bytes of a file (empty if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


def has_preamble(path: str) -> bool:
    """True when the file carries the 128-byte preamble and the DICM marker."""
    return read_head(path, 132)[128:132] == b"DICM"


DEFLATED = "1.2.840.10008.1.2.1.99"
#: a deflated dataset may inflate to this much before its ratio is looked at ...
INFLATE_FREE_BYTES = 64 * 1024**2
#: ... and past that, to at most this many times its compressed size (the zip import's guard)
MAX_INFLATE_RATIO = 200


def check_deflate(path: str, size: int) -> None:
    """Refuse a Deflated Explicit VR file that would inflate past the guards, by streaming the
    inflation in 1 MiB steps (nothing is kept) before any library inflates it at once."""
    import zlib

    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
    except Exception:  # no readable meta: the scan reports the file as it finds it
        return
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
        return
    with open(path, "rb") as f:
        f.seek(132)
        group_length = meta.get("FileMetaInformationGroupLength")
        if group_length is None:
            return
        f.seek(132 + 12 + int(group_length))  # the (0002,0000) element is 12 bytes
        start = f.tell()
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        compressed = max(1, size - start)
        out = 0
        while True:
            chunk = f.read(1 << 20)
            data = inflater.decompress(chunk, 1 << 20) if chunk else b""
            while True:
                out += len(data)
                # the ratio so far (inflated over the compressed bytes consumed): a bomb shows itself
                # in its first megabytes, whatever its total size; decided in well under a second
                consumed = max(1, f.tell() - start - len(inflater.unconsumed_tail))
                ratio_exceeded = out > INFLATE_FREE_BYTES and out > MAX_INFLATE_RATIO * consumed
                if out > MAX_DECODED_BYTES or ratio_exceeded:
                    raise LoadError(path, f"the deflated dataset inflates to more than "
                                          f"{out / 1024**2:.0f} MiB from {consumed / 1024**2:.1f} MiB "
                                          f"of its {compressed / 1024**2:.1f} MiB (ratio over "
                                          f"{MAX_INFLATE_RATIO}): refused as a decompression bomb",
                                    "if the file is genuine, re-export it uncompressed")
                if not inflater.unconsumed_tail:
                    break
                data = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
            if not chunk or inflater.eof:
                return


#: the start of a key made for files without a Study / Series Instance UID
NO_STUDY_UID = "(no study UID)"
NO_SERIES_UID = "(no series UID)"


def study_key(h: InstanceHeader) -> str:
    """The study an instance belongs to in the study database: its Study Instance UID, or (without
    one) the files of one patient and study date in one folder."""
    if h.study_uid:
        return h.study_uid
    return f"{NO_STUDY_UID} {Path(h.path).parent} [{_digest(h.patient_id, h.patient_name, h.study_date)}]"


def series_key_of(h: InstanceHeader) -> str:
    """The same for the series: its Series Instance UID, or (without one) the files in one folder that
    share the frame of reference, modality, orientation, pixel spacing and matrix: one stack, not one
    series per file (the loader warns that the grouping was made up)."""
    if h.series_uid:
        return h.series_uid
    orientation = tuple(round(float(v), 3) for v in h.orientation) if h.orientation else None
    spacing = tuple(round(float(v), 3) for v in h.pixel_spacing) if h.pixel_spacing else None
    sig = _digest(study_key(h), h.frame_of_reference_uid, h.modality, orientation, spacing, h.rows, h.columns,
                  h.series_number, h.series_description)
    return f"{NO_SERIES_UID} {Path(h.path).parent} [{sig}]"


def _digest(*parts) -> str:
    import hashlib

    return hashlib.sha1(repr(parts).encode("utf-8", "replace")).hexdigest()[:10]


_NOT_DICOM_HINT = "only DICOM files, DICOMDIR folders and .zip archives can be imported"
_KEY_ATTRIBUTES = (0x00080016, 0x00080018, 0x0020000D, 0x0020000E, 0x00080060, 0x7FE00010)


def scan_dicom_file(path: str) -> InstanceHeader:
    """Read one DICOM file's header (``medstation.dicom.file_header.scan_file`` also takes volume files).
    Raises ``LoadError`` (or ``NotDicomError``)."""
    import pydicom

    try:
        st = os.stat(path)
    except OSError as exc:
        raise LoadError(path, f"cannot open the file: {exc.strerror}",
                        "check that the file exists and is readable") from None
    if st.st_size == 0:
        raise NotDicomError(path, "empty file (0 bytes)", "remove it or copy the file again")
    head = read_head(path, 4096)
    preamble = head[128:132] == b"DICM"
    if preamble and DEFLATED.encode() in head:  # only a file that names the syntax in its meta
        check_deflate(path, st.st_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # Files without the preamble are legal (old or raw datasets): parse
            # them by force, and call them DICOM only if key attributes appear.
            ds = pydicom.dcmread(path, defer_size=_DEFER, force=not preamble)
            if not preamble and not any(t in ds for t in _KEY_ATTRIBUTES):
                raise NotDicomError(path, "not a DICOM file (no DICM marker, no DICOM attributes)",
                                    _NOT_DICOM_HINT)
            check_lengths(path, ds, st.st_size)
            header = _header_from_dataset(path, ds, st)
        except LoadError:
            raise
        except MemoryError:
            raise LoadError(path, "the header declares more data than memory allows",
                            "the file is damaged; re-export it from the source") from None
        except Exception as exc:  # pydicom raises many types on damaged files
            if not preamble:
                raise NotDicomError(path, "not a DICOM file (no DICM marker, unreadable as a "
                                          "DICOM dataset)", _NOT_DICOM_HINT) from None
            raise LoadError(path, _parse_failure(exc),
                            "the file is damaged or truncated; re-export it from the source") from None
    return header


def _parse_failure(exc: BaseException) -> str:
    """A reader's words for why pydicom could not parse the header."""
    if isinstance(exc, RecursionError):
        return "sequences are nested too deeply to read (hundreds of levels): the file is malformed"
    text = str(exc)
    if isinstance(exc, OSError) and "No tag to read" in text:
        return "an element or item declares more bytes than the file holds"
    return f"cannot parse the DICOM header: {_short(exc)}"


def check_lengths(path: str, ds, file_size: int) -> None:
    """An element that declares more bytes than the file holds swallows what follows (the pixel
    data): refuse it by name rather than read a file with its images missing."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and str(meta.get("TransferSyntaxUID", "")) == DEFLATED:
        return  # offsets are in the inflated stream, not in the file
    for tag, raw in ds._dict.items():
        tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if tell is None or length is None or length == 0xFFFFFFFF:
            continue
        if tell + length > file_size:
            group, element = tag >> 16, tag & 0xFFFF
            raise LoadError(path, f"element ({group:04X},{element:04X}) declares {length} bytes; the file "
                                  f"holds {max(0, file_size - tell)} more after it",
                            "the file is damaged or truncated; copy or re-export it from the source")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _get(ds, keyword, conv=str, default=None):
    try:
        v = ds.get(keyword)
    except Exception:
        return default
    if v is None or v == "":
        return default
    try:
        return conv(v)
    except Exception:
        return default


class _Raw:
    """Fast reads of simple attributes straight from pydicom's raw elements.

    pydicom converts a raw element on first access, which costs more than the
    whole file parse for the ~40 attributes read here; for string and US values
    decoding the bytes directly is exact and several times faster. Anything
    unusual falls back to pydicom's conversion.
    """

    def __init__(self, ds) -> None:
        self.ds = ds
        self.order = "little" if ds.is_little_endian in (True, None) else "big"

    def _lookup(self, tag: int):
        """``(raw bytes, None)`` for an unconverted element, ``(None, value)`` for a
        converted one, ``(None, None)`` when absent or unreadable."""
        elem = self.ds._dict.get(tag)
        if elem is None:
            return None, None
        value = getattr(elem, "value", None)
        if isinstance(value, bytes) and type(elem).__name__ == "RawDataElement":
            return value, None
        try:
            return None, self.ds[tag].value
        except Exception:
            return None, None

    def text(self, tag: int) -> str | None:
        raw, v = self._lookup(tag)
        if raw is not None:
            return raw.decode("latin-1", "replace").strip(" \x00")
        if v is None:
            return None
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return "\\".join(str(x) for x in v)
        return str(v).strip()

    def us(self, tag: int) -> int | None:
        raw, v = self._lookup(tag)
        if raw is not None:
            return int.from_bytes(raw[:2], self.order) if len(raw) >= 2 else None
        try:
            return int(v[0] if isinstance(v, (list, tuple)) else v) if v is not None else None
        except (TypeError, ValueError):
            return None

    def _first(self, tag: int, conv):
        t = self.text(tag)
        if not t:
            return None
        try:
            return conv(float(t.split("\\")[0]))
        except (ValueError, OverflowError):
            return None

    def int(self, tag: int) -> int | None:
        return self._first(tag, int)

    def float(self, tag: int) -> float | None:
        return self._first(tag, float)

    def floats(self, tag: int, n: int) -> tuple[float, ...] | None:
        t = self.text(tag)
        if not t:
            return None
        try:
            vals = tuple(float(x) for x in t.split("\\"))
        except ValueError:
            return None
        if len(vals) != n or not all(math.isfinite(v) for v in vals):
            return None
        return vals


def _floats(v, n):
    vals = [float(x) for x in v]
    if len(vals) != n or not all(math.isfinite(x) for x in vals):
        raise ValueError("bad vector")
    return tuple(vals)


def _text(v) -> str:
    return str(v).strip()


def _header_from_dataset(path, ds, st) -> InstanceHeader:
    meta = getattr(ds, "file_meta", None)
    tsyntax = _get(meta, "TransferSyntaxUID", str, "") if meta is not None else ""
    if not tsyntax:
        tsyntax = ("1.2.840.10008.1.2" if ds.is_implicit_VR else "1.2.840.10008.1.2.1") \
            if ds.is_little_endian else "1.2.840.10008.1.2.2"
    h = InstanceHeader(path=str(path), file_size=st.st_size, mtime_ns=st.st_mtime_ns,
                       transfer_syntax=tsyntax)
    r = _Raw(ds)
    h.sop_class_uid = r.text(0x00080016) or _get(meta, "MediaStorageSOPClassUID", str, "")
    h.sop_instance_uid = r.text(0x00080018) or _get(meta, "MediaStorageSOPInstanceUID", str, "")
    if h.sop_class_uid == "1.2.840.10008.1.3.10":
        raise NotDicomError(path, "a DICOMDIR (media directory), not an image",
                            "import the folder that holds it; its files are followed")
    h.patient_id = r.text(0x00100020) or ""
    h.patient_name = _get(ds, "PatientName", _text, "")  # character sets: let pydicom decode
    h.birth_date = r.text(0x00100030) or ""
    h.sex = r.text(0x00100040) or ""
    h.study_uid = r.text(0x0020000D) or ""
    h.study_date = r.text(0x00080020) or ""
    h.study_time = r.text(0x00080030) or ""
    h.study_description = _get(ds, "StudyDescription", _text, "")
    h.accession = r.text(0x00080050) or ""
    h.series_uid = r.text(0x0020000E) or ""
    h.convolution_kernel = r.text(0x00181210) or ""
    h.series_number = r.int(0x00200011)
    h.series_description = _get(ds, "SeriesDescription", _text, "")
    h.modality = r.text(0x00080060) or ""
    h.frame_of_reference_uid = r.text(0x00200052) or ""
    h.instance_number = r.int(0x00200013)
    h.acquisition_number = r.int(0x00200012)
    h.echo_number = r.int(0x00180086)
    h.temporal_position = r.int(0x00200100)
    h.image_type = r.text(0x00080008) or ""
    h.little_endian = bool(ds.is_little_endian) if ds.is_little_endian is not None else True

    h.has_pixels = any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))
    if not h.has_pixels:
        if _cut_inside_pixel_data(path, h.little_endian) or _cut_after_image_module(ds, st.st_size):
            raise LoadError(path, "the file ends inside its pixel data (the image module is there, "
                                  "the pixel data is cut short)",
                            "the file is truncated; copy it again from the source")
        return h
    h.rows = r.us(0x00280010) or 0
    h.columns = r.us(0x00280011) or 0
    h.frames = r.int(0x00280008) or 1
    spp = r.us(0x00280002)
    h.samples_per_pixel = 1 if spp is None else spp
    h.bits_allocated = r.us(0x00280100) or 0
    bs = r.us(0x00280101)
    h.bits_stored = bs if bs is not None else h.bits_allocated
    h.pixel_representation = r.us(0x00280103) or 0
    h.photometric = (r.text(0x00280004) or "").upper()
    h.planar_configuration = r.us(0x00280006) or 0
    _check_image_attributes(path, h)

    h.position = r.floats(0x00200032, 3)
    h.orientation = r.floats(0x00200037, 6)
    h.pixel_spacing = r.floats(0x00280030, 2) or r.floats(0x00181164, 2)
    h.slice_thickness = r.float(0x00180050)
    h.patient_age = r.text(0x00101010) or ""
    h.kvp = r.float(0x00180060)
    mas = r.float(0x00181152)
    if mas is None:
        current, time_ms = r.float(0x00181151), r.float(0x00181150)
        mas = current * time_ms / 1000.0 if current is not None and time_ms is not None else None
    h.exposure_mas = mas
    slope, intercept = r.float(0x00281053), r.float(0x00281052)
    h.rescale_slope = 1.0 if slope is None else slope
    h.rescale_intercept = 0.0 if intercept is None else intercept
    h.rescale_type = r.text(0x00281054) or ""
    _read_functional_groups(ds, h)
    _read_grid_offsets(ds, h)
    _read_windows(ds, h)
    _check_rescale(path, h)
    _locate_native_pixels(path, ds, h, st.st_size)
    return h


PHOTOMETRICS = {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422",
                "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"}


def _tag(keyword: str) -> str:
    """"Bits Stored (0028,0101)": an attribute as pydicom names it, with its tag."""
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{dictionary_description(tag)} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _check_image_attributes(path, h: InstanceHeader) -> None:
    fix = "the file is damaged or not a supported image; re-export it from the source"
    if h.rows <= 0 or h.columns <= 0:
        raise LoadError(path, f"invalid image size {h.rows} x {h.columns} ({_tag('Rows')} x "
                              f"{_tag('Columns')})", fix)
    if h.bits_allocated not in (1, 8, 16, 32, 64):
        raise LoadError(path, f"unsupported {_tag('BitsAllocated')} {h.bits_allocated}", fix)
    if not 0 < h.bits_stored <= h.bits_allocated:
        raise LoadError(path, f"{_tag('BitsStored')} {h.bits_stored} does not fit {_tag('BitsAllocated')} "
                              f"{h.bits_allocated}", fix)
    if h.samples_per_pixel not in (1, 3):
        raise LoadError(path, f"unsupported {_tag('SamplesPerPixel')} {h.samples_per_pixel} (1 for grey, "
                              "3 for colour)", fix)
    if h.pixel_representation not in (0, 1):
        raise LoadError(path, f"invalid {_tag('PixelRepresentation')} {h.pixel_representation} (0 unsigned, "
                              "1 signed)", fix)
    if h.photometric not in PHOTOMETRICS:
        raise LoadError(path, f"unsupported {_tag('PhotometricInterpretation')} "
                              f"{h.photometric or '(none)'!r}", fix)
    if (h.samples_per_pixel == 3) != (h.photometric not in ("MONOCHROME1", "MONOCHROME2",
                                                           "PALETTE COLOR")):
        raise LoadError(path, f"{_tag('PhotometricInterpretation')} {h.photometric} does not fit "
                              f"{_tag('SamplesPerPixel')} {h.samples_per_pixel}", fix)
    if h.frames < 1:
        raise LoadError(path, f"invalid {_tag('NumberOfFrames')} {h.frames}", fix)
    declared = h.frame_bytes * h.frames
    if declared > MAX_DECODED_BYTES:
        raise LoadError(path, f"the image declares {declared / 1024**3:.1f} GiB of pixels "
                              f"({h.rows} x {h.columns} x {h.frames} frames), above the "
                              f"{MAX_DECODED_BYTES / 1024**3:.0f} GiB limit", fix)


def _check_rescale(path, h: InstanceHeader) -> None:
    pairs = [(h.rescale_slope, h.rescale_intercept)] + list(h.frame_rescale or [])
    for slope, intercept in pairs:
        if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
            raise LoadError(path, f"invalid rescale (slope {slope}, intercept {intercept})",
                            "the file is damaged; re-export it from the source")


def _seq_item(ds, keyword):
    try:
        seq = ds.get(keyword)
        return seq[0] if seq else None
    except Exception:
        return None


def _read_functional_groups(ds, h: InstanceHeader) -> None:
    """Enhanced multi-frame: geometry and rescale from the functional groups."""
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    try:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    except Exception:
        per_frame = None
    if shared is None and not per_frame:
        return

    def from_groups(fg):
        out = {}
        if fg is None:
            return out
        if (item := _seq_item(fg, "PlaneOrientationSequence")) is not None:
            out["orientation"] = _get(item, "ImageOrientationPatient", lambda v: _floats(v, 6))
        if (item := _seq_item(fg, "PixelMeasuresSequence")) is not None:
            out["pixel_spacing"] = _get(item, "PixelSpacing", lambda v: _floats(v, 2))
            out["slice_thickness"] = _get(item, "SliceThickness", float)
        if (item := _seq_item(fg, "PixelValueTransformationSequence")) is not None:
            out["rescale"] = (_get(item, "RescaleSlope", float, 1.0),
                              _get(item, "RescaleIntercept", float, 0.0))
            out["rescale_type"] = _get(item, "RescaleType", _text, "")
        if (item := _seq_item(fg, "PlanePositionSequence")) is not None:
            out["position"] = _get(item, "ImagePositionPatient", lambda v: _floats(v, 3))
        return out

    common = from_groups(shared)
    frames = [from_groups(fg) for fg in (per_frame or [])]
    first = frames[0] if frames else {}
    for key in ("orientation", "pixel_spacing", "slice_thickness"):
        value = common.get(key) or first.get(key)
        if value is not None:
            setattr(h, key, value)
    if "rescale" in common:
        h.rescale_slope, h.rescale_intercept = common["rescale"]
        h.rescale_type = common.get("rescale_type") or h.rescale_type
    if len(frames) == h.frames:
        positions = [f.get("position") for f in frames]
        if all(p is not None for p in positions):
            h.frame_positions = positions
            h.position = positions[0]
        rescales = [f.get("rescale") for f in frames]
        if all(r is not None for r in rescales):
            if len(set(rescales)) == 1:
                h.rescale_slope, h.rescale_intercept = rescales[0]
            else:
                h.frame_rescale = rescales
    elif frames:
        h.notes.append(f"{len(frames)} per-frame functional groups for {h.frames} frames; "
                       "frame positions ignored")


def _read_grid_offsets(ds, h: InstanceHeader) -> None:
    """RT Dose and similar: frames at offsets along the normal from one position."""
    if h.frame_positions is not None or h.frames < 2 or h.position is None or h.orientation is None:
        return
    offsets = _get(ds, "GridFrameOffsetVector", lambda v: [float(x) for x in v])
    if not offsets or len(offsets) != h.frames or not all(math.isfinite(o) for o in offsets):
        return
    r, c = h.orientation[:3], h.orientation[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    h.frame_positions = [tuple(p + o * ni for p, ni in zip(h.position, n)) for o in offsets]


def _read_windows(ds, h: InstanceHeader) -> None:
    def as_list(v):
        return [float(x) for x in v] if not isinstance(v, (int, float)) and hasattr(v, "__iter__") \
            else [float(v)]

    centers = _get(ds, "WindowCenter", as_list, [])
    widths = _get(ds, "WindowWidth", as_list, [])
    names = _get(ds, "WindowCenterWidthExplanation",
                 lambda v: [str(x) for x in v] if not isinstance(v, str) else [v], [])
    for i, (c, w) in enumerate(zip(centers, widths)):
        if math.isfinite(c) and math.isfinite(w) and w > 0:
            h.windows.append((c, w, names[i] if i < len(names) else f"DICOM {i + 1}"))


def _cut_after_image_module(ds, file_size: int) -> bool:
    """True when an image (it has Rows) has no pixel data and bytes follow its last whole element:
    the file was cut inside the element that came next (the reader drops a partial element)."""
    if 0x00280010 not in ds:
        return False
    raw = ds._dict.get(list(ds.keys())[-1]) if len(ds) else None
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return False
    return tell + length < file_size


def _cut_inside_pixel_data(path: str, little_endian: bool = True) -> bool:
    """True when the file holds a Pixel Data element header that the reader never finished: a
    file cut inside its (compressed) pixel data, which pydicom reads as having none."""
    tag = b"\xe0\x7f\x10\x00" if little_endian else b"\x7f\xe0\x00\x10"
    try:
        with open(path, "rb") as f:
            data = f.read(256 * 1024 * 1024)
    except OSError:
        return False
    at = data.rfind(tag)
    if at < 0:
        return False
    after = data[at + 4:at + 12]
    # explicit VR (OB/OW + 2 reserved bytes + a 4-byte length) or implicit VR (a 4-byte length)
    return after[:2] in (b"OB", b"OW") or len(after) >= 4


def _locate_native_pixels(path, ds, h: InstanceHeader, file_size: int) -> None:
    """Record where native pixel data lies and check its size against the header."""
    from pydicom.uid import UID

    ts = UID(h.transfer_syntax)
    try:
        encapsulated = ts.is_encapsulated
        deflated = ts.is_deflated
    except Exception:
        encapsulated, deflated = False, False
    if deflated or 0x7FE00010 not in ds:
        return
    raw = ds._dict.get(0x7FE00010)
    length = getattr(raw, "length", None)
    tell = getattr(raw, "value_tell", None)
    undefined = length is None or length == 0xFFFFFFFF
    if encapsulated or undefined:
        if not encapsulated and undefined:
            h.notes.append("native pixel data with undefined length")
        return
    expected = h.frame_bytes * h.frames
    if length < expected:
        raise LoadError(path, f"the pixel data is shorter than the header declares "
                              f"({length} vs {expected} bytes for {h.rows} x {h.columns} x "
                              f"{h.frames} frames at {h.bits_allocated} bits)",
                        "the file is truncated or damaged; re-export it from the source")
    if tell is None or getattr(raw, "value", None) is not None:
        return  # small element read into memory: leave it to the decoder
    if tell + expected > file_size:
        raise LoadError(path, f"the file ends before its pixel data does "
                              f"({file_size} bytes, pixel data ends at {tell + length})",
                        "the file is truncated; copy it again from the source")
    h.pixel_offset = int(tell)
    h.pixel_length = int(length)
