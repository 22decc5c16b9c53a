"""The same lesion in a study's other series: a thin and a thick reconstruction of one CT find the
same nodule, and the findings list says so ("Also in #3 F2").

Pure: findings and the cached results of the other series in, links out. Series are named by their
``SeriesRef`` keys only (``"<UID>#<part>"`` or the bare UID), as the AI results cache stores them,
so every cached part of another series takes part and none is looked up twice under two names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from medstation.core.findings import Finding
from medstation.core.series import SeriesRef

#: two findings are one lesion when their centres lie within a quarter of their two diameters, and
#: never closer than this (small nodules on a thick series move by a slice)
MIN_GATE_MM = 5.0


def same_lesion(f: Finding, g: Finding) -> bool:
    gate = max(MIN_GATE_MM, (f.diameter_mm + g.diameter_mm) / 4)
    return math.dist(f.center_mm, g.center_mm) <= gate


def link_series(current: str, findings: list[Finding], cached: Iterable[tuple[str, list[Finding]]],
                labels: Mapping[str, str]) -> dict[str, list[str]]:
    """Finding id -> ``["#3 F2", ...]``: the findings of the other series that are the same lesion.

    ``current`` is the shown series' key; ``cached`` the (key, findings) of series with results;
    ``labels`` the study's other series by UID, each with its label (``"#3"``): only those count.
    """
    shown = SeriesRef.parse(current).series_uid
    others: list[tuple[str, Finding]] = []
    for key, found in sorted(cached, key=lambda kv: kv[0]):
        uid = SeriesRef.parse(key).series_uid
        if uid == shown or uid not in labels:
            continue
        others += [(labels[uid], g) for g in found]
    links: dict[str, list[str]] = {}
    for f in findings:
        for label, g in others:
            if same_lesion(f, g):
                links.setdefault(f.finding_id, []).append(f"{label} {g.finding_id}")
    return links
