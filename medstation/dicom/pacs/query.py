"""What a query finds (patients, studies, series), what a transfer moved, and the helpers both
clients share."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydicom import Dataset

from medstation.core.errors import CancelledError, PacsError

log = logging.getLogger(__name__)


@dataclass
class PatientMatch:
    patient_id: str
    patient_name: str
    birth_date: str = ""
    sex: str = ""
    n_studies: int | None = None


@dataclass
class StudyMatch:
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    description: str = ""
    accession: str = ""
    modalities: list[str] = field(default_factory=list)
    n_series: int | None = None
    n_instances: int | None = None
    sop_classes: list[str] = field(default_factory=list)


@dataclass
class SeriesMatch:
    series_uid: str
    study_uid: str
    modality: str = ""
    series_number: int | None = None
    description: str = ""
    n_instances: int | None = None
    sop_class: str = ""


@dataclass
class TransferReport:
    """What a retrieve or store moved, and the files it wrote (retrieve) or sent (store)."""

    expected: int | None = None
    transferred: int = 0
    failed: int = 0
    warnings: int = 0
    #: instances pushed to medstation that it refused (another study, another peer)
    refused: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["files"] = len(self.files)
        return d


Progress = Callable[[int, int | None], None]


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or getattr(value, "VM", 1) > 1:
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword, None)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _multi(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword, None)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _date_range(date_from: str, date_to: str) -> str:
    date_from, date_to = date_from.replace("-", ""), date_to.replace("-", "")
    for d in (date_from, date_to):
        if d and (len(d) != 8 or not d.isdigit()):
            raise PacsError(f"date {d!r} is not a date", "use YYYYMMDD or YYYY-MM-DD")
    if date_from and date_to:
        return date_from if date_from == date_to else f"{date_from}-{date_to}"
    if date_from:
        return f"{date_from}-"
    if date_to:
        return f"-{date_to}"
    return ""


def _study_match(ds: Dataset) -> StudyMatch:
    return StudyMatch(
        study_uid=_text(ds, "StudyInstanceUID"), patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"), study_date=_text(ds, "StudyDate"),
        description=_text(ds, "StudyDescription"), accession=_text(ds, "AccessionNumber"),
        modalities=_multi(ds, "ModalitiesInStudy"), n_series=_int(ds, "NumberOfStudyRelatedSeries"),
        n_instances=_int(ds, "NumberOfStudyRelatedInstances"), sop_classes=_multi(ds, "SOPClassesInStudy"))


def _series_match(ds: Dataset, study_uid: str) -> SeriesMatch:
    return SeriesMatch(
        series_uid=_text(ds, "SeriesInstanceUID"), study_uid=_text(ds, "StudyInstanceUID") or study_uid,
        modality=_text(ds, "Modality"), series_number=_int(ds, "SeriesNumber"),
        description=_text(ds, "SeriesDescription"), n_instances=_int(ds, "NumberOfSeriesRelatedInstances"))


def _patient_match(ds: Dataset) -> PatientMatch:
    return PatientMatch(patient_id=_text(ds, "PatientID"), patient_name=_text(ds, "PatientName"),
                        birth_date=_text(ds, "PatientBirthDate"), sex=_text(ds, "PatientSex"),
                        n_studies=_int(ds, "NumberOfPatientRelatedStudies"))


def _check_cancel(cancel: threading.Event | None, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError(f"{what} was cancelled")


def _instance_path(dest: Path, ds: Dataset) -> Path:
    """Where a received instance goes: one file per SOP Instance UID (UIDs are digits and dots)."""
    uid = str(ds.get("SOPInstanceUID", "")) or uuid.uuid4().hex
    safe = "".join(c for c in uid if c.isdigit() or c == ".")[:120] or uuid.uuid4().hex
    return dest / f"{safe}.dcm"
