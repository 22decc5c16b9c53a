"""Train and judge the follow-up predictor (``ai.predictor``) on synthetic lesion courses.

Courses (``make_tracks``), drawn to look like published nodule behaviour: most
lesions stable (or benign, slowly changing); some shrinking or resolving
inflammatory ones; growing ones with volume doubling times drawn per type (a
log-normal around 250 days for solid cancers, 500 for part-solid, 900 for ground
glass); 2-6 studies 60-500 days apart; measured volumes with volumetry noise
that is larger for small lesions (~10% at 10 mm, ~25% at 4 mm). Each track's
last measurement is the target; the ones before are the history.

Baselines, computed on the same held-out tracks: no change; the volume doubling
time of the last two timepoints, extrapolated; a straight line through the
diameters. Metrics: MAE of log volume at the next timepoint, coverage of the
80% interval, AUC for Lung-RADS growth (> 1.5 mm mean diameter).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medstation.ai.predictor import ARCHITECTURE, DEFAULT_RANGE, TASK, TYPES, GrowthRNN, features
from medstation.synth.courses import make_tracks, sphere_diameter

TRAIN_SEED, VAL_SEED, TEST_SEED = 0, 1, 2


def split_example(track: dict) -> tuple[list[dict], dict, float]:
    """History, target and days ahead."""
    pts = track["points"]
    return pts[:-1], pts[-1], pts[-1]["days"] - pts[-2]["days"]


def grew(history: list[dict], target: dict) -> bool:
    """Lung-RADS growth: the mean diameter up by more than 1.5 mm."""
    return target["diameter_mm"] - history[-1]["diameter_mm"] > 1.5


# -- baselines ------------------------------------------------------------------------------------

def baseline_predictions(history: list[dict], days_ahead: float) -> dict[str, tuple[float, float]]:
    """Per baseline: (predicted log volume, predicted diameter change in mm)."""
    last = history[-1]
    lv = math.log(last["volume_mm3"])
    out = {"no change": (lv, 0.0)}
    if len(history) >= 2:
        a, b = history[-2], history[-1]
        dt = b["days"] - a["days"]
        rate = (math.log(b["volume_mm3"]) - math.log(a["volume_mm3"])) / dt if dt > 0 else 0.0
        plv = lv + rate * days_ahead
        out["VDT of the last two"] = (plv, sphere_diameter(math.exp(plv)) - last["diameter_mm"])
        t = np.array([p["days"] for p in history])
        d = np.array([p["diameter_mm"] for p in history])
        slope, icpt = np.polyfit(t, d, 1)
        pd = max(0.5, float(icpt + slope * (last["days"] + days_ahead)))
        out["linear diameter trend"] = (math.log(math.pi / 6 * pd ** 3), pd - last["diameter_mm"])
    else:
        out["VDT of the last two"] = out["no change"]
        out["linear diameter trend"] = out["no change"]
    return out


def auc(scores, labels) -> float:
    s = np.asarray(scores, float)
    y = np.asarray(labels, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    # Mann-Whitney with average ranks for ties (a constant score is 0.5)
    values, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    ranks = average[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(predictor, tracks: list[dict]) -> dict:
    """The model against the baselines on ``tracks`` (their last measurement is the target)."""
    examples = [split_example(t) for t in tracks]
    preds = predictor.predict_many([h for h, _t, _d in examples], [d for _h, _t, d in examples])
    truth_lv = np.array([math.log(t["volume_mm3"]) for _h, t, _d in examples])
    labels = [grew(h, t) for h, t, _d in examples]
    model_lv = np.array([math.log(p.volume_mm3) for p in preds])
    low = np.array([math.log(p.volume_low) for p in preds])
    high = np.array([math.log(p.volume_high) for p in preds])
    rows = {"model": {"mae_log_volume": float(np.mean(np.abs(model_lv - truth_lv))),
                      "coverage_80": float(np.mean((truth_lv >= low) & (truth_lv <= high))),
                      "auc_growth": auc([p.p_growth for p in preds], labels)}}
    base = [baseline_predictions(h, d) for h, _t, d in examples]
    for name in base[0]:
        lv = np.array([b[name][0] for b in base])
        rows[name] = {"mae_log_volume": float(np.mean(np.abs(lv - truth_lv))),
                      "auc_growth": auc([b[name][1] for b in base], labels)}
    best = min((k for k in rows if k != "model"), key=lambda k: rows[k]["mae_log_volume"])
    best_auc = max((rows[k]["auc_growth"] for k in rows if k != "model"), default=float("nan"))
    return {"tracks": len(tracks), "growth_share": float(np.mean(labels)), "rows": rows,
            "best_baseline": best,
            "mae_ratio_to_best": rows["model"]["mae_log_volume"] / rows[best]["mae_log_volume"],
            "auc_vs_best_baseline": rows["model"]["auc_growth"] - best_auc}


# -- training ---------------------------------------------------------------------------------------

def _batch(tracks: list[dict], rng: np.random.Generator):
    """Random prefixes: a track of n points gives a history of 1..n-1 points and a target after it."""
    feats, lengths, ahead, last_lv, target_lv, growth = [], [], [], [], [], []
    for t in tracks:
        pts = t["points"]
        k = int(rng.integers(1, len(pts)))  # history length
        j = int(rng.integers(k, len(pts)))  # target index
        hist, tgt = pts[:k], pts[j]
        feats.append(torch.from_numpy(features(hist)))
        lengths.append(k)
        ahead.append((tgt["days"] - hist[-1]["days"]) / 365.25)
        last_lv.append(math.log(hist[-1]["volume_mm3"]))
        target_lv.append(math.log(tgt["volume_mm3"]))
        growth.append(1.0 if grew(hist, tgt) else 0.0)
    return (nn.utils.rnn.pad_sequence(feats, batch_first=True), torch.tensor(lengths),
            torch.tensor(ahead, dtype=torch.float32), torch.tensor(last_lv, dtype=torch.float32),
            torch.tensor(target_lv, dtype=torch.float32), torch.tensor(growth))


#: bounds of a follow-up measurement read from a report (a 20 cm lesion, a density in HU, 30 years)
MAX_REPORT_BYTES = 50_000_000
MAX_VOLUME_MM3 = 4.2e6
MAX_DIAMETER_MM = 200.0
MAX_DAYS = 30 * 366


def tracks_from_reports(paths) -> list[dict]:
    """Local training tracks from ``medstation followup --json`` reports: every track with two or more
    measured volumes (a box-sized point has none: left out), its dates turned into days; unconfirmed
    new tracks are left out (they may be no lesion at all).

    All or nothing: a report that is not one, or a value that is not finite or out of bounds (a volume,
    a diameter, a density, a date, days going back) is a ``LabelError`` naming the file, the track and
    the field; nothing is trained on then."""
    from medstation.core.errors import LabelError

    out = []
    for path in paths:
        path = Path(path)
        where = str(path)
        try:
            if path.stat().st_size > MAX_REPORT_BYTES:
                raise LabelError(f"{where}: {path.stat().st_size} bytes is not a follow-up report",
                                 "give the JSON that `medstation followup --json` wrote")
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise LabelError(f"{where}: not a readable follow-up report ({type(exc).__name__}: "
                             f"{str(exc)[:120]})",
                             "give the JSON that `medstation followup --json` wrote") from None
        tracks = report.get("tracks") if isinstance(report, dict) else None
        if not isinstance(tracks, list):
            raise LabelError(f"{where}: no 'tracks' list: not a follow-up report",
                             "give the JSON that `medstation followup --json` wrote")
        for n, t in enumerate(tracks, start=1):
            track = _local_track(t, f"{where}: track {n}")
            if track:
                out.append(track)
    return out


def _local_track(t, where: str) -> dict | None:
    from medstation.ai.predictor import _day
    from medstation.core.errors import LabelError

    fix = "correct or re-create the report with `medstation followup --json`"
    if not isinstance(t, dict) or not isinstance(t.get("measurements"), list):
        raise LabelError(f"{where}: not a track (no 'measurements' list)", fix)
    if t.get("confirmed") is False:
        return None
    pts = []
    for m, p in enumerate(t["measurements"], start=1):
        if p is None:
            continue
        if not isinstance(p, dict):
            raise LabelError(f"{where}, measurement {m}: not an object", fix)
        if p.get("volume_mm3") is None:
            continue
        here = f"{where}, measurement {m}"
        _bounded(p, "volume_mm3", 0.0, MAX_VOLUME_MM3, here, fix)
        _bounded(p, "diameter_mm", 0.0, MAX_DIAMETER_MM, here, fix)
        if p.get("mean_hu") is not None:
            _bounded(p, "mean_hu", -1100.0, 3100.0, here, fix, low_open=False)
        if "days" in p:
            _bounded(p, "days", -MAX_DAYS, MAX_DAYS, here, fix, low_open=False)
        else:
            try:
                _day(p)
            except (KeyError, ValueError, TypeError):
                raise LabelError(f"{here}: study_date {str(p.get('study_date'))[:20]!r} is not a date "
                                 "(YYYYMMDD)", fix) from None
        if not isinstance(p.get("type", "solid"), str):
            raise LabelError(f"{here}: type is not text", fix)
        pts.append(dict(p))
    if len(pts) < 2:
        return None
    days = [_day(p) for p in pts]
    if any(b < a for a, b in zip(days, days[1:])) or days[-1] - days[0] > MAX_DAYS:
        raise LabelError(f"{where}: its dates go back in time or span more than 30 years", fix)
    for p, d in zip(pts, days):
        p["days"] = d - days[0]
    return {"points": pts, "kind": str(t.get("status", "")), "type": pts[-1].get("type", "solid")}


def _bounded(p: dict, key: str, lo: float, hi: float, where: str, fix: str, *, low_open: bool = True) -> None:
    from medstation.core.errors import LabelError

    v = p.get(key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (
        lo < v <= hi if low_open else lo <= v <= hi)
    if not ok:
        raise LabelError(f"{where}: {key} {str(v)[:40]} is not a number in {'(' if low_open else '['}"
                         f"{lo:g}, {hi:g}]", fix)


def _step(train: list[dict], local: list[dict], batch: int, local_share: float):
    """The trainer's step: a batch of random prefixes (local tracks oversampled to ``local_share``),
    Gaussian NLL of the log volume plus BCE of growth."""
    def step(t, _iteration: int) -> dict[str, float]:
        n_local = int(round(batch * local_share)) if local else 0
        picks = [train[i] for i in t.rng.integers(0, len(train), batch - n_local)]
        picks += [local[i] for i in t.rng.integers(0, len(local), n_local)] if n_local else []
        x, lengths, ahead, last_lv, target_lv, growth = _batch(picks, t.rng)
        rate, s0, s1, logit = t.model(x, lengths, ahead)
        mu = last_lv + rate * ahead
        var = s0 ** 2 + (s1 * ahead) ** 2
        nll = 0.5 * (torch.log(var) + (target_lv - mu) ** 2 / var).mean()
        bce = nn.functional.binary_cross_entropy_with_logits(logit, growth)
        loss = nll + bce
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(t.model.parameters(), 5.0)
        t.optimizer.step()
        return {"nll": float(nll.detach()), "bce": float(bce.detach())}

    return step


def train_followup(out_dir, *, tracks: int = 20000, steps: int = 3000, batch: int = 256, lr: float = 3e-3,
                   hidden: int = 48, seed: int = 0, log=sys.stdout, version: str = "1.0.0", base: str = "",
                   local: list[dict] | None = None, checkpoint: str = "", resume: bool = False,
                   check=None) -> dict:
    """Train (or, from ``base``, fine-tune on ``local`` tracks mixed with synthetic ones) on the project's
    Trainer: JSON lines, an LR schedule, atomic checkpoints with resume."""
    from medstation.ai.predictor import Predictor
    from medstation.ai.store import load_state, save_model
    from medstation.training.recipe import Recipe, fit

    def emit(**event) -> None:
        if log is not None:
            log.write(json.dumps(event) + "\n")
            log.flush()

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train = make_tracks(tracks, TRAIN_SEED)
    test = make_tracks(max(2000, tracks // 10), TEST_SEED)
    local = list(local or [])
    emit(event="data", train=len(train), test=len(test), local=len(local))
    model = GrowthRNN(hidden)
    parent = None
    if base:
        base_manifest, state = load_state(base)
        model = GrowthRNN(int((base_manifest.get("network") or {}).get("hidden", hidden)))
        model.load_state_dict(state)
        parent = str(base_manifest.get("version"))
    recipe = Recipe(model=model, make_step=lambda _device: _step(train, local, batch, 0.5), steps=steps,
                    epoch_length=max(1, steps // 10), lr=lr, weight_decay=1e-4, warmup=0.1, seed=seed,
                    log_every=100, checkpoint=checkpoint, resume=resume, what="follow-up training",
                    resume_hint="run it again with --resume and the same --checkpoint")
    fit(recipe, log=log, check=check)
    model.eval()
    manifest = {"name": "followup-rnn", "version": version, "parent_version": parent, "task": TASK,
                "architecture": ARCHITECTURE, "network": {"hidden": hidden}, "valid_range": DEFAULT_RANGE,
                "input": {"per_timepoint": ["log volume change from the first", "mean diameter / 10 mm",
                                            "mean HU / 1000", *(f"type {t}" for t in TYPES),
                                            "years since the previous timepoint"],
                          "at": "years ahead of the last timepoint"},
                "classes": ["no growth", "growth (mean diameter + 1.5 mm)"],
                "training_data": {"source": "medstation.training.followup_rnn synthetic lesion courses "
                                            "(no patient data)", "tracks": len(train), "seed": TRAIN_SEED,
                                  "courses": "55% stable, 10% benign slow change, 10% shrinking, 25% growing "
                                             "(VDT log-normal around 250 / 500 / 900 days for solid / "
                                             "part-solid / ground glass)",
                                  "noise": "volumetry noise, log-normal, SD 0.05 + 0.6 / diameter(mm)",
                                  "local_tracks": len(local)},
                "training": {"steps": steps, "batch": batch, "lr": lr, "seed": seed,
                             "seconds": round(time.perf_counter() - t0, 1)},
                "intended_use": "Research and demonstration on synthetic data. Not for clinical use.",
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    result = evaluate(Predictor(model, manifest), test)
    manifest["metrics"] = {"held_out_tracks": result}
    emit(event="evaluated", **{k: v for k, v in result.items() if k != "rows"}, rows=result["rows"])
    save_model(out_dir, model.state_dict(), manifest)
    write_card(out_dir)
    emit(event="saved", path=str(out_dir))
    return manifest


def write_card(out_dir) -> None:
    from pathlib import Path

    from medstation.ai.store import read_manifest
    from medstation.core.files import atomic_write_text

    m = read_manifest(out_dir)
    r = (m.get("metrics") or {}).get("held_out_tracks") or {}
    lines = [f"# Model card: {m['name']} {m['version']}", "",
             "**Not for clinical use.** Trained only on synthetic lesion courses; it has never seen a real "
             "patient's follow-up.", "",
             "## What it does", "",
             "Predicts a tracked lesion's volume at a chosen date (a Gaussian in log volume: the median and "
             "an 80% interval) and the probability that its mean diameter grows by more than 1.5 mm "
             "(Lung-RADS), "
             "from the lesion's own history (1 to 8 timepoints; gaps between studies are inputs). With one "
             "timepoint it has no history and answers with a wide, population-level interval. Tracks outside "
             f"its range ({m.get('valid_range')}) are withheld with the reason.", "",
             f"- Architecture: `{m['architecture']}` (a GRU, hidden {m['network']['hidden']}, and a head "
             "giving "
             "the growth rate, two uncertainty terms and the growth logit).",
             f"- Training data: {m['training_data']['tracks']} tracks; {m['training_data']['courses']}; "
             f"{m['training_data']['noise']}.",
             f"- Training: {m['training']['steps']} steps, batch {m['training']['batch']}, "
             f"{m['training']['seconds']} s on this project's CPU.", ""]
    if r:
        lines += ["## How it scored", "",
                  f"On {r['tracks']} held-out synthetic tracks (another seed; {r['growth_share']:.0%} grew), "
                  "predicting each track's last measurement from the ones before:", "",
                  "| method | MAE of log volume | 80% interval coverage | AUC for growth |",
                  "|---|---|---|---|"]
        for name, row in r["rows"].items():
            cov = f"{row['coverage_80']:.3f}" if "coverage_80" in row else ""
            lines.append(f"| {name} | {row['mae_log_volume']:.3f} | {cov} | {row['auc_growth']:.3f} |")
        lines += ["", f"MAE ratio to the best baseline ({r['best_baseline']}): {r['mae_ratio_to_best']:.2f} "
                  "(target <= 0.8). Both the data and the test are synthetic: the figures say how well the "
                  "model learned these courses, not how real nodules behave."]
    lines += ["", f"Intended use: {m.get('intended_use')}", ""]
    atomic_write_text(Path(out_dir) / "MODEL_CARD.md", "\n".join(lines))
