"""``medstation evaluate-followup``: lesion tracking on generated longitudinal cohorts with known courses.

Each cohort patient (``synth.cohort``) is written as DICOM, followed with
``workflows.followup.follow`` as a user would, and its tracks are compared with the
truth: a course is tracked correctly when one track holds it at every
timepoint where it is present (its centre within the nodule's radius, at least
5 mm) and nowhere else; new and resolved courses must carry that status; the
volume error is measured on every matched measurement; the volume doubling
time on growing solid courses. Nodules of ``min_diameter`` mm or more (at their
largest) are counted. A track near no true nodule at any of its timepoints is a false track
(counted per patient).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medstation.synth.cohort import write_cohort_patient

COHORT_SEED0 = 70000


def _near(m: dict | None, truth: dict | None) -> bool:
    if m is None or truth is None:
        return m is None and truth is None
    radius = max(truth["diameter_mm"] / 2, 5.0)
    return float(np.linalg.norm(np.subtract(m["center_patient"], truth["center_patient"]))) <= radius


def score_patient(truth: dict, report: dict, min_diameter: float = 6.0) -> dict:
    tracks = report["tracks"]
    rows = []
    for n, course in enumerate(truth["courses"]):
        per_tp = [tp["nodules"][n] for tp in truth["timepoints"]]
        largest = max((r["diameter_mm"] for r in per_tp if r), default=0.0)
        if largest < min_diameter:
            continue
        best = None
        for t in tracks:
            hits = sum(_near(m, r) for m, r in zip(t["measurements"], per_tp)
                       if r is not None and m is not None)
            if hits and (best is None or hits > best[0]):
                best = (hits, t)
        row = {"label": course["label"], "kind": course["kind"], "type": course["type"], "tracked": False,
               "status_right": None, "volume_errors": [], "vdt_error": None}
        if best is not None:
            t = best[1]
            row["tracked"] = all(_near(m, r) for m, r in zip(t["measurements"], per_tp))
            if course["kind"] in ("new", "resolved", "resolving"):
                want = "new" if course["kind"] == "new" else "resolved"
                row["status_right"] = t["status"] == want
                if want == "new":
                    row["confirmed"] = bool(t.get("confirmed", True))
            for m, r in zip(t["measurements"], per_tp):
                if m is not None and r is not None and _near(m, r) and m.get("volume_mm3") is not None:
                    row["volume_errors"].append((m["volume_mm3"] - r["volume_mm3"]) / r["volume_mm3"])
            if course["kind"] == "growing" and course["type"] == "solid" and t["volume_doubling_days"]:
                row["vdt_error"] = (t["volume_doubling_days"] - course["vdt_days"]) / course["vdt_days"]
        rows.append(row)
    # tracks that follow no true nodule at any timepoint (of any size): false positives of the follow-up
    false = [t for t in tracks
             if not any(_near(m, tp["nodules"][n])
                        for m, tp in zip(t["measurements"], truth["timepoints"])
                        for n in range(len(truth["courses"]))
                        if m is not None and tp["nodules"][n] is not None)]
    set_by = (report.get("patient") or {}).get("set_by")
    return {"patient_id": truth["patient_id"], "courses": rows, "false_tracks": len(false),
            "false_tracks_confirmed": sum(1 for t in false if t.get("confirmed", True)),
            "category_set_by_false_track": any(t["track_id"] == set_by for t in false)}


def summarize(scored: list[dict]) -> dict:
    rows = [r for p in scored for r in p["courses"]]
    status = [r["status_right"] for r in rows if r["status_right"] is not None]
    vol = [abs(e) for r in rows for e in r["volume_errors"]]
    vdt = [abs(r["vdt_error"]) for r in rows if r["vdt_error"] is not None]
    new = [r for r in rows if "confirmed" in r]
    return {"nodules": len(rows), "tracked_correctly": round(float(np.mean([r["tracked"] for r in rows])), 3)
            if rows else None,
            "new_resolved_status_right": round(float(np.mean(status)), 3) if status else None,
            "volume_error_median": round(float(np.median(vol)), 3) if vol else None,
            "vdt_within_25pct": round(float(np.mean([e <= 0.25 for e in vdt])), 3) if vdt else None,
            "vdt_error_median": round(float(np.median(vdt)), 3) if vdt else None,
            "false_tracks_per_patient": round(float(np.mean([p.get("false_tracks", 0) for p in scored])), 2)
            if scored else None,
            # the false tracks a reader is shown as confirmed (unconfirmed new ones are flagged and do not
            # set the patient's category), and the patients whose category a false track set
            "confirmed_false_tracks_per_patient":
                round(float(np.mean([p.get("false_tracks_confirmed", 0) for p in scored])), 2)
                if scored else None,
            "patients_categorised_by_a_false_track":
                sum(bool(p.get("category_set_by_false_track")) for p in scored) if scored else None,
            "true_new_lesions_confirmed": [sum(r["confirmed"] for r in new), len(new)]}


def evaluate_followup(detector, folder: Path, cohorts: int, *, seed0: int = COHORT_SEED0, timepoints: int = 3,
                      small: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    from medstation.workflows.followup import follow

    say = progress or (lambda _t: None)
    scored, seconds = [], []
    for n in range(cohorts):
        seed = seed0 + n
        out = folder / f"cohort-{seed}"
        if not (out / "cohort.json").exists():
            say(f"writing cohort patient {n + 1}/{cohorts} (seed {seed})")
            write_cohort_patient(out, seed, timepoints=timepoints, small=small)
        truth = json.loads((out / "cohort.json").read_text())
        report, _tracks = follow([out / tp["date"] for tp in truth["timepoints"]], detector)
        seconds.append(sum(r["seconds"] for r in report["registrations"]))
        s = score_patient(truth, report)
        scored.append(s)
        say(f"patient {n + 1}/{cohorts}: {sum(r['tracked'] for r in s['courses'])} of {len(s['courses'])} "
            "nodules tracked correctly")
    predictor = _predictor_figures()
    return {**summarize(scored), "cohorts": cohorts, "timepoints": timepoints, "predictor": predictor,
            "registration_seconds_per_pair": round(float(np.mean(seconds)) / max(1, timepoints - 1), 2)
            if seconds else None, "patients": scored}


def _predictor_figures(tracks: int = 2000) -> dict | None:
    """The follow-up predictor in use against the baselines on held-out synthetic courses."""
    from medstation.ai.predictor import load_predictor
    from medstation.ai.registry import ModelRegistry
    from medstation.core.errors import ModelError
    from medstation.training.followup_rnn import TEST_SEED, evaluate, make_tracks

    try:
        version = ModelRegistry().default("followup")
    except ModelError:
        return None
    r = evaluate(load_predictor(version.path), make_tracks(tracks, TEST_SEED))
    return {"model": version.id, **r}
