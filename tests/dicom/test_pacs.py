"""PACS client against a real Orthanc started by the tests, and against peers that misbehave."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from medstation.core.errors import CancelledError, PacsError
from medstation.dicom import StudyDatabase, WorkerPool
from medstation.dicom.pacs import (
    DicomWebClient,
    DimseClient,
    PacsNode,
    load_nodes,
    pacs_folder,
    retrieve_study,
    save_nodes,
)
from tests._orthanc import ORTHANC, Orthanc, free_port
from tests.conftest import make_node

pytestmark = pytest.mark.skipif(not Path(ORTHANC).exists(),
                                reason="Orthanc is not installed (packaging/dev-setup.sh installs it)")


# ------------------------------------------------------------------ echo and search


def test_echo_over_dimse_and_dicomweb(node):
    assert DimseClient(node).echo() < 5
    assert DicomWebClient(node).echo() < 5


def test_wrong_password_is_an_auth_error(node):
    with pytest.raises(PacsError, match="user name or password"):
        DicomWebClient(node, password="wrong").echo()


def test_find_by_patient_id_and_by_date(node, stored_study):
    truth, files = stored_study
    client = DimseClient(node)
    found = client.find_studies(patient_id=truth.patient_id)
    assert [s.study_uid for s in found] == [truth.study_uid]
    assert found[0].n_instances == len(files) and found[0].n_series == len(truth.series)
    assert found[0].modalities == ["CT"]
    d = truth.study_date
    assert [s.study_uid for s in client.find_studies(date_from=d, date_to=d)] == [truth.study_uid]
    assert [s.study_uid for s in client.find_studies(date_from=f"{d[:4]}-{d[4:6]}-01")] == [truth.study_uid]
    assert client.find_studies(date_to="19991231") == []
    assert client.find_studies(patient_id="NO-SUCH-PATIENT") == []
    patients = client.find_patients(patient_id=truth.patient_id)
    assert [p.patient_id for p in patients] == [truth.patient_id]
    series = client.find_series(truth.study_uid)
    assert {s.series_uid for s in series} == {s.series_uid for s in truth.series}
    assert sum(s.n_instances for s in series) == len(files)


def test_qido_search(node, stored_study):
    truth, files = stored_study
    web = DicomWebClient(node)
    assert [s.study_uid for s in web.find_studies(patient_id=truth.patient_id)] == [truth.study_uid]
    # a name with a component separator and a wildcard (Orthanc does not decode %5E / %2A)
    assert [s.study_uid for s in web.find_studies(patient_name="Synthetic^Ch*")] == [truth.study_uid]
    d = truth.study_date
    assert [s.study_uid for s in web.find_studies(date_from=d, date_to=d)] == [truth.study_uid]
    assert web.find_studies(patient_id="NO-SUCH-PATIENT") == []
    assert sum(s.n_instances for s in web.find_series(truth.study_uid)) == len(files)


def test_bad_dates_are_refused(node):
    with pytest.raises(PacsError, match="not a date"):
        DimseClient(node).find_studies(date_from="2026/01/05")


# ------------------------------------------------------------------ retrieve into the study database


@pytest.mark.parametrize("method", ["get", "move", "wado"])
def test_retrieve_into_database_and_load(node, stored_study, method):
    truth, files = stored_study
    seen = []
    with StudyDatabase() as db, WorkerPool(1, timeout=20) as pool:
        report, imported = retrieve_study(node, truth.study_uid, db, pool, method=method,
                                          progress=lambda n, total: seen.append((n, total)))
        assert report.transferred == len(files) == len(report.files)
        assert seen[-1] == (len(files), len(files))
        assert imported.series == {s.series_uid: len(s.files) for s in truth.series}
        # the retrieved pixels are the ones that were sent
        by_uid = {str(dcmread(f).SOPInstanceUID): f for f in files}
        for f in report.files[:3]:
            got = dcmread(f)
            assert (got.pixel_array == dcmread(by_uid[str(got.SOPInstanceUID)]).pixel_array).all()
        from medstation.core.series import SeriesRef
        from medstation.dicom import open_series
        opened = open_series(SeriesRef(truth.study_uid, truth.series[0].series_uid), db=db, pool=pool)
        assert opened.volume.voxels.shape == tuple(truth.series[0].shape)
        assert opened.info["patient_id"] == truth.patient_id
    assert not any((pacs_folder() / "incoming").iterdir())


def test_retrieve_can_be_cancelled(node, stored_study):
    truth, _ = stored_study
    cancel = threading.Event()

    def progress(n, total):
        if n >= 3:
            cancel.set()

    with StudyDatabase() as db, WorkerPool(1, timeout=20) as pool:
        with pytest.raises(CancelledError):
            retrieve_study(node, truth.study_uid, db, pool, method="get", progress=progress, cancel=cancel)
        assert db.index.counts()["series"] == 0


def test_nodes_round_trip_and_validation(tmp_path):
    nodes = [PacsNode("a", port=4242), PacsNode("b", host="pacs.local", retrieve="move", store_port=11113)]
    save_nodes(nodes, tmp_path / "nodes.json")
    assert load_nodes(tmp_path / "nodes.json") == nodes
    for bad in (dict(ae_title="X" * 17), dict(port=0), dict(retrieve="ftp"), dict(retrieve="wado")):
        with pytest.raises(PacsError):
            PacsNode("bad", **bad).validate()
    (tmp_path / "broken.json").write_text("{nodes: ")
    with pytest.raises(PacsError, match="broken.json"):
        load_nodes(tmp_path / "broken.json")


@pytest.mark.parametrize("node, says", [
    ({"name": 5}, "name is a int"), ({"name": "a", "retries": 1e9}, "retries is a float"),
    ({"name": "a", "retries": 1_000_000}, "retries out of range"),
    ({"name": "a", "timeout": float("nan")}, "timeout nan s out of range"),
    ({"name": "a", "timeout": -1}, "timeout -1 s out of range"),
    ({"name": "a", "port": "104"}, "port is a str"),
    ({"name": "a", "port": True}, "port is a bool"), ({"name": "a", "host": "a b"}, "not a host name"),
    ({"name": "a", "dicomweb_url": "file:///etc/passwd"}, "is not http"), ("x", "a str, not an object"),
])
def test_a_malformed_node_file_is_one_line_naming_it(tmp_path, node, says):
    path = tmp_path / "pacs_nodes.json"
    path.write_text(json.dumps({"nodes": [node]}))
    with pytest.raises(PacsError, match=says) as err:
        load_nodes(path)
    assert str(path) in str(err.value)
    for text in ('{"nodes": 5}', "[" * 100_000, '{"nodes": [' + "[" * 50_000 + "]}"):
        path.write_text(text)
        with pytest.raises(PacsError, match="could not be read"):
            load_nodes(path)


# ------------------------------------------------------------------ bad peers


def test_unreachable_host_fails_within_timeout(orthanc):
    closed = free_port()
    node = make_node(orthanc, port=closed, dicomweb_url=f"http://127.0.0.1:{closed}/dicom-web",
                     timeout=2.0, retries=1)
    t0 = time.monotonic()
    with pytest.raises(PacsError, match="cannot be reached"):
        DimseClient(node).echo()
    with pytest.raises(PacsError, match="cannot be reached"):
        DicomWebClient(node).find_studies(patient_id="X")
    assert time.monotonic() - t0 < 15


def test_silent_host_fails_within_timeout(orthanc):
    """A peer that accepts the TCP connection and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        node = make_node(orthanc, port=port, timeout=1.5, retries=0)
        t0 = time.monotonic()
        with pytest.raises(PacsError):
            DimseClient(node).echo()
        assert time.monotonic() - t0 < 10


def test_rejected_association(orthanc):
    # a generous timeout: Orthanc answers at once, but it may still be finishing the C-GET the
    # cancel test above walked away from when the whole suite loads this machine
    node = make_node(orthanc, ae_title="NOT_ORTHANC", timeout=30.0)
    with pytest.raises(PacsError, match="rejected the association") as exc:
        DimseClient(node).find_studies(patient_id="X")
    assert "NOT_ORTHANC" in exc.value.hint


class _QuittingPacs:
    """A real DICOM peer (pynetdicom) whose C-GET / C-MOVE sends a few instances, then aborts."""

    def __init__(self, files: list[str], send: int = 3) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
        )
        self.files, self.send = files, send
        self.ae = AE(ae_title="QUITTER")
        self.ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        self.ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        for cx in AllStoragePresentationContexts:
            self.ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES,
                                          scu_role=True, scp_role=True)
        self.port = free_port()
        handlers = [(evt.EVT_C_FIND, self.on_find), (evt.EVT_C_GET, self.on_get)]
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def on_find(self, event):
        ds = dcmread(self.files[0], stop_before_pixels=True)
        from pydicom import Dataset
        out = Dataset()
        out.QueryRetrieveLevel = "STUDY"
        out.StudyInstanceUID = ds.StudyInstanceUID
        out.PatientID = ds.PatientID
        out.NumberOfStudyRelatedInstances = len(self.files)
        yield 0xFF00, out

    def on_get(self, event):
        yield len(self.files)
        for f in self.files[:self.send]:
            yield 0xFF00, dcmread(f)
        event.assoc.abort()  # the server goes away mid-transfer

    def close(self):
        self.server.shutdown()


def test_server_that_stops_mid_transfer(orthanc, small_study):
    files = sorted(str(p) for p in Path(small_study.folder).rglob("*.dcm"))
    peer = _QuittingPacs(files, send=3)
    try:
        node = make_node(orthanc, port=peer.port, ae_title="QUITTER", timeout=5.0)
        t0 = time.monotonic()
        with StudyDatabase() as db, WorkerPool(1, timeout=20) as pool:
            with pytest.raises(PacsError) as exc:
                retrieve_study(node, small_study.study_uid, db, pool, method="get")
            assert db.index.counts()["series"] == 0 and db.index.counts()["instances"] == 0
        assert time.monotonic() - t0 < 20
        assert "stopped" in exc.value.reason or "of " in exc.value.reason
        assert not any((pacs_folder() / "incoming").iterdir())
        assert not (pacs_folder() / "studies").exists() or not any((pacs_folder() / "studies").rglob("*.dcm"))
    finally:
        peer.close()


def test_web_server_that_stops_mid_transfer(orthanc, small_study):
    """A DICOMweb peer that announces a study, then cuts a WADO-RS response in the middle."""
    import http.server
    import json

    ds = dcmread(sorted(Path(small_study.folder).rglob("*.dcm"))[0], stop_before_pixels=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.startswith("/dicom-web/studies?") or "/series?" in self.path or \
                    self.path.endswith("/series"):
                body = json.dumps([{
                    "0020000D": {"vr": "UI", "Value": [str(ds.StudyInstanceUID)]},
                    "0020000E": {"vr": "UI", "Value": [str(ds.SeriesInstanceUID)]},
                    "00201208": {"vr": "IS", "Value": [24]}, "00201209": {"vr": "IS", "Value": [24]}}])
                self.send_response(200)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())
                return
            self.send_response(200)
            self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=XX')
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"--XX\r\nContent-Type: application/dicom\r\n\r\n" + b"\0" * 500)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        node = make_node(orthanc, dicomweb_url=url, retrieve="wado", timeout=3.0)
        t0 = time.monotonic()
        with StudyDatabase() as db, WorkerPool(1, timeout=20) as pool:
            with pytest.raises(PacsError):
                retrieve_study(node, str(ds.StudyInstanceUID), db, pool, method="wado")
            assert db.index.counts()["series"] == 0
        assert time.monotonic() - t0 < 15
    finally:
        server.shutdown()


# ------------------------------------------------------------------ SR and SEG through the PACS


def test_sr_and_seg_stored_retrieved_and_read_back(tmp_path, small_study, small_volume):
    """A study holding SR and SEG: sent by C-STORE and STOW-RS, retrieved by C-GET and WADO-RS."""
    from medstation.dicom.results import export_results, read_seg, read_sr
    from tests.conftest import nodule_finding

    volume, uids = small_volume
    server = Orthanc(tmp_path / "orthanc").start()
    try:
        node = make_node(server)
        DimseClient(node).store(sorted(str(p) for p in Path(small_study.folder).rglob("*.dcm")))
        first = [nodule_finding(volume)]
        second = [nodule_finding(volume), nodule_finding(volume, finding_id="F2", score=0.5)]
        second[1].boxes = [(b[0], b[1] + 8, b[2] + 8, b[3] + 8, b[4] + 8, b[5]) for b in second[1].boxes]
        a = export_results(first, volume.sources, tmp_path / "a", voxels=volume.voxels)
        b = export_results(second, volume.sources, tmp_path / "b", voxels=volume.voxels)
        assert DimseClient(node).store([a.sr, a.seg]).transferred == 2
        assert DicomWebClient(node).store([b.sr, b.seg]).transferred == 2
        study = DimseClient(node).find_studies(study_uid=small_study.study_uid)[0]
        assert {"1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.66.4"} <= set(study.sop_classes)
        wanted = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): (p, f)
                  for p, f in ((a.sr, first), (a.seg, first), (b.sr, second), (b.seg, second))}
        for method in ("get", "wado"):
            with StudyDatabase() as db, WorkerPool(1, timeout=20) as pool:
                report, imported = retrieve_study(node, small_study.study_uid, db, pool, method=method)
                assert not imported.errors
            got = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in report.files}
            assert set(wanted) <= set(got), method
            for uid, (sent, findings) in wanted.items():
                if "SR_" in Path(sent).name:
                    back, _ = read_sr(got[uid], uids, volume.patient_to_index)
                    assert [f.to_dict() for f in back] == [f.to_dict() for f in findings], method
                else:
                    assert {k: sorted(m) for k, m in read_seg(got[uid], uids).items()} == \
                        {k: sorted(m) for k, m in read_seg(sent, uids).items()}
    finally:
        server.stop()


def test_peer_without_the_requested_service(orthanc):
    """A reachable peer that supports only C-ECHO: a search says so instead of 'cannot be reached'."""
    from pynetdicom import AE
    ae = AE(ae_title="ECHOONLY")
    ae.add_supported_context("1.2.840.10008.1.1")
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    try:
        node = make_node(orthanc, port=port, ae_title="ECHOONLY", timeout=3.0, retries=2)
        assert DimseClient(node).echo() < 5
        t0 = time.monotonic()
        with pytest.raises(PacsError, match="accepts none of the requested services"):
            DimseClient(node).find_studies(patient_id="X")
        assert time.monotonic() - t0 < 5  # not retried as if unreachable
    finally:
        server.shutdown()


def test_the_move_listener_takes_only_the_study_from_the_pacs(tmp_path):
    """The C-STORE handler of a C-MOVE refuses other studies and other hosts, and counts them."""
    from types import SimpleNamespace

    from pydicom import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medstation.dicom.pacs import DimseClient, PacsNode, TransferReport
    from medstation.dicom.pacs.dimse import facing_address, peer_addresses

    def event(study, address="127.0.0.1"):
        ds = Dataset()
        ds.StudyInstanceUID, ds.SOPInstanceUID = study, generate_uid()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta = Dataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

        def encoded(include_meta=True):
            from io import BytesIO

            from pydicom import dcmwrite
            buf = BytesIO()
            dcmwrite(buf, ds, enforce_file_format=True)
            return buf.getvalue()

        return SimpleNamespace(dataset=ds, encoded_dataset=encoded,
                               assoc=SimpleNamespace(requestor=SimpleNamespace(address=address)))

    report = TransferReport()
    client = DimseClient(PacsNode("pacs", host="127.0.0.1", port=4242))
    handler = client._receiver(tmp_path, report, None, None, study_uid="1.2.3", peers={"127.0.0.1"})
    assert handler(event("1.2.3")) == 0x0000
    assert handler(event("9.9.9")) == 0xC000  # another study
    assert handler(event("1.2.3", address="10.1.2.3")) == 0xC000  # another host
    assert report.transferred == 1 and report.refused == 2 and len(list(tmp_path.iterdir())) == 1
    assert "127.0.0.1" in peer_addresses("localhost") and facing_address("127.0.0.1", 4242) == "127.0.0.1"
