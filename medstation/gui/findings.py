"""The AI findings panel: model, run / cancel, confidence threshold, overlay controls,
the findings sorted by score (click jumps to the lesion), accept / reject."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medstation.core.errors import CancelledError
from medstation.core.findings import Finding, fmt

NOT_CLINICAL = ("Research model trained on synthetic CT only. Not for clinical use: "
                "every finding needs a reader's review.")
COLUMNS = ("Finding", "Score", "Size", "Slice", "Review", "Also in")
PROVISIONAL = ("A candidate of the detection still running: its id, score and size are given when the "
               "whole series has been seen (neighbouring slices can join, split or remove it).")


class FindingsPanel(QWidget):
    def __init__(self, ai, parent=None) -> None:
        super().__init__(parent)
        self.ai = ai
        self.state = ai.state
        self.model = ai.findings  # the findings layer of the view model
        self._items: dict[int, QTreeWidgetItem] = {}
        self._run_started = time.monotonic()
        warn = QLabel(NOT_CLINICAL, self)
        warn.setWordWrap(True)
        warn.setStyleSheet("color: #ffb347;")
        self.model_box = QComboBox(self)
        self.model_box.setToolTip("Detector model (built-in or trained here)")
        self.model_box.activated.connect(self._model_chosen)
        self.run_button = QPushButton("Detect", self)
        self.run_button.setToolTip("Run the detector on the open series (again)")
        self.run_button.clicked.connect(lambda: self.ai.detect(force=True))
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.ai.cancel)
        self.cancel_button.hide()
        self.auto_box = QCheckBox("Run when a series opens", self)
        self.auto_box.setChecked(self.ai.auto_detect)
        self.auto_box.toggled.connect(self.ai.set_auto_detect)
        self.show_box = QCheckBox("Show on images", self)
        self.show_box.setChecked(self.model.show)
        self.show_box.toggled.connect(self.model.set_show)
        self.opacity = QSlider(Qt.Horizontal, self)
        self.opacity.setRange(10, 100)
        self.opacity.setValue(int(self.model.opacity * 100))
        self.opacity.setToolTip("Overlay opacity")
        self.opacity.valueChanged.connect(lambda v: self.model.set_opacity(v / 100))
        heat = ai.state.heatmap
        self.heat_box = QCheckBox("Probability heatmap", self)
        self.heat_box.setToolTip("The network's nodule probability over the axial slice "
                                 "(from the last run in this session)")
        self.heat_box.setChecked(heat.show)
        self.heat_box.toggled.connect(heat.set_show)
        self.heat_opacity = QSlider(Qt.Horizontal, self)
        self.heat_opacity.setRange(10, 100)
        self.heat_opacity.setValue(int(heat.opacity * 100))
        self.heat_opacity.setToolTip("Heatmap opacity")
        self.heat_opacity.valueChanged.connect(lambda v: heat.set_opacity(v / 100))
        self.threshold = QSlider(Qt.Horizontal, self)
        self.threshold.setRange(0, 100)
        self.threshold.setPageStep(1)  # a click beside the handle moves 0.01, not 0.10
        self.threshold.setFocusPolicy(Qt.ClickFocus)
        self.threshold.valueChanged.connect(lambda v: self.model.set_threshold(v / 100))
        self.threshold_label = QLabel("Confidence ≥", self)
        self.threshold_box = QDoubleSpinBox(self, minimum=0.0, maximum=1.0, singleStep=0.01, decimals=2)
        self.threshold_box.setToolTip("The lowest score shown")
        self.threshold_box.setFocusPolicy(Qt.ClickFocus)
        self.threshold_box.valueChanged.connect(self._box_changed)
        self.reset_button = QPushButton("↺ operating point", self)
        self.reset_button.setToolTip("Back to the model's operating point (1 false positive per scan in "
                                     "its evaluation); Ctrl+0")
        self.reset_button.clicked.connect(self.reset_threshold)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setSortingEnabled(False)
        self.tree.itemClicked.connect(self._clicked)
        self.tree.currentItemChanged.connect(lambda cur, _prev: self._clicked(cur) if cur else None)
        for col, width in enumerate((56, 46, 132, 44, 70)):
            self.tree.setColumnWidth(col, width)
        self.accept_button = QPushButton("Accept (Y)", self)
        self.reject_button = QPushButton("Reject (X)", self)
        self.clear_button = QPushButton("Clear", self)
        self.accept_button.clicked.connect(lambda: self.review("accepted"))
        self.reject_button.clicked.connect(lambda: self.review("rejected"))
        self.clear_button.clicked.connect(lambda: self.review(""))
        self.status = QLabel(self)
        self.status.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addWidget(warn)
        row = QHBoxLayout()
        row.addWidget(self.model_box, 1)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        lay.addWidget(self.auto_box)
        row = QHBoxLayout()
        row.addWidget(self.show_box)
        row.addWidget(QLabel("opacity", self))
        row.addWidget(self.opacity, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.heat_box)
        row.addWidget(QLabel("opacity", self))
        row.addWidget(self.heat_opacity, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.threshold_label)
        row.addWidget(self.threshold_box)
        row.addWidget(self.threshold, 1)
        row.addWidget(self.reset_button)
        lay.addLayout(row)
        lay.addWidget(self.tree, 1)
        row = QHBoxLayout()
        row.addWidget(self.accept_button)
        row.addWidget(self.reject_button)
        row.addWidget(self.clear_button)
        lay.addLayout(row)
        lay.addWidget(self.status)

        self.model.items_changed.connect(self.refresh)
        self.model.selection_changed.connect(self.refresh)
        self.model.display_changed.connect(self._sync_boxes)
        self.model.review_refused.connect(self.status.setText)
        self.state.heatmap.changed.connect(self._sync_boxes)
        self.state.heatmap.changed.connect(
            lambda: self.heat_box.setEnabled(self.state.heatmap.heatmap is not None))
        self.heat_box.setEnabled(False)
        self.state.volume_changed.connect(self.refresh)
        ai.findings_changed.connect(self.refresh)
        ai.model_changed.connect(self._refresh_models)
        ai.detection_started.connect(self._started)
        ai.detection_finished.connect(self._finished)
        ai.detection_failed.connect(self._failed)
        ai.progress.connect(self._progress)
        self._refresh_models()
        self.refresh()

    # -- model list --------------------------------------------------------------------
    def _refresh_models(self) -> None:
        registry = self.ai.ctx.registry
        entries = registry.versions("detection")
        problems = registry.problems
        self.model_box.clear()
        for e in entries:
            self.model_box.addItem(e.label, str(e.path))
            if self.ai.model_dir is not None and e.path.resolve() == self.ai.model_dir.resolve():
                self.model_box.setCurrentIndex(self.model_box.count() - 1)
        if not entries:
            self.model_box.addItem("no detector model installed", "")
        self.model_box.setToolTip("\n".join(str(p) for p in problems) or "Detector model")
        self._set_threshold(self.ai.operating_threshold())

    def _model_chosen(self, index: int) -> None:
        path = self.model_box.itemData(index)
        if path:
            self.ai.set_model(path)

    def _set_threshold(self, value: float) -> None:
        self.threshold.setValue(int(round(value * 100)))
        self.model.set_threshold(value)

    def reset_threshold(self) -> None:
        self._set_threshold(self.ai.operating_threshold())

    def _box_changed(self, value: float) -> None:
        if abs(value - self.model.threshold) > 1e-9:
            self.threshold.blockSignals(True)
            self.threshold.setValue(int(round(value * 100)))
            self.threshold.blockSignals(False)
            self.model.set_threshold(value)

    # -- list ----------------------------------------------------------------------------
    def _sync_boxes(self) -> None:
        for widget, value in ((self.show_box, self.model.show), (self.auto_box, self.ai.auto_detect),
                              (self.heat_box, self.state.heatmap.show)):
            widget.blockSignals(True)
            widget.setChecked(value)
            widget.blockSignals(False)

    def refresh(self) -> None:
        st, model = self.state, self.model
        self.threshold_box.blockSignals(True)
        self.threshold_box.setValue(model.threshold)
        self.threshold_box.blockSignals(False)
        self._sync_boxes()
        visible = model.visible()
        self.tree.blockSignals(True)
        self.tree.clear()
        self._items = {}
        current = None
        for f in visible:
            size = f.size.text() + (f" {f.nodule_type}" if f.nodule_type else "") + (
                " mass" if f.kind == "mass" else "")
            if model.partial:  # a candidate of a running detection: no id, score or size until it ends
                item = QTreeWidgetItem(["…", "…", "pending", str(f.center_slice + 1), "candidate", ""])
                item.setToolTip(2, PROVISIONAL)
            else:
                item = QTreeWidgetItem([f.finding_id, f"{f.score:.2f}", size,
                                        str(f.center_slice + 1), {"accepted": "accepted ✓",
                                                                  "rejected": "rejected ✗"}.get(f.status, ""),
                                        ", ".join(model.links.get(f.finding_id, []))])
                item.setToolTip(2, size_details(f))
            item.setData(0, Qt.UserRole, f)
            if f.status == "rejected":
                for c in range(len(COLUMNS)):
                    item.setForeground(c, QColor(140, 140, 140))
            self.tree.addTopLevelItem(item)
            self._items[id(f)] = item
            if f is model.selected:
                current = item
        if current is not None:
            self.tree.setCurrentItem(current)
        self.tree.blockSignals(False)
        hidden = len(model.items) - len(visible)
        if st.volume is None:
            text = "Open a series to run the detector."
        elif not model.items and self.ai.handle is None:
            text = f"{self.ai.model_label}: no findings yet."
        elif model.partial:
            text = f"{len(visible)} candidate(s) so far · ids, scores and sizes when the run ends …"
        else:
            text = f"{len(visible)} finding(s) at this threshold" + (f", {hidden} below" if hidden else "")
        self.status.setText(text)
        running = self.ai.running_for(st.series_key)  # this series' run: another one's is not shown here
        self.run_button.setEnabled(not running)
        self.cancel_button.setVisible(running)
        has = model.selected is not None and not model.partial  # reviews wait for the final findings
        for b in (self.accept_button, self.reject_button, self.clear_button):
            b.setEnabled(has)

    def selected(self) -> Finding | None:
        item = self.tree.currentItem()
        return item.data(0, Qt.UserRole) if item is not None else None

    def _clicked(self, item: QTreeWidgetItem) -> None:
        f = item.data(0, Qt.UserRole)
        if f is not None:
            self.model.select(f, jump=True)

    def review(self, status: str) -> None:
        self.model.review(self.selected(), status)

    # -- run status ------------------------------------------------------------------------
    def _mine(self, key: str) -> bool:
        """The event is about the series this panel shows (a run of another one says nothing here)."""
        return key == self.state.series_key

    def _started(self, key: str) -> None:
        if not self._mine(key):
            return
        self._run_started = time.monotonic()
        self.run_button.setEnabled(False)
        self.cancel_button.show()
        self.status.setText(f"Detecting with {self.ai.model_label} …")

    def _progress(self, key: str, done: int, total: int) -> None:
        if not self._mine(key):
            return
        so_far = (f" · {len(self.model.visible())} candidate(s) so far (ids, scores and sizes when the run "
                  "ends)") if self.model.partial else ""
        self.status.setText(f"Detecting with {self.ai.model_label}: slice {done} of {total}"
                            f"{eta_text(time.monotonic() - self._run_started, done, total)} …{so_far}")

    def _finished(self, key: str, run) -> None:
        if not self._mine(key):
            return
        self.run_button.setEnabled(True)
        self.cancel_button.hide()
        self.refresh()
        if run is not None:
            took = f" · {run.seconds['total']:.1f} s on {run.device.upper()}"
            self.status.setText(self.status.text() + took)
        else:
            self.status.setText(self.status.text() + " · from the cache")

    def _failed(self, key: str, exc) -> None:
        if not self._mine(key):
            return
        self.run_button.setEnabled(True)
        self.cancel_button.hide()
        if isinstance(exc, CancelledError):
            self.status.setText("Detection cancelled.")
        else:
            self.status.setText(f"Detection failed: {exc}")


def eta_text(elapsed: float, done: int, total: int) -> str:
    """" · about 40 s left" once the rate is known (2 s and one step in), else ""."""
    if elapsed < 2.0 or done <= 0 or done >= total:
        return ""
    left = elapsed / done * (total - done)
    return f" · about {left:.0f} s left" if left < 90 else f" · about {left / 60:.0f} min left"


def size_details(f: Finding) -> str:
    """Every size of a finding, named, with how it was measured ("-": not measured)."""
    how = ("measured on the segmented lesion" if f.size_method == "segmentation" else
           "not segmented: the long axis is the detector's box"
           + (f" ({f.size_note})" if f.size_note else ""))
    return "\n".join([
        f"Kind: {f.kind} (mass: long axis over 30 mm, Fleischner glossary)",
        f"Long axis: {fmt(f.diameter_mm, unit=' mm')}", f"Short axis: {fmt(f.short_axis_mm, unit=' mm')}",
        f"Mean diameter: {fmt(f.mean_diameter_mm, unit=' mm')}",
        f"Volume: {fmt(f.volume_mm3, '.0f', ' mm³')}",
        f"Mean density: {fmt(f.mean_hu, '.0f', ' HU')}", f"Type: {f.nodule_type or '-'}",
        *([f"Solid component: {fmt(f.solid_diameter_mm, unit=' mm')}"]
          if f.nodule_type == "part-solid" else []),
        f"Size: {how}"])
