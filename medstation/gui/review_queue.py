"""The review queue in the viewer: one key (U) steps to the unreviewed finding the model is least sure of.

The ranking is ``core.review_queue`` over the study database's cached results of the model in use
(``StudyDatabase.ai_cache.of_model``). Stepping opens the finding's series when another one is shown,
and selects the finding once that series' findings are drawn (centred, as a click in the findings
list does); Y / X then accept or reject it as usual, and the review becomes a label. The fine-tuning
panel shows the queue's size and where it lies against the split (``training.finetune.
queue_split_effect``).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from medstation.core.review_queue import QueueItem, next_in_queue, review_queue


class ReviewQueue(QObject):
    """``step()`` goes to the next item; ``message(text)`` says where it went, or that none is left."""

    message = Signal(str)

    def __init__(self, ai, open_series, parent=None) -> None:
        super().__init__(parent)
        self.ai = ai
        self.open_series = open_series  # SeriesRef -> opens it in the viewer
        self.pending: QueueItem | None = None
        self.last: QueueItem | None = None
        ai.findings_changed.connect(self._select_pending)

    def items(self, limit: int | None = None) -> list[QueueItem]:
        if self.ai.version is None:
            return []
        cached = self.ai.db.ai_cache.of_model(*self.ai._cache_key())
        return review_queue(cached, self.ai.operating_threshold(), limit)

    def step(self) -> QueueItem | None:
        queue = self.items()
        # the item this key went to last, still unreviewed: skipped, so the key moves on (whatever Y / X's
        # auto-advance selected since is not skipped)
        current = (self.last.series_key, self.last.finding_id) if self.last is not None else None
        item = next_in_queue(queue, current)
        if item is None:
            self.message.emit("The review queue is empty: every cached finding of "
                              f"{self.ai.model_label} has been reviewed.")
            return None
        self.pending = self.last = item
        left = len(queue) - (1 if current in [(q.series_key, q.finding_id) for q in queue] else 0)
        side = "above" if item.above else "below"
        self.message.emit(f"Review queue: {item.finding_id} (score {item.score:.2f}, just {side} the "
                          f"operating point), {left} unreviewed finding(s) left. Y accepts, X rejects.")
        if item.series_key == self.ai.state.series_key:
            self._select_pending()
        else:
            from medstation.core.series import SeriesRef

            self.open_series(SeriesRef.parse(item.series_key))
        return item

    def _select_pending(self) -> None:
        item = self.pending
        if item is None or item.series_key != self.ai.state.series_key:
            return
        found = next((f for f in self.ai.findings.items if f.finding_id == item.finding_id), None)
        if found is None:
            return
        self.pending = None
        if self.ai.findings.threshold > item.score:  # a finding below the drawn threshold: show it
            self.ai.findings.set_threshold(item.score)
        self.ai.findings.select(found, jump=True)
