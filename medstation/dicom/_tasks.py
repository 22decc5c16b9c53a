"""Functions that run inside loader worker processes (see ``_pool``).

Kept in one small module so the fork server can preload it (and pydicom with
its decoder plugins) once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pydicom  # noqa: F401  (preloaded by the fork server)
from pydicom.pixels import iter_pixels

from medstation.core.errors import LoadError
from medstation.dicom.file_header import scan_file
from medstation.dicom.header import InstanceHeader
from medstation.dicom.volume_files import is_volume_file, read_frames


@dataclass(frozen=True)
class DecodeTask:
    """Decode some frames of one file and apply the modality rescale."""

    path: str
    frames: tuple[int, ...]
    rescale: tuple[tuple[float, float], ...]  # (slope, intercept) per frame
    out_dtype: str
    rows: int
    columns: int
    color: bool


def scan(path: str) -> InstanceHeader:
    return scan_file(path)


def scan_batch(paths: tuple[str, ...]) -> list:
    """Scan several files in one round trip; each entry a header or a ``LoadError``."""
    out: list = []
    for p in paths:
        try:
            out.append(scan_file(p))
        except LoadError as exc:
            out.append(exc)
    return out


def decode(task: DecodeTask) -> np.ndarray:
    """Return the requested frames as ``(n, rows, columns[, 3])`` in ``task.out_dtype``."""
    try:
        return _decode(task)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # an attribute pydicom needs to decode could not be read as its VR says (e.g. an IS of
        # "1A"): the header scan reads these leniently, the decoder does not
        text = " ".join(str(exc).split())[:160]
        raise LoadError(task.path, f"an attribute the pixel decoder needs has an unreadable value "
                                   f"({type(exc).__name__}: {text})",
                        "the file's header is malformed; re-export it from the source") from None


def _decode(task: DecodeTask) -> np.ndarray:
    if is_volume_file(task.path):
        return read_frames(task.path, task.frames, task.out_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(task.path, force=True)
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):  # no File Meta: read as the scan did
            from pydicom.dataset import FileMetaDataset
            from pydicom.uid import ImplicitVRLittleEndian

            meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
            ds.file_meta = meta
        syntax = str(ds.file_meta.TransferSyntaxUID)
        check_decodable(task.path, syntax)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        out_shape = (len(task.frames), task.rows, task.columns) + ((3,) if task.color else ())
        out = np.empty(out_shape, dtype=task.out_dtype)
        try:
            frames = list(iter_pixels(ds, indices=list(task.frames)))
        except RuntimeError as exc:
            if "all available plugins" not in str(exc):
                raise
            bits = int(ds.get("BitsStored", 0) or 0)
            what = UNSUPPORTED_DEPTH.get((syntax, bits > 8)) or f"transfer syntax {syntax}"
            raise LoadError(task.path, f"no installed decoder reads this {what}: "
                                       + "; ".join(line.strip() for line in str(exc).splitlines()[1:3]),
                            "ask the sender for a lossless or uncompressed copy of the images") from None
    if len(frames) != len(task.frames):
        raise LoadError(task.path, f"expected {len(task.frames)} frames, the file gave {len(frames)}",
                        "the file is damaged; re-export it from the source")
    for n, (arr, (slope, intercept)) in enumerate(zip(frames, task.rescale)):
        if photometric == "PALETTE COLOR" and task.color:
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
        if arr.shape != out.shape[1:]:
            raise LoadError(task.path, f"a frame decoded to shape {arr.shape}, the header declares "
                                       f"{out.shape[1:]}",
                            "the file is damaged; re-export it from the source")
        if task.color:
            if not np.can_cast(arr.dtype, out.dtype):
                raise LoadError(task.path, f"colour pixels decoded as {arr.dtype}, expected {out.dtype}",
                                "the file's Bits Allocated does not match its pixel data")
            out[n] = arr
        else:
            out[n] = apply_rescale(arr, slope, intercept, out.dtype)
    return out


#: transfer syntaxes no installed decoder reads (pydicom's plugins: pylibjpeg, openjpeg, rle, jpeg-ls)
UNSUPPORTED = {
    "1.2.840.10008.1.2.4.52": "JPEG Extended (processes 3 and 5, retired)",
    "1.2.840.10008.1.2.4.53": "JPEG Spectral Selection, non-hierarchical (retired)",
    "1.2.840.10008.1.2.4.54": "JPEG Spectral Selection (retired)",
    "1.2.840.10008.1.2.4.55": "JPEG Full Progression, non-hierarchical (retired)",
    "1.2.840.10008.1.2.4.56": "JPEG Full Progression (retired)",
    "1.2.840.10008.1.2.4.58": "JPEG Lossless, hierarchical (retired)",
    "1.2.840.10008.1.2.4.92": "JPEG 2000 Part 2 multi-component lossless",
    "1.2.840.10008.1.2.4.93": "JPEG 2000 Part 2 multi-component",
    "1.2.840.10008.1.2.4.94": "JPIP referenced",
    "1.2.840.10008.1.2.4.95": "JPIP referenced deflate",
    "1.2.840.10008.1.2.4.100": "MPEG2 video", "1.2.840.10008.1.2.4.101": "MPEG2 video",
    "1.2.840.10008.1.2.4.102": "MPEG-4 video", "1.2.840.10008.1.2.4.103": "MPEG-4 video",
    "1.2.840.10008.1.2.4.104": "MPEG-4 video", "1.2.840.10008.1.2.4.105": "MPEG-4 video",
    "1.2.840.10008.1.2.4.106": "MPEG-4 video", "1.2.840.10008.1.2.4.107": "HEVC video",
    "1.2.840.10008.1.2.4.108": "HEVC video",
}


#: pixel data the installed decoders refuse although pydicom knows the syntax
UNSUPPORTED_DEPTH = {
    ("1.2.840.10008.1.2.4.51", True): "12-bit lossy JPEG (JPEG Extended, 1.2.840.10008.1.2.4.51; "
                                      "neither pylibjpeg nor GDCM's Python build decodes it)",
}


def check_decodable(path: str, transfer_syntax: str) -> None:
    """A typed error for a transfer syntax nothing here decodes (before a decoder raises untyped)."""
    name = UNSUPPORTED.get(transfer_syntax)
    if name:
        raise LoadError(path, f"unsupported transfer syntax {transfer_syntax} ({name}): no decoder "
                              "for it is installed",
                        "ask the sender for the images in an uncompressed or JPEG-LS/JPEG 2000/RLE "
                        "transfer syntax")


def apply_rescale(arr: np.ndarray, slope: float, intercept: float, dtype) -> np.ndarray:
    """Stored values -> modality values (HU for CT) in ``dtype``."""
    if slope == 1.0 and intercept == 0.0:
        return arr.astype(dtype, copy=False)
    if np.dtype(dtype).kind == "i" and float(slope).is_integer() and float(intercept).is_integer():
        tmp = arr.astype(np.int32)
        if slope != 1.0:
            tmp *= int(slope)
        tmp += int(intercept)
        return tmp.astype(dtype)
    # float64 arithmetic, then one rounding to the output type (as pydicom computes it)
    return (arr.astype(np.float64) * slope + intercept).astype(dtype)
