"""A few steps of the real training loop write a model the store loads."""

from __future__ import annotations

import io
import json

import numpy as np

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
    # inside the box the centre slice is brighter (nodule) than the lung around it
    b = boxes[np.argmin([abs(c - 48) for c in centre])]
    cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
    assert img[2, cy, cx] > img[2, cy, int(b[0]) - 4 if b[0] > 4 else int(b[2]) + 4] or n.hu < 0
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
