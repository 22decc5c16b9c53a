"""The follow-up predictor: a GRU over a lesion track that says how big the lesion will be at a date.

Per timepoint the network reads the log volume (relative to the first), the mean
diameter, the mean HU, the type (solid, part-solid, ground glass) and the gap
to the previous timepoint in years: the gaps are inputs (as in time-aware
LSTMs / GRU-D), so irregular intervals work. From the last hidden state and the
time ahead it gives

- a growth rate r (log volume per year) and an uncertainty: the predicted log
  volume at the date is Gaussian with mean ``log V_last + r * dt`` and standard
  deviation ``sqrt(s0^2 + (s1 * dt)^2)`` (measurement noise plus the rate's);
- the probability that the mean diameter grows by more than 1.5 mm (Lung-RADS).

It handles 1 to N timepoints; with one it has "no history" and answers with
what it learned of such lesions in general (a wide interval). Tracks outside
the range it was trained on (size, gap, horizon) are withheld with the reason.
Not for clinical use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medstation.core.errors import ModelError

ARCHITECTURE = "gru-growth"
TASK = "followup"
TYPES = ("solid", "part-solid", "ground-glass")
FEATURES = 7  # log-volume change, diameter/10, HU/1000, 3 types, gap (years)
Z80 = 1.2815515655446004  # the 10th-90th percentile half width of a Gaussian, in SDs
#: what the default model was trained on (checked per track; outside: withheld)
DEFAULT_RANGE = {"diameter_mm": [3.0, 40.0], "gap_days": [20.0, 800.0], "ahead_days": [1.0, 1100.0],
                 "timepoints": [1, 8]}


class GrowthRNN(nn.Module):
    def __init__(self, hidden: int = 48) -> None:
        super().__init__()
        self.gru = nn.GRU(FEATURES, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden + 1, hidden), nn.ReLU(), nn.Linear(hidden, 4))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, ahead_years: torch.Tensor):
        """``x`` (batch, steps, FEATURES) padded, ``lengths`` (batch,), ``ahead_years`` (batch,) ->
        rate (log volume per year), s0, s1 (>0), growth logit."""
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _out, h = self.gru(packed)
        z = self.head(torch.cat([h[-1], ahead_years[:, None]], dim=1))
        rate = z[:, 0]
        s0 = nn.functional.softplus(z[:, 1]) + 0.02
        s1 = nn.functional.softplus(z[:, 2]) + 0.01
        return rate, s0, s1, z[:, 3]


def features(points: list[dict]) -> np.ndarray:
    """(steps, FEATURES) from measurements ``{study_date | days, volume_mm3, diameter_mm, mean_hu, type}``
    (``days``: days since the first; else ``study_date`` YYYYMMDD)."""
    days = [_day(p) for p in points]
    v0 = math.log(max(points[0]["volume_mm3"], 1.0))
    rows = []
    for n, p in enumerate(points):
        t = p.get("type", "solid")
        onehot = [1.0 if t == k else 0.0 for k in TYPES]
        if not any(onehot):
            onehot[0] = 1.0
        gap = (days[n] - days[n - 1]) / 365.25 if n else 0.0
        rows.append([math.log(max(p["volume_mm3"], 1.0)) - v0, p["diameter_mm"] / 10.0,
                     float(p.get("mean_hu", 0.0)) / 1000.0, *onehot, gap])
    return np.asarray(rows, np.float32)


def _day(p: dict) -> float:
    if "days" in p:
        return float(p["days"])
    d = str(p["study_date"])
    import datetime as _dt

    return float(_dt.date(int(d[:4]), int(d[4:6]), int(d[6:8])).toordinal())


@dataclass
class Prediction:
    days_ahead: float
    volume_mm3: float
    volume_low: float
    volume_high: float
    diameter_mm: float
    p_growth: float
    no_history: bool

    def to_dict(self) -> dict:
        return {"days_ahead": round(self.days_ahead, 1), "volume_mm3": round(self.volume_mm3, 1),
                "volume_low": round(self.volume_low, 1), "volume_high": round(self.volume_high, 1),
                "diameter_mm": round(self.diameter_mm, 2), "p_growth": round(self.p_growth, 4),
                "no_history": self.no_history}


class Predictor:
    def __init__(self, model: GrowthRNN, manifest: dict) -> None:
        self.model = model.eval()
        self.manifest = manifest
        self.name = str(manifest.get("name", ""))
        self.version = str(manifest.get("version", ""))
        self.range = {**DEFAULT_RANGE, **(manifest.get("valid_range") or {})}

    def withheld(self, points: list[dict], days_ahead: float) -> str:
        """Why this track is outside what the model learned ("" when it is inside)."""
        r = self.range
        if not points:
            return "no measurement"
        if not r["timepoints"][0] <= len(points) <= r["timepoints"][1]:
            return f"{len(points)} timepoints (the model knows {r['timepoints'][0]}-{r['timepoints'][1]})"
        sizes = [p["diameter_mm"] for p in points]
        if min(sizes) < r["diameter_mm"][0] or max(sizes) > r["diameter_mm"][1]:
            return (f"a size of {min(sizes):.1f}-{max(sizes):.1f} mm (the model knows "
                    f"{r['diameter_mm'][0]:g}-{r['diameter_mm'][1]:g} mm)")
        days = [_day(p) for p in points]
        gaps = np.diff(days)
        if len(gaps) and (gaps.min() < r["gap_days"][0] or gaps.max() > r["gap_days"][1]):
            return (f"gaps of {gaps.min():.0f}-{gaps.max():.0f} days between studies (the model knows "
                    f"{r['gap_days'][0]:g}-{r['gap_days'][1]:g})")
        if not r["ahead_days"][0] <= days_ahead <= r["ahead_days"][1]:
            return (f"{days_ahead:.0f} days ahead (the model predicts {r['ahead_days'][0]:g}-"
                    f"{r['ahead_days'][1]:g} days ahead)")
        return ""

    @torch.inference_mode()
    def predict_many(self, tracks: list[list[dict]], days_ahead: list[float]) -> list[Prediction]:
        if not tracks:
            return []
        feats = [torch.from_numpy(features(p)) for p in tracks]
        lengths = torch.tensor([len(f) for f in feats])
        x = nn.utils.rnn.pad_sequence(feats, batch_first=True)
        ahead = torch.tensor(days_ahead, dtype=torch.float32) / 365.25
        rate, s0, s1, logit = self.model(x, lengths, ahead)
        out = []
        for n, pts in enumerate(tracks):
            last = math.log(max(pts[-1]["volume_mm3"], 1.0))
            dt = float(ahead[n])
            mu = last + float(rate[n]) * dt
            sd = math.sqrt(float(s0[n]) ** 2 + (float(s1[n]) * dt) ** 2)
            v = math.exp(mu)
            out.append(Prediction(days_ahead[n], v, math.exp(mu - Z80 * sd), math.exp(mu + Z80 * sd),
                                  (6 * v / math.pi) ** (1 / 3), float(torch.sigmoid(logit[n])),
                                  len(pts) == 1))
        return out

    def predict(self, points: list[dict], days_ahead: float) -> Prediction:
        return self.predict_many([points], [days_ahead])[0]


def load_predictor(model_dir) -> Predictor:
    from medstation.ai.store import load_state

    manifest, state = load_state(model_dir)
    if manifest.get("architecture") != ARCHITECTURE:
        raise ModelError(f"{model_dir}: architecture {manifest.get('architecture')!r} is not a follow-up "
                         f"predictor ({ARCHITECTURE})", "pick a model of task 'followup'")
    model = GrowthRNN(int((manifest.get("network") or {}).get("hidden", 48)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{model_dir}: weights do not fit {ARCHITECTURE} ({str(exc).splitlines()[0]})",
                         "reinstall or retrain the model") from None
    return Predictor(model, manifest)
