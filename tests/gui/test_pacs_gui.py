"""The PACS dialog, Send to PACS and the de-identified export, on the real window with a real Orthanc."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from medstation.dicom.pacs import DimseClient, save_nodes
from tests._orthanc import Orthanc
from tests.conftest import make_node, nodule_finding
from tests.gui.conftest import import_and_wait, open_and_wait


def test_search_retrieve_and_open(qtbot, window, orthanc, stored_study):
    truth, files = stored_study
    save_nodes([make_node(orthanc, retrieve="get")])
    dialog = window.show_pacs()
    assert dialog.current_node().name == "test-orthanc"
    dialog.patient_id.setText(truth.patient_id)
    with qtbot.waitSignal(dialog.searched, timeout=30000) as sig:
        dialog.search()
    assert [m.study_uid for m in sig.args[0]] == [truth.study_uid]
    assert dialog.table.rowCount() == 1 and dialog.table.item(0, 1).text() == truth.patient_id
    with qtbot.waitSignal(window.series_loaded, timeout=60000):
        dialog.retrieve()
    assert window.state.volume is not None
    assert window.state.volume.voxels.shape == tuple(truth.series[0].shape)
    assert "retrieved" in dialog.status.text().lower()
    assert len(window.db.index.series()) == len(truth.series)


def test_search_failure_is_shown_not_raised(qtbot, window, orthanc):
    save_nodes([make_node(orthanc, ae_title="WRONG_AET")])
    dialog = window.show_pacs()
    with qtbot.waitSignal(dialog.failed, timeout=30000):
        dialog.search()
    assert "rejected the association" in dialog.status.text()
    assert dialog.search_button.isEnabled()


def test_send_findings_to_pacs_and_export_deidentified(qtbot, window, small_study, tmp_path):
    server = Orthanc(tmp_path / "orthanc").start()
    try:
        node = make_node(server)
        import_and_wait(qtbot, window, [small_study.folder])
        open_and_wait(qtbot, window, small_study.series[0].series_uid)
        window.state.findings.set_threshold(0.5)
        window.state.findings.set_items([nodule_finding(window.state.volume)])
        task = window.send_results(node)
        with qtbot.waitSignal(task.finished, timeout=60000):
            pass
        study = DimseClient(node).find_studies(study_uid=small_study.study_uid)
        assert {"1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.66.4"} <= set(study[0].sop_classes)
        assert "sent to test-orthanc" in window.message.text()

        out = tmp_path / "anon"
        task = window.export_deidentified(str(out))
        with qtbot.waitSignal(task.finished, timeout=60000):
            pass
        exported = sorted(Path(out).rglob("*.dcm"))
        assert len(exported) == sum(len(s.files) for s in small_study.series)
        assert dcmread(exported[0]).PatientIdentityRemoved == "YES"
        assert "De-identified" in window.message.text()
    finally:
        server.stop()
