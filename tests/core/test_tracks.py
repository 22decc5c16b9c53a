"""LesionTrack: status, percent change and volume doubling time against known courses."""

from __future__ import annotations

import math

import pytest

from medstation.core.tracks import LesionTrack, TrackPoint, doubling_time_days, percent_change


def point(date, volume, diameter=None):
    d = diameter if diameter is not None else (6 * volume / math.pi) ** (1 / 3)
    return TrackPoint(date, "1.2.3", (0.0, 0.0, 0.0), d, volume)


def test_a_nodule_doubling_in_200_days_has_a_vdt_of_200_days():
    v0 = 500.0
    # 400 days later, two doublings
    t = LesionTrack("T1", "2.25.1", [point("20250101", v0), point("20250305", v0 * 2 ** (63 / 200)),
                                     point("20260205", v0 * 4)])
    assert t.status == "growing"
    assert t.volume_doubling_days == pytest.approx(200.0, rel=1e-6)
    assert t.percent_change_volume == pytest.approx(300.0)
    first, second = t.intervals()
    assert first["days"] == 63 and first["volume_doubling_days"] == pytest.approx(200.0, rel=1e-6)
    assert second["volume_doubling_days"] == pytest.approx(200.0, rel=1e-6)


def test_statuses():
    assert LesionTrack("a", "u", [point("20250101", 300), point("20260101", 330)]).status == "stable"
    assert LesionTrack("b", "u", [point("20250101", 300), point("20260101", 150)]).status == "shrinking"
    assert LesionTrack("c", "u", [None, point("20260101", 150)]).status == "new"
    assert LesionTrack("d", "u", [point("20250101", 150), None]).status == "resolved"
    # a mean diameter up by more than 1.5 mm is growth even under 25% volume
    grew = LesionTrack("e", "u", [point("20250101", 300, 8.0), point("20260101", 360, 9.6)])
    assert grew.status == "growing"


def test_edge_cases_of_the_formulas():
    assert doubling_time_days(100, 100, 90) == math.inf
    assert doubling_time_days(200, 100, 90) == pytest.approx(-90.0)
    assert math.isnan(doubling_time_days(0, 100, 90))
    assert percent_change(0, 5) == math.inf
    d = LesionTrack("f", "u", [point("20250101", 100), point("20250401", 100)]).to_dict()
    assert d["volume_doubling_days"] is None and d["status"] == "stable"  # inf is not JSON
    assert d["measurements"][0]["volume_mm3"] == 100


def test_reader_edits_rename_link_and_unlink():
    from medstation.core.tracks import apply_edits

    a = LesionTrack("T1", "1.2.1", [point("20250101", 100), None, None])
    b = LesionTrack("T2", "1.2.2", [None, point("20250601", 120), point("20260101", 150)])
    c = LesionTrack("T3", "1.2.3", [point("20250101", 50), point("20250601", 50), point("20260101", 50)])
    out = apply_edits([a, b, c], [
        {"kind": "rename", "tracking_uid": "1.2.3", "name": "RUL nodule"},
        {"kind": "link", "a": "1.2.1", "b": "1.2.2"},       # one lesion the matcher split
        {"kind": "link", "a": "1.2.1", "b": "1.2.3"},       # refused: both seen on 2025-01-01
        {"kind": "unlink", "tracking_uid": "1.2.3", "at": "20260101"},
        {"kind": "rename", "tracking_uid": "9.9.9", "name": "gone"},  # not there: skipped
    ])
    assert [t.tracking_uid for t in out] == ["1.2.1", "1.2.3", "1.2.3.3"]
    assert all(p is not None for p in out[0].points) and out[0].status == "growing"
    assert out[1].name == "RUL nodule" and out[1].points[2] is None and out[1].status == "resolved"
    assert out[2].points[:2] == [None, None] and out[2].status == "new"


@pytest.mark.parametrize("vdt, change, text", [
    (400.0, 60.0, "400 d"), (-300.0, -40.0, "shrinking"), (float("inf"), 0.0, "stable"),
    (2000.0, 10.0, "stable"), (-5000.0, -5.0, "stable"), (None, None, "n/a"), (300.0, None, "n/a"),
    (float("nan"), float("nan"), "n/a"), (250.0, 25.0, "stable"), (250.0, 25.1, "250 d"),
])
def test_the_doubling_time_reads_as_the_volume_change_says(vdt, change, text):
    """A doubling time only where the volume grew beyond 25%: never a negative or infinite one, never
    days beside a volume change that says stable."""
    from medstation.core.tracks import doubling_text

    assert doubling_text(vdt, change) == text
