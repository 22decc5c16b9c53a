"""Write synthetic chest CT studies as real DICOM files.

Files are written atomically, with shuffled file names (so nothing may sort by
name) and optional compression. Each study folder also gets ``truth.json``
with the nodules' positions in patient coordinates, for tests, benchmarks and
``medstation evaluate``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from medstation.core.files import atomic_writer
from medstation.synth.phantom import ChestPhantom, Nodule, random_nodules

COMPRESSIONS = {
    "none": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg2000": JPEG2000Lossless,
    "jpegls": JPEGLSLossless,
    "deflate": DeflatedExplicitVRLittleEndian,
}


@dataclass(frozen=True)
class SeriesSpec:
    """One CT series of a study."""

    description: str = "Chest 1.25 mm lung"
    slices: int = 96
    rows: int = 256
    columns: int = 256
    pixel_spacing: float = 1.4  # mm
    slice_thickness: float = 1.25  # mm
    slice_spacing: float | None = None  # mm; defaults to the thickness
    z_center: float = -20.0  # mm, patient z of the middle slice
    kernel: str = "LUNG"
    compression: str = "none"
    multiframe: bool = False  # one Enhanced CT file instead of one file per slice
    noise_hu: float = 18.0


@dataclass(frozen=True)
class PatientSpec:
    patient_id: str = "MS-0001"
    name: str = "Synthetic^Chest"
    birth_date: str = "19580312"
    sex: str = "F"


@dataclass
class SeriesTruth:
    series_uid: str
    description: str
    files: list[str]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]


@dataclass
class StudyTruth:
    """What was written: identifiers and the nodules in patient coordinates."""

    folder: str
    patient_id: str
    study_uid: str
    study_date: str
    frame_of_reference_uid: str
    nodules: list[dict]
    series: list[SeriesTruth] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_SERIES = (
    SeriesSpec(),
    SeriesSpec(description="Chest 5 mm mediastinum", slices=24, slice_thickness=5.0,
               kernel="STANDARD"),
)


def write_study(
    out_dir: str | Path,
    phantom: ChestPhantom,
    *,
    series: Sequence[SeriesSpec] = DEFAULT_SERIES,
    patient: PatientSpec = PatientSpec(),
    study_date: str = "20260105",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> StudyTruth:
    """Write one study (several series) of ``phantom`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = [str(seed), patient.patient_id, study_date]
    study_uid = generate_uid(entropy_srcs=key + ["study"])
    for_uid = generate_uid(entropy_srcs=key + ["for"])
    truth = StudyTruth(str(out), patient.patient_id, study_uid, study_date, for_uid,
                       phantom.truth())
    total = sum(1 if s.multiframe else s.slices for s in series)
    done = 0
    for number, spec in enumerate(series, start=1):
        if spec.compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {spec.compression!r}; use one of {sorted(COMPRESSIONS)}")
        series_uid = generate_uid(entropy_srcs=key + ["series", str(number)])
        writer = _write_multiframe if spec.multiframe else _write_slices
        files: list[str] = []
        for path in writer(out, phantom, spec, patient, study_uid, series_uid, for_uid,
                           number, study_date, seed):
            files.append(str(path))
            done += 1
            if progress:
                progress(done, total)
        step = spec.slice_spacing or spec.slice_thickness
        truth.series.append(SeriesTruth(series_uid, spec.description, files,
                                        (spec.slices, spec.rows, spec.columns),
                                        (step, spec.pixel_spacing, spec.pixel_spacing)))
    with atomic_writer(out / "truth.json", "w", fsync=False) as f:
        json.dump(truth.to_dict(), f, indent=1)
    return truth


def write_patient(
    out_dir: str | Path,
    *,
    seed: int = 0,
    nodules: Sequence[Nodule] | None = None,
    n_nodules: int = 3,
    timepoints: int = 1,
    growth_per_year: Sequence[float] | float = 0.0,
    interval_days: int = 180,
    series: Sequence[SeriesSpec] = DEFAULT_SERIES,
    patient: PatientSpec | None = None,
    last_date: str = "20260105",
) -> list[StudyTruth]:
    """Write a patient's study and ``timepoints - 1`` priors.

    Each nodule's volume grows by ``growth_per_year`` (a fraction, 0 = stable;
    one value for all or one per nodule) between timepoints. Priors are older
    studies with smaller nodules. Studies go to ``out_dir/<date>/``.
    """
    rng = np.random.default_rng(seed)
    base = ChestPhantom(seed=seed)
    if nodules is None:
        nodules = random_nodules(base, rng, n_nodules, diameters=(6.0, 14.0))
    nodules = list(nodules)
    if patient is None:
        patient = PatientSpec(patient_id=f"MS-{seed:04d}", name=f"Synthetic^Patient{seed}")
    rates = (list(growth_per_year) if not isinstance(growth_per_year, (int, float))
             else [float(growth_per_year)] * len(nodules))
    last = _dt.datetime.strptime(last_date, "%Y%m%d").date()
    studies = []
    for t in range(timepoints):
        years_before = (timepoints - 1 - t) * interval_days / 365.25
        date = (last - _dt.timedelta(days=(timepoints - 1 - t) * interval_days)).strftime("%Y%m%d")
        scaled = []
        for n, rate in zip(nodules, rates):
            vol_factor = (1.0 + rate) ** (-years_before)
            scaled.append(replace(n, diameter_mm=round(n.diameter_mm * vol_factor ** (1 / 3), 2)))
        ph = ChestPhantom(seed=seed, nodules=scaled)
        studies.append(write_study(Path(out_dir) / date, ph, series=series, patient=patient,
                                   study_date=date, seed=seed))
    return studies


def demo_study(out_dir: str | Path, progress=None) -> StudyTruth:
    """The built-in demo: one chest CT with four nodules of 5 to 15 mm."""
    nodules = [
        Nodule((-62.0, -10.0, 10.0), 15.0, label="RUL solid 15 mm"),
        Nodule((70.0, 25.0, -35.0), 9.0, label="LLL solid 9 mm"),
        Nodule((-75.0, 30.0, -60.0), 6.0, label="RLL solid 6 mm"),
        Nodule((55.0, -35.0, 15.0), 11.0, hu=-550.0, label="LUL ground-glass 11 mm"),
    ]
    ph = ChestPhantom(seed=7, nodules=nodules)
    series = (
        SeriesSpec(description="Chest 1.25 mm lung", slices=120, rows=384, columns=384,
                   pixel_spacing=0.9, slice_thickness=1.25, z_center=-25.0),
        SeriesSpec(description="Chest 5 mm mediastinum", slices=30, rows=384, columns=384,
                   pixel_spacing=0.9, slice_thickness=5.0, z_center=-25.0, kernel="STANDARD",
                   compression="rle"),
    )
    return write_study(out_dir, ph, series=series, patient=PatientSpec("MS-DEMO", "Demo^Chest"),
                       study_date="20260105", seed=7, progress=progress)


# -- internals -----------------------------------------------------------

def _grid(spec: SeriesSpec):
    dx = spec.pixel_spacing
    x = (np.arange(spec.columns) - (spec.columns - 1) / 2) * dx
    y = (np.arange(spec.rows) - (spec.rows - 1) / 2) * dx + 10.0  # centre on the body
    step = spec.slice_spacing or spec.slice_thickness
    # superior to inferior, as scanners number them
    zs = spec.z_center + (np.arange(spec.slices)[::-1] - (spec.slices - 1) / 2) * step
    return x, y, zs


def _pixels(phantom, spec, z, x, y, seed, series_no, index) -> np.ndarray:
    hu = phantom.render_slice(float(z), x, y, spec.slice_thickness)
    rng = np.random.default_rng([seed, series_no, index])
    if spec.noise_hu:
        hu += rng.standard_normal(hu.shape, dtype=np.float32) * spec.noise_hu
    return np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)


def _base_dataset(spec, patient, study_uid, series_uid, for_uid, number, study_date):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = for_uid
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.StudyTime = "093000"
    ds.StudyID = "1"
    ds.AccessionNumber = f"A{study_date}"
    ds.StudyDescription = "CT CHEST (synthetic)"
    ds.SeriesDescription = spec.description
    ds.SeriesNumber = number
    ds.Modality = "CT"
    ds.Manufacturer = "medstation synth"
    ds.InstitutionName = "Synthetic"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.KVP = 120
    ds.ConvolutionKernel = spec.kernel
    ds.SliceThickness = spec.slice_thickness
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [-600, 40]
    ds.WindowWidth = [1500, 400]
    ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"]
    return ds


def _save(ds: Dataset, sop_class: str, tsyntax: str, path: Path, pixels: np.ndarray) -> None:
    ds.SOPClassUID = sop_class
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.PixelData = pixels.tobytes()
    if tsyntax in (RLELossless, JPEG2000Lossless, JPEGLSLossless):
        ds.compress(tsyntax, pixels)
    elif tsyntax == DeflatedExplicitVRLittleEndian:
        meta.TransferSyntaxUID = tsyntax
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    with atomic_writer(path, "wb", fsync=False) as f:
        f.write(buf.getvalue())


def _write_slices(out, phantom, spec, patient, study_uid, series_uid, for_uid, number,
                  study_date, seed):
    x, y, zs = _grid(spec)
    folder = out / f"S{number:02d}"
    order = np.random.default_rng([seed, number, 99]).permutation(len(zs))
    for index, z in enumerate(zs):
        ds = _base_dataset(spec, patient, study_uid, series_uid, for_uid, number, study_date)
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(index)])
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [float(x[0]), float(y[0]), round(float(z), 4)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spec.pixel_spacing, spec.pixel_spacing]
        ds.SliceLocation = round(float(z), 4)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        pixels = _pixels(phantom, spec, z, x, y, seed, number, index)
        path = folder / f"IM{order[index]:05d}.dcm"
        _save(ds, CTImageStorage, COMPRESSIONS[spec.compression], path, pixels)
        yield path


def _write_multiframe(out, phantom, spec, patient, study_uid, series_uid, for_uid, number,
                      study_date, seed):
    x, y, zs = _grid(spec)
    ds = _base_dataset(spec, patient, study_uid, series_uid, for_uid, number, study_date)
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, "mf"])
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = len(zs)
    ds.ContentDate, ds.ContentTime = study_date, "093000"
    ds.AcquisitionDateTime = study_date + "093000"
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [spec.pixel_spacing, spec.pixel_spacing]
    measures.SliceThickness = spec.slice_thickness
    shared.PixelMeasuresSequence = DicomSequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = DicomSequence([orient])
    transform = Dataset()
    transform.RescaleIntercept = -1024
    transform.RescaleSlope = 1
    transform.RescaleType = "HU"
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    # frames in a shuffled order: readers must sort by position
    order = np.random.default_rng([seed, number, 77]).permutation(len(zs))
    per_frame = []
    frames = []
    for index in order:
        fg = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [float(x[0]), float(y[0]), round(float(zs[index]), 4)]
        fg.PlanePositionSequence = DicomSequence([pos])
        per_frame.append(fg)
        frames.append(_pixels(phantom, spec, zs[index], x, y, seed, number, int(index)))
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    for k in ("RescaleIntercept", "RescaleSlope", "RescaleType"):
        del ds[k]
    path = out / f"S{number:02d}" / "ENHANCED.dcm"
    _save(ds, EnhancedCTImageStorage, COMPRESSIONS[spec.compression], path, np.stack(frames))
    yield path
