"""The side-by-side compare view kept readable as one reading: when a series opens beside the shown
one (a prior from the follow-up, or a series dragged there), it opens at the same scale in mm as
the shown view (zoomed in on the same anatomy when the reader had zoomed) and with its own AI
findings drawn, from the detector's cached results at the shown series' threshold."""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF


class CompareLink(QObject):
    def __init__(self, win) -> None:
        super().__init__(win)
        self.win = win
        win.compare_loader.first_image.connect(lambda _uid: self.match())

    def match(self) -> None:
        win = self.win
        main, other = win.viewer.panes["axial"].view, win.viewer.compare.view
        st = win.ctx.compare
        if st.volume is None or main.plane is None or other.plane is None:
            return
        other._scale = main.scale()  # screen px per mm: the same size on both sides
        other._pan = QPointF(0, 0)
        if main._scale is not None:  # the reader had zoomed in: show the same place in the prior
            other.centre_on(st.position)
        other.update()
        self.show_findings()

    def show_findings(self) -> None:
        win = self.win
        st, ai = win.ctx.compare, win.ai
        cached = ai.cached(st.series_key)
        st.findings.set_threshold(win.state.findings.threshold)
        if cached is None:
            st.findings.clear()
            win.notify("The series beside has no findings from this model yet: open it and press D to "
                       "draw them here.")
            return
        st.findings.set_items(cached)
