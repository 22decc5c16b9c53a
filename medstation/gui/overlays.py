"""What a plane view draws over its image besides findings and measurements: the probability
heatmap with its colour legend, a label mask, and the scale bar (outlined like the corner text,
so it reads over bright lung and bone on every plane)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter, QPen

from medstation.imaging import Slab, slab_image
from medstation.imaging.mpr import Plane

TEXT = QColor(235, 235, 235)
_NICE_MM = (1, 2, 5, 10, 20, 50, 100, 200, 500)


def _draw_rgba(view, painter: QPainter, rgba: np.ndarray, target: QRectF, opacity: float,
               smooth: bool) -> None:
    h, w = rgba.shape[:2]
    view._overlay_rgba = np.ascontiguousarray(rgba)  # the QImage borrows this buffer
    image = QImage(view._overlay_rgba.data, w, h, w * 4, QImage.Format_RGBA8888)
    painter.save()
    painter.setOpacity(opacity)
    painter.setRenderHint(QPainter.SmoothPixmapTransform, smooth)
    painter.drawImage(target, image)
    painter.restore()


def paint_heatmap(view, painter: QPainter, depth: int) -> None:
    """The detector's probability map over the axial slice (its coarse grid stretched over the volume
    rows and columns it covers), and its colour legend."""
    layer = view.state.heatmap
    rgba = layer.rgba(depth)
    if rgba is None:
        return
    h, w = rgba.shape[:2]
    step_i, step_j = layer.heatmap.step
    target = QRectF(view.to_widget(-0.5, -0.5), view.to_widget(h * step_i - 0.5, w * step_j - 0.5))
    _draw_rgba(view, painter, rgba, target, layer.opacity, True)
    paint_heat_legend(view, painter)


def paint_heat_legend(view, painter: QPainter) -> None:
    """A vertical colour bar at the right edge: what each heatmap colour means (probability)."""
    ramp = view.state.heatmap.ramp()  # (probability, QColor) stops, as the map is coloured
    # below the right orientation letter, above the scale bar: neither is covered
    top = view.height() / 2 + 40
    bar = QRectF(view.width() - 30, top, 12, max(40.0, min(120.0, view.height() - 90 - top)))
    grad = QLinearGradient(bar.bottomLeft(), bar.topLeft())
    for p, color in ramp:
        grad.setColorAt(p, color)
    painter.save()
    painter.setPen(QPen(TEXT, 1))
    painter.setBrush(grad)
    painter.drawRect(bar)
    painter.setBrush(Qt.NoBrush)
    for p, text in ((1.0, "100%"), (0.5, "50%"), (0.05, "5%")):
        y = bar.bottom() - p * bar.height()
        view._shadow_text(painter, QRectF(bar.left() - 48, y - 8, 44, 16), Qt.AlignRight | Qt.AlignVCenter,
                          text)
    view._shadow_text(painter, QRectF(bar.left() - 70, bar.top() - 22, 90, 16),
                      Qt.AlignRight | Qt.AlignVCenter, "AI probability")
    painter.restore()


def paint_mask(view, painter: QPainter, p: Plane, depth: int) -> None:
    """The label mask on this plane (in a thick slab: every structure the slab holds)."""
    layer = view.state.mask
    if layer.array is None or layer.array.shape != view.state.volume.shape:
        return
    slab = view.state.slab
    values = slab_image(p, layer.array, depth, Slab("mip", slab.thickness_mm) if slab.active else slab)
    if not values.any():
        return
    target = QRectF(view.to_widget(-0.5, -0.5), view.to_widget(p.shape[0] - 0.5, p.shape[1] - 0.5))
    _draw_rgba(view, painter, layer.rgba(values), target, layer.opacity, False)


def paint_scale_bar(view, painter: QPainter) -> None:
    s = view.scale()
    want = view.width() / 5 / s  # about a fifth of the view
    mm = max((n for n in _NICE_MM if n <= want), default=_NICE_MM[0])
    length = mm * s
    x1 = view.width() - 40
    y = view.height() - 40
    x0 = x1 - length
    lines = [(QPointF(x0, y), QPointF(x1, y))] + [(QPointF(x, y - 4), QPointF(x, y + 4)) for x in (x0, x1)]
    painter.save()
    for color, width in ((QColor(0, 0, 0), 4), (TEXT, 2)):  # a dark outline under the bar
        painter.setPen(QPen(color, width))
        for a, b in lines:
            painter.drawLine(a, b)
    painter.restore()
    view._shadow_text(painter, QRectF(x0 - 40, y - 20, length + 80, 16), Qt.AlignCenter, f"{mm} mm")
