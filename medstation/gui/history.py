"""Undo and redo for what a reader does to a series: measurements drawn, edited, deleted; findings reviewed.

Each change is recorded after it is made, as a pair of functions that undo and
redo it. The history belongs to the view model and is cleared when another
series is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

LIMIT = 200


@dataclass
class Change:
    text: str
    undo: Callable[[], None]
    redo: Callable[[], None]


class History(QObject):
    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._done: list[Change] = []
        self._undone: list[Change] = []
        self.replaying = False  # True while undoing or redoing: changes made then are not recorded

    def record(self, text: str, undo: Callable[[], None], redo: Callable[[], None]) -> None:
        if self.replaying:
            return
        self._done.append(Change(text, undo, redo))
        del self._done[:-LIMIT]
        self._undone.clear()
        self.changed.emit()

    def _replay(self, source: list[Change], target: list[Change], which: str) -> str:
        if not source:
            return ""
        change = source.pop()
        self.replaying = True
        try:
            getattr(change, which)()
        finally:
            self.replaying = False
        target.append(change)
        self.changed.emit()
        return change.text

    def undo(self) -> str:
        """Undo the last change; returns what it was ("" when there is nothing to undo)."""
        return self._replay(self._done, self._undone, "undo")

    def redo(self) -> str:
        return self._replay(self._undone, self._done, "redo")

    def can_undo(self) -> bool:
        return bool(self._done)

    def can_redo(self) -> bool:
        return bool(self._undone)

    def undo_text(self) -> str:
        return self._done[-1].text if self._done else ""

    def redo_text(self) -> str:
        return self._undone[-1].text if self._undone else ""

    def clear(self) -> None:
        self._done.clear()
        self._undone.clear()
        self.changed.emit()
