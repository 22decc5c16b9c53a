"""A trainer made of one iteration step plus event handlers (in the manner of MONAI's and ignite's engines).

The loop is fixed and small: for each epoch, for each iteration, call
``step(trainer, iteration) -> dict of losses``, then fire events. Everything
else attaches as a handler: progress as JSON lines, the learning-rate schedule,
validation every N epochs, atomic checkpoints with resume, early stopping, and
a cancel flag. A new kind of training (follow-up RNN, fine-tuning on local
labels) writes its own step function and reuses the handlers.

Events, in order: ``started``, then per epoch ``epoch_started``,
``iteration_completed`` (after each step), ``epoch_completed``; handlers of
``epoch_completed`` run validation and checkpointing; finally ``completed``
(``state.stop_reason`` says why: ``"done"``, ``"early_stop"`` or
``"cancelled"``). An exception in the step fires ``exception`` and is re-raised.
"""

from __future__ import annotations

import io
import json
import math
import pickle  # only for its error type: checkpoints load with weights_only
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from medstation.core.errors import CancelledError, ModelError
from medstation.core.files import atomic_write_bytes

STARTED = "started"
EPOCH_STARTED = "epoch_started"
ITERATION_COMPLETED = "iteration_completed"
EPOCH_COMPLETED = "epoch_completed"
VALIDATED = "validated"
COMPLETED = "completed"
EXCEPTION = "exception"
EVENTS = (STARTED, EPOCH_STARTED, ITERATION_COMPLETED, EPOCH_COMPLETED, VALIDATED, COMPLETED, EXCEPTION)

Handler = Callable[["Trainer"], None]


@dataclass
class TrainState:
    """Where training is; saved in every checkpoint."""

    iteration: int = 0  # iterations done, over all epochs
    epoch: int = 0  # epochs done
    max_iterations: int = 0
    epoch_length: int = 1
    losses: dict[str, float] = field(default_factory=dict)  # last step's
    running: dict[str, float] = field(default_factory=dict)  # exponential moving average
    metrics: dict[str, float] = field(default_factory=dict)  # last validation's
    history: list[dict] = field(default_factory=list)  # one row per validation
    best: float | None = None
    best_epoch: int = 0
    stop_reason: str = ""
    seconds: float = 0.0

    @property
    def max_epochs(self) -> int:
        return math.ceil(self.max_iterations / max(1, self.epoch_length))


class Trainer:
    """Run ``step`` for ``max_iterations`` iterations in epochs of ``epoch_length``.

    ``step(trainer, iteration)`` does one optimisation step and returns its losses
    (floats). ``model``, ``optimizer`` and ``scheduler`` are what a checkpoint
    saves (with the state and the RNGs); ``rng`` is the numpy generator the step
    draws its batches from.
    """

    def __init__(self, step: Callable[[Trainer, int], dict[str, float]], *, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, max_iterations: int, epoch_length: int,
                 scheduler: Any = None, rng: np.random.Generator | None = None) -> None:
        self.step = step
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.rng = rng if rng is not None else np.random.default_rng()
        self.state = TrainState(max_iterations=int(max_iterations), epoch_length=max(1, int(epoch_length)))
        self.cancel_event = threading.Event()
        #: the run's settings (steps, schedule, data): kept in the checkpoint, and a resume with
        #: other settings is refused naming each difference
        self.settings: dict = {}
        self._handlers: dict[str, list[Handler]] = {e: [] for e in EVENTS}
        self._stop = ""

    # -- handlers -------------------------------------------------------------------------------
    def on(self, event: str, handler: Handler) -> Trainer:
        if event not in self._handlers:
            raise ValueError(f"unknown event {event!r} (one of {', '.join(EVENTS)})")
        self._handlers[event].append(handler)
        return self

    def attach(self, *handlers) -> Trainer:
        """Attach handler objects: each has ``attach(trainer)``."""
        for h in handlers:
            h.attach(self)
        return self

    def fire(self, event: str) -> None:
        for h in self._handlers[event]:
            h(self)

    def stop(self, reason: str) -> None:
        """End after the current iteration (early stopping, cancel)."""
        self._stop = self._stop or reason

    def cancel(self) -> None:
        self.cancel_event.set()

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> TrainState:
        st = self.state
        t0 = time.perf_counter() - st.seconds
        self.model.train()
        self.fire(STARTED)
        try:
            while st.iteration < st.max_iterations and not self._stop:
                self.fire(EPOCH_STARTED)
                end = min((st.epoch + 1) * st.epoch_length, st.max_iterations)
                while st.iteration < end and not self._stop:
                    if self.cancel_event.is_set():
                        self.stop("cancelled")
                        break
                    losses = {k: float(v) for k, v in self.step(self, st.iteration).items()}
                    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
                    if bad:  # diverged: stop before a checkpoint or a model holds these weights
                        raise ModelError(
                            f"training diverged at step {st.iteration + 1}: loss "
                            + ", ".join(f"{k} = {v}" for k, v in bad.items()),
                            "check the training data for non-finite or extreme values; lower the "
                            "learning rate; the last checkpoint (if any) is from before this step")
                    st.iteration += 1
                    st.losses = losses
                    for k, v in st.losses.items():
                        st.running[k] = 0.98 * st.running.get(k, v) + 0.02 * v
                    st.seconds = time.perf_counter() - t0
                    self.fire(ITERATION_COMPLETED)
                if st.iteration >= end:  # a whole epoch (a cancel mid-epoch leaves it to resume)
                    st.epoch += 1
                    self.fire(EPOCH_COMPLETED)
        except BaseException:
            self.fire(EXCEPTION)
            raise
        st.stop_reason = self._stop or "done"
        st.seconds = time.perf_counter() - t0
        self.fire(COMPLETED)
        return st

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": 1,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "state": json.dumps(asdict(self.state)),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "settings": json.dumps(self.settings, sort_keys=True, default=str),
        }

    @property
    def module(self) -> torch.nn.Module:
        """The model itself (inside a ``DistributedDataParallel`` wrapper when there is one): what
        checkpoints hold, so a run can resume with or without ``torchrun``."""
        return getattr(self.model, "module", self.model)

    def load_state_dict(self, data: dict) -> None:
        saved_settings = json.loads(data["settings"]) if isinstance(data.get("settings"), str) else None
        if saved_settings and self.settings:
            now = json.loads(json.dumps(self.settings, sort_keys=True, default=str))
            differ = [k for k in sorted(set(saved_settings) | set(now))
                      if saved_settings.get(k) != now.get(k)]
            if differ:
                raise SettingsChanged(saved_settings, now, differ)
        self.module.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        if self.scheduler is not None and data.get("scheduler") is not None:
            self.scheduler.load_state_dict(data["scheduler"])
        saved = json.loads(data["state"])
        max_it, length = self.state.max_iterations, self.state.epoch_length
        self.state = TrainState(**saved)
        self.state.max_iterations, self.state.epoch_length = max_it, length
        torch.set_rng_state(data["torch_rng"])
        self.rng.bit_generator.state = json.loads(data["numpy_rng"])


class SettingsChanged(ModelError):
    """A resume asked with settings other than the interrupted run's (which the checkpoint holds)."""

    def __init__(self, saved: dict, now: dict, differ: list[str]) -> None:
        def flag(k: str) -> str:
            return "--" + k.replace("_", "-")

        said = ", ".join(f"{flag(k)} {saved.get(k, '-')} (now {now.get(k, '-')})" for k in differ)
        again = " ".join(f"{flag(k)} {saved[k]}" for k in differ if k in saved)
        super().__init__(f"the interrupted run was started with other settings: {said}",
                         f"resume with the run's own settings ({again}), or start again without --resume")
        self.saved, self.now, self.differ = saved, now, differ


def save_checkpoint(trainer: Trainer, path: str | Path) -> Path:
    """Model, optimizer, scheduler, progress and RNG states, written atomically."""
    buf = io.BytesIO()
    torch.save(trainer.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(trainer: Trainer, path: str | Path) -> None:
    """Resume ``trainer`` from ``path`` (tensors and plain data only: ``weights_only``)."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        trainer.load_state_dict(data)
    except SettingsChanged as exc:
        raise ModelError(f"{path}: {exc.reason}", exc.hint) from None
    except FileNotFoundError:
        raise ModelError(f"{path}: no checkpoint to resume from", "start without --resume") from None
    except (RuntimeError, KeyError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: not a checkpoint of this training ({first})",
                         "start again without --resume, or with the same model settings") from None


# ------------------------------------------------------------------------------------- handlers


class JsonLinesLogger:
    """Progress as JSON lines on ``out``: every ``every`` iterations, each epoch, validation, the end."""

    def __init__(self, out: IO[str] | None, every: int = 50, lr: Callable[[], float] | None = None) -> None:
        self.out = out
        self.every = max(1, int(every))
        self.lr = lr

    def emit(self, **event) -> None:
        if self.out is not None:
            self.out.write(json.dumps(event) + "\n")
            self.out.flush()

    def attach(self, t: Trainer) -> None:
        t.on(STARTED, lambda t: self.emit(event="started", iteration=t.state.iteration,
                                          steps=t.state.max_iterations, epochs=t.state.max_epochs))
        t.on(ITERATION_COMPLETED, self._step)
        t.on(EPOCH_COMPLETED, lambda t: self.emit(event="epoch", epoch=t.state.epoch,
                                                  epochs=t.state.max_epochs, step=t.state.iteration))
        t.on(VALIDATED, lambda t: self.emit(event="validation", epoch=t.state.epoch, step=t.state.iteration,
                                            **{k: round(v, 4) for k, v in t.state.metrics.items()}))
        t.on(COMPLETED, lambda t: self.emit(event="finished", reason=t.state.stop_reason,
                                            step=t.state.iteration, seconds=round(t.state.seconds, 1)))

    def _step(self, t: Trainer) -> None:
        st = t.state
        if st.iteration % self.every == 0 or st.iteration == st.max_iterations:
            extra = {"lr": round(self.lr(), 6)} if self.lr is not None else {}
            done = st.iteration - getattr(self, "_first", 0)
            if not hasattr(self, "_first"):  # steps before a resume do not count towards the pace
                self._first, self._t0, done = st.iteration, st.seconds, 0
            pace = (st.seconds - self._t0) / done if done > 0 else None
            eta = {"eta_s": round(pace * (st.max_iterations - st.iteration), 1)} if pace else {}
            # "loss": the total (running mean of each term, summed): what a reader of the events charts,
            # whatever the recipe's loss terms are called
            self.emit(event="step", step=st.iteration, steps=st.max_iterations, epoch=st.epoch + 1, **extra,
                      **{k: round(v, 4) for k, v in st.running.items()},
                      loss=round(sum(st.running.values()), 4), seconds=round(st.seconds, 1), **eta)


class LRSchedule:
    """Step the scheduler after every iteration."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler

    def attach(self, t: Trainer) -> None:
        t.on(ITERATION_COMPLETED, lambda t: self.scheduler.step())


class Validation:
    """Every ``every`` epochs (and after the last), ``evaluate(trainer) -> metrics``; the model is
    put in eval mode for it and back in train mode after. ``metric`` (higher is better) picks the best."""

    def __init__(self, evaluate: Callable[[Trainer], dict[str, float]], every: int = 1,
                 metric: str = "cpm") -> None:
        self.evaluate = evaluate
        self.every = max(1, int(every))
        self.metric = metric

    def attach(self, t: Trainer) -> None:
        t.on(EPOCH_COMPLETED, self._run)

    def _run(self, t: Trainer) -> None:
        st = t.state
        last = st.iteration >= st.max_iterations
        if st.epoch % self.every and not last:
            return
        t.model.eval()
        try:
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.evaluate(t).items()}
        finally:
            t.model.train()
        st.metrics = metrics
        st.history.append({"epoch": st.epoch, "step": st.iteration, **metrics})
        value = metrics.get(self.metric)
        if value is not None and (st.best is None or value > st.best):
            st.best, st.best_epoch = value, st.epoch
        t.fire(VALIDATED)


class EarlyStopping:
    """Stop when the validation metric has not improved for ``patience`` validations."""

    def __init__(self, patience: int = 3, min_delta: float = 0.0) -> None:
        self.patience = max(1, int(patience))
        self.min_delta = float(min_delta)
        self._bad = 0
        self._best: float | None = None

    def attach(self, t: Trainer) -> None:
        t.on(VALIDATED, self._check)

    def _check(self, t: Trainer) -> None:
        value = t.state.best if t.state.best_epoch == t.state.epoch else None
        if value is not None and (self._best is None or value > self._best + self.min_delta):
            self._best, self._bad = value, 0
            return
        self._bad += 1
        if self._bad >= self.patience:
            t.stop("early_stop")


class Checkpoint:
    """Save a resumable checkpoint every ``every`` epochs, at the end and on cancel (atomically)."""

    def __init__(self, path: str | Path, every: int = 1) -> None:
        self.path = Path(path)
        self.every = max(1, int(every))

    def attach(self, t: Trainer) -> None:
        t.on(EPOCH_COMPLETED, lambda t: save_checkpoint(t, self.path) if t.state.epoch % self.every == 0
             else None)
        t.on(COMPLETED, lambda t: save_checkpoint(t, self.path))


class CancelFlag:
    """Cancel when ``check()`` raises ``CancelledError`` (a GUI flag, a signal handler)."""

    def __init__(self, check: Callable[[], None]) -> None:
        self.check = check

    def attach(self, t: Trainer) -> None:
        def poll(t: Trainer) -> None:
            try:
                self.check()
            except CancelledError:
                t.cancel()

        t.on(ITERATION_COMPLETED, poll)


class CpuThreads:
    """torch's CPU team sized before every step to the cores other processes leave free (``core.cpu``).

    A team larger than the free cores waits at every operation's barrier for a member that is not
    running: beside 2 busy processes on 2 cores a 2-thread step runs several times slower than its
    fair share. The previous thread count comes back at the end. ``used`` holds the count per step.
    """

    def __init__(self, most: int | None = None) -> None:
        self.most = most
        self.used: list[int] = []
        self._share = None
        self._before = 0

    def attach(self, t: Trainer) -> None:
        from medstation.core.cpu import CpuShare

        self._before = torch.get_num_threads()
        self._share = CpuShare(self.most or self._before)
        t.on(STARTED, self._size)
        t.on(ITERATION_COMPLETED, self._size)
        t.on(COMPLETED, self._restore)
        t.on(EXCEPTION, self._restore)

    def _size(self, _t: Trainer) -> None:
        n = self._share.threads()
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        self.used.append(n)

    def _restore(self, _t: Trainer) -> None:
        torch.set_num_threads(self._before)
