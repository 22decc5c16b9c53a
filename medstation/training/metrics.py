"""Detection metrics: FROC and CPM exactly as the LUNA16 evaluation script computes them.

The script is ``noduleCADEvaluationLUNA16.py`` (Setio et al., Medical Image Analysis 2017; the
LUNA16 challenge's evaluation code). Its rules, each followed here (the script's lines quoted):

- a nodule is detected when a candidate's centre lies strictly inside its radius:
  ``if dist < radiusSquared`` (a candidate exactly on the radius is not a hit);
- every candidate inside a nodule is removed from the false positives, and a candidate inside two
  nodules is credited to each of them ("This is strange: CAD mark ... detected two nodules!");
- a detected nodule enters the FROC once, with its best candidate's score: ``FROCProbList.append(
  float(maxProb))``; an undetected one counts in the total but not in the ROC (``excludeList``);
- candidates inside an *excluded* annotation (LUNA16's ``annotations_excluded.csv``; here also nodules
  outside an explicit size range) are neither hits nor false positives: they are ignored;
- the FROC curve is sklearn's ROC of the remaining (label, score) pairs, each threshold a distinct
  score (tied candidates move together: the result does not depend on their order), scaled to false
  positives per scan and sensitivity; ``sens_itp = np.interp(fps_itp, fps, sens)`` on
  ``np.linspace(0.125, 8, num=10001)``, read at ``((rates - 0.125) * 10000 / (8 - 0.125)).astype(int)``;
  the CPM is the mean of those seven readings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: the script's interpolation grid
FROC_MIN_X, FROC_MAX_X, FROC_POINTS = 0.125, 8.0, 10001
#: the script's radius for an annotation without a diameter (``if diameter < 0.0: diameter = 10.0``)
DEFAULT_DIAMETER_MM = 10.0


@dataclass
class Candidate:
    center_mm: tuple[float, float, float]
    score: float


@dataclass
class Reference:
    center_mm: tuple[float, float, float]
    diameter_mm: float
    #: an excluded annotation (LUNA16's ``annotations_excluded.csv``): not counted, and candidates
    #: inside it are not false positives
    excluded: bool = False


@dataclass
class FrocResult:
    scans: int
    nodules: int
    sensitivity_at: dict[float, float]
    cpm: float
    threshold_at_1fp: float
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (threshold, fp/scan, sensitivity)
    missed: list[tuple[int, Reference]] = field(default_factory=list)  # (scan index, nodule) never hit
    #: the nodules counted: every annotation, or those in the explicit size range (mm, inclusive)
    size_range: tuple[float, float] = (0.0, math.inf)
    #: annotations not counted (excluded, or outside the size range): their candidates are ignored
    ignored_nodules: int = 0

    def to_dict(self) -> dict:
        lo, hi = self.size_range
        return {
            "scans": self.scans,
            "nodules": self.nodules,
            "nodules_ignored": self.ignored_nodules,
            "size_range_mm": [lo, None if math.isinf(hi) else hi],
            "sensitivity_at_fp_per_scan": {str(k): round(v, 4) for k, v in self.sensitivity_at.items()},
            "cpm": round(self.cpm, 4),
            "cpm_method": "LUNA16 (interpolated FROC)",
            "threshold_at_1fp": round(self.threshold_at_1fp, 4),
            "missed": [{"scan": s, "center_mm": list(r.center_mm), "diameter_mm": r.diameter_mm}
                       for s, r in self.missed],
        }


def froc(candidates: list[list[Candidate]], references: list[list[Reference]], *,
         min_diameter: float = 0.0, max_diameter: float = math.inf) -> FrocResult:
    """FROC over scans; ``candidates[s]`` and ``references[s]`` belong to scan ``s``. Every annotation
    counts unless excluded or outside [``min_diameter``, ``max_diameter``] (then it is ignored, as
    LUNA16 ignores its excluded annotations)."""
    if len(candidates) != len(references):
        raise ValueError("one candidate list and one reference list per scan")
    scans = len(references)
    labels: list[int] = []
    scores: list[float] = []
    in_roc: list[bool] = []
    counted: list[tuple[int, Reference]] = []
    missed: list[tuple[int, Reference]] = []
    ignored = 0
    for s, (cands, refs) in enumerate(zip(candidates, references)):
        centres = np.array([c.center_mm for c in cands], float).reshape(-1, 3)
        left = np.ones(len(cands), bool)  # the script's candidates2: what stays a false positive
        for r in refs:
            diameter = r.diameter_mm if r.diameter_mm >= 0 else DEFAULT_DIAMETER_MM
            d2 = ((centres - np.asarray(r.center_mm, float)) ** 2).sum(axis=1)
            inside = d2 < (diameter / 2.0) ** 2  # strictly inside the radius
            left &= ~inside
            if r.excluded or not min_diameter <= r.diameter_mm <= max_diameter:
                ignored += 1
                continue
            counted.append((s, r))
            labels.append(1)
            if inside.any():
                scores.append(float(max(c.score for c, hit in zip(cands, inside) if hit)))
                in_roc.append(True)
            else:
                scores.append(-1e9)  # the script's minProbValue; kept out of the ROC
                in_roc.append(False)
                missed.append((s, r))
        for c, fp in zip(cands, left):
            if fp:
                labels.append(0)
                scores.append(float(c.score))
                in_roc.append(True)
    thresholds, fps, sens = _froc_curve(labels, scores, in_roc, scans, len(counted))
    grid = np.linspace(FROC_MIN_X, FROC_MAX_X, num=FROC_POINTS)
    sens_grid = np.interp(grid, fps, sens)
    at = ((np.array(FP_RATES) - FROC_MIN_X) * (FROC_POINTS - 1) / (FROC_MAX_X - FROC_MIN_X)).astype(int)
    sens_at = {rate: float(sens_grid[i]) for rate, i in zip(FP_RATES, at)}
    within = [t for t, fp in zip(thresholds, fps) if fp <= 1.0 and math.isfinite(t)]
    curve = [(float(t), float(f), float(v)) for t, f, v in zip(thresholds, fps, sens) if math.isfinite(t)]
    return FrocResult(scans, len(counted), sens_at, float(np.mean(list(sens_at.values()))),
                      float(min(within)) if within else 1.0, curve, missed,
                      (float(min_diameter), float(max_diameter)), ignored)


def _froc_curve(labels, scores, in_roc, scans: int, lesions: int):
    """sklearn's ``roc_curve`` of the pairs in the ROC, scaled as the script's ``computeFROC``: one
    point per distinct score (highest first) after a start at (0, 0); (thresholds, fps, sens)."""
    y = np.array([lab for lab, keep in zip(labels, in_roc) if keep], float)
    p = np.array([sc for sc, keep in zip(scores, in_roc) if keep], float)
    order = np.argsort(-p, kind="mergesort")
    y, p = y[order], p[order]
    last_of_tie = np.r_[np.nonzero(np.diff(p))[0], len(p) - 1] if len(p) else np.array([], int)
    tp = np.cumsum(y)[last_of_tie] if len(p) else np.array([])
    fp = np.cumsum(1 - y)[last_of_tie] if len(p) else np.array([])
    thresholds = np.r_[np.inf, p[last_of_tie]] if len(p) else np.array([np.inf])
    if all(lab == 1 for lab in labels):  # the script's "this system has no false positives"
        fps = np.zeros(len(thresholds))
    else:
        fps = np.r_[0.0, fp] / max(scans, 1)
    sens = np.r_[0.0, tp] / lesions if lesions else np.zeros(len(thresholds))
    return thresholds, fps, sens
