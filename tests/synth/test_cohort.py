"""Synthetic longitudinal cohorts: known courses, poses and dates, written as real DICOM."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medstation.core.tracks import days_between, doubling_time_days
from medstation.synth.cohort import write_cohort_patient


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    return write_cohort_patient(out, seed=3, timepoints=3, small=True), out


def test_truth_follows_each_course(cohort):
    truth, out = cohort
    saved = json.loads((out / "cohort.json").read_text())
    assert saved["patient_id"] == truth.patient_id and len(saved["timepoints"]) == 3
    dates = [tp["date"] for tp in truth.timepoints]
    gaps = [days_between(a, b) for a, b in zip(dates, dates[1:])]
    assert all(60 <= g < 400 for g in gaps)
    kinds = {c.kind for c in truth.courses}
    assert {"stable", "growing", "shrinking", "resolving", "new"} <= kinds
    for n, c in enumerate(truth.courses):
        rows = [tp["nodules"][n] for tp in truth.timepoints]
        present = [r for r in rows if r is not None]
        if c.kind == "new":
            assert rows[0] is None and rows[-1] is not None
        if c.kind == "resolving":
            assert rows[0] is not None and rows[-1] is None
        if c.kind == "stable":
            assert len({round(r["volume_mm3"], 1) for r in present}) == 1
        if c.kind in ("growing", "shrinking") and len(present) > 1:
            i0 = rows.index(present[0])
            i1 = len(rows) - 1 - rows[::-1].index(present[-1])
            vdt = doubling_time_days(present[0]["volume_mm3"], present[-1]["volume_mm3"],
                                     days_between(dates[i0], dates[i1]))
            assert vdt == pytest.approx(c.vdt_days, rel=1e-3)
            assert (vdt > 0) == (c.kind == "growing")
        for r in present:  # each study's centre is the body's centre at that study's pose
            assert math.isclose(r["diameter_mm"], (6 * r["volume_mm3"] / math.pi) ** (1 / 3), rel_tol=1e-3)
    poses = [tp["pose"]["shift"] for tp in truth.timepoints]
    assert len({tuple(p) for p in poses}) == 3  # every study has its own pose
    yaws = [tp["pose"]["yaw_deg"] for tp in truth.timepoints]  # and its own turn on the table
    assert len(set(yaws)) == 3 and all(abs(y) <= 5.0 for y in yaws)


def test_the_written_studies_show_present_nodules_where_the_truth_says(cohort):
    from medstation.dicom import open_series

    truth, out = cohort
    checked = 0
    for tp in truth.timepoints:
        vol = open_series(out / tp["date"]).volume
        assert vol.series_uid == tp["series_uid"]
        for r in tp["nodules"]:
            if r is None or r["diameter_mm"] < 8:  # 2 mm pixels, 2.5 mm slices: the larger ones
                continue
            k, i, j = (int(round(v)) for v in vol.patient_to_index(r["center_patient"]))
            if not (0 <= k < vol.shape[0]):
                continue
            near = vol.voxels[max(0, k - 1):k + 2, i - 1:i + 2, j - 1:j + 2]
            floor = -700 if r["type"] == "ground-glass" else -300  # ground glass: about -550 HU
            assert float(np.max(near)) > floor, (tp["date"], r)
            checked += 1
    assert checked >= 3
