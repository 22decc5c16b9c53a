"""One plane of the viewer: the image, its corner text, orientation letters, scale bar,
crosshair and measurements, and the mouse and keyboard conventions of reading viewers.

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

from medstation.imaging import KINDS, Measurement, Window, render, slab_image, slab_range
from medstation.imaging.mpr import Plane

from . import overlays
from .state import ViewState

PLANE_COLORS = {"axial": QColor(77, 166, 255), "coronal": QColor(102, 204, 102),
                "sagittal": QColor(255, 102, 102)}
TEXT = QColor(235, 235, 235)
MEASURE = QColor(255, 210, 60)
SELECTED = QColor(80, 230, 255)
NODULE_LABEL = QColor(255, 120, 220)  # a reader's nodule label
HANDLE_PX = 6.0
#: findings by confidence: high, medium, low
FINDING_COLORS = ((0.75, QColor(255, 70, 70)), (0.5, QColor(255, 150, 40)), (0.0, QColor(240, 230, 80)))
REJECTED = QColor(150, 150, 150)
PROVISIONAL = QColor(200, 200, 255)  # a candidate while detection runs


class SliceView(QWidget):
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

    # -- mouse and keys --------------------------------------------------------
    def _handle_at(self, pt: QPointF) -> tuple[Measurement, int] | None:
        p = self.plane
        for m in reversed(self.visible_measurements(p, self.state.depth(p))):
            for n, q in enumerate(m.points):
                w = self.to_widget(*p.to_plane(q)[:2])
                if abs(w.x() - pt.x()) <= HANDLE_PX and abs(w.y() - pt.y()) <= HANDLE_PX:
                    return m, n
        return None

    def _measurement_at(self, pt: QPointF) -> Measurement | None:
        """The measurement whose line or outline passes within a few pixels of ``pt``."""
        p = self.plane
        for m in reversed(self.visible_measurements(p, self.state.depth(p))):
            pts = [self.to_widget(*p.to_plane(q)[:2]) for q in m.points]
            if m.kind in ("length", "angle"):
                segments = list(zip(pts, pts[1:]))
                if any(_distance_to_segment(pt, a, b) <= HANDLE_PX for a, b in segments):
                    return m
            elif m.kind == "nodule":  # its circle
                r = math.hypot(pts[1].x() - pts[0].x(), pts[1].y() - pts[0].y())
                if abs(math.hypot(pt.x() - pts[0].x(), pt.y() - pts[0].y()) - r) <= HANDLE_PX:
                    return m
            else:
                rect = QRectF(pts[0], pts[1]).normalized()
                if m.kind == "rect":
                    outer = rect.adjusted(-HANDLE_PX, -HANDLE_PX, HANDLE_PX, HANDLE_PX)
                    inner = rect.adjusted(HANDLE_PX, HANDLE_PX, -HANDLE_PX, -HANDLE_PX)
                    if outer.contains(pt) and not inner.contains(pt):
                        return m
                elif rect.width() > 0 and rect.height() > 0:
                    dx = (pt.x() - rect.center().x()) / (rect.width() / 2)
                    dy = (pt.y() - rect.center().y()) / (rect.height() / 2)
                    scale = min(rect.width(), rect.height()) / 2
                    if abs(math.hypot(dx, dy) - 1.0) * scale <= HANDLE_PX:
                        return m
        return None

    def role_of(self, button, mods) -> str:
        """What a drag with ``button`` does: the current tool (left), or the right/middle binding."""
        if button == Qt.LeftButton:
            return "pan" if mods & Qt.ShiftModifier else self.state.tool
        if button == Qt.RightButton:
            return self.state.bindings["right"]
        if button == Qt.MiddleButton:
            return self.state.bindings["middle"]
        return ""

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.setFocus()
        self.activated.emit(self)
        if self.plane is None or self.state.volume is None:
            return
        pt = event.position()
        role = self.role_of(event.button(), event.modifiers())
        if event.button() == Qt.LeftButton and role in ("window", "zoom", "navigate") and \
                (self._handle_at(pt) is not None or self._measurement_at(pt) is not None):
            role = "select"  # a click on a measurement selects (and a drag edits) it, whatever the tool
        if role == "window":
            self._drag = ("window", pt, self.state.window)
        elif role == "zoom":
            self._drag = ("zoom", pt, (self.scale(), QPointF(self._pan)))
        elif role == "pan":
            self._drag = ("pan", pt, QPointF(self._pan))
        elif role:
            self._left_press(pt, role)
        event.accept()

    def _left_press(self, pt: QPointF, tool: str) -> None:
        st, p = self.state, self.plane
        idx = self.index_at(pt)
        if self._pending_angle is not None:  # third click fixes the angle's second arm
            m, self._pending_angle = self._pending_angle, None
            m.points[2] = tuple(idx)
            st.add_measurement(m)
            return
        hit = self._handle_at(pt)
        if hit is not None:
            st.select(hit[0])
            self._drag = ("handle", pt, (hit[0], hit[1], list(hit[0].points)))
            return
        body = self._measurement_at(pt)
        if body is not None:
            st.select(body)
            self._drag = ("move", pt, (body, list(body.points), idx))
            return
        if tool == "navigate":
            st.select(None)
            st.set_position(idx)
            self._drag = ("navigate", pt, None)
            return
        m = Measurement(tool, p.axis, st.depth(p), [tuple(idx)] * KINDS[tool])
        self._drag = ("draw", pt, m)
        if m.kind == "angle":
            self._pending_angle = m

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pt = event.position()
        self._mouse = pt
        self._update_hover(pt)
        if self._pending_angle is not None and self._drag is None:
            self._pending_angle.points[2] = tuple(self.index_at(pt))
            self.update()
            return
        if self._drag is None:
            return
        mode, start, payload = self._drag
        d = pt - start
        st = self.state
        if mode == "window":
            w = payload
            step = max(w.width, 20.0) / 250.0
            st.set_window(Window(w.center + d.y() * step, max(1.0, w.width + d.x() * step), "custom"))
        elif mode == "zoom":  # drag up zooms in, about the point pressed
            scale, pan = payload
            self._scale, self._pan = scale, QPointF(pan)
            self.zoom_by(1.01 ** (-d.y()), start)
        elif mode == "pan":
            self._pan = payload + d
            self.update()
        elif mode == "navigate":
            st.set_position(self.index_at(pt))
        elif mode == "handle":
            m, n, _before = payload
            m.points[n] = tuple(self.index_at(pt))
            st.measurements_changed.emit()
        elif mode == "move":
            m, before, origin = payload
            shift = self.index_at(pt) - origin
            m.points[:] = [tuple(np.asarray(q) + shift) for q in before]
            st.measurements_changed.emit()
        elif mode == "draw":
            m = payload
            m.points[1 if m.kind == "angle" else -1] = tuple(self.index_at(pt))
            if m.kind == "angle":
                m.points[2] = m.points[1]
            if m not in st.measurements and m is not self._pending_angle:
                st.measurements.append(m)  # shown while drawing; committed on release
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._drag is None:
            return
        mode, start, payload = self._drag
        self._drag = None
        st = self.state
        moved = (event.position() - start).manhattanLength() >= 3
        if mode == "handle":
            st.edited(payload[0], payload[2])
        elif mode == "move":
            st.edited(payload[0], payload[1])
        elif mode in ("window", "zoom", "pan") and not moved and self.show_crosshair:
            st.set_position(self.index_at(event.position()))  # a click in MPR moves the crosshair
        elif mode == "draw":
            m = payload
            if m in st.measurements:
                st.measurements.remove(m)
            if m.kind == "angle":
                if not moved:
                    self._pending_angle = None
                self.update()
            elif moved:
                st.add_measurement(m)
            else:
                self.update()

    def wheelEvent(self, event) -> None:  # noqa: N802
        if self.plane is None:
            return
        steps = event.angleDelta().y() / 120.0
        if event.modifiers() & Qt.ControlModifier:
            self.zoom_by(1.15 ** steps, event.position())
        else:
            self._wheel_rest = getattr(self, "_wheel_rest", 0.0) + steps
            whole = int(self._wheel_rest)
            if whole:
                self._wheel_rest -= whole
                self.state.step(self.plane, -whole)
        event.accept()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        p, key = self.plane, event.key()
        if p is None:
            return super().keyPressEvent(event)
        steps = {Qt.Key_Up: -1, Qt.Key_Down: 1, Qt.Key_PageUp: -10, Qt.Key_PageDown: 10}
        if key in steps:
            self.state.step(p, steps[key])
        elif key == Qt.Key_Home:
            self.state.step(p, -p.depth)
        elif key == Qt.Key_End:
            self.state.step(p, p.depth)
        elif key in (Qt.Key_Delete, Qt.Key_Backspace):
            self.state.delete_measurement()
        elif key == Qt.Key_Escape:
            self._pending_angle = None
            self.state.select(None)
        else:
            return super().keyPressEvent(event)
        event.accept()

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._mouse = None
        self._hover_text = ""
        self.hover.emit("")
        self.update()

    def _refresh_hover(self) -> None:
        """The slice under the cursor changed (scrolling, more slices arrived): read it again."""
        if self._mouse is not None and self.isVisible():
            self._update_hover(self._mouse)

    def _update_hover(self, pt: QPointF) -> None:
        st, p = self.state, self.plane
        if p is None or st.volume is None:
            return
        row, col = self.to_plane(pt)
        r, c = int(math.floor(row + 0.5)), int(math.floor(col + 0.5))
        if 0 <= r < p.shape[0] and 0 <= c < p.shape[1]:
            depth = st.depth(p)
            if st.slice_ready(p, depth):
                v = self.pixels(p, depth)[r, c]
                value = " ".join(f"{x:g}" for x in np.ravel(v)) + (f" {st.volume.units}" if st.volume.units
                                                                    else "")
                if st.slab.active:
                    value += f" ({st.slab.label()})"
            else:
                value = "…"
            # x, y: the pixel's column and row in this view (from 0, as DICOM counts them);
            # Im: the image number shown in the corner (from 1)
            text = f"x {c}  y {r}  Im {depth + 1}:  {value}"
        else:
            text = ""
        if text != self._hover_text:
            self._hover_text = text
            self.hover.emit(text)
            self.update()


def _distance_to_segment(p: QPointF, a: QPointF, b: QPointF) -> float:
    ab = b - a
    length2 = ab.x() ** 2 + ab.y() ** 2
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p - a).x() * ab.x() + (p - a).y() * ab.y()) / length2))
    q = a + ab * t
    return math.hypot(p.x() - q.x(), p.y() - q.y())
