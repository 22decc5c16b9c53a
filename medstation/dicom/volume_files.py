"""Research volume files -- NIfTI, MetaImage (``.mhd``/``.raw``, ``.mha``) and NRRD -- read
through SimpleITK and indexed beside DICOM.

LUNA16 ships ``.mhd/.raw``; nnU-Net, MONAI and TotalSegmentator work in NIfTI; masks
come as NIfTI or NRRD. A volume file becomes one :class:`InstanceHeader` that looks
like an enhanced multi-frame instance: one frame per plane, its per-frame positions,
orientation and pixel spacing in patient LPS, so the series assembly, the study
database, the viewer, ``info``, ``detect``, ``evaluate`` and ``followup`` take it as
they take DICOM.

Geometry: SimpleITK reads every one of these formats into LPS (the DICOM patient
system). NIfTI stores RAS+ (x to the patient's right-to-left negated, y negated):
ITK converts it, and the series says so in its warnings. NRRD's ``space`` field is
honoured the same way.

What a file does not say is not invented: no study date, no patient, no modality.
The modality is taken as CT only when the middle slice holds air in HU (values
below -500), and the series notes say so; otherwise it is "OT". A file named by a
DICOM UID (LUNA16's ``1.3.6.1.4.1.14519...mhd``) keeps that UID as its series UID,
so LUNA16's ``annotations.csv`` matches it directly; any other file gets a
``2.25.`` UID derived from its name, size and first bytes (stable across moves).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import numpy as np

from medstation.core.errors import LoadError
from medstation.dicom.instance import InstanceHeader

#: header suffixes (lower case) and the format each names
FORMATS = {".nii": "NIfTI", ".nii.gz": "NIfTI", ".mhd": "MetaImage", ".mha": "MetaImage",
           ".nrrd": "NRRD", ".nhdr": "NRRD"}
#: data files that belong to a header beside them (``x.mhd`` + ``x.raw``): not images themselves
DATA_SUFFIXES = (".raw", ".zraw", ".raw.gz")
#: the transfer-syntax field of a volume file's header (it is not DICOM): "volume-file/NIfTI"
SYNTAX_PREFIX = "volume-file/"
#: the most voxels a volume file may declare (about 8 GiB of int16): more is a damaged or hostile header
MAX_VOXELS = 4 * 1024**3
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_HINT = "check that the file is a complete NIfTI, MetaImage (.mhd + its .raw) or NRRD volume"


def suffix_of(path: str | Path) -> str:
    name = str(path).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else (".raw.gz" if name.endswith(".raw.gz")
                                                      else os.path.splitext(name)[1])


def is_volume_file(path: str | Path) -> bool:
    return suffix_of(path) in FORMATS


def is_volume_header(h) -> bool:
    """The header came from a volume file (not a DICOM instance)."""
    return h.transfer_syntax.startswith(SYNTAX_PREFIX)


def is_data_file_of_a_header(path: Path) -> bool:
    """``x.raw`` beside ``x.mhd`` / ``x.nhdr``: the header's pixel data, not a file of its own."""
    if suffix_of(path) not in DATA_SUFFIXES:
        return False
    stem = path.name[: -len(suffix_of(path))]
    return any((path.parent / f"{stem}{s}").exists() for s in (".mhd", ".nhdr", ".MHD", ".NHDR"))


def _uid_from(path: str, size: int) -> str:
    with open(path, "rb") as f:
        head = f.read(65536)
    digest = hashlib.sha256(Path(path).name.encode() + str(size).encode() + head).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _stem(path: str) -> str:
    name = Path(path).name
    return name[: -len(suffix_of(path))] if suffix_of(path) else name


def _reader(path: str):
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise LoadError(path, f"SimpleITK cannot read the {FORMATS.get(suffix_of(path), 'volume')} header: "
                              f"{_itk_reason(exc)}", _HINT) from None
    return reader


def _itk_reason(exc: BaseException) -> str:
    """The useful line of an ITK exception (it repeats file and line of the C++ source)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("/", "sitk::ERROR")) and "itk::" not in line]
    text = (useful or lines or [type(exc).__name__])[-1]
    return " ".join(text.split())[:200]


def scan_volume_file(path: str):
    """The header of a volume file (geometry in LPS, one frame per plane). Raises ``LoadError``."""
    import SimpleITK as sitk

    try:
        st = os.stat(path)
    except OSError as exc:
        raise LoadError(path, f"cannot open the file: {exc.strerror}",
                        "check that the file exists and is readable") from None
    fmt = FORMATS[suffix_of(path)]
    reader = _reader(path)
    size = tuple(int(v) for v in reader.GetSize())
    dim = len(size)
    if dim == 4 and size[3] == 1:
        size = size[:3]
    if dim > 4 or (len(size) == 4):
        raise LoadError(path, f"a {dim}-D {fmt} image ({' x '.join(map(str, size))}): one 3-D volume "
                              "per file is read", "split the time points or channels into 3-D files")
    if len(size) == 2:
        size = (*size, 1)
    if reader.GetNumberOfComponents() != 1:
        raise LoadError(path, f"{reader.GetNumberOfComponents()} values per voxel (a vector or colour "
                              f"{fmt} image)", "save one scalar component per file")
    voxels = math.prod(size)
    if not all(v > 0 for v in size) or voxels > MAX_VOXELS:
        raise LoadError(path, f"the header declares {' x '.join(map(str, size))} voxels, which is no "
                              "image this can hold", "the header is damaged; export the volume again")
    spacing = [float(v) for v in reader.GetSpacing()][:3] + [1.0] * (3 - min(3, len(reader.GetSpacing())))
    origin = [float(v) for v in reader.GetOrigin()][:3] + [0.0] * (3 - min(3, len(reader.GetOrigin())))
    n = len(reader.GetSpacing())
    d = np.asarray(reader.GetDirection(), float).reshape(n, n)
    direction = np.eye(3)
    direction[:n, :n] = d[:3, :3]
    if not (all(math.isfinite(v) and v > 0 for v in spacing) and all(math.isfinite(v) for v in origin)
            and np.isfinite(direction).all()):
        raise LoadError(path, f"impossible geometry in the header (spacing {spacing}, origin {origin})",
                        "the header is damaged; export the volume again")
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    bits, signed, is_float = _pixel_type(path, pixel)
    # columns of the ITK direction are the x (column), y (row) and z (plane) axes in LPS
    row_dir, col_dir, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    positions = [tuple(float(v) for v in np.asarray(origin) + z * spacing[2] * normal)
                 for z in range(size[2])]
    stem = _stem(path)
    series_uid = stem if _UID.match(stem) and len(stem) <= 64 else _uid_from(path, st.st_size)
    notes = [f"a {fmt} file read by SimpleITK: geometry in patient LPS"
             + (" (NIfTI stores RAS+; x and y were negated into LPS)" if fmt == "NIfTI" else ""),
             "no patient, study date or acquisition in the file: none are shown"]
    modality = _modality(reader, size, notes)
    h = InstanceHeader(
        path=path, file_size=st.st_size, mtime_ns=st.st_mtime_ns,
        sop_class_uid="", sop_instance_uid=series_uid + ".1", transfer_syntax=SYNTAX_PREFIX + fmt,
        patient_id=stem[:64], patient_name=stem[:64], study_uid=series_uid + ".0", series_uid=series_uid,
        series_number=1, series_description=f"{fmt} {Path(path).name}"[:64], modality=modality,
        frame_of_reference_uid=series_uid + ".0.1", instance_number=1,
        rows=size[1], columns=size[0], frames=size[2], samples_per_pixel=1,
        bits_allocated=bits, bits_stored=bits, pixel_representation=int(signed),
        photometric="MONOCHROME2", position=positions[0],
        orientation=tuple(float(v) + 0.0 for v in (*row_dir, *col_dir)),
        pixel_spacing=(spacing[1], spacing[0]), slice_thickness=spacing[2],
        frame_positions=positions if size[2] > 1 else None, has_pixels=True,
        rescale_type="HU" if modality == "CT" else "", notes=notes)
    if is_float:
        h.image_type = "FLOAT"
    return h


def header_fields(path: str) -> list[tuple[str, str]]:
    """The file's own header fields (as ITK names them), after size, spacing, origin and direction."""
    import SimpleITK as sitk

    reader = _reader(path)
    rows = [("format", FORMATS.get(suffix_of(path), "")), ("size", " x ".join(map(str, reader.GetSize()))),
            ("voxel type", sitk.GetPixelIDValueAsString(reader.GetPixelID())),
            ("spacing (mm)", " ".join(f"{v:g}" for v in reader.GetSpacing())),
            ("origin (mm, LPS)", " ".join(f"{v:g}" for v in reader.GetOrigin())),
            ("direction (LPS)", " ".join(f"{v:.4g}" for v in reader.GetDirection()))]
    return rows + [(key, reader.GetMetaData(key)) for key in reader.GetMetaDataKeys()]


def _pixel_type(path: str, pixel: str) -> tuple[int, bool, bool]:
    """(bits, signed, float) of an ITK pixel type name such as "16-bit signed integer"."""
    text = pixel.lower()
    if "float" in text:
        return 32, True, True
    match = re.search(r"(\d+)-bit (signed|unsigned) integer", text)
    if not match:
        raise LoadError(path, f"unsupported voxel type: {pixel}", "save the volume as integers or floats")
    bits = int(match.group(1))
    if bits > 32:  # 64-bit integers: as float, like the float path
        return 32, True, True
    return bits, match.group(2) == "signed", False


def _modality(reader, size, notes: list[str]) -> str:
    """CT when the middle plane holds air in HU; the note says why (a file has no modality)."""
    import SimpleITK as sitk

    middle = size[2] // 2
    try:
        reader.SetExtractIndex([0, 0, middle][: len(reader.GetSize())] + [0] * (len(reader.GetSize()) - 3))
        reader.SetExtractSize([size[0], size[1], 1][: len(reader.GetSize())]
                              + [1] * (len(reader.GetSize()) - 3))
        plane = sitk.GetArrayViewFromImage(reader.Execute())
        low = float(np.percentile(plane, 5))
    except RuntimeError as exc:
        raise LoadError(reader.GetFileName(), f"the header reads but its pixels do not: {_itk_reason(exc)}",
                        "a .mhd / .nhdr keeps its pixels in the file it names (ElementDataFile / data "
                        "file): copy that file beside it") from None
    finally:
        reader.SetExtractIndex([])
        reader.SetExtractSize([])
    if low < -500:
        notes.append(f"no modality in the file: taken as CT in HU (the middle plane's 5th percentile is "
                     f"{low:.0f}, air)")
        return "CT"
    notes.append("no modality in the file and no air in HU: shown as OT (other), detection is for CT")
    return "OT"


def read_frames(path: str, frames: tuple[int, ...], out_dtype: str) -> np.ndarray:
    """Planes ``frames`` of a volume file as ``(n, rows, columns)`` in ``out_dtype``."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(path)
    except RuntimeError as exc:
        raise LoadError(path, f"SimpleITK cannot read the pixels: {_itk_reason(exc)}", _HINT) from None
    arr = sitk.GetArrayViewFromImage(image)  # (z, y, x)
    while arr.ndim > 3:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    out = np.empty((len(frames), arr.shape[1], arr.shape[2]), out_dtype)
    for n, z in enumerate(frames):
        plane = arr[z]
        if np.dtype(out_dtype).kind == "i":
            info = np.iinfo(out_dtype)
            plane = np.clip(np.rint(plane) if plane.dtype.kind == "f" else plane, info.min, info.max)
        out[n] = plane
    return out


def write_volume_file(array: np.ndarray, grid, path: str | Path) -> Path:
    """``array`` (``(k, i, j)`` on ``grid``, a :class:`~medstation.core.geometry.Grid`) as a NIfTI,
    MetaImage or NRRD file (by the suffix), atomically: a temporary file beside it, then a rename.
    NIfTI is written in RAS+ by ITK from the LPS geometry (as every reader expects)."""
    import SimpleITK as sitk

    path = Path(path)
    fmt = FORMATS.get(suffix_of(path))
    if fmt is None or suffix_of(path) == ".mhd":  # .mhd needs a second (.raw) file: not atomic as one
        raise LoadError(path, "not a volume file name for writing",
                        "name it .nii.gz, .nii, .nrrd or .mha")
    if tuple(array.shape[:3]) != tuple(grid.shape):
        raise ValueError(f"array {array.shape} does not lie on the grid {grid.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(s) for s in (grid.spacing[2], grid.spacing[1], grid.spacing[0])))
    image.SetOrigin(tuple(float(v) for v in grid.origin))
    image.SetDirection(grid.sitk_direction())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name[: -len(suffix_of(path))]}.{os.getpid()}.tmp{suffix_of(path)}"
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except RuntimeError as exc:
        raise LoadError(path, f"SimpleITK could not write the file: {_itk_reason(exc)}",
                        "check the folder is writable and has room") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def date_timepoints(stacks, paths, dates: list[str] | None, patient: str | None = None) -> None:
    """Volume files carry no patient and no study date: ``dates`` (YYYYMMDD, one per PATH in the order
    given) makes them one patient's timepoints. ``MedstationError`` when they are needed and missing or
    do not fit; stacks that came from DICOM are left as they are."""
    from medstation.core.errors import MedstationError

    files = [s for s in stacks if is_volume_header(s.first)]
    if not files:
        if dates:
            raise MedstationError("--dates is for NIfTI / MetaImage / NRRD files; DICOM studies carry "
                                  "their own dates", "leave --dates out")
        return
    if len(files) != len(stacks):
        raise MedstationError("a follow-up of DICOM studies and volume files together",
                              "follow the DICOM studies, or convert them to one format")
    if not dates:
        raise MedstationError(f"{len(files)} volume file(s) with no study dates: the follow-up cannot order "
                              "them or give intervals", "give each PATH's date in order: --dates "
                              "20240105,20250110")
    resolved = [str(Path(p).resolve()) for p in paths]
    if len(dates) != len(resolved) or any(not re.fullmatch(r"\d{8}", d) for d in dates):
        raise MedstationError(f"--dates gives {len(dates)} date(s) for {len(resolved)} path(s)",
                              "one YYYYMMDD date per PATH, in the order of the paths")
    for s in files:
        where = str(Path(s.first.path).resolve())
        n = next((i for i, p in enumerate(resolved) if where == p or where.startswith(p + os.sep)), None)
        if n is None:
            raise MedstationError(f"{s.first.path}: not one of the paths given", "name each file as a PATH")
        for sl in s.slices:  # one header per file: every slice shares it
            sl.header.study_date = dates[n]
            sl.header.patient_id = patient or "volume files"
            sl.header.patient_name = patient or "volume files"
