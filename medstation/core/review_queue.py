"""The review queue (active learning): the unreviewed AI findings the model is least sure of.

Across the study database's cached results of one model version, each finding a reader has not
accepted or rejected is ranked by how close its score lies to the operating point, the score from
which the viewer draws findings (``ai.detector.Detector.threshold``): a finding just above it may be
a false positive, one just below it a nodule the reader is not shown. A review of these is worth
most to a fine-tune (uncertainty sampling: Lewis and Gale, SIGIR 1994; Settles, "Active Learning
Literature Survey", 2009, section 3.1). The distance is measured on the logit of the score, so
0.99 lies about as far from 0.90 as 0.50 does (2.4 and 2.2; a calibrated score is a probability, a raw one
is a monotone stand-in).

Each accept or reject becomes a label through the usual review path (``dicom.labels``), so the
queue shrinks as the reader works and the fine-tuning data grows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

_EPS = 1e-4
#: the band around the operating point the queue holds, in logits: a factor of about 7.4 in the odds
#: either way (at an operating point of 0.35: scores 0.07 to 0.80). The detector caches every candidate,
#: most of them near zero: those are not uncertain, and a queue of hundreds says nothing
MAX_MARGIN = 2.0


def _logit(p: float) -> float:
    p = min(max(float(p), _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class QueueItem:
    series_key: str
    finding_id: str
    score: float
    #: |logit(score) - logit(operating point)|: smaller is less sure
    margin: float
    above: bool  # drawn by the viewer at the operating point
    center_mm: tuple[float, float, float]


def review_queue(results: Iterable[tuple[str, list[dict]]], threshold: float,
                 limit: int | None = None, max_margin: float | None = MAX_MARGIN) -> list[QueueItem]:
    """The unreviewed findings of ``results`` (``(series key, finding dicts)``, as
    ``StudyDatabase.ai_cache.of_model`` gives them) within ``max_margin`` logits of the operating point
    (None: all), least sure first; ties by series and finding id."""
    t = _logit(threshold)
    items = [QueueItem(key, str(f.get("finding_id", "")), float(f["score"]),
                       round(abs(_logit(f["score"]) - t), 6), float(f["score"]) >= threshold,
                       tuple(float(c) for c in f.get("center_mm", (0.0, 0.0, 0.0))))
             for key, findings in results for f in findings
             if not f.get("status") and f.get("score") is not None and f.get("finding_id")]
    if max_margin is not None:
        items = [q for q in items if q.margin <= max_margin]
    items.sort(key=lambda q: (q.margin, q.series_key, q.finding_id))
    return items if limit is None else items[:limit]


def next_in_queue(queue: list[QueueItem], current: tuple[str, str] | None = None) -> QueueItem | None:
    """The first item that is not ``current`` (``(series key, finding id)``: the one on screen, not yet
    reviewed, is skipped so the key moves on)."""
    for q in queue:
        if current is None or (q.series_key, q.finding_id) != tuple(current):
            return q
    return None
