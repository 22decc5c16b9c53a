"""The one training recipe (training.recipe): the schedule every model trains with, and its cancel."""

from __future__ import annotations

import io
import json

import pytest
import torch

from medstation.core.errors import CancelledError
from medstation.training.recipe import Recipe, fit, lr_factor


def test_warm_up_then_cosine_to_zero():
    steps = 100
    f = [lr_factor(s, steps, 0.1) for s in range(steps + 1)]
    assert f[0] == pytest.approx(0.1 * 0.5 * (1 + 1.0), rel=1e-6)  # 1 of 10 warm-up steps
    assert f[9] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi * 0.09)).item()), rel=1e-6)
    assert max(f) == f[9] and all(a >= b for a, b in zip(f[9:], f[10:]))  # decays after the warm-up
    assert f[steps] == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 1, 0.1) == pytest.approx(1.0)  # a one-step run still steps


def _regression(cancel_at: int | None = None):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    seen = []

    def make_step(device):
        def step(t, it):
            if cancel_at is not None and it == cancel_at:
                t.cancel()
            idx = torch.from_numpy(t.rng.integers(0, 64, 16))
            loss = torch.nn.functional.mse_loss(t.model(x[idx]), y[idx])
            t.optimizer.zero_grad()
            loss.backward()
            t.optimizer.step()
            seen.append(t.optimizer.param_groups[0]["lr"])
            return {"mse": float(loss.detach())}
        return step

    return model, make_step, seen


def test_a_run_trains_reports_the_total_loss_and_follows_the_schedule(tmp_path):
    model, make_step, seen = _regression()
    x = torch.randn(256, 3, generator=torch.Generator().manual_seed(1))
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    with torch.no_grad():
        before = float(torch.nn.functional.mse_loss(model(x), y))
    log = io.StringIO()
    recipe = Recipe(model=model, make_step=make_step, steps=40, epoch_length=10, lr=0.05, warmup=0.1,
                    log_every=10, checkpoint=str(tmp_path / "ckpt"),
                    validate=lambda t: {"cpm": 1.0 - float(t.state.running["mse"])})
    state, world = fit(recipe, log=log)
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [10, 20, 30, 40]
    assert all("loss" in e for e in steps) and all("eta_s" in e for e in steps[1:-1])
    assert sum(e["event"] == "validation" for e in events) == 4 and state.best is not None
    assert seen[0] == pytest.approx(0.05 * lr_factor(0, 40, 0.1))
    assert seen[3] == pytest.approx(0.05 * lr_factor(3, 40, 0.1))
    with torch.no_grad():
        after = float(torch.nn.functional.mse_loss(model(x), y))  # the model was trained in place
    assert after < before / 2 and (tmp_path / "ckpt").exists() and not world.distributed


def test_a_cancel_keeps_the_checkpoint_says_so_and_resumes(tmp_path):
    model, make_step, _seen = _regression(cancel_at=15)
    ckpt = tmp_path / "ckpt"
    recipe = Recipe(model=model, make_step=make_step, steps=40, epoch_length=10, lr=0.05,
                    checkpoint=str(ckpt), what="fine-tuning")
    with pytest.raises(CancelledError) as info:
        fit(recipe)
    assert "fine-tuning was cancelled at step 16 of 40" in info.value.reason
    assert str(ckpt) in info.value.reason and "--resume" in info.value.hint and ckpt.exists()
    model2, make_step2, _ = _regression()
    resumed = []
    again = Recipe(model=model2, make_step=make_step2, steps=40, epoch_length=10, lr=0.05,
                   checkpoint=str(ckpt), resume=True)
    state, _world = fit(again, on_resume=lambda s: resumed.append(s.iteration))
    assert resumed == [16] and state.iteration == 40 and state.stop_reason == "done"
    # without a checkpoint there is nothing to resume, and the message does not promise one
    model3, make_step3, _ = _regression(cancel_at=3)
    with pytest.raises(CancelledError) as info:
        fit(Recipe(model=model3, make_step=make_step3, steps=40, epoch_length=10, lr=0.05))
    assert "kept" not in info.value.reason and "--resume" not in info.value.hint


def test_adaptive_threads_follow_the_free_cores_per_step_and_come_back(monkeypatch):
    from medstation.core import cpu

    free = iter([2, 1, 1, 2, 1] * 10)
    monkeypatch.setattr(cpu.CpuShare, "threads", lambda self: next(free))
    before = torch.get_num_threads()
    teams = []
    model, make_step, _ = _regression()

    def watching(device):
        step = make_step(device)

        def run(t, it):
            teams.append(torch.get_num_threads())
            return step(t, it)
        return run

    fit(Recipe(model=model, make_step=watching, steps=5, epoch_length=5, lr=0.01, adapt_threads=True))
    assert teams == [2, 1, 1, 2, 1] and torch.get_num_threads() == before
    teams.clear()
    model, make_step, _ = _regression()
    fit(Recipe(model=model, make_step=watching, steps=3, epoch_length=3, lr=0.01))  # off by default
    assert teams == [before] * 3


def test_a_resume_with_other_settings_is_refused_naming_each_and_the_same_ones_resume(tmp_path):
    """The checkpoint keeps the run's settings: resumed with other flags (the defaults, say) the run
    is refused with each difference and the flags to give; with its own it continues."""
    from medstation.core.errors import ModelError

    ckpt = str(tmp_path / "ckpt")
    settings = {"epochs": 2, "epoch_length": 20, "replay": 16}
    model, make_step, _seen = _regression(cancel_at=15)
    with pytest.raises(CancelledError):
        fit(Recipe(model=model, make_step=make_step, steps=40, epoch_length=20, lr=0.05,
                   checkpoint=ckpt, settings=settings), log=io.StringIO())
    model, make_step, _seen = _regression()
    other = {"epochs": 4, "epoch_length": 100, "replay": 16}
    with pytest.raises(ModelError) as err:
        fit(Recipe(model=model, make_step=make_step, steps=400, epoch_length=100, lr=0.05,
                   checkpoint=ckpt, resume=True, settings=other), log=io.StringIO())
    assert "--epochs 2 (now 4)" in err.value.reason and "--epoch-length 20 (now 100)" in err.value.reason
    assert "replay" not in err.value.reason
    assert "--epoch-length 20 --epochs 2" in err.value.hint
    model, make_step, _seen = _regression()
    state, _world = fit(Recipe(model=model, make_step=make_step, steps=40, epoch_length=20, lr=0.05,
                               checkpoint=ckpt, resume=True, settings=settings), log=io.StringIO())
    assert state.iteration == 40
