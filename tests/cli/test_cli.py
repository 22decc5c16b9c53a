"""The medstation command, run as a user runs it."""

import json
import os
import subprocess
import sys


def medstation(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "medstation", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or os.environ.copy())


def test_info_json_describes_the_study(small_study):
    proc = medstation("info", "--json", small_study.folder)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["counts"]["series"] == 2 and rep["counts"]["problems"] == 0
    series = rep["patients"][0]["studies"][0]["series"]
    assert series[0]["shape"] == [24, 64, 64] and series[0]["units"] == "HU"
    assert series[1]["transfer_syntax_names"] == ["RLE Lossless"]
    assert all(se["loaded"] for se in series)


def test_import_twice_then_info_text(small_study):
    first = medstation("import", "--json", small_study.folder)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["report"]["added"] == 32
    second = json.loads(medstation("import", "--json", small_study.folder).stdout)
    assert second["report"]["added"] == 0 and second["counts"]["instances"] == 32
    text = medstation("info", small_study.folder).stdout
    assert "Series 1 CT \"small\": 24 slices" in text and "spacing 2.5 x 5 x 5 mm" in text


def test_bad_path_is_one_clear_line():
    proc = medstation("import", "/no/such/folder")
    assert "Traceback" not in proc.stderr
    assert "no such file or folder" in proc.stdout


def test_demo_runs(tmp_path):
    proc = medstation("demo")
    assert proc.returncode == 0, proc.stderr
    assert "not for clinical use" in proc.stdout and "Chest 1.25 mm lung" in proc.stdout
