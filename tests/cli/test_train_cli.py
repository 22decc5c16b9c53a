"""medstation train: fine-tuning on the study database's labels, as the panel's child process runs it."""

from __future__ import annotations

import json
import os

import pytest

from tests._labelled import write_labelled_studies
from tests.cli.test_cli import medstation


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Three patients, two nodules each, imported and labelled from a LUNA16 CSV."""
    root = tmp_path_factory.mktemp("labelled")
    folders, csv = write_labelled_studies(root, 300, "FT")
    env = os.environ.copy()
    env["MEDSTATION_DATA"] = str(root / "data")
    env["MEDSTATION_USER_MODELS"] = str(root / "models")
    db = root / "studies.sqlite"
    proc = medstation("--db", str(db), "import", *(str(f) for f in folders), env=env)
    assert proc.returncode == 0, proc.stderr
    proc = medstation("--db", str(db), "labels", "import", str(csv), env=env)
    assert proc.returncode == 0, proc.stderr
    return root, db, env


@pytest.fixture(scope="module")
def finetuned(labelled):
    """nodule-detector@1.9.0, fine-tuned on two of the three patients; the run's process."""
    _root, db, env = labelled
    return medstation("--db", str(db), "train", "--epochs", "2", "--epoch-length", "3", "--batch-size", "2",
                      "--replay", "6", "--out-version", "1.9.0", env=env, timeout=600)


def test_fine_tuning_makes_a_new_version_with_its_parent_split_and_metrics(labelled, finetuned):
    root, db, env = labelled
    proc = finetuned
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    for kind in ("data", "baseline", "samples", "step", "validation", "saved"):
        assert kind in kinds, kinds
    # progress from the first line: typed stage events with counts (and an ETA once one is done)
    assert events[0] == {"event": "stage", "stage": "starting", "done": 0, "total": 1}
    stages = {e["stage"] for e in events if e["event"] == "stage"}
    assert {"validating the base", "preparing crops", "rendering synthetic replay samples",
            "validating the new version"} <= stages, stages
    crops = [e for e in events if e["event"] == "stage" and e["stage"] == "preparing crops"]
    assert [e["done"] for e in crops] == [0, 1, 2] and "eta_s" in crops[1]
    assert all("loss" in e for e in events if e["event"] == "step")
    data = next(e for e in events if e["event"] == "data")
    assert data["nodules"] == 6 and data["patients"] == 3 and data["validation_series"] == 1
    assert sum(e["event"] == "validation" for e in events) == 2 and "cpm" in events[kinds.index("validation")]
    saved = events[-1]
    manifest = json.loads((root / "models" / "nodule-detector-1.9.0" / "manifest.json").read_text())
    assert manifest["version"] == "1.9.0" and manifest["parent_version"] == saved["parent"]
    ft = manifest["training_data"]["fine_tuned_on"]
    assert len(ft["split"]["train"]) == 2 and len(ft["split"]["validation"]) == 1
    assert not set(ft["split"]["train"]) & set(ft["split"]["validation"])
    assert set(manifest["metrics"]["validation"]) == {"split", "new", "parent"}
    assert "calibration" not in manifest  # the parent's calibration does not hold for new weights
    # the registry lists it, not in use; the decoded crops and the replay samples were cached for the next run
    proc = medstation("models", "list", "--json", env=env)
    listed = {m["id"]: m for m in json.loads(proc.stdout)["models"]}
    assert "nodule-detector@1.9.0" in listed and not listed["nodule-detector@1.9.0"]["in_use"]
    cache = root / "data" / "cache" / "finetune"
    assert len(list(cache.glob("replay-*.npz"))) == 1 and len(list(cache.glob("*.npz"))) == 3


def test_dry_run_says_what_would_be_trained_on_and_warns_of_a_split_too_small(labelled):
    """Issue 28, item 1: the split by patient with its seed, the counts by source, the warning (one
    validation series of 2 nodules measures nothing), and nothing trained or written."""
    root, db, env = labelled
    before = sorted(p.name for p in (root / "models").iterdir()) if (root / "models").exists() else []
    proc = medstation("--db", str(db), "train", "--dry-run", "--json", "--seed", "3", env=env)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["event"] == "plan" and plan["seed"] == 3 and not plan["refused"]
    assert plan["counts"] == {"series": 3, "patients": 3, "nodules": 6, "negatives": 0}
    assert plan["by_source"] == {"imported": 6}
    assert len(plan["train"]["series"]) == 2 and len(plan["validation"]["series"]) == 1
    assert not set(plan["train"]["patients"]) & set(plan["validation"]["patients"])
    assert plan["warnings"] and "too small to measure" in plan["warnings"][0] and "1 series, 2 nodule" \
        in plan["warnings"][0]
    text = medstation("--db", str(db), "train", "--dry-run", env=env).stdout
    assert "6 nodule(s) and 0 negative(s) in 3 series of 3 patient(s); by source: imported 6" in text
    assert "validation: 1 series, 1 patient(s), 2 nodule(s)" in text and "warning:" in text
    after = sorted(p.name for p in (root / "models").iterdir()) if (root / "models").exists() else []
    assert after == before


def test_too_few_labels_is_refused_with_the_counts(tmp_path):
    env = os.environ.copy()
    env["MEDSTATION_USER_MODELS"] = str(tmp_path / "models")
    proc = medstation("--db", str(tmp_path / "empty.sqlite"), "train", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "too few labels to fine-tune: 0 nodule(s) in 0 series of 0 patient(s)" in proc.stderr
    dry = medstation("--db", str(tmp_path / "empty.sqlite"), "train", "--dry-run", env=env)
    assert dry.returncode == 2 and "refused: too few labels to fine-tune" in dry.stdout


def test_fine_tuning_under_torchrun_with_two_cpu_processes(labelled):
    import subprocess
    import sys

    root, db, env = labelled
    env = {**env, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29527", "-m", "medstation", "--db", str(db), "train",
                           "--epochs", "1", "--epoch-length", "2", "--batch-size", "2", "--replay", "4",
                           "--out-version", "1.9.1"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds.count("saved") == 1 and kinds.count("data") == 1, kinds
    assert {"event": "distributed", "world_size": 2, "backend": "gloo"} in events
    assert (root / "models" / "nodule-detector-1.9.1" / "manifest.json").exists()


def test_fine_tuning_resumes_after_kill_9(labelled):
    import signal
    import subprocess
    import sys

    root, db, env = labelled
    args = [sys.executable, "-m", "medstation", "--db", str(db), "train", "--epochs", "3",
            "--epoch-length", "2", "--batch-size", "2", "--replay", "4", "--out-version", "1.9.2"]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in child.stdout:  # a step of the second epoch: the first one's checkpoint is on disk
            ev = json.loads(line) if line.startswith("{") else {}
            if ev.get("event") == "step" and ev.get("epoch", 0) >= 2:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(60)
    assert child.returncode == -signal.SIGKILL
    assert not (root / "models" / "nodule-detector-1.9.2").exists()
    proc = medstation("--db", str(db), "train", *args[args.index("--epochs"):], "--resume", env=env,
                      timeout=600)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    resumed = next(e for e in events if e["event"] == "resumed")
    assert resumed["step"] >= 2 and resumed["epoch"] >= 1
    assert (root / "models" / "nodule-detector-1.9.2" / "manifest.json").exists()



def test_fine_tuning_trains_where_detection_runs_by_default():
    """``train --device`` is ``auto`` as ``detect``'s is: CUDA when the machine has it, else the CPU;
    a device the machine lacks is refused with the fix."""
    import torch

    from medstation.cli import build_parser
    from medstation.cli.train import _training_device
    from medstation.core.errors import ModelError

    args = build_parser().parse_args(["train"])
    assert args.device == "auto"
    assert _training_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert _training_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="not available here"):
            _training_device("cuda")
