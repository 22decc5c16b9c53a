"""Train the 2.5D nodule detector on synthetic chest CT; progress as JSON lines.

``medstation train-detector --out DIR`` runs :func:`train`; the same seeds and
step count give the same samples and the same schedule (on CPU, bit-identical
weights are not promised: torch's CPU kernels may sum in a different order).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from medstation.ai.detector import ARCHITECTURE, DEFAULT_INPUT, DEFAULT_NETWORK, build_model
from medstation.ai.store import save_model
from medstation.training.synthetic import make_bank

#: phantom seeds the default detector is trained on; evaluation uses seeds >= 10000
TRAIN_SEEDS = (0, 400)


@dataclass
class TrainConfig:
    name: str = "nodule-detector"
    version: str = "1.0.0"
    parent_version: str | None = None
    samples: int = 12000
    crop: int = 128
    steps: int = 3500
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    phantom_seeds: tuple[int, int] = TRAIN_SEEDS
    threads: int = 0  # 0: torch's default
    device: str = "cpu"
    input: dict = field(default_factory=lambda: dict(DEFAULT_INPUT))
    network: dict = field(default_factory=lambda: dict(DEFAULT_NETWORK))


def _emit(out, **event) -> None:
    if out is not None:
        out.write(json.dumps(event) + "\n")
        out.flush()


def train(config: TrainConfig, out_dir: str, *, log=sys.stdout,
          check: Callable[[], None] | None = None) -> dict:
    """Render the samples, train, write the model directory; returns the manifest."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    _emit(log, event="render", done=0, total=config.samples)
    bank = make_bank(config.samples, config.input, crop=config.crop, seed=config.seed,
                     phantom_seeds=config.phantom_seeds,
                     progress=lambda d, t: _emit(log, event="render", done=d, total=t))
    render_s = time.perf_counter() - t0
    positives = sum(1 for b in bank.boxes if len(b))
    _emit(log, event="rendered", samples=len(bank), with_nodules=positives, seconds=round(render_s, 1))

    device = torch.device(config.device)
    model = build_model(ARCHITECTURE, config.input, config.network).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, config.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / config.steps))))
    rng = np.random.default_rng(config.seed + 1)
    images = torch.from_numpy(bank.images)
    running: dict[str, float] = {}
    t1 = time.perf_counter()
    for step in range(1, config.steps + 1):
        if check:
            check()
        idx = rng.integers(0, len(bank), config.batch_size)
        batch = images[idx].float().div_(255.0)
        targets = []
        for b, n in enumerate(idx):
            boxes = torch.from_numpy(bank.boxes[n]).clone()
            img = batch[b]
            size = img.shape[-1]
            if rng.random() < 0.5:  # left-right
                img = img.flip(-1)
                boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
            if rng.random() < 0.5:  # anterior-posterior
                img = img.flip(-2)
                boxes[:, [1, 3]] = size - boxes[:, [3, 1]]
            if rng.random() < 0.5:  # slice order (head-feet)
                img = img.flip(0)
            batch[b] = img
            targets.append({"boxes": boxes.to(device), "labels": torch.ones(len(boxes), dtype=torch.int64,
                                                                             device=device)})
        losses = model(list(batch.to(device)), targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        for k, v in losses.items():
            fv = float(v.detach())
            running[k] = 0.98 * running.get(k, fv) + 0.02 * fv
        if step % 50 == 0 or step == config.steps:
            _emit(log, event="step", step=step, steps=config.steps, lr=round(sched.get_last_lr()[0], 6),
                  **{k: round(v, 4) for k, v in running.items()},
                  seconds=round(time.perf_counter() - t1, 1))
    train_s = time.perf_counter() - t1
    model.eval()
    manifest = {
        "name": config.name,
        "version": config.version,
        "parent_version": config.parent_version,
        "task": "detection",
        "architecture": ARCHITECTURE,
        "network": config.network,
        "input": config.input,
        "classes": ["background", "nodule"],
        "training_data": {
            "source": "medstation.synth analytic chest CT phantom (synthetic, no patient data)",
            "phantom_seeds": list(config.phantom_seeds),
            "samples": len(bank),
            "samples_with_nodules": positives,
            "nodule_diameters_mm": [3.0, 30.0],
            "ground_glass_fraction": 0.3,
            "crop_px": config.crop,
        },
        "training": {k: v for k, v in asdict(config).items() if k not in ("input", "network")},
        "training_seconds": {"render": round(render_s, 1), "train": round(train_s, 1)},
        "final_losses": {k: round(v, 4) for k, v in running.items()},
        "metrics": {},
        "intended_use": "Research and demonstration on synthetic data. Not for clinical use.",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    save_model(out_dir, model.state_dict(), manifest)
    from medstation.training.card import write_card

    write_card(out_dir)
    _emit(log, event="saved", path=str(out_dir))
    return manifest


