"""The viewer: three plane views of one volume with a linked crosshair, in 1x1, 1x3 or 2x2, and
1x2: the shown series beside a second one (its own view model), scrolled together by patient
position when synchronized. Each view keeps its own zoom and pan per layout."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QScrollBar, QWidget

from medstation.imaging.mpr import PLANE_NAMES

from .browser import SERIES_MIME
from .slice_view import SliceView
from .state import ViewState

LAYOUTS = ("1x1", "1x2", "1x3", "2x2")


class PlaneViewer(QWidget):
    """A ``SliceView`` with its slice scroll bar."""

    def __init__(self, state: ViewState, plane_name: str, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.view = SliceView(state, plane_name, self)
        self.bar = QScrollBar(Qt.Vertical, self)
        self.bar.setFocusPolicy(Qt.NoFocus)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.bar)
        self.bar.valueChanged.connect(self._on_bar)
        state.volume_changed.connect(self._sync)
        state.position_changed.connect(self._sync)

    def _on_bar(self, value: int) -> None:
        p = self.view.plane
        if p is not None and value != self.state.depth(p):
            pos = self.state.position.copy()
            pos[p.axis] = value
            self.state.set_position(pos)

    def _sync(self) -> None:
        p = self.view.plane
        if p is None:
            self.bar.setRange(0, 0)
            return
        self.bar.blockSignals(True)
        self.bar.setRange(0, p.depth - 1)
        self.bar.setPageStep(max(1, p.depth // 10))
        self.bar.setValue(self.state.depth(p))
        self.bar.blockSignals(False)


class Viewer(QWidget):
    """Axial, coronal and sagittal views sharing one ``ViewState``."""

    active_changed = Signal(object)
    series_dropped = Signal(str, bool)  # series UID, dropped on the compare (right) half

    def __init__(self, state: ViewState, parent=None, compare: ViewState | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.compare_state = compare if compare is not None else ViewState()
        self.panes = {name: PlaneViewer(state, name, self) for name in PLANE_NAMES}
        self.compare = PlaneViewer(self.compare_state, "axial", self)
        self.compare.view.activated.connect(self._set_active)
        self.sync = False  # scroll the compare series with the shown one, by patient position
        #: a prior beside its follow-up: ``imaging.registration.Registration`` mapping the compare
        #: series' patient mm (prior) onto the shown one's (current); None: patient coordinates as they are
        self.registration = None
        self.reference_lines = False  # in 1x1 and 1x2: where the other two planes cut this one
        self._syncing = False
        state.position_changed.connect(lambda: self._follow(self.state, self.compare_state))
        self.compare_state.position_changed.connect(lambda: self._follow(self.compare_state, self.state))
        self.compare_state.volume_changed.connect(lambda: self._follow(self.state, self.compare_state))
        self.setAcceptDrops(True)
        self.info = QLabel(self)
        self.info.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.info.setWordWrap(True)
        self.info.setStyleSheet("background: black; color: #bbb; padding: 10px;")
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.layout_name = "1x1"
        self.active: SliceView = self.panes["axial"].view
        for pane in self.panes.values():
            pane.view.activated.connect(self._set_active)
        state.volume_changed.connect(self._update_info)
        state.position_changed.connect(self._update_info)
        self.set_layout("1x1")

    @property
    def views(self) -> dict[str, SliceView]:
        return {n: p.view for n, p in self.panes.items()}

    def _set_active(self, view: SliceView) -> None:
        if view is not self.active:
            self.active = view
            self.active_changed.emit(view)

    def set_layout(self, name: str) -> None:
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}; one of {', '.join(LAYOUTS)}")
        old = self.layout_name
        if self.active is self.compare.view and name != "1x2":
            self.active = self.panes["axial"].view
        for pane in [*self.panes.values(), self.compare]:
            if pane.isVisible():
                pane.view.keep_view(old)
        self.layout_name = name
        for w in [*self.panes.values(), self.compare, self.info]:
            self.grid.removeWidget(w)
            w.hide()
        for r in range(3):
            self.grid.setRowStretch(r, 0)
            self.grid.setColumnStretch(r, 0)
        main = self.panes[self.active.plane_name] if self.active is not self.compare.view \
            else self.panes["axial"]
        if name == "1x1":
            placed = [(main, 0, 0)]
        elif name == "1x2":
            placed = [(main, 0, 0), (self.compare, 0, 1)]
        elif name == "1x3":
            placed = [(self.panes[n], 0, c) for c, n in enumerate(PLANE_NAMES)]
        else:
            placed = [(self.panes["axial"], 0, 0), (self.panes["coronal"], 0, 1),
                      (self.panes["sagittal"], 1, 1), (self.info, 1, 0)]
        for w, r, c in placed:
            self.grid.addWidget(w, r, c)
            self.grid.setRowStretch(r, 1)
            self.grid.setColumnStretch(c, 1)
            w.show()
        mpr = name in ("1x3", "2x2")
        for pane in self.panes.values():
            pane.view.show_crosshair = mpr or self.reference_lines
            if pane.isVisible():
                pane.view.restore_view(name)
        if self.compare.isVisible():
            self.compare.view.restore_view(name)
        self._update_info()
        self.active.setFocus()

    def show_plane(self, plane_name: str) -> None:
        """In 1x1, show ``plane_name`` (axial, coronal, sagittal)."""
        self.active = self.panes[plane_name].view
        self.set_layout(self.layout_name)

    # -- side by side -----------------------------------------------------------------------------
    def set_reference_lines(self, on: bool) -> None:
        self.reference_lines = bool(on)
        self.set_layout(self.layout_name)

    def set_sync(self, on: bool) -> None:
        self.sync = bool(on)
        self._follow(self.state, self.compare_state)

    def _follow(self, source: ViewState, target: ViewState) -> None:
        """Move ``target`` to the slice nearest ``source``'s slice in patient space (axial stacks)."""
        if not self.sync or self._syncing or source.volume is None or target.volume is None:
            return
        if not (source.volume.has_geometry and target.volume.has_geometry):
            return
        point = source.volume.index_to_patient(source.position)
        reg = self.registration
        if reg is not None:  # through the registration: the same anatomy, every coordinate
            point = (np.linalg.solve(reg.matrix, point - reg.offset) if source is self.state
                     else reg.map_point(point))
            idx = target.volume.patient_to_index(point)
            pos = np.clip(np.round(idx), 0, np.asarray(target.volume.shape) - 1).astype(float)
        else:
            k = float(target.volume.patient_to_index(point)[0])
            pos = target.position.copy()
            pos[0] = float(np.clip(round(k), 0, target.volume.shape[0] - 1))
        self._syncing = True
        try:
            target.set_position(pos)
        finally:
            self._syncing = False

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasFormat(SERIES_MIME):
            event.acceptProposedAction()
        else:
            event.ignore()  # files and folders: the main window imports them

    def dropEvent(self, event) -> None:  # noqa: N802
        data = event.mimeData()
        if not data.hasFormat(SERIES_MIME):
            event.ignore()
            return
        uid = bytes(data.data(SERIES_MIME)).decode()
        on_compare = self.compare.isVisible() and self.compare.geometry().contains(event.position().toPoint())
        self.series_dropped.emit(uid, on_compare)
        event.acceptProposedAction()

    def _update_info(self) -> None:
        vol = self.state.volume
        if vol is None or self.layout_name != "2x2":
            return
        k, i, j = self.state.position
        pt = vol.index_to_patient(self.state.position)
        lines = [self.state.info.get("series", ""),
                 f"{vol.shape[2]} × {vol.shape[1]} × {vol.shape[0]} voxels "
                 f"({vol.modality or '?'}, {vol.voxels.dtype})",
                 f"spacing {vol.spacing[2]:.3g} × {vol.spacing[1]:.3g} × {vol.spacing[0]:.3g} mm",
                 f"cursor x {j:.0f}, y {i:.0f} (from 0), axial Im {k + 1:.0f}",
                 "cursor patient (LPS) {:.1f}, {:.1f}, {:.1f} mm".format(*pt)]
        lines += [f"⚠ {w}" for w in vol.warnings]
        self.info.setText("\n".join(x for x in lines if x))
