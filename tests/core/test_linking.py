"""Linking a series' findings to the same lesions in its study's other series (no Qt, no database)."""

from __future__ import annotations

from medstation.core.findings import Finding
from medstation.core.linking import MIN_GATE_MM, link_series, same_lesion


def _f(fid: str, centre, diameter: float = 8.0) -> Finding:
    return Finding(fid, tuple(float(v) for v in centre), (0.0, 0.0, 0.0), diameter, 0.9, (0, 0), 100.0, [])


def test_the_gate_is_a_quarter_of_both_diameters_and_never_under_5_mm():
    a = _f("F1", (0, 0, 0), 8.0)
    assert same_lesion(a, _f("G", (MIN_GATE_MM, 0, 0), 8.0))  # 4 mm from the diameters: 5 mm wins
    assert not same_lesion(a, _f("G", (MIN_GATE_MM + 0.01, 0, 0), 8.0))
    big = _f("F2", (0, 0, 0), 30.0)
    assert same_lesion(big, _f("G", (0, 0, 15.0), 30.0))  # (30 + 30) / 4 = 15 mm
    assert not same_lesion(big, _f("G", (0, 0, 15.01), 30.0))


def test_links_read_every_cached_part_by_its_key_and_only_the_studys_other_series():
    shown = [_f("F1", (10, 10, 10)), _f("F2", (50, 0, 0))]
    cached = [
        ("1.2.3#1", [_f("F1", (10, 11, 10))]),  # the shown series itself (another part): not a link
        ("1.2.4#1", [_f("F7", (10, 12, 10)), _f("F8", (90, 0, 0))]),  # a part key
        ("1.2.4#2", [_f("F1", (50, 1, 0))]),  # the same series' second part
        ("1.2.5", [_f("F3", (50, 0, 1))]),  # a bare UID key
        ("9.9.9#1", [_f("F1", (10, 10, 10))]),  # another study's series: not listed in labels
    ]
    links = link_series("1.2.3#1", shown, cached, {"1.2.4": "#2", "1.2.5": "#3"})
    assert links == {"F1": ["#2 F7"], "F2": ["#2 F1", "#3 F3"]}
    assert link_series("1.2.3", shown, [], {"1.2.4": "#2"}) == {}
