"""The trainer: one step plus handlers; checkpoints resume to the same weights; cancel; early stop."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from medstation.core.errors import CancelledError, ModelError
from medstation.training.trainer import (
    COMPLETED,
    CancelFlag,
    Checkpoint,
    EarlyStopping,
    JsonLinesLogger,
    LRSchedule,
    Trainer,
    Validation,
    load_checkpoint,
)

X = torch.linspace(-1, 1, 64).unsqueeze(1)
Y = 3 * X - 0.5


def _trainer(steps=40, epoch_length=10, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=15, gamma=0.5)

    def step(t, _it):
        idx = torch.from_numpy(t.rng.integers(0, len(X), 8))
        loss = torch.nn.functional.mse_loss(t.model(X[idx]), Y[idx])
        t.optimizer.zero_grad()
        loss.backward()
        t.optimizer.step()
        return {"mse": float(loss.detach())}

    t = Trainer(step, model=model, optimizer=opt, scheduler=sched, max_iterations=steps,
                epoch_length=epoch_length, rng=np.random.default_rng(seed))
    return t.attach(LRSchedule(sched))


def _weights(t):
    return torch.cat([p.detach().flatten() for p in t.model.parameters()])


def test_events_progress_lines_and_validation():
    out = io.StringIO()
    t = _trainer()
    seen = []
    t.on(COMPLETED, lambda t: seen.append(t.state.stop_reason))
    t.attach(JsonLinesLogger(out, every=10), Validation(lambda t: {"cpm": -float(t.state.running["mse"])},
                                                        every=2))
    state = t.run()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events][:2] == ["started", "step"]
    assert [e["step"] for e in events if e["event"] == "step"] == [10, 20, 30, 40]
    step = next(e for e in events if e["event"] == "step")  # the total loss, whatever its terms are called
    assert step["loss"] == pytest.approx(step["mse"], abs=1e-4)
    assert [e["epoch"] for e in events if e["event"] == "validation"] == [2, 4]
    assert events[-1] == {"event": "finished", "reason": "done", "step": 40, "seconds": events[-1]["seconds"]}
    assert seen == ["done"] and state.epoch == 4 and state.losses["mse"] < 1.0
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 2)  # scheduler stepped 40 times


def test_a_cancelled_run_resumes_to_the_same_weights(tmp_path):
    whole = _trainer()
    whole.run()
    ckpt = tmp_path / "run.ckpt"
    first = _trainer()
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        if calls["n"] == 17:
            raise CancelledError()

    first.attach(Checkpoint(ckpt), CancelFlag(check))
    state = first.run()
    assert state.stop_reason == "cancelled" and state.iteration == 17 and ckpt.exists()
    resumed = _trainer(seed=99)  # other initial weights and RNG: the checkpoint restores them
    load_checkpoint(resumed, ckpt)
    assert resumed.state.iteration == 17 and resumed.state.epoch == 1
    resumed.run()
    assert resumed.state.iteration == 40
    assert torch.equal(_weights(resumed), _weights(whole))
    assert resumed.optimizer.param_groups[0]["lr"] == whole.optimizer.param_groups[0]["lr"]


def test_early_stop_after_patience_validations_without_improvement():
    t = _trainer(steps=100, epoch_length=5)
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.59, 0.9])
    t.attach(Validation(lambda t: {"cpm": next(scores)}), EarlyStopping(patience=3))
    state = t.run()
    assert state.stop_reason == "early_stop" and state.epoch == 5 and state.best == 0.6
    assert state.best_epoch == 2 and len(state.history) == 5


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a checkpoint of this training"):
        load_checkpoint(_trainer(), tmp_path / "bad.ckpt")
    with pytest.raises(ModelError, match="no checkpoint to resume from"):
        load_checkpoint(_trainer(), tmp_path / "none.ckpt")


def test_a_diverging_run_stops_with_the_reason_before_its_checkpoint(tmp_path):
    t = _trainer(steps=40)
    ckpt = tmp_path / "run.ckpt"
    t.attach(Checkpoint(ckpt, every=1))
    inner = t.step

    def poisoned(t_, it):
        losses = inner(t_, it)
        return {"mse": float("nan")} if it == 12 else losses

    t.step = poisoned
    with pytest.raises(ModelError, match=r"training diverged at step 13: loss mse = nan"):
        t.run()
    assert t.state.iteration == 12
    again = _trainer(steps=40)
    load_checkpoint(again, ckpt)
    assert again.state.iteration == 10  # the last checkpoint is the epoch before it, finite
    assert all(bool(torch.isfinite(p).all()) for p in again.model.parameters())


def test_training_the_patch_classifier_without_negatives_is_a_typed_refusal():
    from medstation.ai import fpr
    from medstation.core.errors import LabelError
    from medstation.training.fpr import PatchSet, train_fpr

    n = 6  # volumes 1..4 train (every fifth, 0 and 5, is held out), every patch a nodule
    data = PatchSet(patches=np.zeros((n, 8, 8, 8), np.uint8), labels=np.ones(n, np.int64),
                    volume=np.arange(n), detector_scores=np.full(n, 0.9))
    with pytest.raises(LabelError, match="4 positive and 0 negative") as info:
        train_fpr(data, dict(fpr.DEFAULT_SPEC), steps=1)
    assert "--volumes" in info.value.hint
