"""The self-test's window step: open the demo series with findings, save a screenshot."""

from __future__ import annotations

import os
from pathlib import Path


def window_check(series_uid: str, findings: list, threshold: float, path: Path) -> str:
    """Open the main window on ``series_uid`` with ``findings`` drawn; save what it shows to ``path``."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer

    from medstation.gui.app import build_window, create_app

    app = create_app()
    win = build_window()
    win.ai.set_auto_detect(False)
    win.resize(1400, 900)
    win.show()
    shown = {}

    def opened(_uid):
        # the detector's findings from the step before, as a reader would see them
        layer = win.state.findings
        layer.set_threshold(threshold)
        layer.set_items(findings)
        visible = layer.visible()
        if visible:
            layer.select(visible[0], jump=True)  # the screenshot shows the top finding
        QTimer.singleShot(1500, take)

    def take():
        shown["ok"] = win.grab().save(str(path))
        app.quit()

    win.series_loaded.connect(opened)
    QTimer.singleShot(0, lambda: win.open_series(series_uid))
    safety = QTimer(singleShot=True, interval=60000)  # a safety net: never hang
    safety.timeout.connect(app.quit)
    safety.start()
    app.exec()
    safety.stop()  # a timer left armed would quit whatever event loop runs a minute later
    win.shutdown()
    win.close()
    if not shown.get("ok"):
        raise RuntimeError("the window did not open the demo series within 60 s")
    return f"screenshot {path}"
