"""SIGTERM ends a command as a normal exit does (issue 26): its ``finally`` blocks run, the worker
processes stop, exit status 143 with one line; the window closes as if the user closed it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, sys, time
import medstation.dicom as dicom
from medstation.cli import main

real = dicom.import_paths

def import_then_wait(db, paths, pool, **kw):  # the real import, then long work still holding the pool
    report = real(db, paths, pool, **kw)
    print(json.dumps({"workers": [w.process.pid for w in pool._workers]}), flush=True)
    time.sleep(120)
    return report

dicom.import_paths = import_then_wait
sys.exit(main(["--db", sys.argv[1], "import", sys.argv[2]]))
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_during_a_command_cleans_up_and_exits_143(small_study, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "db.sqlite"), small_study.folder],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = json.loads(proc.stdout.readline())["workers"]
    assert workers and all(_alive(p) for p in workers)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated (SIGTERM); cleaned up" in err, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)
    # the database was closed cleanly: it opens without being called damaged, with the import in it
    from medstation.dicom import StudyDatabase

    with StudyDatabase(tmp_path / "db.sqlite") as db:
        assert not db.needs_rebuild and db.index.counts()["instances"] == 32


def test_sigterm_closes_the_window_like_the_user(tmp_path):
    """The window's close runs (its settings are saved, the jobs stopped) and the exit status is 0."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    settings = Path(env["MEDSTATION_DATA"]) / "settings.ini"
    db = tmp_path / "db.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "medstation", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not db.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    # the window is built and shown after the database opens: wait until it answers as a running
    # instance does (its event loop is up), however busy the machine is
    from medstation.gui.instance import send_to_running, server_name

    name = server_name(str(db.resolve()))
    while proc.poll() is None and time.monotonic() < deadline and not send_to_running(name, []):
        time.sleep(0.3)
    assert proc.poll() is None and not settings.exists()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert settings.exists()  # saved by the window's close, as when the user closes it
