"""``medstation selftest``: passes on a working install, fails (exit 1, the step named) on a broken one."""

from __future__ import annotations

import json

from medstation.cli import main
from tests.cli.test_cli import medstation


def test_selftest_passes_and_writes_findings(tmp_path):
    # a process of its own: the window step runs (and quits) a Qt application
    shot = tmp_path / "window.png"
    proc = medstation("selftest", "--gui", "--json", "--keep", str(tmp_path / "st"),
                      "--screenshot", str(shot), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and [r["step"] for r in report["steps"]][:3] == [
        "write demo study", "import and load", "render slices"]
    assert report["steps"][-1]["step"] == "main window" and shot.stat().st_size > 10000
    # the window step shows each job: findings with the heatmap, the follow-up panel after its run and
    # prediction, the fine-tuning panel's chart during a real training child (cancelled)
    for extra in ("window-followup.png", "window-finetune.png"):
        assert (tmp_path / extra).stat().st_size > 10000, extra
        assert extra in report["steps"][-1]["detail"]
    # the three jobs: detection (above), a follow-up with a prediction, a fine-tune used and rolled back
    names = [r["step"] for r in report["steps"]]
    assert "follow-up: 3 studies, tracks, prediction" in names
    assert "fine-tune: a new version, used, rolled back" in names
    findings = json.loads((tmp_path / "st" / "findings" / "findings.json").read_text())
    assert len(findings) >= 3 and all(f["model_name"] == "nodule-detector" for f in findings)
    assert list((tmp_path / "st" / "findings").glob("SR_*.dcm"))


def test_selftest_fails_without_a_model(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSTATION_MODELS", str(tmp_path / "no-models"))
    assert main(["selftest", "--keep", str(tmp_path / "st")]) == 1
    out = capsys.readouterr().out
    assert "FAIL run the detector" in out and out.rstrip().endswith("FAILED")


def test_selftest_leaves_no_throw_away_folder(capsys, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setenv("MEDSTATION_MODELS", str(tmp_path / "no-models"))  # fails fast, after writing
    main(["selftest"])
    assert not list(tmp_path.glob("medstation-selftest-*"))
