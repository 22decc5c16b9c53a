"""``FindingsModel``: the AI findings of the shown series as an overlay layer of the viewer model.

It holds the findings, the confidence threshold, the selection, visibility and
opacity, and the reader's decisions (accept / reject). Widgets subscribe to its
signals; the AI controller fills it and stores what the reader decides
(``reviewed``). Editing a finding's extent, drawing a new one and undo (the
fine-tuning issue) become more methods here that emit ``items_changed`` and a
signal the label store listens to.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from medstation.core.findings import STATUSES, Finding


class FindingsModel(QObject):
    items_changed = Signal()  # the list, the threshold or a review changed
    selection_changed = Signal()
    display_changed = Signal()  # visibility or opacity (repaint only)
    reviewed = Signal(object, str)  # finding, status ("" clears): to be stored
    review_refused = Signal(str)  # why a review was not taken (the panel shows it)
    changed = Signal()  # any of the above (the viewer repaints its overlays)

    def __init__(self, state=None) -> None:
        super().__init__(state)
        self._state = state
        self.items: list[Finding] = []
        self.threshold = 0.5
        self.show = True
        self.opacity = 0.9
        self.selected: Finding | None = None
        self.partial = False  # items are a detector's partial result (still running)
        #: finding id -> the same lesion found in the study's other series ("#3 F2"): thin and
        #: thick reconstructions of one acquisition show the same nodules
        self.links: dict[str, list[str]] = {}
        for sig in (self.items_changed, self.selection_changed, self.display_changed):
            sig.connect(self.changed)

    # -- the findings -----------------------------------------------------------------------
    def set_items(self, items: list[Finding], partial: bool = False) -> None:
        self.items = sorted(items, key=lambda f: -f.score)
        self.partial = bool(partial)
        self.links = {}
        if self.selected not in self.items:
            self.selected = None
        self.items_changed.emit()

    def clear(self) -> None:
        self.items, self.selected, self.partial, self.links = [], None, False, {}
        self.items_changed.emit()

    def set_links(self, links: dict[str, list[str]]) -> None:
        self.links = dict(links)
        self.items_changed.emit()

    def visible(self) -> list[Finding]:
        """Findings at or above the confidence threshold (rejected ones included: drawn dimmed)."""
        return [f for f in self.items if f.score >= self.threshold]

    def set_threshold(self, value: float) -> None:
        self.threshold = float(min(max(value, 0.0), 1.0))
        self.items_changed.emit()

    # -- display ------------------------------------------------------------------------------
    def set_show(self, on: bool) -> None:
        self.show = bool(on)
        self.display_changed.emit()

    def set_opacity(self, value: float) -> None:
        self.opacity = float(min(max(value, 0.05), 1.0))
        self.display_changed.emit()

    # -- selection and review -------------------------------------------------------------------
    def select(self, f: Finding | None, jump: bool = True) -> None:
        """Select ``f``; ``jump`` moves the cursor to its centre and centres the views on it."""
        self.selected = f
        if f is not None and jump and self._state is not None:
            self._state.centre_on(f.center_voxel)
        self.selection_changed.emit()

    def step(self, delta: int) -> None:
        """Select the next (``delta`` 1) or previous (-1) visible finding, wrapping around."""
        items = self.visible()
        if not items:
            return
        cur = self.selected
        n = items.index(cur) + delta if cur in items else (0 if delta > 0 else len(items) - 1)
        self.select(items[n % len(items)])

    def review(self, f: Finding | None, status: str) -> None:
        """Accept or reject ``f`` (``""`` clears); ``reviewed`` asks for it to be stored."""
        if f is None:
            return
        if status not in STATUSES:
            raise ValueError(f"unknown review status {status!r}")
        if self.partial:  # ids, scores and sizes still change: a review now could land on another lesion
            self.review_refused.emit("Wait until detection finishes to accept or reject a finding.")
            return
        before = f.status
        f.status = status
        self.items_changed.emit()
        self.reviewed.emit(f, status)
        history = getattr(self._state, "history", None)
        if history is not None and before != status:
            history.record(f"{status or 'clear'} {f.finding_id}", lambda: self.review(f, before),
                           lambda: self.review(f, status))

    def review_and_next(self, status: str) -> None:
        """Y / X: accept or reject the selected finding (again: clear it), then go to the next one."""
        f = self.selected
        if f is None:
            return
        self.review(f, "" if f.status == status else status)
        if f.status:
            self.step(1)

    def toggle_review(self, status: str) -> None:
        """The keyboard review of the selected finding: ``status``, or clear it if it has it already."""
        f = self.selected
        if f is not None:
            self.review(f, "" if f.status == status else status)


class HeatmapLayer(QObject):
    """The detector's probability map of the shown series (``ai.detector.Heatmap``): off by default,
    with its own opacity; cleared with the series. Only a run in this session has one (stored
    results keep the findings, not the map)."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.heatmap = None
        self.show = False
        self.opacity = 0.5

    def set_heatmap(self, heatmap) -> None:
        self.heatmap = heatmap
        self.changed.emit()

    def clear(self) -> None:
        if self.heatmap is not None:
            self.heatmap = None
            self.changed.emit()

    def set_show(self, show: bool) -> None:
        if bool(show) != self.show:
            self.show = bool(show)
            self.changed.emit()

    def set_opacity(self, opacity: float) -> None:
        opacity = min(1.0, max(0.0, float(opacity)))
        if opacity != self.opacity:
            self.opacity = opacity
            self.changed.emit()

    @staticmethod
    def colours(p):
        """RGBA uint8 of probabilities ``p`` (0-1): transparent -> red -> yellow, clear under 5%."""
        import numpy as np

        p = np.asarray(p, np.float32)
        out = np.zeros(p.shape + (4,), np.uint8)
        out[..., 0] = 255
        out[..., 1] = np.rint(np.clip((p - 0.5) * 2, 0, 1) * 255)
        out[..., 3] = np.where(p < 0.05, 0, np.rint(np.clip(p * 1.5, 0, 1) * 255))
        return out

    def ramp(self) -> list:
        """(probability, QColor) stops of the colouring, for the legend (the same formula as the map)."""
        from PySide6.QtGui import QColor

        stops = [0.0, 0.049, 0.05, 0.25, 0.5, 0.667, 0.75, 1.0]
        return [(p, QColor(*(int(v) for v in c))) for p, c in zip(stops, self.colours(stops))]

    def rgba(self, k: int):
        """The map of volume slice ``k`` as RGBA uint8 (a transparent-to-red-to-yellow ramp; pixels
        under 5% probability fully transparent), or None."""
        import numpy as np

        if self.heatmap is None:
            return None
        values = self.heatmap.slice_for(k)
        if values is None:
            return None
        return self.colours(values.astype(np.float32) / 255.0)
