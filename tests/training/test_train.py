"""A few steps of the real training loop write a model the store loads."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from medstation.ai.detector import DEFAULT_INPUT
from medstation.ai.store import load_detector
from medstation.training.detector import TrainConfig, train
from medstation.training.synthetic import make_bank, make_phantom, render_sample


def test_samples_put_boxes_on_the_nodules():
    ph = make_phantom(5)
    rng = np.random.default_rng(0)
    n = max(ph.nodules, key=lambda n: n.diameter_mm)
    img, boxes = render_sample(ph, rng, DEFAULT_INPUT, 96, n.center)
    assert img.shape == (5, 96, 96) and 0 <= img.min() and img.max() <= 1
    centre = [(b[0] + b[2]) / 2 for b in boxes]
    assert any(abs(c - 48) < 1.0 for c in centre)  # the nodule we centred on
    # inside the box the centre slice is brighter (nodule) than the lung in the crop
    b = boxes[np.argmin([abs(c - 48) for c in centre])]
    cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
    assert img[2, cy, cx] > np.percentile(img[2], 10) + 0.15
    bank = make_bank(12, DEFAULT_INPUT, crop=64, seed=1, phantom_seeds=(0, 3))
    assert bank.images.shape == (12, 5, 64, 64) and bank.images.dtype == np.uint8
    again = make_bank(12, DEFAULT_INPUT, crop=64, seed=1, phantom_seeds=(0, 3))
    assert np.array_equal(bank.images, again.images)  # reproducible from the seed


def test_a_short_training_run_writes_a_loadable_model(tmp_path):
    log = io.StringIO()
    config = TrainConfig(samples=24, steps=3, batch_size=4, crop=64, version="0.0.1-test",
                         network={"widths": [8, 8, 16, 16], "fpn_channels": 32, "head_convs": 1})
    manifest = train(config, str(tmp_path / "m"), log=log)
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    assert events[-1]["event"] == "saved"
    assert [e["step"] for e in events if e["event"] == "step"] == [3]
    assert manifest["training_data"]["samples"] == 24
    assert "Not for clinical use" in manifest["intended_use"]
    det = load_detector(tmp_path / "m")
    assert det.version == "0.0.1-test"


def test_detector_training_cancelled_and_resumed_gives_the_same_model(tmp_path):
    import pytest

    from medstation.ai.store import load_state
    from medstation.core.errors import CancelledError

    net = {"widths": [8, 8, 16, 16], "fpn_channels": 32, "head_convs": 1}

    def config(**kw):
        return TrainConfig(samples=16, steps=8, batch_size=2, crop=64, epoch_length=3, network=net, **kw)

    train(config(), str(tmp_path / "whole"), log=None)
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        if calls["n"] == 5 + 1:  # the render's one progress call, then five training steps
            raise CancelledError()

    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(CancelledError, match="cancelled at step 5 of 8"):
        train(config(checkpoint=ckpt), str(tmp_path / "cut"), log=None, check=check)
    assert not (tmp_path / "cut").exists()
    log = io.StringIO()
    train(config(checkpoint=ckpt, resume=True), str(tmp_path / "cut"), log=log)
    assert {"event": "resumed", "step": 5, "epoch": 1} in [json.loads(x) for x in log.getvalue().splitlines()]
    _, whole = load_state(tmp_path / "whole")
    _, resumed = load_state(tmp_path / "cut")
    assert all(np.array_equal(whole[k].numpy(), resumed[k].numpy()) for k in whole)


def test_the_same_entry_trains_data_parallel_under_torchrun(tmp_path):
    """2 CPU processes (Gloo): one report, one model; its checkpoint resumes without torchrun."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}
    args = ["train-detector", "--samples", "16", "--steps", "4", "--batch-size", "2", "--epoch-length", "2",
            "--threads", "1"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", "-m", "medstation", *args,
                           "--out", str(tmp_path / "ddp"), "--checkpoint", str(tmp_path / "ddp.ckpt")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds.count("started") == 1 and kinds.count("saved") == 1, kinds  # rank 0 alone reports
    assert {"event": "distributed", "world_size": 2, "backend": "gloo"} in events
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    assert manifest["training"]["world_size"] == 2
    load_detector(tmp_path / "ddp")
    # the checkpoint holds the plain model: a single process resumes it to more steps
    more = subprocess.run([sys.executable, "-m", "medstation", *args[:3], "--steps", "6", "--batch-size", "2",
                           "--epoch-length", "2", "--out", str(tmp_path / "more"), "--checkpoint",
                           str(tmp_path / "ddp.ckpt"), "--resume"], capture_output=True, text=True,
                          timeout=600, env=env)
    assert more.returncode == 0, more.stderr[-3000:]
    resumed = [json.loads(line) for line in more.stdout.splitlines()
               if line.startswith('{"event": "resumed"')]
    assert resumed and resumed[0]["step"] == 4


def test_replay_samples_are_rendered_once_with_progress_then_read_from_the_cache(tmp_path):
    from medstation.core.errors import CancelledError
    from medstation.training.finetune import replay_bank

    events = []
    first, cached = replay_bank(24, DEFAULT_INPUT, crop=64, seed=5, cache_dir=tmp_path,
                                progress=events.append)
    assert not cached and len(first) == 24
    stages = [e for e in events if e["event"] == "stage"]
    assert stages[0]["done"] == 0 and stages[-1]["done"] == 24 and len(stages) >= 3  # it moves
    again, cached = replay_bank(24, DEFAULT_INPUT, crop=64, seed=5, cache_dir=tmp_path)
    assert cached and np.array_equal(again.images, first.images) and again.seeds == first.seeds
    assert all(np.array_equal(a, b) for a, b in zip(again.boxes, first.boxes, strict=True))
    other, cached = replay_bank(24, DEFAULT_INPUT, crop=64, seed=6, cache_dir=tmp_path)  # another seed
    assert not cached and not np.array_equal(other.images, first.images)
    for p in tmp_path.glob("replay-*.npz"):  # damaged cache files: rendered again
        p.write_bytes(b"torn")
    again, cached = replay_bank(24, DEFAULT_INPUT, crop=64, seed=5, cache_dir=tmp_path)
    assert not cached and np.array_equal(again.images, first.images)

    def cancel():
        raise CancelledError("fine-tuning was cancelled")

    with pytest.raises(CancelledError):  # a cancel while rendering stops it at the next progress tick
        replay_bank(40, DEFAULT_INPUT, crop=64, seed=7, cache_dir=tmp_path, check=cancel)
    assert len(list(tmp_path.glob("replay-*.npz"))) == 2  # nothing half-written for seed 7
