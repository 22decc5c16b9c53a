"""A "new" track needs evidence: looked for on the prior and a score above the new-lesion point, or
found again later; otherwise it is unconfirmed and does not set the patient's category."""

from __future__ import annotations

import numpy as np

from medstation.ai.followup import NEW_LESION_MARGIN, Timepoint, build_tracks, patient_summary
from medstation.core.findings import Finding
from medstation.imaging.registration import Registration

OPERATING_POINT = 0.35


def _finding(fid, centre, mm, score, volume=None):
    volume = volume if volume is not None else float(np.pi / 6 * mm ** 3)
    return Finding(fid, centre, (0.0, 0.0, 0.0), mm, score, (0, 0), volume, size_method="segmentation",
                   mean_diameter_mm=mm, short_axis_mm=mm, equivalent_diameter_mm=mm, nodule_type="solid",
                   mean_hu=20.0)


def _patient(last_findings, *, ok=True):
    """Three studies; a 9 mm nodule in all of them, and ``last_findings`` at the last one only."""
    known = [_finding("F1", (50.0, 10.0, -20.0), 9.0, 0.9)]
    tps = [Timepoint("1.1", "20250101", "1.1.1", list(known), operating_point=OPERATING_POINT),
           Timepoint("1.2", "20250701", "1.2.1", list(known), operating_point=OPERATING_POINT),
           Timepoint("1.3", "20260101", "1.3.1", known + list(last_findings),
                     operating_point=OPERATING_POINT)]
    reg = Registration(np.eye(3), np.zeros(3), "affine", True)
    bad = Registration.identity("no lung found in one of the two series")
    return build_tracks("P1", tps, [reg, reg if ok else bad])


def _new(tracks):
    return [t for t in tracks if t.status == "new"]


def test_a_weak_new_finding_at_the_last_study_is_unconfirmed_and_sets_no_category():
    strict = OPERATING_POINT + NEW_LESION_MARGIN
    # a "new" 16 mm solid nodule (4B) scored just below the new-lesion point
    tracks = _patient([_finding("F2", (-60.0, 0.0, -30.0), 16.0, strict - 0.01)])
    (new,) = _new(tracks)
    assert not new.confirmed and "unconfirmed" in new.evidence
    assert "below the new-lesion point" in new.evidence
    assert new.guideline["lung_rads"]["category"] == "4B"  # shown, but ...
    summary = patient_summary(tracks)
    assert summary["unconfirmed_tracks"] == [new.track_id]
    assert summary["lung_rads"] == "2" and summary["set_by"] != new.track_id  # ... the stable 9 mm sets it
    assert new.to_dict()["confirmed"] is False


def test_a_strong_new_finding_is_a_confirmed_new_lesion_even_when_small():
    strict = OPERATING_POINT + NEW_LESION_MARGIN
    tracks = _patient([_finding("F2", (-60.0, 0.0, -30.0), 6.0, strict)])  # a new 6 mm solid nodule
    (new,) = _new(tracks)
    assert new.confirmed and "nothing on the prior" in new.evidence
    assert new.guideline["lung_rads"]["category"] == "4A"  # Lung-RADS v2022: new 6 to < 8 mm solid
    assert patient_summary(tracks) == {"lung_rads": "4A", "set_by": new.track_id, "unconfirmed_tracks": []}


def test_a_new_lesion_found_again_is_confirmed_whatever_its_score():
    known = [_finding("F1", (50.0, 10.0, -20.0), 9.0, 0.9)]
    later = _finding("F2", (-60.0, 0.0, -30.0), 7.0, OPERATING_POINT + 0.01)
    tps = [Timepoint("1.1", "20250101", "1.1.1", list(known), operating_point=OPERATING_POINT),
           Timepoint("1.2", "20250701", "1.2.1", known + [later], operating_point=OPERATING_POINT),
           Timepoint("1.3", "20260101", "1.3.1", known + [later], operating_point=OPERATING_POINT)]
    reg = Registration(np.eye(3), np.zeros(3), "affine", True)
    tracks = build_tracks("P1", tps, [reg, reg])
    (t,) = [t for t in tracks if t.points[0] is None]
    assert t.confirmed and "found again at 1 later" in t.evidence


def test_without_a_registration_a_new_finding_is_not_confirmed():
    tracks = _patient([_finding("F2", (-60.0, 0.0, -30.0), 12.0, 0.99)], ok=False)
    news = [t for t in tracks if t.points[1] is None and t.points[2] is not None]
    assert news and all(not t.confirmed and "registration failed" in t.evidence for t in news)
