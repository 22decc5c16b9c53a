"""``medstation pacs ...`` and ``medstation deidentify`` against a real Orthanc."""

from __future__ import annotations

import json
from pathlib import Path

from pydicom import dcmread

from medstation.cli import main
from tests._orthanc import PASSWORD


def node_args(orthanc, *extra):
    return ["--host", "127.0.0.1", "--port", str(orthanc.dicom_port), "--aet", orthanc.aet,
            "--store-port", str(orthanc.store_port), "--web", orthanc.dicomweb_url, "--user", "reader",
            "--timeout", "5", *extra]


def test_echo_find_retrieve(orthanc, stored_study, capsys, monkeypatch):
    monkeypatch.setenv("MEDSTATION_PACS_PASSWORD", PASSWORD)
    truth, files = stored_study
    assert main(["pacs", "echo", *node_args(orthanc)]) == 0
    assert "answered" in capsys.readouterr().out
    assert main(["pacs", "find", *node_args(orthanc, "--json", "--patient-id", truth.patient_id)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["study_uid"] for r in rows] == [truth.study_uid]
    assert main(["pacs", "find", *node_args(orthanc, "--via-web", "--json", "--study", truth.study_uid)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(truth.series)
    assert main(["pacs", "retrieve", truth.study_uid, *node_args(orthanc, "--method", "move", "--json")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["transfer"]["transferred"] == len(files)
    assert set(out["import"]["series"]) == {s.series_uid for s in truth.series}


def test_unreachable_pacs_is_one_line(orthanc, capsys):
    code = main(["pacs", "echo", "--host", "127.0.0.1", "--port", "9", "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot be reached" in err and "Traceback" not in err


def test_deidentify_command(small_study, tmp_path, capsys):
    out = tmp_path / "anon"
    assert main(["deidentify", small_study.folder, "--out", str(out), "--date-shift", "-10", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == sum(len(s.files) for s in small_study.series)
    first = dcmread(sorted(Path(out).rglob("*.dcm"))[0])
    assert first.PatientIdentityRemoved == "YES" and first.PatientID != small_study.patient_id
