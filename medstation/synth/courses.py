"""Synthetic lesion courses for the follow-up predictor: sizes over time, no images.

Drawn to look like published nodule behaviour: most lesions stable (or benign,
slowly changing); some shrinking inflammatory ones; growing ones with volume
doubling times drawn per type (a log-normal around 250 days for solid cancers,
500 for part-solid, 900 for ground glass); 2-6 studies 60-500 days apart;
measured volumes with volumetry noise that is larger for small lesions (~10% at
10 mm, ~25% at 4 mm).
"""

from __future__ import annotations

import math

import numpy as np

TYPES = ("solid", "part-solid", "ground-glass")


def sphere_diameter(v: float) -> float:
    """The diameter (mm) of the sphere of volume ``v`` (mm^3)."""
    return (6 * v / math.pi) ** (1 / 3)


def make_tracks(n: int, seed: int) -> list[dict]:
    """``n`` synthetic tracks: ``{"points": [...], "kind": ...}`` with measured values."""
    rng = np.random.default_rng([seed, 1234])
    out = []
    for _ in range(n):
        typ = str(rng.choice(TYPES, p=[0.6, 0.15, 0.25]))
        u = rng.random()
        if u < 0.55:
            kind, vdt = "stable", math.inf
        elif u < 0.65:
            kind, vdt = "benign-slow", float(rng.uniform(1500, 5000))
        elif u < 0.75:
            kind, vdt = "shrinking", -float(rng.uniform(90, 500))
        else:
            kind = "growing"
            median = {"solid": 250.0, "part-solid": 500.0, "ground-glass": 900.0}[typ]
            vdt = float(np.exp(rng.normal(math.log(median), 0.5)))
        d0 = float(np.exp(rng.uniform(math.log(4.0), math.log(22.0))))
        v0 = math.pi / 6 * d0 ** 3
        steps = int(rng.integers(2, 7))
        days = np.concatenate([[0.0], np.cumsum(rng.uniform(60, 500, steps - 1))])
        hu = {"solid": 20.0, "part-solid": -300.0, "ground-glass": -600.0}[typ] + float(rng.normal(0, 40))
        points = []
        for t in days:
            v = v0 * (2 ** (t / vdt) if math.isfinite(vdt) else 1.0)
            v = min(max(v, 8.0), math.pi / 6 * 40.0 ** 3)
            noise = 0.05 + 0.6 / max(sphere_diameter(v), 1.0)
            vm = v * float(np.exp(rng.normal(0, noise)))
            points.append({"days": float(t), "volume_mm3": vm, "diameter_mm": sphere_diameter(vm),
                           "mean_hu": hu + float(rng.normal(0, 15)), "type": typ})
        out.append({"points": points, "kind": kind, "type": typ})
    return out


