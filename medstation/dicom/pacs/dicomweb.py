"""DICOMweb client (dicomweb-client): QIDO-RS, WADO-RS and STOW-RS against one node."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydicom import Dataset, dcmread

from medstation.core.errors import PacsError
from medstation.dicom._write import write_dataset
from medstation.dicom.pacs.nodes import PacsNode, node_password
from medstation.dicom.pacs.query import (
    PatientMatch,
    Progress,
    SeriesMatch,
    StudyMatch,
    TransferReport,
    _check_cancel,
    _date_range,
    _instance_path,
    _series_match,
    _study_match,
)

log = logging.getLogger(__name__)


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
