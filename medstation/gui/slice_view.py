"""One plane of the viewer: the image (or its thick slab), its corner text, orientation letters,
scale bar, crosshair, findings and measurements; the mouse and keyboard are ``slice_input``'s.

Mouse, as in RadiAnt, Horos and OHIF: the left button does the current tool (window/level
by default: horizontal drag = width, vertical = level; zoom; pan; crosshair; length,
rectangle, ellipse, angle draw); right-drag zooms and middle-drag pans (both can be changed
in Settings); Shift+left-drag pans; the wheel scrolls slices and Ctrl+wheel zooms at the
cursor. In the MPR layouts a click that does not drag moves the crosshair. Clicking a
measurement (its line or a handle) selects it; dragging a handle reshapes it, dragging the
line moves it.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from medstation.imaging import Measurement, render, slab_image, slab_range
from medstation.imaging.mpr import Plane

from . import overlays
from .slice_input import ViewInput
from .state import ViewState

PLANE_COLORS = {"axial": QColor(77, 166, 255), "coronal": QColor(102, 204, 102),
                "sagittal": QColor(255, 102, 102)}
TEXT = QColor(235, 235, 235)
MEASURE = QColor(255, 210, 60)
SELECTED = QColor(80, 230, 255)
NODULE_LABEL = QColor(255, 120, 220)  # a reader's nodule label
#: findings by confidence: high, medium, low
FINDING_COLORS = ((0.75, QColor(255, 70, 70)), (0.5, QColor(255, 150, 40)), (0.0, QColor(240, 230, 80)))
REJECTED = QColor(150, 150, 150)
PROVISIONAL = QColor(200, 200, 255)  # a candidate while detection runs


class SliceView(ViewInput, QWidget):
    """Draws ``state`` on one plane (axial, coronal or sagittal)."""

    activated = Signal(object)  # this view got the mouse: the window's "active view"
    hover = Signal(str)  # cursor readout text for the status bar

    def __init__(self, state: ViewState, plane_name: str = "axial", parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.plane_name = plane_name
        self.show_crosshair = False
        self.show_overlays = True
        self._scale: float | None = None  # screen px per mm; None = fit to the widget
        self._pan = QPointF(0, 0)
        self._cache_key: tuple | None = None
        self._pixels_key: tuple | None = None  # the shown plane (or slab) pixels, before windowing
        self._pixels: np.ndarray | None = None
        self._qimage: QImage | None = None
        self._rgb: np.ndarray | None = None
        self._drag: tuple | None = None  # (mode, start point, payload)
        self._mouse: QPointF | None = None  # last cursor position over the view (for the readout)
        self._views: dict[str, tuple] = {}  # layout name -> (scale, pan) kept while in another layout
        self._pending_angle: Measurement | None = None
        self._hover_text = ""
        self._labels: dict[tuple, str] = {}  # measurement label cache: ROI statistics are not free
        self._font = QFont()
        self._font.setPixelSize(12)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(120, 120)
        self.setAcceptDrops(False)
        state.volume_changed.connect(self._on_volume)
        state.centre_requested.connect(self._centre_requested)
        state.tool_changed.connect(self._on_tool)
        state.position_changed.connect(self._refresh_hover)
        state.data_changed.connect(self._refresh_hover)
        state.slab_changed.connect(self._refresh_hover)
        for sig in (state.data_changed, state.position_changed, state.window_changed, state.slab_changed,
                    state.measurements_changed, state.layers_changed):
            sig.connect(self.update)
        self._on_tool()

    # -- model ----------------------------------------------------------------
    @property
    def plane(self) -> Plane | None:
        return self.state.planes.get(self.plane_name)

    def _on_volume(self) -> None:
        self._scale, self._pan = None, QPointF(0, 0)
        self._views.clear()
        self._pending_angle = None
        self._hover_text = ""
        self.hover.emit("")
        self.update()

    def _on_tool(self) -> None:
        cursors = {"window": Qt.SizeAllCursor, "zoom": Qt.SizeVerCursor, "pan": Qt.OpenHandCursor,
                   "navigate": Qt.ArrowCursor}
        self.setCursor(cursors.get(self.state.tool, Qt.CrossCursor))
        self.update()

    def keep_view(self, layout: str) -> None:
        """Remember this view's zoom and pan for ``layout`` (each layout keeps its own)."""
        self._views[layout] = (self._scale, QPointF(self._pan))

    def restore_view(self, layout: str) -> None:
        self._scale, pan = self._views.get(layout, (None, QPointF(0, 0)))
        self._pan = QPointF(pan)
        self.update()

    def set_plane(self, name: str) -> None:
        self.plane_name = name
        self._scale, self._pan, self._cache_key = None, QPointF(0, 0), None
        self.update()

    # -- geometry: plane (row, col) <-> widget pixels --------------------------------
    def scale(self) -> float:
        """Screen pixels per mm."""
        p = self.plane
        if p is None:
            return 1.0
        if self._scale is not None:
            return self._scale
        h_mm, w_mm = p.shape[0] * p.spacing[0], p.shape[1] * p.spacing[1]
        return max(1e-3, min(self.width() / w_mm, self.height() / h_mm))

    def zoom_factor(self) -> float:
        """Screen pixels per image pixel (1.0 = 1:1)."""
        p = self.plane
        return self.scale() * (p.spacing[1] if p else 1.0)

    def image_rect(self) -> QRectF:
        p = self.plane
        s = self.scale()
        w, h = p.shape[1] * p.spacing[1] * s, p.shape[0] * p.spacing[0] * s
        cx, cy = self.width() / 2 + self._pan.x(), self.height() / 2 + self._pan.y()
        return QRectF(cx - w / 2, cy - h / 2, w, h)

    def to_widget(self, row: float, col: float) -> QPointF:
        p, r = self.plane, self.image_rect()
        s = self.scale()
        return QPointF(r.x() + (col + 0.5) * p.spacing[1] * s, r.y() + (row + 0.5) * p.spacing[0] * s)

    def to_plane(self, pt: QPointF) -> tuple[float, float]:
        p, r = self.plane, self.image_rect()
        s = self.scale()
        return (pt.y() - r.y()) / (p.spacing[0] * s) - 0.5, (pt.x() - r.x()) / (p.spacing[1] * s) - 0.5

    def index_at(self, pt: QPointF) -> np.ndarray:
        row, col = self.to_plane(pt)
        return self.plane.to_index(row, col, self.state.depth(self.plane))

    def fit(self) -> None:
        self._scale, self._pan = None, QPointF(0, 0)
        self.update()

    def one_to_one(self) -> None:
        if self.plane is not None:
            self._scale = 1.0 / self.plane.spacing[1]
            self.update()

    def centre_on(self, index) -> None:
        """Pan so the voxel ``index`` (k, i, j) is in the middle of the view."""
        p = self.plane
        if p is None or self.width() <= 0:
            return
        r, c, _ = p.to_plane(index)
        self._pan += QPointF(self.width() / 2, self.height() / 2) - self.to_widget(r, c)
        self.update()

    def _centre_requested(self) -> None:
        """A jump (to a finding, a track): zoomed in, the target goes to the middle of the view (at the
        edge it hides under the scale bar and the corner text); at fit, the view pans only if needed."""
        if self._scale is not None and self.isVisible():
            self.centre_on(self.state.position)
        else:
            self.reveal(self.state.position)

    def reveal(self, index, margin: float = 40.0) -> None:
        """Pan only if voxel ``index`` is off-screen (or within ``margin`` px of the edge); keep the zoom."""
        p = self.plane
        if p is None or self.width() <= 0 or not self.isVisible():
            return
        r, c, _ = p.to_plane(index)
        pt = self.to_widget(r, c)
        inside = QRectF(self.rect()).adjusted(margin, margin, -margin, -margin)
        if not inside.contains(pt):
            self.centre_on(index)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        if self.plane is None:
            return
        old = self.scale()
        new = min(max(old * factor, 0.02), 200.0)
        if anchor is not None:  # keep the point under the cursor still
            c = QPointF(self.width() / 2, self.height() / 2) + self._pan
            self._pan += (anchor - c) * (1 - new / old)
        self._scale = new
        self.update()

    # -- painting -------------------------------------------------------------
    def pixels(self, plane: Plane, depth: int) -> np.ndarray:
        """What this view shows at ``depth``: the plane, or its thick-slab projection."""
        st = self.state
        key = (plane.name, depth, st.slab, st.data_version, id(st.volume))
        if key != self._pixels_key or self._pixels is None:
            self._pixels = slab_image(plane, st.volume.voxels, depth, st.slab, st.ready)
            self._pixels_key = key
        return self._pixels

    def slab_range(self, p: Plane, depth: int) -> tuple[int, int]:
        """The planes the shown image covers (one plane when there is no slab)."""
        return slab_range(p, depth, self.state.slab)

    def _image(self, plane: Plane, depth: int) -> QImage:
        st = self.state
        key = (plane.name, depth, st.window, st.display_inverted, st.slab, st.data_version, id(st.volume))
        if key != self._cache_key or self._qimage is None:
            out = render(self.pixels(plane, depth), st.window, st.display_inverted)
            out = np.ascontiguousarray(out)
            h, w = out.shape[:2]
            fmt = QImage.Format_RGB888 if out.ndim == 3 else QImage.Format_Grayscale8
            self._rgb = out  # the QImage borrows this buffer
            self._qimage = QImage(out.data, w, h, out.strides[0], fmt)
            self._cache_key = key
        return self._qimage

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.black)
        painter.setFont(self._font)
        p, st = self.plane, self.state
        if p is None or st.volume is None:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(self.rect().adjusted(10, 10, -10, -10), Qt.AlignCenter | Qt.TextWordWrap,
                             st.empty_hint)
            painter.end()
            return
        depth = st.depth(p)
        target = self.image_rect()
        if st.slice_ready(p, depth):
            painter.setRenderHint(QPainter.SmoothPixmapTransform, self.zoom_factor() < 3.0)
            painter.drawImage(target, self._image(p, depth))
        else:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(self.rect(), Qt.AlignCenter, "loading this slice …")
        painter.setRenderHint(QPainter.Antialiasing, True)
        if self.show_crosshair:
            self._paint_crosshair(painter, p)
        if self.show_overlays and st.mask.show:
            overlays.paint_mask(self, painter, p, depth)
        if self.show_overlays and st.heatmap.show and p.axis == 0:
            overlays.paint_heatmap(self, painter, depth)
        if self.show_overlays and st.findings.show and st.findings.items:
            self._paint_findings(painter, p, depth)
        if self.show_overlays:
            self._paint_measurements(painter, p, depth)
            self._paint_text(painter, p, depth)
        if self.hasFocus() and self.show_crosshair:
            painter.setPen(QPen(PLANE_COLORS.get(p.name, TEXT), 2))
            painter.drawRect(self.rect().adjusted(1, 1, -1, -1))
        painter.end()

    def _paint_crosshair(self, painter: QPainter, p: Plane) -> None:
        r, c, _ = p.to_plane(self.state.position)
        pt = self.to_widget(r, c)
        others = {self.state.planes[n].axis: n for n in self.state.planes if n != p.name}
        # a vertical line is the plane fixing the column axis, a horizontal one the row axis
        painter.setPen(QPen(PLANE_COLORS.get(others.get(p.col_axis, ""), TEXT), 1))
        painter.drawLine(QPointF(pt.x(), 0), QPointF(pt.x(), self.height()))
        painter.setPen(QPen(PLANE_COLORS.get(others.get(p.row_axis, ""), TEXT), 1))
        painter.drawLine(QPointF(0, pt.y()), QPointF(self.width(), pt.y()))

    def finding_rects(self, p: Plane, depth: int) -> list[tuple[object, QRectF]]:
        """(finding, widget rectangle) of the findings cut by this plane at ``depth`` (in a thick
        slab: the findings inside it, each at its largest extent there)."""
        out = []
        first, last = self.slab_range(p, depth)
        for f in self.state.findings.visible():
            if p.axis == 0:
                inside = [b for b in f.boxes if first <= b[0] <= last]
                if not inside:
                    continue
                box = max(inside, key=lambda b: ((b[3] - b[1] + 1) * (b[4] - b[2] + 1), -abs(b[0] - depth)))
                lo, hi = (depth, box[1], box[2]), (depth, box[3], box[4])
            else:
                b = f.bbox()
                if not (b[p.axis] - 0.5 <= last and first <= b[p.axis + 3] + 0.5):
                    continue
                lo, hi = b[:3], b[3:]
            r0, c0, _ = p.to_plane(lo)
            r1, c1, _ = p.to_plane(hi)
            out.append((f, QRectF(self.to_widget(min(r0, r1) - 0.5, min(c0, c1) - 0.5),
                                  self.to_widget(max(r0, r1) + 0.5, max(c0, c1) + 0.5)).normalized()))
        return out

    def _paint_findings(self, painter: QPainter, p: Plane, depth: int) -> None:
        st = self.state
        painter.save()
        painter.setOpacity(st.findings.opacity)
        for f, rect in self.finding_rects(p, depth):
            grow = 3.0
            if st.findings.partial:  # a running detection's candidate: where, not what (no id, score)
                painter.setPen(QPen(PROVISIONAL, 1.2, Qt.DotLine))
                painter.drawEllipse(rect.adjusted(-grow, -grow, grow, grow))
                continue
            color = REJECTED if f.status == "rejected" else next(c for t, c in FINDING_COLORS if f.score >= t)
            pen = QPen(color, 2.5 if f is st.findings.selected else 1.5)
            if f.status == "rejected":
                pen.setStyle(Qt.DashLine)
            painter.setPen(pen)
            painter.drawEllipse(rect.adjusted(-grow, -grow, grow, grow))
            mark = {"accepted": " ✓", "rejected": " ✗"}.get(f.status, "")
            label = f"{f.finding_id} {f.score:.2f}{mark}"
            anchor = QPointF(rect.right() + grow + 2, rect.top() - 14)
            self._shadow_text(painter, QRectF(anchor, anchor + QPointF(140, 16)), Qt.AlignLeft | Qt.AlignTop,
                              label, color)
        painter.restore()

    def visible_measurements(self, p: Plane, depth: int) -> list[Measurement]:
        items = list(self.state.measurements)
        if self._pending_angle is not None:
            items.append(self._pending_angle)
        first, last = self.slab_range(p, depth)
        return [m for m in items if m.axis == p.axis and first <= m.depth <= last]

    def _paint_measurements(self, painter: QPainter, p: Plane, depth: int) -> None:
        units = self.state.volume.units
        for m in self.visible_measurements(p, depth):
            color = SELECTED if m is self.state.selected else MEASURE
            painter.setPen(QPen(color, 1.5))
            pts = [self.to_widget(*p.to_plane(q)[:2]) for q in m.points]
            if m.kind == "length":
                painter.drawLine(pts[0], pts[1])
            elif m.kind == "nodule":
                if m is not self.state.selected:
                    painter.setPen(QPen(NODULE_LABEL, 1.8))
                r = math.hypot(pts[1].x() - pts[0].x(), pts[1].y() - pts[0].y())
                painter.drawEllipse(pts[0], r, r)
            elif m.kind == "angle":
                painter.drawPolyline(pts)
            else:
                rect = QRectF(pts[0], pts[1]).normalized()
                painter.drawEllipse(rect) if m.kind == "ellipse" else painter.drawRect(rect)
            painter.setBrush(color)
            for q in pts:
                painter.drawRect(QRectF(q.x() - 2.5, q.y() - 2.5, 5, 5))
            painter.setBrush(Qt.NoBrush)
            if m is not self._pending_angle:
                label = self._label(m, p, units)
                size = painter.fontMetrics().boundingRect(0, 0, 320, 60, Qt.AlignLeft | Qt.AlignTop, label)
                anchor = max(pts, key=lambda q: q.x()) + QPointF(8, -4)
                if anchor.x() + size.width() > self.width() - 24:  # no room on the right: the left side
                    anchor = QPointF(min(q.x() for q in pts) - 8 - size.width(), anchor.y())
                anchor = QPointF(max(4.0, anchor.x()),
                                 min(max(22.0, anchor.y()), self.height() - 24 - size.height()))
                box = QRectF(anchor, anchor + QPointF(size.width() + 4, size.height() + 2))
                self._shadow_text(painter, box, Qt.AlignLeft | Qt.AlignTop, label, color)

    def _label(self, m: Measurement, p: Plane, units: str) -> str:
        key = (id(m), tuple(m.points), m.depth, self.state.data_version, units)
        label = self._labels.get(key)
        if label is None:
            if len(self._labels) > 256:
                self._labels.clear()
            label = self._labels[key] = m.summary(self.state.volume, p, units).replace(", area", "\narea")
        return label

    def _shadow_text(self, painter: QPainter, rect: QRectF, flags, text: str, color=TEXT) -> None:
        """Text with a dark outline, readable over bright pixels and on inverted images."""
        painter.setPen(QColor(0, 0, 0))
        for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            painter.drawText(rect.translated(dx, dy), flags, text)
        painter.setPen(color)
        painter.drawText(rect, flags, text)

    def corner_text(self, p: Plane, depth: int) -> dict[str, list[str]]:
        """The four corners' lines; fewer and shorter in a small view."""
        st, vol = self.state, self.state.volume
        info = st.info
        small = self.width() < 330 or self.height() < 260
        pos = vol.index_to_patient(p.to_index(0, 0, depth)) if vol.has_geometry else None
        loc = ""
        if pos is not None:
            axis = int(np.argmax(np.abs(p.normal)))
            loc = f"{'XYZ'[axis]}: {pos[axis]:.1f} mm"
        where = f"{p.name.capitalize()}  " if vol.has_geometry else ""  # no geometry: no plane name
        w = st.window
        wl = "" if vol.is_color else (f"W {w.width:.0f}  L {w.center:.0f}" + ("" if small else f"  {w.name}"))
        if st.invert:
            wl += "  inv" if small else "  inverted"
        slab = st.slab.label(p, depth)  # a projection is never mistaken for a plane
        if small:
            narrow = self.width() < 260  # the image number matters more than the name there
            return {"tl": [] if narrow else [info.get("patient", "")],
                    "tr": [f"Im {depth + 1}/{p.depth}", slab],
                    "bl": [wl], "br": [self._hover_text]}
        return {"tl": [info.get("patient", ""),
                       "  ".join(t for t in (info.get("patient_id", ""), info.get("age_sex", "")) if t),
                       info.get("study", "")],
                "tr": [info.get("series", ""), info.get("acquisition", ""),
                       f"{where}Im {depth + 1}/{p.depth}", loc, slab],
                "bl": [wl, f"Zoom {self.zoom_factor():.2f}×"],
                "br": [self._hover_text]}

    def _paint_text(self, painter: QPainter, p: Plane, depth: int) -> None:
        vol = self.state.volume
        m = 6
        box = QRectF(m, m, self.width() - 2 * m, self.height() - 2 * m)
        fm = painter.fontMetrics()
        big = QFont(self._font)
        big.setPixelSize(15)
        big.setBold(True)
        labels = p.edge_labels() if vol.has_geometry else {}
        # the corner texts share each edge with an orientation letter in its middle: each corner
        # gets half of what the letter leaves, and the blocks stop short of the side letters
        letter_w = max((QFontMetrics(big).horizontalAdvance(t) for t in labels.values()), default=0) + 8
        half = max(20.0, (box.width() - letter_w) / 2)
        max_lines = max(1, int((box.height() / 2 - 14) // fm.height()))
        corners = self.corner_text(p, depth)
        flags = {"tl": Qt.AlignLeft | Qt.AlignTop, "tr": Qt.AlignRight | Qt.AlignTop,
                 "bl": Qt.AlignLeft | Qt.AlignBottom, "br": Qt.AlignRight | Qt.AlignBottom}
        for corner, lines in corners.items():
            lines = [fm.elidedText(t, Qt.ElideRight, int(half)) for t in lines if t][:max_lines]
            if lines:
                self._shadow_text(painter, box, flags[corner], "\n".join(lines))
        if labels:
            painter.setFont(big)
            self._shadow_text(painter, box, Qt.AlignHCenter | Qt.AlignTop, labels["top"])
            self._shadow_text(painter, box, Qt.AlignHCenter | Qt.AlignBottom, labels["bottom"])
            self._shadow_text(painter, box, Qt.AlignLeft | Qt.AlignVCenter, labels["left"])
            self._shadow_text(painter, box, Qt.AlignRight | Qt.AlignVCenter, labels["right"])
            painter.setFont(self._font)
        overlays.paint_scale_bar(self, painter)
