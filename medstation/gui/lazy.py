"""A placeholder that builds its contents the first time it is painted.

The first window should not wait for what it does not show: the fine-tuning and follow-up
charts (pyqtgraph, about 0.13 s to import and build) sit in tabs behind the findings panel. A
tabbed dock that is not in front is not hidden, only moved off screen (it is never shown again, so a
``showEvent`` never comes); it is first *painted* when its tab comes to the front. ``LazyArea``
builds on that first paint, after the frame (a zero timer), so the tab appears at once and its
charts a moment later.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget


class LazyArea(QWidget):
    """An empty area with a layout; ``build(layout)`` runs once, on the first paint or ``ensure()``."""

    def __init__(self, build: Callable[[QVBoxLayout], None], parent=None) -> None:
        super().__init__(parent)
        self._build = build
        self.built = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

    def on_screen(self) -> bool:
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def ensure(self) -> None:
        if not self.built:
            self.built = True
            self._build(self.layout())

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        if not self.built:
            QTimer.singleShot(0, self.ensure)
