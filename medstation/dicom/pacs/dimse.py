"""DIMSE client (pynetdicom): C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE against one node."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
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
from medstation.core.files import atomic_write_bytes
from medstation.dicom.pacs.nodes import PacsNode
from medstation.dicom.pacs.query import (
    PatientMatch,
    Progress,
    SeriesMatch,
    StudyMatch,
    TransferReport,
    _check_cancel,
    _date_range,
    _instance_path,
    _int,
    _patient_match,
    _series_match,
    _study_match,
    _text,
)

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



def peer_addresses(host: str) -> set[str]:
    """The IP addresses ``host`` resolves to (empty if it does not resolve)."""
    import socket

    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return set()


def facing_address(host: str, port: int) -> str:
    """The local address of the interface that reaches ``host`` (the C-MOVE listener binds there,
    not on every interface); 0.0.0.0 when the route cannot be found."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port or 104))  # no packet is sent: this only picks the route
            return str(s.getsockname()[0])
    except OSError:
        return "0.0.0.0"


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
                  cancel: threading.Event | None, study_uid: str = "", peers: set[str] | None = None):
        """The C-STORE handler of a retrieve: only instances of ``study_uid`` (when given), only from
        an address in ``peers`` (when given); anything else is refused and counted."""
        lock = threading.Lock()

        def refuse() -> int:
            with lock:
                report.refused += 1
            return 0xC000  # refused: cannot understand (not an instance this retrieve asked for)

        def on_store(event):
            if cancel is not None and cancel.is_set():
                return 0xA700  # refuse: the retrieve is being cancelled
            if peers is not None and str(getattr(event.assoc.requestor, "address", "")) not in peers:
                log.warning("refused an instance from %s: not the PACS", event.assoc.requestor.address)
                return refuse()
            try:
                ds = event.dataset
                if study_uid and str(ds.get("StudyInstanceUID", "")) != study_uid:
                    log.warning("refused an instance of another study during a retrieve")
                    return refuse()
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
        scp.require_calling_aet = [node.ae_title]  # only the PACS may push (its AE title) ...
        for cx in AllStoragePresentationContexts:
            scp.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        peers = peer_addresses(node.host)  # ... from its host ...
        handlers = [(evt.EVT_C_STORE, self._receiver(dest, report, progress, cancel, study_uid=study_uid,
                                                     peers=peers or None))]  # ... this study only
        try:
            server = scp.start_server((facing_address(node.host, int(node.port)), int(node.store_port)),
                                      block=False, evt_handlers=handlers)
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
