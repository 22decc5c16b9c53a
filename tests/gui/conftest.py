"""Fixtures for driving the real main window offscreen with pytest-qt."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from medstation.gui.tasks import Task
from tests._marker import write_marker_series


@pytest.fixture(scope="session")
def marker_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("marker")
    position = write_marker_series(folder / "series")
    return folder / "series", position


@pytest.fixture
def window(qtbot):
    from medstation.gui.app import build_window

    win = build_window()
    win.ai.set_auto_detect(False)  # AI tests switch it on; the viewer tests need no torch
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.shutdown()
    win.close()
    assert not Task.running_tasks(), "a background task outlived its window"


def import_and_wait(qtbot, win, paths, timeout=60000):
    with qtbot.waitSignal(win.import_finished, timeout=timeout) as sig:
        win.import_paths([str(p) for p in paths])
    return sig.args[0]


def open_and_wait(qtbot, win, uid, timeout=60000):
    with qtbot.waitSignal(win.series_loaded, timeout=timeout):
        win.open_series(uid)
    qtbot.wait(1)


def mouse(widget, kind: str, pos, button=Qt.LeftButton, mods=Qt.NoModifier) -> None:
    types = {"press": QEvent.MouseButtonPress, "move": QEvent.MouseMove,
             "release": QEvent.MouseButtonRelease}
    p = QPointF(pos)
    held = Qt.NoButton if kind == "release" else button
    ev = QMouseEvent(types[kind], p, widget.mapToGlobal(p), Qt.NoButton if kind == "move" else button,
                     held, mods)
    QApplication.sendEvent(widget, ev)


def drag(widget, a, b, button=Qt.LeftButton, mods=Qt.NoModifier, steps: int = 6) -> None:
    a, b = QPointF(a), QPointF(b)
    mouse(widget, "press", a, button, mods)
    for n in range(1, steps + 1):
        mouse(widget, "move", a + (b - a) * (n / steps), button, mods)
    mouse(widget, "release", b, button, mods)


def click(widget, pos, button=Qt.LeftButton) -> None:
    mouse(widget, "press", pos, button)
    mouse(widget, "release", pos, button)


def wheel(widget, pos, notches: int, mods=Qt.NoModifier) -> None:
    p = QPointF(pos)
    ev = QWheelEvent(p, widget.mapToGlobal(p), QPoint(0, 0), QPoint(0, 120 * notches), Qt.NoButton,
                     mods, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)
