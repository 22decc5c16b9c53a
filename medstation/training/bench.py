"""``medstation bench train``: fine-tuning as a user waits for it, each figure beside a baseline from
the same run.

Input: a generated 200-slice 512x512 chest CT with four nodules, written as DICOM and opened as
``medstation train`` opens a labelled series (``open_series``). Measured:

* **start**: seconds from spawning ``medstation train`` (on an empty database, so it stops after its
  first line) to its first JSON progress line, what the panel shows first; baseline: the bare
  interpreter (``python -c pass``). Goal: at or under 2 s.
* **crops**: the series' training crops (``case_samples``: resampled as the detector's input, 2.5D
  crops around each nodule, jittered, and at random lung places) per second; baseline: opening the
  series (header scan and decode).
* **replay**: the synthetic samples mixed in against forgetting (``replay_bank``), rendered, then read
  from the cache as every later run reads them.
* **epoch**: one epoch as the panel runs it (``--epoch-length`` steps of ``--batch-size`` crops
  through the recipe: FCOS losses, backward, clipping, AdamW with its schedule, JSON lines, an atomic
  checkpoint); baseline: the same forward, backward and optimiser step in a bare loop on the same
  crops, no trainer (per step). Goal on CPU: at or under 60 s.
* ``--contend N``: runs of ``--contend-steps`` steps beside N busy processes, the team sized per
  step to the free cores (``CpuThreads``) against a fixed team, interleaved, against quiet runs of
  the same length (a fresh run's first step pays its allocations: the same share in both).
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

START_TARGET_S = 2.0
EPOCH_TARGET_S = 60.0
GPU_EPOCH_TARGET_S = 10.0


def _generate(folder: Path, slices: int):
    from medstation.synth import ChestPhantom, Nodule, SeriesSpec, write_study

    nodules = [Nodule((-60.0, 0.0, -10.0), 12.0), Nodule((70.0, 20.0, 40.0), 8.0),
               Nodule((-80.0, 30.0, -60.0), 6.0), Nodule((60.0, -10.0, -40.0), 10.0)]
    spec = SeriesSpec(description="bench train", slices=slices, rows=512, columns=512,
                      pixel_spacing=360.0 / 512, slice_thickness=1.0, z_center=-20.0)
    truth = write_study(folder, ChestPhantom(seed=31, nodules=nodules), series=[spec], seed=31)
    return truth, [(n.center, n.diameter_mm) for n in nodules]


def _first_line_s(db: Path) -> float:
    """Seconds from spawning ``medstation train`` to its first line on stdout."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "medstation", "--db", str(db), "train", "--epochs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env=env, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    dt = time.perf_counter() - t0
    proc.kill()
    proc.wait()
    return dt


def _python_s() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def _bare_steps(model, bank, steps: int, batch: int) -> float:
    """Seconds per step of the same forward / backward / AdamW step in a plain loop (no trainer, no
    augmentation, no schedule, no logging)."""
    images = torch.from_numpy(bank.images)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rng = np.random.default_rng(0)
    model.train()
    times = []
    for _ in range(steps):
        idx = rng.integers(0, len(bank), batch)
        t0 = time.perf_counter()
        x = images[idx].float().div_(255.0)
        targets = [{"boxes": torch.from_numpy(bank.boxes[n]),
                    "labels": torch.ones(len(bank.boxes[n]), dtype=torch.int64)} for n in idx]
        loss = sum(model(list(x), targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:] if len(times) > 2 else times)


def _epoch(model, bank, steps: int, batch: int, checkpoint: str, adapt: bool = True) -> tuple[float, list]:
    """One epoch of ``steps`` through the fine-tuning recipe; its seconds and its step events."""
    import json

    from medstation.training.detector import TrainConfig, detector_step
    from medstation.training.recipe import Recipe, fit

    log = io.StringIO()
    recipe = Recipe(model=model, make_step=lambda device: detector_step(bank, TrainConfig(batch_size=batch),
                                                                        device),
                    steps=steps, epoch_length=steps, lr=1e-5, log_every=max(1, steps // 10),
                    checkpoint=checkpoint, what="fine-tuning", adapt_threads=adapt)
    t0 = time.perf_counter()
    fit(recipe, log=log)
    dt = time.perf_counter() - t0
    return dt, [json.loads(x) for x in log.getvalue().splitlines() if x.strip()]


def run_train(args) -> dict:
    import copy

    from medstation.ai.network import build_model
    from medstation.ai.registry import ModelRegistry
    from medstation.ai.store import load_state
    from medstation.dicom import WorkerPool, open_series
    from medstation.training.bank import SampleBank
    from medstation.training.finetune import Case, case_samples, replay_bank

    registry = ModelRegistry()
    base = registry.resolve(args.model, "detection") if args.model else registry.default("detection")
    manifest, state = load_state(base.path)
    spec = dict(manifest["input"])
    out: dict = {"model": base.id, "slices": args.slices, "epoch_steps": args.epoch_length,
                 "batch_size": args.batch_size, "replay": args.replay, "cpu_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="medstation-bench-train-") as tmp:
        root = Path(tmp)
        starts = [_first_line_s(root / "empty.sqlite") for _ in range(3)]
        pythons = [_python_s() for _ in range(3)]
        out["start"] = {"first_line_s": round(statistics.median(starts), 3),
                        "baseline_python_s": round(statistics.median(pythons), 3),
                        "target_s": START_TARGET_S}
        truth, nodules = _generate(root / "ct", args.slices)
        files = [str(p) for p in Path(truth.series[0].files[0]).parent.iterdir() if p.suffix != ".json"]
        with WorkerPool() as pool:
            open_series(files, pool=pool)  # warm: the page cache, the workers
            t0 = time.perf_counter()
            volume = open_series(files, pool=pool).volume
            load_s = time.perf_counter() - t0
        case = Case(key="bench", patient="bench", nodules=[(tuple(c), d) for c, d in nodules])
        t0 = time.perf_counter()
        images, boxes = case_samples(case, volume, spec, seed=0)
        crops_s = time.perf_counter() - t0
        out["crops"] = {"crops": int(len(images)), "seconds": round(crops_s, 2),
                        "crops_per_s": round(len(images) / crops_s, 1),
                        "with_nodules": int(sum(1 for b in boxes if len(b))),
                        "baseline_open_series_s": round(load_s, 2),
                        "ratio_vs_open": round(crops_s / load_s, 2)}
        t0 = time.perf_counter()
        synth, _ = replay_bank(args.replay, spec, crop=128, seed=99, cache_dir=root / "cache")
        render_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        replay_bank(args.replay, spec, crop=128, seed=99, cache_dir=root / "cache")
        cached_s = time.perf_counter() - t0
        out["replay_samples"] = {"samples": args.replay, "render_s": round(render_s, 2),
                                 "samples_per_s": round(args.replay / max(render_s, 1e-9), 1),
                                 "from_cache_s": round(cached_s, 3)}
        bank = SampleBank(np.concatenate([images, synth.images]), list(boxes) + list(synth.boxes), (0, 0))

        def fresh():
            m = build_model(str(manifest["architecture"]), spec, manifest.get("network"))
            m.load_state_dict({k: v for k, v in state.items() if not k.startswith("fpr.")})
            return m

        model = fresh()
        bare = _bare_steps(copy.deepcopy(model), bank, args.baseline_steps, args.batch_size)
        epoch_s, events = _epoch(model, bank, args.epoch_length, args.batch_size, str(root / "ckpt"))
        per_step = epoch_s / args.epoch_length
        out["epoch"] = {"seconds": round(epoch_s, 2), "per_step_s": round(per_step, 3),
                        "crops_per_s": round(args.epoch_length * args.batch_size / epoch_s, 1),
                        "baseline_bare_step_s": round(bare, 3), "ratio_vs_bare": round(per_step / bare, 2),
                        "target_s": EPOCH_TARGET_S, "checkpoint_written": (root / "ckpt").exists(),
                        "step_lines": sum(e.get("event") == "step" for e in events)}
        if args.contend:
            from medstation.workflows.bench_lanes import CONTENDED_TARGET_RATIO, busy

            steps = max(4, min(args.epoch_length, args.contend_steps))
            # the quiet reference of the same length (a short run pays its first step's allocations)
            quiet = statistics.median(_epoch(fresh(), bank, steps, args.batch_size, "")[0] / steps
                                      for _ in range(2))
            adaptive, fixed = [], []
            with busy(args.contend):
                for _ in range(2):
                    adaptive.append(_epoch(fresh(), bank, steps, args.batch_size, "", adapt=True)[0] / steps)
                    fixed.append(_epoch(fresh(), bank, steps, args.batch_size, "", adapt=False)[0] / steps)
            a, f = statistics.median(adaptive), statistics.median(fixed)
            out["contended"] = {"busy_processes": args.contend, "steps": steps,
                                "adaptive_step_s": round(a, 3), "fixed_step_s": round(f, 3),
                                "quiet_step_s": round(quiet, 3),
                                "adaptive_ratio_vs_quiet": round(a / quiet, 2),
                                "fixed_ratio_vs_quiet": round(f / quiet, 2),
                                "target_ratio": CONTENDED_TARGET_RATIO}
    out["pass"] = bool(out["start"]["first_line_s"] <= START_TARGET_S and epoch_s <= EPOCH_TARGET_S)
    return out
