"""Side panels: the measurement list and the DICOM tag inspector."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medstation.core.errors import LoadError
from medstation.imaging.measure import KIND_NAMES

from .state import ViewState


class MeasurementPanel(QWidget):
    """Every measurement of the open series; click to go to it, Delete to remove it."""

    def __init__(self, state: ViewState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(["Measurement", "Plane / slice", "Value"])
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.Stretch)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setWordWrap(True)
        self.delete_button = QPushButton("Delete", self)
        self.delete_button.clicked.connect(self._delete)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.table)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.delete_button)
        lay.addLayout(row)
        self.table.itemSelectionChanged.connect(self._on_select)
        state.volume_changed.connect(self.refresh)
        state.measurements_changed.connect(self.refresh)
        state.data_changed.connect(self._on_data)
        self._rows: list = []
        # slices arriving change ROI values; recompute at most a few times a second
        self._later = QTimer(self, singleShot=True, interval=250)
        self._later.timeout.connect(self.refresh)

    def _on_data(self) -> None:
        if self.state.measurements and not self._later.isActive():
            self._later.start()

    def refresh(self) -> None:
        st = self.state
        self._rows = list(st.measurements) if st.volume is not None else []
        self.table.blockSignals(True)
        self.table.setRowCount(len(self._rows))
        for r, m in enumerate(self._rows):
            plane = st.plane_of_axis(m.axis)
            value = m.summary(st.volume, plane, st.volume.units) if plane else ""
            cells = [KIND_NAMES[m.kind], f"{plane.name if plane else '?'} {m.depth + 1}", value]
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
            if m is st.selected:
                self.table.selectRow(r)
        if st.selected is None:
            self.table.clearSelection()
        self.table.resizeRowsToContents()
        self.table.blockSignals(False)
        self.delete_button.setEnabled(bool(self._rows))

    def _on_select(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if not rows:
            return
        m = self._rows[min(rows)]
        st = self.state
        st.select(m)
        pos = st.position.copy()
        center = [sum(p[a] for p in m.points) / len(m.points) for a in range(3)]
        pos[:] = center
        pos[m.axis] = m.depth
        st.set_position(pos)

    def _delete(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if rows:
            self.state.delete_measurement(self._rows[min(rows)])


class TagInspector(QWidget):
    """The DICOM elements of the file behind the current slice, with a filter."""

    def __init__(self, state: ViewState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter tags (name, tag or value)")
        self.filter.setClearButtonEnabled(True)
        self.source = QLabel(self)
        self.source.setWordWrap(True)
        self.source.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["Tag", "Name", "VR", "Value"])
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.filter)
        lay.addWidget(self.source)
        lay.addWidget(self.tree)
        self._path = ""
        self._rows = []
        self._timer = QTimer(self, singleShot=True, interval=120)  # follow scrolling lazily
        self._timer.timeout.connect(self.refresh)
        self.filter.textChanged.connect(self._fill)
        state.volume_changed.connect(self._follow)
        state.position_changed.connect(self._follow)

    def _follow(self) -> None:
        if self.isVisible():
            self._timer.start()

    def showEvent(self, event) -> None:  # noqa: N802
        self._timer.start()
        super().showEvent(event)

    def current_source(self) -> tuple[str, int]:
        vol = self.state.volume
        if vol is None or not vol.sources:
            return "", 0
        k = min(max(int(round(self.state.position[0])), 0), len(vol.sources) - 1)
        return vol.sources[k]

    def refresh(self) -> None:
        path, frame = self.current_source()
        if path == self._path:
            return
        self._path = path
        self.source.setText(f"{path}" + (f"  (frame {frame + 1})" if frame else ""))
        try:
            from medstation.dicom.tags import read_tags  # pydicom: when the panel first shows tags

            self._rows = read_tags(path) if path else []
        except LoadError as exc:
            self._rows = []
            self.source.setText(f"{path}\n{exc}")
        self._fill()

    def _fill(self) -> None:
        needle = self.filter.text().strip().lower()
        self.tree.clear()
        parents: list[QTreeWidgetItem] = []
        items = []
        for row in self._rows:
            if needle and needle not in f"{row.tag} {row.name} {row.value}".lower():
                if row.depth == 0:
                    continue
            item = QTreeWidgetItem([row.tag, row.name, row.vr, row.value])
            level = row.depth
            del parents[level:]
            if level and parents:
                parents[-1].addChild(item)
            else:
                items.append(item)
            parents.append(item)
        self.tree.addTopLevelItems(items)
        for col, most in ((0, 110), (1, 190), (2, 40)):  # leave room for the values
            self.tree.resizeColumnToContents(col)
            self.tree.setColumnWidth(col, min(self.tree.columnWidth(col), most))
