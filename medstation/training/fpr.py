"""Train the false-positive reduction stage (``ai.fpr``) on the detector's own candidates.

``medstation train-fpr --model NAME[@VERSION] --out DIR`` renders chest CT volumes
of the training family (``VariedChestPhantom``, its own seeds: never the
evaluation seeds), runs the detector on each, and cuts a patch around every
candidate: a candidate within a nodule's radius is a positive, the rest (vessel
crossings, bronchi, the diaphragm's dome, the heart's border, ...) are the
negatives the detector actually makes. Positives are topped up with jittered
patches of every nodule. The classifier trains on balanced batches (flips and
in-plane quarter turns), a fifth of the volumes held out for its AUC; the result
is a new model version: the detector's weights plus ``fpr.*``, the manifest
recording both.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from medstation.ai import fpr
from medstation.core.errors import LabelError
from medstation.core.volume import Volume
from medstation.training.synthetic import acquire, make_phantom

#: phantom seeds the patch classifier's volumes come from (detector training uses 0..399, evaluation 10000+)
FPR_SEEDS = (1000, 2000)


def _emit(out, **event) -> None:
    if out is not None:
        out.write(json.dumps(event) + "\n")
        out.flush()


def render_volume(seed: int) -> tuple[Volume, list]:
    """A whole chest CT of the training family at a random acquisition, and its nodules."""
    rng = np.random.default_rng([seed, 5])
    ph = make_phantom(seed)
    px = float(rng.choice([0.7, 0.8, 0.9, 1.0]))
    thick = float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5]))
    n = int(2 * (ph.body_half_width + 15) / px)
    xs = (np.arange(n) - (n - 1) / 2) * px
    ys = xs + 10.0
    zs = np.arange(ph.z_bottom - 20, ph.z_top + 20, thick)
    planes = np.stack([ph.render_slice(float(z), xs, ys, thick) for z in zs]).astype(np.float32)
    vox = acquire(planes, rng, px).numpy()
    vol = Volume(vox, spacing=(thick, px, px), origin=(float(xs[0]), float(ys[0]), float(zs[0])),
                 modality="CT", series_uid=f"fpr-{seed}")
    return vol, list(ph.nodules)


@dataclass
class PatchSet:
    patches: np.ndarray  # (n, s, s, s) uint8
    labels: np.ndarray  # (n,) 0/1
    volume: np.ndarray  # (n,) index of the source volume (for the split)
    detector_scores: np.ndarray  # (n,) -1 for the jittered extra positives


def collect(detector, seeds: list[int], spec: dict, *, extra_per_nodule: int = 6, log=None,
            check=None) -> PatchSet:
    patches, labels, vols, scores = [], [], [], []
    rng = np.random.default_rng(7)
    for v, seed in enumerate(seeds):
        if check:
            check()
        t0 = time.perf_counter()
        volume, nodules = render_volume(seed)
        run = detector.detect(volume, heatmap=False)
        centres = [f.center_voxel for f in run.findings]
        lab = []
        for f in run.findings:
            lab.append(any(np.linalg.norm(np.subtract(f.center_mm, n.center)) <= n.diameter_mm / 2
                           for n in nodules))
        extra = []
        for n in nodules:
            c = np.asarray(volume.patient_to_index(n.center), float)
            if not all(0 <= c[a] < volume.shape[a] for a in range(3)):
                continue
            r = n.diameter_mm / 2
            for _ in range(extra_per_nodule):
                jitter = rng.uniform(-0.3, 0.3, 3) * r / np.abs(np.asarray(volume.spacing))
                extra.append(tuple(c + jitter))
        vol_t = fpr.volume_tensor(volume.voxels, spec["window"])
        cut = fpr.extract(vol_t, volume.spacing, centres + extra, spec)[:, 0]
        patches.append(np.rint(cut.numpy() * 255).astype(np.uint8))
        labels += [int(x) for x in lab] + [1] * len(extra)
        vols += [v] * (len(centres) + len(extra))
        scores += [f.score for f in run.findings] + [-1.0] * len(extra)
        _emit(log, event="volume", done=v + 1, total=len(seeds), candidates=len(centres),
              hits=int(sum(lab)), seconds=round(time.perf_counter() - t0, 1))
    return PatchSet(np.concatenate(patches), np.array(labels, np.int64), np.array(vols), np.array(scores))


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Flips on all three axes and a quarter turn in the axial plane (batch-wide)."""
    for axis in (2, 3, 4):
        if rng.random() < 0.5:
            x = x.flip(axis)
    return torch.rot90(x, int(rng.integers(4)), dims=(3, 4))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return math.nan
    order = np.argsort(np.concatenate([pos, neg]))
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def train_fpr(data: PatchSet, spec: dict, *, steps: int = 1500, batch: int = 32, lr: float = 2e-3,
              seed: int = 0, log=sys.stdout, check=None) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_vol = int(data.volume.max()) + 1
    val_vols = set(range(0, n_vol, 5))  # every fifth volume held out
    val = np.isin(data.volume, list(val_vols))
    train_pos = np.nonzero(~val & (data.labels == 1))[0]
    train_neg = np.nonzero(~val & (data.labels == 0))[0]
    if not len(train_pos) or not len(train_neg):
        raise LabelError(f"the patch classifier needs positive and negative training patches: "
                         f"{len(train_pos)} positive and {len(train_neg)} negative outside the held-out "
                         f"fifth of {n_vol} volume(s)",
                         "collect from more volumes (--volumes 10 or more)")
    net = fpr.build(spec)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    images = torch.from_numpy(data.patches)
    t0 = time.perf_counter()
    running = 0.0
    for step in range(1, steps + 1):
        if check:
            check()
        net.train()
        idx = np.concatenate([rng.choice(train_pos, batch // 2), rng.choice(train_neg, batch // 2)])
        x = _augment(images[idx].float().div_(255)[:, None], rng)
        y = torch.from_numpy(data.labels[idx]).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = 0.95 * running + 0.05 * float(loss) if step > 1 else float(loss)
        if step % 50 == 0 or step == steps:
            _emit(log, event="step", step=step, steps=steps, loss=round(running, 4),
                  lr=round(sched.get_last_lr()[0], 6), seconds=round(time.perf_counter() - t0, 1))
    # validation: the held-out volumes' real candidates (not the jittered extras)
    vsel = np.nonzero(val & (data.detector_scores >= 0))[0]
    prob = fpr.probabilities(net, images[vsel].float().div(255)[:, None], torch.device("cpu"))
    det = data.detector_scores[vsel]
    combined = fpr.combine(det, prob, float(spec["weight"]))
    summary = {"train_patches": int((~val).sum()), "train_positives": int(len(train_pos)),
               "validation_candidates": int(len(vsel)), "validation_nodules": int(data.labels[vsel].sum()),
               "auc_detector": round(auc(det, data.labels[vsel]), 4),
               "auc_classifier": round(auc(prob, data.labels[vsel]), 4),
               "auc_combined": round(auc(combined, data.labels[vsel]), 4),
               "steps": steps, "batch": batch, "lr": lr, "seconds": round(time.perf_counter() - t0, 1)}
    _emit(log, event="validated", **summary)
    return net.eval(), summary
