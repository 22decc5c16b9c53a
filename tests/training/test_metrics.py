"""FROC / CPM against hand-worked cases (the LUNA16 script's interpolated curve; a port of the script
itself is in test_froc_luna16.py)."""

from __future__ import annotations

import pytest

from medstation.training.metrics import FP_RATES, Candidate, Reference, froc


def test_froc_counts_hits_within_the_radius_and_false_positives_per_scan():
    refs = [[Reference((0, 0, 0), 10.0), Reference((50, 0, 0), 8.0)],
            [Reference((0, 0, 0), 6.0)]]
    cands = [
        [Candidate((1, 1, 1), 0.9),  # hit nodule 1
         Candidate((2, 0, 0), 0.85),  # duplicate on nodule 1: neither TP nor FP
         Candidate((100, 0, 0), 0.8),  # FP
         Candidate((53.5, 0, 0), 0.3)],  # hit nodule 2 (r = 4)
        [Candidate((0, 3.5, 0), 0.7),  # just outside r = 3: FP
         Candidate((0, 0, 2.9), 0.2)],  # hit
    ]
    r = froc(cands, refs)
    assert r.scans == 2 and r.nodules == 3
    # by score: .9 TP(1/3) .85 dup .8 FP(0.5/scan) .7 FP(1/scan) .3 TP(2/3) .2 TP(3/3): the curve
    # (0, 1/3) (0.5, 1/3) (1, 1/3) (1, 2/3) (1, 1); the script reads 1 FP/scan at 0.99991, on the
    # flat part before the jump, and 2, 4, 8 FP/scan beyond the curve's end: 1
    assert r.sensitivity_at[0.125] == pytest.approx(1 / 3)
    assert r.sensitivity_at[0.5] == pytest.approx(1 / 3)
    assert r.sensitivity_at[1.0] == pytest.approx(1 / 3)
    assert r.sensitivity_at[2.0] == pytest.approx(1.0)
    assert r.threshold_at_1fp == pytest.approx(0.2)
    assert r.cpm == pytest.approx((1 / 3 * 4 + 1.0 * 3) / 7)
    assert not r.missed


def test_small_nodules_are_neither_counted_nor_false_positives():
    refs = [[Reference((0, 0, 0), 4.0), Reference((30, 0, 0), 12.0)]]
    cands = [[Candidate((0, 0, 0), 0.9), Candidate((90, 0, 0), 0.5)]]
    r = froc(cands, refs, min_diameter=6.0)
    assert r.nodules == 1
    assert r.sensitivity_at[8.0] == 0.0
    assert len(r.missed) == 1 and r.missed[0][1].diameter_mm == 12.0
    # the hit on the 4 mm nodule did not count as a false positive: the FP is only the one at x=90
    assert r.curve[-1][1] == pytest.approx(1.0)


def test_no_candidates_and_shape_errors():
    r = froc([[]], [[Reference((0, 0, 0), 8.0)]])
    assert r.cpm == 0.0 and set(r.sensitivity_at) == set(FP_RATES)
    with pytest.raises(ValueError):
        froc([[]], [])
