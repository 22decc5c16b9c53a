"""Detection metrics: FROC and CPM, as LUNA16 and nnDetection compute them.

A candidate is a hit when its centre lies within the radius of a reference
nodule (distance in mm, patient coordinates). Each nodule counts once (its
best-scoring hit). Hits on nodules outside the evaluated size range are
neither true nor false positives (LUNA16 treats "irrelevant findings" this
way). FROC: sensitivity against false positives per scan as the score
threshold falls; CPM: mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FP/scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class Candidate:
    center_mm: tuple[float, float, float]
    score: float


@dataclass
class Reference:
    center_mm: tuple[float, float, float]
    diameter_mm: float


@dataclass
class FrocResult:
    scans: int
    nodules: int
    sensitivity_at: dict[float, float]
    cpm: float
    threshold_at_1fp: float
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (threshold, fp/scan, sensitivity)
    missed: list[tuple[int, Reference]] = field(default_factory=list)  # (scan index, nodule) never hit

    def to_dict(self) -> dict:
        return {
            "scans": self.scans,
            "nodules": self.nodules,
            "sensitivity_at_fp_per_scan": {str(k): round(v, 4) for k, v in self.sensitivity_at.items()},
            "cpm": round(self.cpm, 4),
            "threshold_at_1fp": round(self.threshold_at_1fp, 4),
            "missed": [{"scan": s, "center_mm": list(r.center_mm), "diameter_mm": r.diameter_mm}
                       for s, r in self.missed],
        }


def froc(candidates: list[list[Candidate]], references: list[list[Reference]], *,
         min_diameter: float = 0.0, max_diameter: float = float("inf")) -> FrocResult:
    """FROC over scans; ``candidates[s]`` and ``references[s]`` belong to scan ``s``."""
    if len(candidates) != len(references):
        raise ValueError("one candidate list and one reference list per scan")
    scans = len(references)
    events: list[tuple[float, int, int]] = []  # (score, kind: 0 fp / 1 tp, nodule id)
    counted = 0
    nodule_ids: list[tuple[int, Reference]] = []
    for s, (cands, refs) in enumerate(zip(candidates, references)):
        relevant = [min_diameter <= r.diameter_mm <= max_diameter for r in refs]
        ids = []
        for r, rel in zip(refs, relevant):
            ids.append(len(nodule_ids) if rel else -1)
            if rel:
                nodule_ids.append((s, r))
                counted += 1
        centres = np.array([r.center_mm for r in refs], float).reshape(-1, 3)
        radii = np.array([r.diameter_mm / 2 for r in refs], float)
        for c in cands:
            if len(refs):
                d = np.linalg.norm(centres - np.asarray(c.center_mm, float), axis=1)
                hit = np.nonzero(d <= radii)[0]
            else:
                hit = np.array([], int)
            if len(hit) == 0:
                events.append((c.score, 0, -1))
                continue
            rel_hits = [ids[h] for h in hit if ids[h] >= 0]
            if rel_hits:
                best = min(rel_hits, key=lambda n: np.linalg.norm(np.subtract(nodule_ids[n][1].center_mm,
                                                                                c.center_mm)))
                events.append((c.score, 1, best))
            # a hit on an irrelevant nodule only: ignored
    events.sort(key=lambda e: -e[0])
    found: set[int] = set()
    fps = 0
    curve: list[tuple[float, float, float]] = []
    for score, kind, nid in events:
        if kind == 1:
            found.add(nid)
        else:
            fps += 1
        curve.append((score, fps / max(scans, 1), len(found) / max(counted, 1)))
    sens_at = {}
    thr_1fp = 1.0
    for rate in FP_RATES:
        ok = [(t, sens) for t, fp, sens in curve if fp <= rate]
        sens_at[rate] = max((sens for _t, sens in ok), default=0.0)
        if rate == 1.0 and ok:
            thr_1fp = ok[-1][0]
    missed = [nodule_ids[n] for n in range(len(nodule_ids)) if n not in found]
    return FrocResult(scans, counted, sens_at, float(np.mean(list(sens_at.values()))), thr_1fp, curve, missed)
