"""Draw medstation's icon at the usual sizes.

Run: `QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/make_icons.py`.

Writes resources/icons/hicolor/<n>x<n>/apps/medstation.png (16 to 512): an axial
CT slice in a rounded square with a detection box on a nodule.
"""

from __future__ import annotations

import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
OUT = Path(__file__).resolve().parent.parent / "resources" / "icons" / "hicolor"


def draw(n: int):
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QColor, QImage, QPainter, QPen

    img = QImage(n, n, QImage.Format_ARGB32)
    img.fill(Qt.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.Antialiasing)
    s = n / 64.0
    p.setPen(Qt.NoPen)
    p.setBrush(QColor("#1d2430"))
    p.drawRoundedRect(QRectF(1 * s, 1 * s, 62 * s, 62 * s), 12 * s, 12 * s)
    p.setBrush(QColor("#d9dde3"))  # body
    p.drawEllipse(QRectF(8 * s, 14 * s, 48 * s, 36 * s))
    p.setBrush(QColor("#2b3442"))  # lungs
    p.drawEllipse(QRectF(13 * s, 19 * s, 16 * s, 26 * s))
    p.drawEllipse(QRectF(35 * s, 19 * s, 16 * s, 26 * s))
    p.setBrush(QColor("#e8ecf0"))  # nodule
    p.drawEllipse(QRectF(39 * s, 26 * s, 6 * s, 6 * s))
    pen = QPen(QColor("#f0a030"))
    pen.setWidthF(max(1.0, 2.2 * s))
    p.setPen(pen)
    p.setBrush(Qt.NoBrush)
    p.drawRect(QRectF(36 * s, 23 * s, 12 * s, 12 * s))
    p.end()
    return img


def main() -> int:
    from PySide6.QtGui import QGuiApplication

    QGuiApplication.instance() or QGuiApplication([])
    for n in SIZES:
        path = OUT / f"{n}x{n}" / "apps" / "medstation.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(n).save(str(path))
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
