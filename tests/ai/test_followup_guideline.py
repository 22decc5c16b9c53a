"""A track's guideline: Lung-RADS from the last measurement, a part-solid nodule by its solid part."""

from __future__ import annotations

from medstation.ai.followup import guideline
from medstation.core.tracks import LesionTrack, TrackPoint


def _track(*points):
    return LesionTrack("T1", "1.2.3.4", list(points))


def test_a_part_solid_nodule_is_categorised_by_its_measured_solid_component():
    small_core = TrackPoint("20260101", "1.2", (0.0, 0.0, 0.0), 20.0, 4000.0, -400.0, "part-solid", "f1", 5.0)
    big_core = TrackPoint("20260101", "1.2", (0.0, 0.0, 0.0), 20.0, 4000.0, -200.0, "part-solid", "f1", 9.0)
    # a 20 mm part-solid nodule at baseline: solid component < 6 mm -> 3, >= 8 mm -> 4B
    assert guideline(_track(small_core), "20260101", multiple=False)["lung_rads"]["category"] == "3"
    assert guideline(_track(big_core), "20260101", multiple=False)["lung_rads"]["category"] == "4B"
    # without a measured component the stand-in is half the nodule (10 mm: 4B)
    unmeasured = TrackPoint("20260101", "1.2", (0.0, 0.0, 0.0), 20.0, 4000.0, -400.0, "part-solid", "f1")
    assert guideline(_track(unmeasured), "20260101", multiple=False)["lung_rads"]["category"] == "4B"


def test_a_solid_nodule_ignores_the_solid_component_field():
    p = TrackPoint("20260101", "1.2", (0.0, 0.0, 0.0), 7.0, 180.0, 20.0, "solid", "f1", 0.0)
    assert guideline(_track(p), "20260101", multiple=False)["lung_rads"]["category"] == "3"
