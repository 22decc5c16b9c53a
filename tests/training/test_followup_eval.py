"""The follow-up scorer: a report that follows the truth scores perfectly, a broken one does not."""

from __future__ import annotations

import copy
import json

from medstation.core.tracks import LesionTrack, TrackPoint
from medstation.synth.cohort import write_cohort_patient
from medstation.training.followup_eval import score_patient, summarize


def _perfect_report(truth: dict) -> dict:
    tracks = []
    for n in range(len(truth["courses"])):
        pts = []
        for tp in truth["timepoints"]:
            r = tp["nodules"][n]
            pts.append(None if r is None else TrackPoint(tp["date"], tp["series_uid"],
                                                         tuple(r["center_patient"]), r["diameter_mm"],
                                                         r["volume_mm3"], 0.0, r["type"]))
        tracks.append(LesionTrack(f"T{n}", "2.25.1", pts).to_dict())
    return {"tracks": tracks}


def test_a_report_that_follows_the_truth_scores_perfectly_and_a_broken_one_does_not(tmp_path):
    write_cohort_patient(tmp_path, seed=3, timepoints=3, small=True)
    truth = json.loads((tmp_path / "cohort.json").read_text())
    good = summarize([score_patient(truth, _perfect_report(truth), min_diameter=0)])
    assert good["tracked_correctly"] == 1.0 and good["new_resolved_status_right"] == 1.0
    assert good["volume_error_median"] < 1e-3
    assert good["vdt_within_25pct"] in (1.0, None)
    broken = _perfect_report(truth)
    for t in broken["tracks"]:  # every lesion drops out at the last timepoint and is 30% smaller
        t["measurements"][-1] = None
        t["status"] = "resolved"
        for m in t["measurements"]:
            if m:
                m["volume_mm3"] *= 0.7
    bad = summarize([score_patient(truth, copy.deepcopy(broken), min_diameter=0)])
    assert bad["tracked_correctly"] < 0.5 and bad["volume_error_median"] > 0.25
    assert bad["new_resolved_status_right"] < 1.0
