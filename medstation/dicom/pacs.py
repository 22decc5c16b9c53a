"""PACS: query and retrieve over DIMSE (pynetdicom) and DICOMweb (dicomweb-client).

Two clients with the same surface, ``DimseClient`` and ``DicomWebClient``:
``echo()``, ``find_patients()``, ``find_studies()``, ``find_series()``,
``retrieve(study_uid, dest)`` and ``store(files)``. ``open_client(node)``
picks one from the node's settings. Every failure is a ``PacsError`` that
says which peer, what happened and what to check; no call waits longer than
the node's timeout for the peer to answer.

``retrieve_study()`` is what the viewer and the CLI use: it retrieves into a
staging folder, checks that every instance the PACS announced has arrived,
and only then moves the files into the user's PACS folder and imports them
into the study database. A transfer that stops part way leaves nothing behind
in the database.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from medstation.core.errors import CancelledError, PacsError
from medstation.core.files import atomic_write_bytes, atomic_write_text
from medstation.dicom._write import write_dataset

log = logging.getLogger(__name__)
logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # it logs every PDU at INFO

#: transfer syntaxes medstation can decode, offered for every storage class it may receive
RECEIVE_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                    JPEGLosslessSV1, JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000Lossless, JPEG2000,
                    JPEGLSLossless, JPEGLSNearLossless, RLELossless]

#: storage SOP classes C-GET always offers to receive (plus those the study says it holds);
#: a C-GET association can carry at most 128 presentation contexts
GET_STORAGE_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.2",       # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",     # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.2.2",     # Legacy Converted Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",       # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",     # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3",     # Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4",     # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.128",     # PET Image
    "1.2.840.10008.5.1.4.1.1.130",     # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.128.1",   # Legacy Converted Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.20",      # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.1",       # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",     # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2",     # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.12.1",    # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.6.1",     # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",     # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.7",       # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",     # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",     # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",     # Multi-frame True Color Secondary Capture
    "1.2.840.10008.5.1.4.1.1.66.4",    # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.5",    # Surface Segmentation
    "1.2.840.10008.5.1.4.1.1.30",      # Parametric Map
    "1.2.840.10008.5.1.4.1.1.88.11",   # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",   # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",   # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",   # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.59",   # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.11.1",    # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.481.1",   # RT Image
    "1.2.840.10008.5.1.4.1.1.481.2",   # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",   # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.5",   # RT Plan
    "1.2.840.10008.5.1.4.1.1.104.1",   # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.66",      # Raw Data
]

_STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
_STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
_STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
_PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
_VERIFICATION = "1.2.840.10008.1.1"

RETRIEVE_METHODS = ("get", "move", "wado")
KEYRING_SERVICE = "medstation-pacs"


# --------------------------------------------------------------------------- nodes


@dataclass
class PacsNode:
    """A PACS the user has configured. The password is not part of it (see ``node_password``)."""

    name: str
    host: str = "127.0.0.1"
    port: int = 104
    ae_title: str = "ORTHANC"         # the PACS's AE title (called AE)
    calling_ae: str = "MEDSTATION"    # medstation's AE title, as registered on the PACS
    store_port: int = 11112           # where medstation listens for C-MOVE deliveries
    dicomweb_url: str = ""            # e.g. http://pacs:8042/dicom-web
    username: str = ""
    retrieve: str = "get"             # get | move | wado
    timeout: float = 10.0             # seconds the peer may stay silent
    retries: int = 2                  # extra attempts to connect before giving up

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PacsNode:
        known = {f.name for f in fields(cls)}
        node = cls(**{k: v for k, v in data.items() if k in known})
        node.validate()
        return node

    def validate(self) -> None:
        if not self.name.strip():
            raise PacsError("a PACS node needs a name", "give it one in the PACS dialog")
        for label, aet in (("called AE title", self.ae_title), ("calling AE title", self.calling_ae)):
            if not aet or len(aet) > 16 or "\\" in aet or not aet.isprintable():
                raise PacsError(f"{self.name}: {label} {aet!r} is not a valid AE title",
                                "use 1 to 16 printable characters without backslash")
        if not 0 < int(self.port) < 65536 or not 0 <= int(self.store_port) < 65536:
            raise PacsError(f"{self.name}: port {self.port} / {self.store_port} out of range",
                            "ports are 1 to 65535")
        if self.retrieve not in RETRIEVE_METHODS:
            raise PacsError(f"{self.name}: unknown retrieve method {self.retrieve!r}",
                            f"use one of {', '.join(RETRIEVE_METHODS)}")
        if self.retrieve == "wado" and not self.dicomweb_url:
            raise PacsError(f"{self.name}: WADO-RS needs a DICOMweb URL", "enter the server's DICOMweb URL")

    @property
    def where(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def nodes_path() -> Path:
    from medstation.dicom.database import user_data_path
    return user_data_path() / "pacs_nodes.json"


def load_nodes(path: Path | None = None) -> list[PacsNode]:
    path = path or nodes_path()
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [PacsNode.from_dict(d) for d in data["nodes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PacsError(f"{path}: the PACS list could not be read ({exc})",
                        "fix or delete the file and add the nodes again") from exc


def save_nodes(nodes: Sequence[PacsNode], path: Path | None = None) -> None:
    path = path or nodes_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"nodes": [n.to_dict() for n in nodes]}, indent=2))


_session_passwords: dict[str, str] = {}


def set_node_password(node: PacsNode, password: str) -> bool:
    """Keep a password in the OS keyring; True if it was saved there, False if only for this session."""
    _session_passwords[node.name] = password
    try:
        import keyring
        keyring.set_password(KEYRING_SERVICE, f"{node.name}:{node.username}", password)
        return True
    except Exception as exc:  # no keyring backend on this machine: keep it in memory only
        log.info("no OS keyring (%s): the PACS password is kept for this session only", type(exc).__name__)
        return False


def node_password(node: PacsNode) -> str:
    if node.name in _session_passwords:
        return _session_passwords[node.name]
    try:
        import keyring
        return keyring.get_password(KEYRING_SERVICE, f"{node.name}:{node.username}") or ""
    except Exception:
        return ""


# --------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------- DIMSE


class DimseClient:
    """C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE against one node (pynetdicom)."""

    def __init__(self, node: PacsNode) -> None:
        node.validate()
        self.node = node

    # -- associations

    def _ae(self):
        from pynetdicom import AE
        ae = AE(ae_title=self.node.calling_ae)
        t = float(self.node.timeout)
        ae.acse_timeout = t
        ae.dimse_timeout = t
        ae.network_timeout = t
        ae.connection_timeout = t
        ae.maximum_pdu_size = 0
        return ae

    def _associate(self, ae, *, ext_neg=None, evt_handlers=None):
        from pynetdicom import evt
        node = self.node
        attempts = 1 + max(0, int(node.retries))
        for attempt in range(attempts):
            answered = []  # the peer sent an A-ASSOCIATE-AC: it is reachable, whatever happens next
            handlers = [*(evt_handlers or []), (evt.EVT_ACCEPTED, lambda _e, a=answered: a.append(True))]
            assoc = ae.associate(node.host, int(node.port), ae_title=node.ae_title,
                                 ext_neg=ext_neg, evt_handlers=handlers)
            if assoc.is_established:
                return assoc
            if assoc.is_rejected:
                raise PacsError(
                    f"{node.name} ({node.where}) rejected the association",
                    f"check the called AE title ({node.ae_title!r}) and that medstation's AE title "
                    f"({node.calling_ae!r}) is registered on the PACS")
            if answered:  # accepted, then aborted: none of the proposed services is supported
                raise PacsError(f"{node.name} ({node.where}) accepts none of the requested services",
                                "check that the PACS offers query/retrieve and storage to medstation")
            if attempt + 1 < attempts:
                time.sleep(min(2.0, 0.25 * 2 ** attempt))
        raise PacsError(f"{node.name} ({node.where}) cannot be reached "
                        f"(no answer within {node.timeout:g} s, {attempts} attempts)",
                        "check the host name, port and network, and that the PACS is running")

    def _fail(self, what: str, status: Dataset | None) -> PacsError:
        code = getattr(status, "Status", None) if status is not None else None
        node = self.node
        if code is None:
            return PacsError(f"{node.name} ({node.where}) stopped answering during {what}",
                             "the connection was lost or timed out: try again, or check the PACS")
        comment = _text(status, "ErrorComment")
        return PacsError(f"{node.name} ({node.where}) refused {what}: status 0x{int(code):04X}"
                         + (f" ({comment})" if comment else ""),
                         "check that medstation's AE title is allowed to do this on the PACS")

    # -- C-ECHO

    def echo(self) -> float:
        """Round-trip seconds of a C-ECHO."""
        ae = self._ae()
        ae.add_requested_context(_VERIFICATION)
        t0 = time.perf_counter()
        assoc = self._associate(ae)
        try:
            status = assoc.send_c_echo()
            if status is None or getattr(status, "Status", None) != 0:
                raise self._fail("C-ECHO", status if status else None)
        finally:
            assoc.release()
        return time.perf_counter() - t0

    # -- C-FIND

    def _find(self, model: str, query: Dataset, what: str) -> list[Dataset]:
        ae = self._ae()
        ae.add_requested_context(model)
        assoc = self._associate(ae)
        out: list[Dataset] = []
        try:
            for status, identifier in assoc.send_c_find(query, model):
                code = getattr(status, "Status", None)
                if code in (0xFF00, 0xFF01):
                    if identifier is not None:
                        out.append(identifier)
                elif code == 0x0000:
                    break
                else:
                    raise self._fail(what, status if code is not None else None)
        finally:
            if assoc.is_established:
                assoc.release()
        return out

    def find_patients(self, patient_id: str = "", patient_name: str = "") -> list[PatientMatch]:
        q = Dataset()
        q.QueryRetrieveLevel = "PATIENT"
        q.PatientID = patient_id
        q.PatientName = patient_name
        q.PatientBirthDate = ""
        q.PatientSex = ""
        q.NumberOfPatientRelatedStudies = None
        return [_patient_match(d) for d in self._find(_PATIENT_ROOT_FIND, q, "the patient search")]

    def find_studies(self, patient_id: str = "", patient_name: str = "", date_from: str = "",
                     date_to: str = "", accession: str = "", modality: str = "",
                     study_uid: str = "") -> list[StudyMatch]:
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.PatientID = patient_id
        q.PatientName = patient_name
        q.StudyDate = _date_range(date_from, date_to)
        q.StudyInstanceUID = study_uid
        q.AccessionNumber = accession
        q.StudyDescription = ""
        q.ModalitiesInStudy = modality
        q.NumberOfStudyRelatedSeries = None
        q.NumberOfStudyRelatedInstances = None
        q.SOPClassesInStudy = ""
        return [_study_match(d) for d in self._find(_STUDY_ROOT_FIND, q, "the study search")]

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        q = Dataset()
        q.QueryRetrieveLevel = "SERIES"
        q.StudyInstanceUID = study_uid
        q.SeriesInstanceUID = ""
        q.Modality = ""
        q.SeriesNumber = None
        q.SeriesDescription = ""
        q.NumberOfSeriesRelatedInstances = None
        found = self._find(_STUDY_ROOT_FIND, q, "the series search")
        return sorted((_series_match(d, study_uid) for d in found),
                      key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid))

    # -- C-GET / C-MOVE

    def _identifier(self, study_uid: str, series_uid: str = "") -> Dataset:
        q = Dataset()
        q.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
        q.StudyInstanceUID = study_uid
        if series_uid:
            q.SeriesInstanceUID = series_uid
        return q

    def _receiver(self, dest: Path, report: TransferReport, progress: Progress | None,
                  cancel: threading.Event | None):
        lock = threading.Lock()

        def on_store(event):
            if cancel is not None and cancel.is_set():
                return 0xA700  # refuse: the retrieve is being cancelled
            try:
                ds = event.dataset
                path = _instance_path(dest, ds)
                atomic_write_bytes(path, event.encoded_dataset(include_meta=True))
            except Exception as exc:  # a bad instance is counted, never crashes the receiver
                log.warning("a received instance could not be written: %s", type(exc).__name__)
                return 0xA700
            with lock:
                report.files.append(str(path))
                report.transferred = len(report.files)
                n = report.transferred
            if progress is not None:
                progress(n, report.expected)
            return 0x0000

        return on_store

    def _run_retrieve(self, assoc, responses, what: str, report: TransferReport,
                      cancel: threading.Event | None) -> None:
        final = None
        try:
            for status, _identifier in responses:
                if cancel is not None and cancel.is_set():
                    assoc.abort()
                    raise CancelledError(f"{what} was cancelled")
                code = getattr(status, "Status", None)
                if code is None:  # the association ended without a final response
                    raise self._fail(what, None)
                remaining = _int(status, "NumberOfRemainingSuboperations")
                done = sum(_int(status, k) or 0 for k in ("NumberOfCompletedSuboperations",
                                                           "NumberOfFailedSuboperations",
                                                           "NumberOfWarningSuboperations"))
                if remaining is not None and report.expected is None:
                    report.expected = remaining + done
                if code in (0xFF00, 0xFF01):
                    continue
                final = status
            if final is None:
                raise self._fail(what, None)
            code = int(final.Status)
            report.failed = _int(final, "NumberOfFailedSuboperations") or 0
            report.warnings = _int(final, "NumberOfWarningSuboperations") or 0
            if code not in (0x0000, 0xB000) and not (code & 0xF000 == 0xB000):
                raise self._fail(what, final)
        finally:
            if assoc.is_established:
                assoc.release()

    def retrieve(self, study_uid: str, dest: str | Path, *, series_uid: str = "",
                 method: str | None = None, sop_classes: Iterable[str] = (),
                 progress: Progress | None = None, cancel: threading.Event | None = None) -> TransferReport:
        method = method or self.node.retrieve
        if method == "move":
            return self.move(study_uid, dest, series_uid=series_uid, progress=progress, cancel=cancel)
        return self.get(study_uid, dest, series_uid=series_uid, sop_classes=sop_classes,
                        progress=progress, cancel=cancel)

    def get(self, study_uid: str, dest: str | Path, *, series_uid: str = "",
            sop_classes: Iterable[str] = (), progress: Progress | None = None,
            cancel: threading.Event | None = None) -> TransferReport:
        """C-GET a study (or one series) into ``dest``.

        Proposes a presentation context with the SCP role for every storage class
        in ``GET_STORAGE_CLASSES`` and in ``sop_classes`` (what the study search said
        the study holds), up to the 127 a C-GET association can carry.
        """
        from pynetdicom import build_role, evt
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        report = TransferReport()
        ae = self._ae()
        ae.add_requested_context(_STUDY_ROOT_GET)
        classes = list(dict.fromkeys([*sop_classes, *GET_STORAGE_CLASSES]))[:127]
        roles = []
        for uid in classes:
            ae.add_requested_context(uid, RECEIVE_SYNTAXES)
            roles.append(build_role(uid, scp_role=True))
        handlers = [(evt.EVT_C_STORE, self._receiver(dest, report, progress, cancel))]
        _check_cancel(cancel, "the retrieve")
        assoc = self._associate(ae, ext_neg=roles, evt_handlers=handlers)
        self._run_retrieve(assoc, assoc.send_c_get(self._identifier(study_uid, series_uid), _STUDY_ROOT_GET),
                           "C-GET", report, cancel)
        report.seconds = time.perf_counter() - t0
        return report

    def move(self, study_uid: str, dest: str | Path, *, series_uid: str = "",
             progress: Progress | None = None, cancel: threading.Event | None = None) -> TransferReport:
        """C-MOVE a study to medstation's own storage SCP (``calling_ae`` on ``store_port``)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        node = self.node
        if not node.store_port:
            raise PacsError(f"{node.name}: C-MOVE needs medstation's storage port",
                            "set a storage port (and register it on the PACS) or use C-GET")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        report = TransferReport()
        scp = AE(ae_title=node.calling_ae)
        scp.network_timeout = scp.acse_timeout = scp.dimse_timeout = float(node.timeout)
        for cx in AllStoragePresentationContexts:
            scp.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        handlers = [(evt.EVT_C_STORE, self._receiver(dest, report, progress, cancel))]
        try:
            server = scp.start_server(("0.0.0.0", int(node.store_port)), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise PacsError(f"medstation cannot listen on port {node.store_port} for C-MOVE ({exc.strerror})",
                            "another program uses the port: choose another storage port or use C-GET",
                            ) from exc
        try:
            ae = self._ae()
            ae.add_requested_context(_STUDY_ROOT_MOVE)
            _check_cancel(cancel, "the retrieve")
            assoc = self._associate(ae)
            self._run_retrieve(assoc, assoc.send_c_move(self._identifier(study_uid, series_uid),
                                                        node.calling_ae, _STUDY_ROOT_MOVE),
                               "C-MOVE", report, cancel)
        finally:
            server.shutdown()
        report.seconds = time.perf_counter() - t0
        return report

    # -- C-STORE

    def store(self, files: Sequence[str | Path], *, progress: Progress | None = None,
              cancel: threading.Event | None = None) -> TransferReport:
        """C-STORE files to the node; raises if any instance is refused."""
        t0 = time.perf_counter()
        report = TransferReport(expected=len(files))
        metas = []
        for f in files:
            ds = dcmread(f, stop_before_pixels=True)
            metas.append((str(f), str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
        ae = self._ae()
        # one context per (class, transfer syntax) the files hold, plus an uncompressed one per class:
        # the peer accepts one syntax per context, and what it does not take is decompressed here
        wanted: dict[tuple[str, tuple[str, ...]], None] = {}
        for _f, cls, ts in metas:
            if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
                wanted[(cls, (ts,))] = None
            wanted[(cls, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))] = None
        if len(wanted) > 128:
            raise PacsError(f"{len(wanted)} kinds of objects in one send",
                            "send fewer kinds of objects at once")
        for cls, syntaxes in wanted:
            ae.add_requested_context(cls, list(syntaxes))
        assoc = self._associate(ae)
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        errors = []
        try:
            for path, cls, ts in metas:
                _check_cancel(cancel, "sending to the PACS")
                if (cls, ts) in accepted:
                    status = assoc.send_c_store(path)
                else:
                    ds = dcmread(path)
                    if ds.file_meta.TransferSyntaxUID.is_compressed:
                        ds.decompress()
                    status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code is None:
                    raise self._fail("C-STORE", None)
                if code == 0x0000 or code & 0xF000 == 0xB000:
                    report.transferred += 1
                    report.warnings += int(code != 0)
                    report.files.append(path)
                else:
                    report.failed += 1
                    errors.append((Path(path).name, int(code)))
                if progress is not None:
                    progress(report.transferred + report.failed, report.expected)
        finally:
            if assoc.is_established:
                assoc.release()
        if errors:
            name, code = errors[0]
            raise PacsError(f"{self.node.name} refused {len(errors)} of {len(files)} instances "
                            f"({name}: status 0x{code:04X})",
                            "the PACS may not accept this kind of object: check its log")
        report.seconds = time.perf_counter() - t0
        return report


# --------------------------------------------------------------------------- DICOMweb


def _session(node: PacsNode, password: str | None):
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    class _Session(requests.Session):
        # Orthanc's DICOMweb plugin does not decode percent-encoded search values: send '*' as is
        def request(self, method, url, *args, **kwargs):
            if "?" in url:
                base, query = url.split("?", 1)
                url = base + "?" + query.replace("%2A", "*")
            return super().request(method, url, *args, **kwargs)

    s = _Session()
    retry = Retry(total=max(0, int(node.retries)), connect=max(0, int(node.retries)), read=0,
                  backoff_factor=0.25, status_forcelist=(502, 503, 504), allowed_methods=("GET",))
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.mount("https://", HTTPAdapter(max_retries=retry))
    if node.username:
        s.auth = (node.username, password if password is not None else node_password(node))
    return s


def _web_value(value: str) -> str:
    # '^' cannot be sent unencoded and encoded it is not decoded by some servers: match it with '*'
    return value.replace("^", "*")


class DicomWebClient:
    """QIDO-RS, WADO-RS and STOW-RS against one node (dicomweb-client)."""

    def __init__(self, node: PacsNode, password: str | None = None) -> None:
        node.validate()
        if not node.dicomweb_url:
            raise PacsError(f"{node.name}: no DICOMweb URL",
                            "enter the server's DICOMweb URL in the PACS dialog")
        self.node = node
        from dicomweb_client.api import DICOMwebClient
        self._client = DICOMwebClient(node.dicomweb_url.rstrip("/"), session=_session(node, password),
                                      timeout=(float(node.timeout), float(node.timeout)))
        self._client.set_http_retry_params(retry=False)

    def _call(self, what: str, fn, *args, **kwargs):
        import requests
        node = self.node
        try:
            return fn(*args, **kwargs)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403):
                raise PacsError(f"{node.name} ({node.dicomweb_url}) refused the user name or password "
                                f"(HTTP {code})", "check the user name and password for this PACS") from exc
            raise PacsError(f"{node.name} ({node.dicomweb_url}) answered HTTP {code} to {what}",
                            "check the DICOMweb URL and the server's log") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            if isinstance(exc, requests.ConnectionError) and "Read timed out" not in str(exc) and \
                    any(s in str(exc) for s in ("IncompleteRead", "Connection broken", "RemoteDisconnected")):
                raise PacsError(f"{node.name} ({node.dicomweb_url}) stopped sending during {what}",
                                "the connection was lost: try again, or check the PACS") from exc
            raise PacsError(f"{node.name} ({node.dicomweb_url}) cannot be reached "
                            f"(no answer within {node.timeout:g} s)",
                            "check the URL and network, and that the server is running") from exc
        except requests.RequestException as exc:
            raise PacsError(f"{node.name} ({node.dicomweb_url}) failed during {what}: {type(exc).__name__}",
                            "try again, or check the PACS") from exc

    def echo(self) -> float:
        t0 = time.perf_counter()
        self._call("a test search", self._client.search_for_studies, limit=1)
        return time.perf_counter() - t0

    def find_patients(self, patient_id: str = "", patient_name: str = "") -> list[PatientMatch]:
        seen: dict[tuple[str, str], PatientMatch] = {}
        for s in self.find_studies(patient_id=patient_id, patient_name=patient_name):
            key = (s.patient_id, s.patient_name)
            m = seen.setdefault(key, PatientMatch(s.patient_id, s.patient_name, n_studies=0))
            m.n_studies = (m.n_studies or 0) + 1
        return list(seen.values())

    def find_studies(self, patient_id: str = "", patient_name: str = "", date_from: str = "",
                     date_to: str = "", accession: str = "", modality: str = "",
                     study_uid: str = "") -> list[StudyMatch]:
        filters = {k: v for k, v in {
            "PatientID": patient_id, "PatientName": _web_value(patient_name),
            "StudyDate": _date_range(date_from, date_to), "AccessionNumber": accession,
            "ModalitiesInStudy": modality, "StudyInstanceUID": study_uid}.items() if v}
        fields_ = ["StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                   "NumberOfStudyRelatedInstances", "AccessionNumber", "StudyDate"]
        found = self._call("the study search", self._client.search_for_studies,
                           search_filters=filters, fields=fields_)
        return [_study_match(Dataset.from_json(d)) for d in found]

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        found = self._call("the series search", self._client.search_for_series, study_instance_uid=study_uid,
                           fields=["SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances"])
        return sorted((_series_match(Dataset.from_json(d), study_uid) for d in found),
                      key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid))

    def retrieve(self, study_uid: str, dest: str | Path, *, series_uid: str = "", method: str | None = None,
                 sop_classes: Iterable[str] = (), progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> TransferReport:
        """WADO-RS a study (series by series, streamed) into ``dest``."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        series = [s for s in self.find_series(study_uid) if not series_uid or s.series_uid == series_uid]
        counts = [s.n_instances for s in series]
        report = TransferReport(expected=sum(counts) if None not in counts else None)
        for s in series:
            _check_cancel(cancel, "the retrieve")

            def fetch(s=s):
                for ds in self._client.iter_series(study_uid, s.series_uid):
                    _check_cancel(cancel, "the retrieve")
                    path = _instance_path(dest, ds)
                    write_dataset(ds, path)
                    report.files.append(str(path))
                    report.transferred = len(report.files)
                    if progress is not None:
                        progress(report.transferred, report.expected)

            self._call("WADO-RS", fetch)
        report.seconds = time.perf_counter() - t0
        return report

    def store(self, files: Sequence[str | Path], *, progress: Progress | None = None,
              cancel: threading.Event | None = None) -> TransferReport:
        """STOW-RS files; raises if the server refuses any instance."""
        t0 = time.perf_counter()
        report = TransferReport(expected=len(files))
        batch: list[Dataset] = []
        sent: list[str] = []

        def flush():
            if not batch:
                return
            result = self._call("STOW-RS", self._client.store_instances, batch)
            failed = result.get("FailedSOPSequence") if result is not None else None
            if failed:
                raise PacsError(f"{self.node.name} refused {len(failed)} of {len(batch)} instances (STOW-RS)",
                                "the server may not accept this kind of object: check its log")
            report.transferred += len(batch)
            report.files.extend(sent)
            batch.clear()
            sent.clear()
            if progress is not None:
                progress(report.transferred, report.expected)

        for f in files:
            _check_cancel(cancel, "sending to the PACS")
            batch.append(dcmread(f))
            sent.append(str(f))
            if len(batch) >= 16:
                flush()
        flush()
        report.seconds = time.perf_counter() - t0
        return report


def open_client(node: PacsNode, *, web: bool | None = None, password: str | None = None):
    """The client for ``node``: DICOMweb when ``web`` (or the node retrieves by WADO), else DIMSE."""
    use_web = web if web is not None else node.retrieve == "wado"
    return DicomWebClient(node, password) if use_web else DimseClient(node)


# --------------------------------------------------------------------------- into the study database


def pacs_folder() -> Path:
    from medstation.dicom.database import user_data_path
    return user_data_path() / "pacs"


def retrieve_study(node: PacsNode, study_uid: str, db, pool, *, method: str | None = None,
                   series_uid: str = "", progress: Progress | None = None,
                   cancel: threading.Event | None = None, password: str | None = None):
    """Retrieve a study into the user's PACS folder and import it into the study database.

    The study is staged first; only when every instance the PACS announced has
    arrived (and none failed) are the files moved into place and imported.
    Returns ``(TransferReport, ImportReport)``. Raises ``PacsError`` (or
    ``CancelledError``) with nothing added to the database.
    """
    from medstation.dicom.importer import import_paths
    method = method or node.retrieve
    client = open_client(node, web=(method == "wado"), password=password)
    match = client.find_studies(study_uid=study_uid)
    match = [m for m in match if m.study_uid == study_uid]
    if not match:
        raise PacsError(f"{node.name} has no study {study_uid}", "search again: it may have been deleted")
    announced = match[0].n_instances
    if series_uid:
        announced = next((s.n_instances for s in client.find_series(study_uid)
                          if s.series_uid == series_uid), None)
    root = pacs_folder()
    staging = root / "incoming" / uuid.uuid4().hex
    try:
        report = client.retrieve(study_uid, staging, series_uid=series_uid, method=method,
                                 sop_classes=match[0].sop_classes, progress=progress, cancel=cancel)
        _check_cancel(cancel, "the retrieve")
        expected = announced if announced is not None else report.expected
        received = len(set(report.files))
        if report.failed or (expected is not None and received < expected):
            raise PacsError(
                f"{node.name} sent {received} of {expected if expected is not None else '?'} instances "
                f"of the study ({report.failed} failed); nothing was imported",
                "try again; if it keeps failing, check the PACS log")
        final = root / "studies" / study_uid[:64]
        final.mkdir(parents=True, exist_ok=True)
        moved = []
        for f in report.files:
            target = final / Path(f).name
            os.replace(f, target)
            moved.append(str(target))
        report.files = moved
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    imported = import_paths(db, [str(final)], pool)
    log.info("retrieved %d instances from %s in %.1f s", len(report.files), node.name, report.seconds)
    return report, imported
