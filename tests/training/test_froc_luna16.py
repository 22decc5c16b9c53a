"""FROC and CPM against a port of the LUNA16 evaluation script's logic (issue 27): the same candidates
through ``evaluateCAD`` / ``computeFROC`` as the script writes them (Setio et al. 2017,
noduleCADEvaluationLUNA16.py), untied, tied, on the boundary, inside two nodules, excluded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medstation.training.metrics import Candidate, Reference, froc


def _roc_curve(gt, prob):
    """sklearn.metrics.roc_curve(gt, prob) without sklearn: (fpr, tpr) at each distinct threshold,
    highest first, after (0, 0)."""
    pos = sum(1 for g in gt if g == 1)
    neg = len(gt) - pos
    fpr, tpr = [0.0], [0.0]
    for t in sorted(set(prob), reverse=True):
        tp = sum(1 for g, p in zip(gt, prob) if p >= t and g == 1)
        fp = sum(1 for g, p in zip(gt, prob) if p >= t and g == 0)
        fpr.append(fp / neg if neg else math.nan)
        tpr.append(tp / pos if pos else math.nan)
    return np.array(fpr), np.array(tpr)


def script_cpm(candidates, references) -> float:
    """The script's evaluateCAD + computeFROC, loop for loop (excluded annotations as its
    annotations_excluded.csv: their candidates are dropped from the false positives)."""
    gt_list, prob_list, exclude = [], [], []
    for cands, refs in zip(candidates, references):
        candidates2 = dict(enumerate(cands))
        for ref in refs:
            diameter = ref.diameter_mm if ref.diameter_mm >= 0 else 10.0
            radius_squared = (diameter / 2.0) ** 2
            matches = []
            for key, c in enumerate(cands):
                dist = sum((a - b) ** 2 for a, b in zip(ref.center_mm, c.center_mm))
                if dist < radius_squared:
                    matches.append(c)
                    candidates2.pop(key, None)
            if ref.excluded:
                continue
            if matches:
                gt_list.append(1.0)
                prob_list.append(max(c.score for c in matches))
                exclude.append(False)
            else:
                gt_list.append(1.0)
                prob_list.append(-1000000000.0)
                exclude.append(True)
        for c in candidates2.values():
            gt_list.append(0.0)
            prob_list.append(c.score)
            exclude.append(False)
    local_gt = [g for g, e in zip(gt_list, exclude) if not e]
    local_prob = [p for p, e in zip(prob_list, exclude) if not e]
    detected, lesions, images = sum(local_gt), sum(gt_list), len(references)
    fpr, tpr = _roc_curve(local_gt, local_prob)
    if sum(gt_list) == len(gt_list):
        fps = np.zeros(len(fpr))
    else:
        fps = fpr * (len(local_prob) - detected) / images
    sens = (tpr * detected) / lesions
    fps_itp = np.linspace(0.125, 8, num=10001)
    sens_itp = np.interp(fps_itp, fps, sens)
    at = (((np.array([0.125, 0.25, 0.5, 1, 2, 4, 8]) - 0.125) * 10000) / (8 - 0.125)).astype(int)
    return float(np.mean([sens_itp[i] for i in at]))


def _scans(seed: int, tied: bool):
    rng = np.random.default_rng(seed)
    cands, refs = [], []
    for _ in range(6):
        nodules = [Reference(tuple(rng.uniform(-100, 100, 3)), float(rng.uniform(4, 20))) for _ in range(3)]
        cs = []
        for r in nodules:
            if rng.random() < 0.7:
                off = rng.normal(0, r.diameter_mm / 6, 3)
                cs.append(Candidate(tuple(np.add(r.center_mm, off)), float(rng.random())))
        cs += [Candidate(tuple(rng.uniform(-150, 150, 3)), float(rng.random())) for _ in range(12)]
        if tied:
            cs = [Candidate(c.center_mm, round(c.score, 1)) for c in cs]
        cands.append(cs)
        refs.append(nodules)
    return cands, refs


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_cpm_equals_the_scripts(seed, tied):
    cands, refs = _scans(seed, tied)
    assert froc(cands, refs).cpm == pytest.approx(script_cpm(cands, refs), abs=1e-12)


def test_tied_scores_do_not_depend_on_the_candidates_order():
    cands, refs = _scans(5, tied=True)
    reversed_ = [list(reversed(c)) for c in cands]
    assert froc(cands, refs).cpm == pytest.approx(froc(reversed_, refs).cpm, abs=1e-12)


def test_the_curve_is_interpolated_not_stepped():
    """One scan: a hit at .9 (0 FP, sensitivity 1/2), then a hit and a false positive tied at .5: the
    curve runs on the diagonal to (1 FP, 1). At 1/8 FP per scan the step value is 1/2; the script
    reads the line: 1/2 + 1/2 x 0.125."""
    refs = [[Reference((0, 0, 0), 10.0), Reference((50, 0, 0), 10.0)]]
    cands = [[Candidate((0, 0, 0), 0.9), Candidate((100, 0, 0), 0.5), Candidate((50, 0, 0), 0.5)]]
    r = froc(cands, refs)
    assert r.sensitivity_at[0.125] == pytest.approx(0.5 + 0.5 * 0.125)
    assert r.sensitivity_at[1.0] == pytest.approx(0.5 + 0.5 * (0.125 + 1111 * 7.875 / 10000))
    assert r.sensitivity_at[8.0] == 1.0
    assert r.cpm == pytest.approx(script_cpm(cands, refs), abs=1e-12)


def test_a_candidate_exactly_on_the_radius_is_a_false_positive():
    refs = [[Reference((0, 0, 0), 10.0), Reference((40, 0, 0), 10.0)]]
    on = [[Candidate((5.0, 0, 0), 0.9), Candidate((40, 0, 0), 0.5)]]
    inside = [[Candidate((4.999, 0, 0), 0.9), Candidate((40, 0, 0), 0.5)]]
    r = froc(on, refs)
    assert r.nodules == 2 and [m[1].center_mm for m in r.missed] == [(0, 0, 0)]
    assert r.curve[1][1] == 1.0  # the .9 on the radius is a false positive
    assert not froc(inside, refs).missed
    assert r.cpm == pytest.approx(script_cpm(on, refs), abs=1e-12)
    # nothing detected at all: the script divides 0 by 0 (nan); medstation says 0
    alone = [[Candidate((5.0, 0, 0), 0.9)]]
    assert math.isnan(script_cpm(alone, refs[:1])) and froc(alone, [refs[0][:1]]).cpm == 0.0


def test_a_candidate_inside_two_nodules_is_credited_to_each():
    refs = [[Reference((0, 0, 0), 10.0), Reference((6, 0, 0), 10.0)]]
    cands = [[Candidate((3, 0, 0), 0.8)]]
    r = froc(cands, refs)
    assert not r.missed and r.sensitivity_at[0.125] == 1.0
    assert r.cpm == pytest.approx(script_cpm(cands, refs))


def test_excluded_annotations_and_a_size_range_are_ignored_not_dropped():
    """A hit on an excluded (or out-of-range) nodule is neither a hit nor a false positive."""
    refs = [[Reference((0, 0, 0), 4.0, excluded=True), Reference((30, 0, 0), 12.0)]]
    cands = [[Candidate((0, 0, 0), 0.9), Candidate((90, 0, 0), 0.5), Candidate((30, 0, 0), 0.4)]]
    r = froc(cands, refs)
    assert r.nodules == 1 and r.ignored_nodules == 1 and r.cpm == pytest.approx(script_cpm(cands, refs))
    assert r.curve[-1][1] == pytest.approx(1.0)  # one false positive: the candidate at x = 90
    ranged = froc(cands, [[Reference((0, 0, 0), 4.0), Reference((30, 0, 0), 12.0)]], min_diameter=6.0)
    assert (ranged.nodules, ranged.ignored_nodules, ranged.cpm) == (1, 1, r.cpm)
    assert ranged.to_dict()["size_range_mm"] == [6.0, None]
    everything = froc(cands, [[Reference((0, 0, 0), 4.0), Reference((30, 0, 0), 12.0)]])
    assert everything.nodules == 2 and everything.to_dict()["size_range_mm"] == [0.0, None]
