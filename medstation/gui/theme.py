"""The dark theme: Fusion style with a dark palette (reading rooms are dark)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    p = QPalette()
    base, window, text = QColor(30, 30, 32), QColor(45, 45, 48), QColor(220, 220, 220)
    for role, color in (
        (QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
        (QPalette.AlternateBase, QColor(38, 38, 41)), (QPalette.ToolTipBase, window),
        (QPalette.ToolTipText, text), (QPalette.Text, text), (QPalette.Button, window),
        (QPalette.ButtonText, text), (QPalette.BrightText, QColor(255, 80, 80)),
        (QPalette.Highlight, QColor(42, 110, 190)), (QPalette.HighlightedText, QColor(255, 255, 255)),
        (QPalette.Link, QColor(90, 160, 240)), (QPalette.PlaceholderText, QColor(130, 130, 130)),
    ):
        p.setColor(role, color)
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        p.setColor(QPalette.Disabled, role, QColor(120, 120, 120))
    app.setPalette(p)
    app.setStyleSheet("QDockWidget::title { padding: 4px; background: #2a2a2d; }"
                      "QToolTip { border: 1px solid #555; }")
