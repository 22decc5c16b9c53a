"""One training recipe for every model: the set-up once, the task's model, step and validation passed in.

In the manner of MONAI's ``SupervisedTrainer``: what differs between the detector's training on
synthetic CT, its fine-tuning on a site's labels and the follow-up predictor's training is the model,
the iteration (``step(trainer, iteration) -> losses``), the validation and the manifest; what they
share is written here once:

- AdamW, with a linear warm-up over ``warmup`` of the steps and then cosine decay to zero
  (``lr_factor``; a plain float so checkpoints hold no numpy);
- the ``Trainer`` (``training.trainer``), wrapped for ``torchrun`` (``training.distributed``), its numpy
  generator seeded by ``seed + 1 + rank``;
- progress as JSON lines (step, the total loss, lr, ETA), validation every ``validate_every`` epochs with
  the best kept, early stopping, atomic checkpoints every epoch and at the end, resume, and a cancel
  flag;
- on CPU, when asked (``adapt_threads``: fine-tuning on a reader's desktop), torch's threads
  sized before every step to the cores other processes leave free (``CpuThreads``). Off by
  default: a float sum depends on the team's size, so a run whose team changed under load is
  reproducible to rounding, not bit for bit (training from scratch resumes bit for bit);
- a cancel raises one ``CancelledError`` saying where it stopped and how to resume (``resume_hint``).

Rank 0 alone reports, validates and checkpoints. The caller writes the model (``ai.store.save_model``)
from the returned state: what goes in a manifest is the task's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import torch

from medstation.core.errors import CancelledError
from medstation.training.trainer import (
    CancelFlag,
    Checkpoint,
    CpuThreads,
    EarlyStopping,
    JsonLinesLogger,
    LRSchedule,
    Trainer,
    TrainState,
    Validation,
    load_checkpoint,
)


def lr_factor(step: int, steps: int, warmup: float) -> float:
    """The learning rate's share of its peak at ``step``: linear warm-up over ``warmup`` of ``steps``,
    then cosine decay (0.5 * (1 + cos(pi * step / steps)))."""
    warm_steps = max(1, int(steps * warmup))
    warm = min(1.0, (step + 1) / warm_steps)
    return float(warm * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, steps)))))


@dataclass
class Recipe:
    """What one run trains: the task's parts; everything else is the recipe's."""

    model: torch.nn.Module
    #: ``make_step(device) -> step(trainer, iteration) -> {loss name: value}``
    make_step: Callable[[torch.device], Callable[[Trainer, int], dict[str, float]]]
    steps: int
    epoch_length: int
    lr: float
    weight_decay: float = 1e-4
    warmup: float = 0.1  # share of the steps the learning rate warms up over
    seed: int = 0
    log_every: int = 50  # iterations between step lines
    validate: Callable[[Trainer], dict[str, float]] | None = None
    validate_every: int = 1  # epochs
    early_stop: int = 0  # validations without a better metric before stopping (0: never)
    checkpoint: str = ""  # resumable checkpoint file ("": none)
    resume: bool = False
    what: str = "training"  # "fine-tuning", ...: for the cancel message
    resume_hint: str = "run it again with --resume to continue from the last checkpoint"
    #: the run's settings as the user gave them (flag name -> value): kept in the checkpoint, a
    #: resume with others is refused naming each (``trainer.SettingsChanged``)
    settings: dict = field(default_factory=dict)
    device: str = "cpu"
    adapt_threads: bool = False  # on CPU, size torch's team to the free cores before every step


def fit(recipe: Recipe, *, log: IO[str] | None = None, check: Callable[[], None] | None = None,
        on_resume: Callable[[TrainState], None] | None = None) -> tuple[TrainState, object]:
    """Train ``recipe.model`` (in place) and return the final state and the ``torchrun`` world; a cancel
    (``check`` raising ``CancelledError``) saves the checkpoint and raises ``CancelledError``."""
    from medstation.training.distributed import setup, wrap

    world = setup(recipe.device)
    main = world.main
    device = torch.device(f"cuda:{world.local_rank}" if world.distributed and recipe.device == "cuda"
                          else recipe.device)
    model = recipe.model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, recipe.steps, recipe.warmup))
    trainer = Trainer(recipe.make_step(device), model=wrap(model, world, device), optimizer=opt,
                      scheduler=sched, max_iterations=recipe.steps,
                      epoch_length=recipe.epoch_length or recipe.steps,
                      rng=np.random.default_rng(recipe.seed + 1 + world.rank))
    trainer.settings = dict(recipe.settings)
    trainer.attach(LRSchedule(sched), JsonLinesLogger(log if main else None, every=recipe.log_every,
                                                      lr=lambda: sched.get_last_lr()[0]))
    if recipe.validate is not None and main:
        trainer.attach(Validation(recipe.validate, every=recipe.validate_every))
        if recipe.early_stop and not world.distributed:  # one rank stopping alone would hang the rest
            trainer.attach(EarlyStopping(recipe.early_stop))
    if recipe.checkpoint:
        if main:
            trainer.attach(Checkpoint(recipe.checkpoint))
        if recipe.resume:
            load_checkpoint(trainer, recipe.checkpoint)
            if on_resume is not None:
                on_resume(trainer.state)
    if check is not None:
        trainer.attach(CancelFlag(check))
    if device.type == "cpu" and not world.distributed and recipe.adapt_threads:
        trainer.attach(CpuThreads())  # a desktop is never idle: the team follows the free cores
    state = trainer.run()
    if state.stop_reason == "cancelled" and main:
        kept = f"; the checkpoint {recipe.checkpoint} is kept" if recipe.checkpoint else ""
        raise CancelledError(f"{recipe.what} was cancelled at step {state.iteration} of {recipe.steps}{kept}",
                             recipe.resume_hint if recipe.checkpoint else "start it again")
    model.eval()
    return state, world
