"""Lung-RADS v2022 and Fleischner 2017 held to their text (issue 27): stepped management from the
category assigned at the prior visit, half-up rounding in decimal, slow growth over several exams,
the part-solid solid component, and where the text is silent, said in the output."""

from __future__ import annotations

import pytest

from medstation.ai.followup import guideline, visit_categories
from medstation.core.guidelines import fleischner, lung_rads, lung_rads_slow_growth, mean_diameter_01
from medstation.core.tracks import LesionTrack, TrackPoint


def _p(date: str, mm: float, kind: str = "solid", solid: float = 0.0) -> TrackPoint:
    return TrackPoint(date, "1.2", (0.0, 0.0, 0.0), mm, 4.19 * (mm / 2) ** 3, 20.0, kind, "F1", solid)


def _track(*points) -> LesionTrack:
    return LesionTrack("T1", "1.2.3", list(points))


@pytest.mark.parametrize("mm, rounded", [(14.95, 15.0), (5.95, 6.0), (7.95, 8.0), (14.94999, 14.9),
                                         (5.949, 5.9), (0.05, 0.1), (29.95, 30.0)])
def test_the_mean_diameter_rounds_half_up_in_decimal(mm, rounded):
    assert mean_diameter_01(mm) == rounded


@pytest.mark.parametrize("mm, category", [(14.95, "4B"), (14.949, "4A"), (7.95, "4A"), (7.949, "3"),
                                          (5.95, "3"), (5.949, "2")])
def test_a_boundary_mean_diameter_categorises_after_half_up_rounding(mm, category):
    assert lung_rads("solid", mm).category == category


def test_stepped_management_from_the_prior_category():
    # "Category 4A lesion that is stable or decreased in size at 3-month follow-up CT": category 3
    r = lung_rads("solid", 10.0, status="stable", prior_category="4A")
    assert r.category == "3" and "stepped" in r.rule and r.interval_months == 6
    # "Category 3 lesion that is stable or decreased in size at 6-month follow-up CT": category 2
    assert lung_rads("solid", 7.0, status="stable", prior_category="3").category == "2"
    # stable but past the size threshold of its prior category: by size (v2022 "Size Thresholds")
    crossed = lung_rads("solid", 15.2, status="stable", prior_category="4A", prior_mean_mm=14.5)
    assert crossed.category == "4B" and "reclassified by size" in crossed.rule
    assert lung_rads("solid", 16.0, status="stable", prior_category="4B").category == "4B"
    assert lung_rads("solid", 5.0, status="stable", prior_category="2").category == "2"


def test_a_4a_nodule_steps_to_3_then_to_2_along_its_visits():
    """Baseline 10 mm (4A); 3 months later the same (3, not 2); 6 months after that the same (2)."""
    t = _track(_p("20250101", 10.0), _p("20250401", 10.2), _p("20251001", 10.1))
    history = visit_categories(t)
    assert [h["result"].category for h in history] == ["4A", "3", "2"]
    g = guideline(t, "20251001", multiple=False)["lung_rads"]
    assert g["category"] == "2" and g["prior_category"] == "3"
    assert [h["category"] for h in g["history"]] == ["4A", "3", "2"]


def test_the_prior_category_is_the_one_assigned_then_not_recomputed_from_the_prior_size():
    """A 7 mm nodule new at the second screen (new 6-8 mm: 4A), stable at its 3-month follow-up: 3
    (from 4A), though a 7 mm nodule at baseline would be 3 and a stable 3 would step down to 2."""
    t = _track(None, _p("20250101", 7.0), _p("20250401", 7.1))
    assert [None if h is None else h["result"].category for h in visit_categories(t)] == [None, "4A", "3"]


def test_slow_growth_over_several_exams_is_4b():
    # +1.0, +0.6, +0.6 mm a year: never > 1.5 mm in one 12-month interval; 1.6 mm over the first
    # three exams, 2.2 mm over four
    t = _track(_p("20220101", 6.0), _p("20230101", 7.0), _p("20240101", 7.6), _p("20250101", 8.2))
    history = visit_categories(t)
    assert [h["status"] for h in history] == ["baseline", "stable", "slow-growing", "slow-growing"]
    assert history[-1]["result"].category == "4B" and "slow growing" in history[-1]["result"].rule
    assert not lung_rads_slow_growth([6.0, 7.0, 7.5])  # 1.5 mm: not more than 1.5
    assert not lung_rads_slow_growth([6.0, 8.0])  # two exams: not "multiple"
    assert not lung_rads_slow_growth([6.0, 7.4, 7.0, 7.6])  # fell back between: not a steady rise
    # a non-solid nodule that grows slowly stays 2 ("unchanged or slowly growing")
    assert lung_rads("ground-glass", 32.0, status="slow-growing").category == "2"


def test_a_growing_ground_glass_nodule_of_30_mm_or_more_is_3_and_says_the_text_is_silent():
    r = lung_rads("ground-glass", 31.0, status="growing")
    assert r.category == "3" and "silent" in r.rule
    assert lung_rads("ground-glass", 29.9, status="growing").category == "2"


def test_fleischner_part_solid_solid_component_remark_and_unmeasured_said():
    hot = fleischner("part-solid", 12.0, solid_mm=6.0)
    assert "highly suspicious" in hot["remark"]
    assert fleischner("part-solid", 12.0, solid_mm=5.4)["remark"] == ""  # rounds to 5 mm
    assert "highly suspicious" in fleischner("part-solid", 12.0, solid_mm=5.5)["remark"]  # rounds to 6 mm
    assert "not measured" in fleischner("part-solid", 12.0)["remark"]
    assert fleischner("solid", 12.0)["remark"] == ""
    # through a track: the remark, and the stand-in solid size named as a caveat
    g = guideline(_track(_p("20250101", 20.0, "part-solid", 7.0)), "20250101", multiple=False)
    assert "highly suspicious" in g["fleischner"]["remark"] and g["lung_rads"]["category"] == "4A"
    g = guideline(_track(_p("20250101", 20.0, "part-solid")), "20250101", multiple=False)
    assert "solid component not measured" in g["lung_rads"]["caveat"]
