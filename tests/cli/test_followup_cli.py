"""medstation followup on a synthetic cohort: tracks, growth, the JSON a script reads."""

from __future__ import annotations

import json

import pytest

from medstation.synth.cohort import write_cohort_patient
from tests.cli.test_cli import medstation


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("followup")
    truth = write_cohort_patient(root / "p5", seed=5, timepoints=3, small=True)
    return root, truth


def test_followup_tracks_a_growing_nodule_and_a_resolved_one(cohort):
    root, truth = cohort
    proc = medstation("followup", str(root / "p5"), "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["patient_id"] == truth.patient_id
    assert [tp["study_date"] for tp in r["timepoints"]] == [tp["date"] for tp in truth.timepoints]
    assert [tp["series_uid"] for tp in r["timepoints"]] == [tp["series_uid"] for tp in truth.timepoints]
    assert len(r["registrations"]) == 2
    assert all(g["ok"] and g["method"] == "affine" for g in r["registrations"])
    assert all(g["residual_mm"] is None or g["residual_mm"] < 3 for g in r["registrations"])
    growing = next(c for c in truth.courses if c.kind == "growing")
    n = truth.courses.index(growing)
    centres = [tp["nodules"][n]["center_patient"] for tp in truth.timepoints]
    track = next(t for t in r["tracks"] if all(
        m is not None and sum((a - b) ** 2 for a, b in zip(m["center_patient"], c)) ** 0.5 < 5
        for m, c in zip(t["measurements"], centres)))
    assert track["status"] == "growing" and track["tracking_uid"].startswith("1.2.826.0.1.3680043.8.498.")
    assert track["volume_doubling_days"] == pytest.approx(growing.vdt_days, rel=0.25)
    assert set(track["measurements"][0]) == {"study_date", "series_uid", "center_patient", "diameter_mm",
                                            "volume_mm3", "mean_hu", "type", "size_method", "size_name",
                                            "score", "long_axis_mm", "short_axis_mm"}
    # every size says what it is and how it was measured; the rule read the last one, named
    named = {(m["size_name"], m["size_method"]) for m in track["measurements"]}
    assert named == {("mean diameter", "segmentation")}
    assert track["guideline"]["lung_rads"]["size"] == {"mm": track["measurements"][-1]["diameter_mm"],
                                                       "what": "mean diameter", "method": "segmentation"}
    assert track["guideline"]["lung_rads"]["caveat"] == ""
    assert track["guideline"]["lung_rads"]["category"] in ("4A", "4B")
    assert track["guideline"]["lung_rads"]["status"] == "growing"
    assert "recommendation" in track["guideline"]["fleischner"]
    resolving = next(c for c in truth.courses if c.kind == "resolving")
    gone = truth.timepoints[0]["nodules"][truth.courses.index(resolving)]["center_patient"]
    assert any(t["status"] == "resolved" and t["measurements"][-1] is None
               and sum((a - b) ** 2 for a, b in zip(t["measurements"][0]["center_patient"], gone)) ** 0.5 < 5
               for t in r["tracks"])


def test_series_of_two_patients_are_an_error_unless_one_is_picked(cohort, tmp_path):
    root, truth = cohort
    other = write_cohort_patient(tmp_path / "p6", seed=6, timepoints=1, small=True)
    proc = medstation("followup", str(root / "p5"), str(tmp_path / "p6"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert truth.patient_id in proc.stderr and other.patient_id in proc.stderr and "--patient" in proc.stderr
    proc = medstation("followup", str(root / "p5"), str(tmp_path / "p6"), "--patient", other.patient_id,
                      "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["patient_id"] == other.patient_id


def test_followup_sr_carries_one_tracking_uid_per_lesion_at_every_timepoint(cohort, tmp_path):
    from pydicom import dcmread

    root, truth = cohort
    proc = medstation("followup", str(root / "p5"), "--json", "--dicom", str(tmp_path / "sr"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert len(r["dicom"]) >= 2
    full = [t for t in r["tracks"] if all(m is not None for m in t["measurements"])]
    assert full
    uid = full[0]["tracking_uid"]

    def uids(ds):
        for item in ds.get("ContentSequence", []):
            if item.get("ValueType") == "UIDREF":
                yield str(item.UID)
            yield from uids(item)

    for path in r["dicom"]:
        ds = dcmread(path)
        assert uid in set(uids(ds)), path


def test_another_patient_id_of_the_same_person_is_followed_with_same_patient(cohort, tmp_path):
    """The same body filed under two IDs (two sites): followed together when linked."""
    import shutil

    import pydicom

    root, truth = cohort
    moved = tmp_path / "other-site"
    shutil.copytree(root / "p5" / truth.timepoints[-1]["date"], moved)
    for path in moved.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PatientID = "SITE2-77"
        ds.save_as(path)
    first = str(root / "p5" / truth.timepoints[0]["date"])
    proc = medstation("followup", first, str(moved))
    assert proc.returncode == 2 and "SITE2-77" in proc.stderr
    proc = medstation("followup", first, str(moved), "--patient", truth.patient_id,
                      "--same-patient", "SITE2-77", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert len(r["timepoints"]) == 2
    assert r["timepoints"][-1]["series_uid"] == truth.timepoints[-1]["series_uid"]


def test_the_comparable_series_prefers_the_same_kernel_then_thin_slices(tmp_path):
    from medstation.dicom import list_series
    from medstation.synth import ChestPhantom, SeriesSpec, write_study
    from medstation.workflows.followup import _comparable

    series = [SeriesSpec(description="thin lung", slices=12, rows=48, columns=48, pixel_spacing=6.0,
                         slice_thickness=1.25, kernel="LUNG"),
              SeriesSpec(description="thin bone", slices=10, rows=48, columns=48, pixel_spacing=6.0,
                         slice_thickness=1.25, kernel="BONE"),
              SeriesSpec(description="thick", slices=6, rows=48, columns=48, pixel_spacing=6.0,
                         slice_thickness=5.0, kernel="BONE")]
    write_study(tmp_path, ChestPhantom(seed=1), series=series, seed=1)
    stacks = list_series([tmp_path]).stacks
    assert _comparable(stacks).first.series_description == "thin lung"  # thinnest, then most slices
    assert _comparable(stacks, "BONE").first.series_description == "thin bone"


def test_predict_at_adds_a_prediction_or_a_reason_to_every_track_and_the_sr(cohort, tmp_path):
    from pydicom import dcmread

    root, truth = cohort
    last = truth.timepoints[-1]["date"]
    year_later = f"{int(last[:4]) + 1}-{last[4:6]}-{last[6:]}"
    proc = medstation("followup", str(root / "p5"), "--json", "--predict-at", year_later, "--dicom",
                      str(tmp_path / "sr"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    for t in r["tracks"]:
        if t["prediction"] is None:
            assert t["prediction_withheld"]
        else:
            p = t["prediction"]
            assert set(p) >= {"model", "version", "date", "days_ahead", "volume_mm3", "volume_low",
                              "volume_high", "diameter_mm", "p_growth"}
            assert p["volume_low"] <= p["volume_mm3"] <= p["volume_high"] and p["date"] == year_later
    growing = next(t for t in r["tracks"] if t["status"] == "growing" and t["prediction"])
    assert growing["prediction"]["volume_mm3"] > growing["measurements"][-1]["volume_mm3"]
    assert any(t["status"] == "resolved" and "gone" in t["prediction_withheld"] for t in r["tracks"])
    names = set()
    for item in dcmread(r["dicom"][-1]).ContentSequence:  # the last study's SR carries the predictions
        for sub in [item, *getattr(item, "ContentSequence", [])]:
            for x in getattr(sub, "ContentSequence", []):
                if "ConceptNameCodeSequence" in x:
                    names.add(str(x.ConceptNameCodeSequence[0].CodeMeaning))
    assert any(n.startswith("Predicted volume at") for n in names), names
    # every track point of a study is in that study's SR, under the track's name (the same at every
    # study) and its tracking UID
    by_uid: dict[str, set[str]] = {}
    for n, path in enumerate(sorted(r["dicom"])):
        groups = _tracking(dcmread(path))
        present = {t["tracking_uid"]: t["track_id"] for t in r["tracks"] if t["measurements"][n] is not None}
        assert {uid for uid, _ in groups} == set(present), (path, groups, present)
        for uid, ident in groups:
            assert ident == present[uid]
            by_uid.setdefault(uid, set()).add(ident)
    assert all(len(v) == 1 for v in by_uid.values())
    bad = medstation("followup", str(root / "p5"), "--predict-at", "2000-01-01")
    assert bad.returncode == 2 and "is not after the last study" in bad.stderr


def _tracking(ds) -> list[tuple[str, str]]:
    """(tracking UID, tracking identifier) of each measurement group of an SR."""
    out = []

    def walk(items):
        for item in items:
            if item.get("ValueType") == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "125007":
                kids = {x.ConceptNameCodeSequence[0].CodeValue: x for x in item.ContentSequence
                        if "ConceptNameCodeSequence" in x}
                out.append((str(kids["112040"].UID), str(kids["112039"].TextValue)))
            walk(item.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return out


def test_the_follow_up_model_fine_tunes_on_local_tracks(cohort, tmp_path):
    root, _truth = cohort
    proc = medstation("followup", str(root / "p5"), "--json", timeout=600)
    report = tmp_path / "report.json"
    report.write_text(proc.stdout)
    out = tmp_path / "ft"
    proc = medstation("train-followup", "--base", "followup-rnn", "--local-tracks", str(report),
                      "--steps", "20", "--tracks", "300", "--out", str(out), "--version", "1.0.1",
                      "--checkpoint", str(tmp_path / "ck"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert next(e for e in events if e["event"] == "data")["local"] >= 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parent_version"] == "1.0.0" and manifest["training_data"]["local_tracks"] >= 1
    assert (tmp_path / "ck").exists()
    refused = medstation("train-followup", "--base", "followup-rnn", "--out", str(tmp_path / "x"))
    assert refused.returncode == 2 and "needs local tracks" in refused.stderr


def test_a_batch_of_patients_under_torchrun(cohort, tmp_path):
    import os
    import subprocess
    import sys

    root, truth = cohort
    other = write_cohort_patient(tmp_path / "p7", seed=7, timepoints=2, small=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29547", "-m", "medstation", "followup", str(root / "p5"),
                           str(tmp_path / "p7"), "--all-patients", str(tmp_path / "out"), "--json"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = json.loads((tmp_path / "out" / "followup-index.json").read_text())
    assert index["ranks"] == 2 and not index["missing_ranks"]
    assert [r["patient_id"] for r in index["patients"]] == sorted([truth.patient_id, other.patient_id])
    for row in index["patients"]:
        report = json.loads((tmp_path / "out" / row["file"]).read_text())
        assert report["patient_id"] == row["patient_id"] and len(report["timepoints"]) == row["timepoints"]
