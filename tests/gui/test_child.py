"""ChildProcessTask: a real child process, its JSON lines as events, cancel (terminate, then kill)."""

from __future__ import annotations

import json
import sys

import pytest

from medstation.gui.child import ChildProcessTask

CHILD = r"""
import json, sys, time
print("starting (not JSON)", flush=True)
for n in range(1, 4):
    print(json.dumps({"event": "step", "step": n, "steps": 3}), flush=True)
print("{broken", flush=True)
print("warning: something on stderr", file=sys.stderr, flush=True)
print(json.dumps({"event": "render", "done": 5, "total": 5}), end="", flush=True)
sys.exit(3)
"""

STUBBORN = r"""
import json, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(json.dumps({"event": "started"}), flush=True)
time.sleep(60)
"""


def test_json_lines_become_events_and_the_exit_status_is_reported(qtbot):
    task = ChildProcessTask(["-c", CHILD], program=sys.executable)
    progress = []
    task.progress.connect(lambda d, t: progress.append((d, t)))
    with qtbot.waitSignal(task.finished, timeout=30000) as sig:
        task.start()
    result = sig.args[0]
    assert [e["event"] for e in task.events] == ["step", "step", "step", "render"]
    assert progress == [(1, 3), (2, 3), (3, 3), (5, 5)]  # the last line had no newline: still read
    assert result.exit_code == 3 and not result.ok and not result.cancelled and not result.crashed
    assert "something on stderr" in result.stderr_tail
    assert result.describe() == "failed (exit code 3): warning: something on stderr"


def test_cancel_kills_a_child_that_ignores_terminate(qtbot):
    task = ChildProcessTask(["-c", STUBBORN], program=sys.executable, grace_s=0.5)
    with qtbot.waitSignal(task.event, timeout=30000):
        task.start()
    with qtbot.waitSignal(task.finished, timeout=10000) as sig:
        task.cancel()
    result = sig.args[0]
    assert result.cancelled and not result.ok and not task.running
    assert result.describe() == "cancelled"


def test_a_missing_program_is_reported_not_raised(qtbot, tmp_path):
    task = ChildProcessTask([], program=str(tmp_path / "no-such-program"))
    with qtbot.waitSignal(task.finished, timeout=10000) as sig:
        task.start()
    assert sig.args[0].crashed and "could not start" in sig.args[0].stderr_tail


@pytest.mark.slow
def test_medstation_training_cancels_with_a_checkpoint_and_resumes(qtbot, tmp_path):
    ckpt, out = tmp_path / "train.ckpt", tmp_path / "model"
    args = ["train-detector", "--out", str(out), "--samples", "8", "--steps", "30", "--batch-size", "2",
            "--epoch-length", "10", "--threads", "1", "--checkpoint", str(ckpt), "--version", "0.0.1-test"]
    first = ChildProcessTask(args, name="train", grace_s=60)
    first.event.connect(lambda e: first.cancel() if e.get("event") == "rendered" else None)
    with qtbot.waitSignal(first.finished, timeout=180000) as sig:
        first.start()
    stopped = sig.args[0]
    assert stopped.cancelled and stopped.exit_code == 130, stopped.stderr_tail
    assert "cancelled" in stopped.stderr_tail and ckpt.exists() and not out.exists()
    assert stopped.last_event["event"] == "finished" and stopped.last_event["reason"] == "cancelled"
    done_at = stopped.last_event["step"]
    second = ChildProcessTask(args + ["--resume"], name="train")
    with qtbot.waitSignal(second.finished, timeout=300000) as sig:
        second.start()
    result = sig.args[0]
    assert result.ok, result.stderr_tail
    resumed = next(e for e in second.events if e["event"] == "resumed")
    assert resumed["step"] == done_at < 30
    assert second.events[-1]["event"] == "saved"
    assert json.loads((out / "manifest.json").read_text())["version"] == "0.0.1-test"
