"""The review queue's ranking (core.review_queue) and where it lies against the split."""

from __future__ import annotations

import pytest

from medstation.core.review_queue import next_in_queue, review_queue
from medstation.training.finetune import Case, queue_split_effect


def _f(fid: str, score: float, status: str = "") -> dict:
    return {"finding_id": fid, "score": score, "status": status, "center_mm": [0.0, 0.0, 0.0]}


def test_least_sure_first_on_the_logit_and_reviewed_ones_left_out():
    results = [("A", [_f("F1", 0.95), _f("F2", 0.52), _f("F3", 0.40, "accepted")]),
               ("B", [_f("F1", 0.45), _f("F2", 0.10), _f("F3", 0.60, "rejected")])]
    q = review_queue(results, 0.5, max_margin=None)
    # logit distances from 0.5: 0.52 -> 0.08, 0.45 -> 0.20, 0.10 -> 2.20, 0.95 -> 2.94
    assert [(i.series_key, i.finding_id) for i in q] == [("A", "F2"), ("B", "F1"), ("B", "F2"), ("A", "F1")]
    assert [i.above for i in q] == [True, False, False, True]
    # the distance is on the logit: with the operating point at 0.9, 0.99 is about as far as 0.5 (2.4 vs 2.2)
    far = review_queue([("C", [_f("hi", 0.99), _f("mid", 0.5), _f("near", 0.85)])], 0.9, max_margin=None)
    assert far[0].finding_id == "near" and far[1].margin == pytest.approx(far[2].margin, rel=0.1)
    assert len(review_queue(results, 0.5, limit=2, max_margin=None)) == 2
    # by default only the band around the operating point: 0.10 and 0.95 are more than 2 logits away
    assert [(i.series_key, i.finding_id) for i in review_queue(results, 0.5)] == [("A", "F2"), ("B", "F1")]
    # a tie is broken by series and finding id: the same database gives the same queue
    tie = review_queue([("B", [_f("F9", 0.6)]), ("A", [_f("F9", 0.6)])], 0.5)
    assert [i.series_key for i in tie] == ["A", "B"]


def test_the_key_moves_on_from_the_finding_on_screen():
    q = review_queue([("A", [_f("F1", 0.5), _f("F2", 0.7)])], 0.5)
    assert next_in_queue(q).finding_id == "F1"
    assert next_in_queue(q, ("A", "F1")).finding_id == "F2"
    assert next_in_queue(q[:1], ("A", "F1")) is None and next_in_queue([]) is None


def test_where_the_queue_lies_against_the_split():
    cases = [Case(f"S{n}", f"P{n}", [((0.0, 0.0, 0.0), 8.0)]) for n in range(5)]
    cases.append(Case("N1", "P9", [], [((1.0, 1.0, 1.0), 5.0)]))  # rejected findings only
    from medstation.training.finetune import split_by_patient

    train, val = split_by_patient(cases, 0)
    results = [(c.key, [_f("F1", 0.5)]) for c in cases] + [("U1", [_f("F1", 0.5)])]
    q = review_queue(results, 0.5)
    patients = {c.key: c.patient for c in cases} | {"U1": "P7"}
    e = queue_split_effect(q, cases, patients)
    assert e["findings"] == 7 and e["series"] == 7
    assert e["validation"] == len(val) and e["train"] == len([c for c in train if c.nodules])
    # a series with no nodule label yet, or of a patient not in the split: a review there changes it
    assert e["changes_split"] == 2
    # the AI cache keys a series by its stack (UID#1), labels by the bare UID: the same series
    stacked = review_queue([(f"{c.key}#1", [_f("F1", 0.5)]) for c in cases], 0.5)
    same = queue_split_effect(stacked, cases, patients)
    assert same == {**e, "findings": 6, "series": 6, "changes_split": 1}
