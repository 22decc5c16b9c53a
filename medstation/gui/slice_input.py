"""The mouse and keyboard of a plane view, as reading viewers have them (a mixin of ``SliceView``).

Left-drag does the current tool (window/level by default: horizontal = width, vertical = level;
zoom; pan; crosshair; the measurements); right-drag zooms and middle-drag pans (Settings change
both); Shift+left-drag pans; the wheel scrolls and Ctrl+wheel zooms at the cursor. A click on a
measurement selects it in any tool, its handles reshape it and its line moves it. The cursor
readout (value under the mouse) follows scrolling and slab changes.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt

from medstation.imaging import KINDS, Measurement, Window

#: how near (screen px) a click must be to a handle or a line to grab it
HANDLE_PX = 6.0


class ViewInput:
    """Mouse, wheel, keys and the cursor readout; the view supplies ``state``, ``plane`` and the
    geometry (``to_widget``, ``to_plane``, ``index_at``, ``scale``, ``zoom_by``)."""

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
