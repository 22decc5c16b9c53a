"""Score calibration: a finding's score as the chance that it is a nodule.

The detector's raw score (FCOS: the square root of class probability times
centre-ness, best slice of the lesion) ranks candidates well but is not a
probability. Platt scaling on its logit, ``p = sigmoid(a * logit(s) + b)``
(temperature scaling is ``b = 0``), is fitted on (score, is-a-nodule) pairs of a
validation set the model did not train on, and stored in the manifest as
``calibration``. It is monotone, so rankings, FROC and CPM do not change; the
operating point moves with it. The reliability is the expected calibration
error (ECE): the mean over 10 equal-width score bins of |share of nodules -
mean score|, weighted by the bin's count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from medstation.core.errors import ModelError

BINS = 10
_EPS = 1e-4


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, _EPS, 1 - _EPS)
    return np.log(s / (1 - s))


def apply(score: float | np.ndarray, calibration: dict | None):
    """The calibrated score (unchanged when ``calibration`` is None or of an unknown method)."""
    if not calibration or calibration.get("method") != "platt":
        return score
    a, b = float(calibration["a"]), float(calibration["b"])
    z = a * _logit(np.asarray(score, np.float64)) + b
    out = 1 / (1 + np.exp(-z))
    return float(out) if np.ndim(out) == 0 else out


class CalibrationError(ModelError, ValueError):
    """Too few scored findings, or only one kind, to fit a calibration (a ``MedstationError``: one
    line with a hint; still a ``ValueError`` for callers that caught that)."""


def fit_platt(scored: Iterable[tuple[float, bool]], *, iterations: int = 100) -> dict:
    """Fit ``a, b`` by Newton's method on the log loss (a small L2 pull towards a=1, b=0)."""
    pairs = list(scored)
    if len(pairs) < 10 or len({bool(y) for _s, y in pairs}) < 2:
        hits = sum(1 for _s, y in pairs if y)
        raise CalibrationError(f"calibration needs at least 10 scored findings, true and false positives "
                               f"both; got {len(pairs)} ({hits} true, {len(pairs) - hits} false)",
                               "calibrate on more studies (--studies N) or on more labelled series (--site)")
    x = _logit(np.array([s for s, _ in pairs], np.float64))
    y = np.array([1.0 if t else 0.0 for _, t in pairs])
    a, b = 1.0, 0.0
    lam = 1e-3 * len(pairs)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * x + b)))
        w = p * (1 - p)
        g = np.array([np.sum((p - y) * x) + lam * (a - 1), np.sum(p - y) + lam * b])
        h = np.array([[np.sum(w * x * x) + lam, np.sum(w * x)], [np.sum(w * x), np.sum(w) + lam]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if abs(step).max() < 1e-8:
            break
    return {"method": "platt", "a": round(float(a), 6), "b": round(float(b), 6), "fitted_on": len(pairs),
            "positives": int(y.sum())}


def ece(scores: np.ndarray, labels: np.ndarray, bins: int = BINS) -> tuple[float, list[dict]]:
    """Expected calibration error and the reliability table (per bin: count, mean score, share true)."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(scores, edges) - 1, 0, bins - 1)
    total, table = 0.0, []
    for k in range(bins):
        sel = idx == k
        n = int(sel.sum())
        if not n:
            continue
        conf, acc = float(scores[sel].mean()), float(labels[sel].mean())
        total += n / len(scores) * abs(acc - conf)
        table.append({"bin": [round(edges[k], 2), round(edges[k + 1], 2)], "findings": n,
                      "mean_score": round(conf, 3), "share_nodules": round(acc, 3)})
    return total, table


def reliability(scored: list[tuple[float, bool]], calibration: dict | None = None) -> dict:
    """ECE of the scores as they are (already calibrated by the detector when it has a calibration)."""
    if not scored:
        return {"findings": 0, "ece": math.nan, "table": []}
    s = np.array([v for v, _ in scored], np.float64)
    y = np.array([1.0 if t else 0.0 for _, t in scored])
    e, table = ece(s, y)
    out = {"findings": len(scored), "nodules": int(y.sum()), "ece": round(e, 4), "table": table,
           "calibrated": bool(calibration)}
    return out
