"""Lung-RADS v2022 and Fleischner 2017: every published row, the boundaries, growth and dates."""

from __future__ import annotations

import math

import pytest

from medstation.core.guidelines import (
    FLEISCHNER_2017,
    LUNG_RADS_2022,
    add_months,
    fleischner,
    lung_rads,
    lung_rads_growth,
)


def _inside(lo: float, hi: float) -> float:
    return lo + 1.0 if math.isinf(hi) else (lo + hi) / 2


@pytest.mark.parametrize("row", LUNG_RADS_2022, ids=lambda r: f"{r.category}-{r.kind}-{r.status}-{r.lo}")
def test_every_lung_rads_row_is_reached_by_a_nodule_it_describes(row):
    solid = _inside(row.solid_lo, row.solid_hi)  # a part-solid nodule is larger than its solid component
    total = max(_inside(row.lo, row.hi), solid + 1.0) if row.kind == "part-solid" else _inside(row.lo, row.hi)
    assert row.lo <= total < row.hi
    got = lung_rads(row.kind, total, solid_mm=solid, status=row.status)
    assert (got.category, got.rule) == (row.category, row.text)


@pytest.mark.parametrize("mean,category", [(3.0, "2"), (5.9, "2"), (5.96, "3"), (6.0, "3"), (7.9, "3"),
                                           (8.0, "4A"), (14.9, "4A"), (15.0, "4B"), (40.0, "4B")])
def test_solid_baseline_boundaries_at_a_tenth_of_a_millimetre(mean, category):
    assert lung_rads("solid", mean).category == category


def test_new_growing_stable_and_other_kinds():
    assert lung_rads("solid", 3.9, status="new").category == "2"
    assert lung_rads("solid", 4.0, status="new").category == "3"
    assert lung_rads("solid", 6.0, status="new").category == "4A"
    assert lung_rads("solid", 8.0, status="new").category == "4B"
    assert lung_rads("solid", 7.0, status="growing").category == "4A"
    assert lung_rads("solid", 9.0, status="growing").category == "4B"
    # v2022's stepped management: a category 4A nodule stable at 3 months is 3, a 3 stable at 6 months 2
    assert lung_rads("solid", 7.0, status="stable", prior_category="3").category == "2"
    assert lung_rads("solid", 10.0, status="stable", prior_category="4A").category == "3"
    assert lung_rads("solid", 16.0, status="stable", prior_category="4B").category == "4B"
    assert lung_rads("part-solid", 10.0, solid_mm=5.0).category == "3"
    assert lung_rads("part-solid", 10.0, solid_mm=7.0).category == "4A"
    assert lung_rads("part-solid", 12.0, solid_mm=8.0).category == "4B"
    assert lung_rads("part-solid", 9.0, solid_mm=3.0, status="growing").category == "4A"
    assert lung_rads("ground-glass", 29.9).category == "2"
    assert lung_rads("ground-glass", 30.0).category == "3"
    assert lung_rads("ground-glass", 35.0, status="stable").category == "2"
    assert lung_rads("calcified", 12.0).category == "1"


def test_management_and_next_ct_date():
    r = lung_rads("solid", 9.0, exam_date="20260131")
    assert r.category == "4A" and r.interval_months == 3 and r.next_ct_date == "2026-04-30"
    assert "3-month LDCT" in r.management
    assert lung_rads("solid", 4.0, exam_date="2026-03-15").next_ct_date == "2027-03-15"
    assert lung_rads("solid", 20.0, exam_date="2026-03-15").next_ct_date == ""  # 4B: referral, no LDCT date
    assert add_months("20240131", 1) == "2024-02-29"


def test_growth_is_more_than_1_5_mm_of_mean_diameter_within_12_months():
    assert lung_rads_growth(6.0, 7.6, 300)
    assert not lung_rads_growth(6.0, 7.5, 300)
    assert not lung_rads_growth(6.0, 8.0, 730)  # 2 mm over two years: 1 mm a year
    assert lung_rads_growth(6.0, 10.0, 730)


@pytest.mark.parametrize("row", FLEISCHNER_2017,
                         ids=lambda r: f"{r.kind}-{r.multiplicity}-{r.size}-{r.risk}")
def test_every_fleischner_row_is_reached(row):
    size = {"<6": 4.0, "6-8": 7.0, ">8": 10.0, ">=6": 8.0}[row.size]
    kind = "ground-glass" if row.kind == "subsolid" else row.kind
    for risk in (("low", "high") if row.risk == "any" else (row.risk,)):
        got = fleischner(kind, size, multiple=row.multiplicity == "multiple", risk=risk)
        assert got["recommendation"] == row.recommendation and got["size"] == row.size


@pytest.mark.parametrize("mean,size", [(5.4, "<6"), (5.5, "6-8"), (8.4, "6-8"), (8.5, ">8")])
def test_fleischner_sizes_round_to_the_nearest_millimetre(mean, size):
    assert fleischner("solid", mean)["size"] == size
