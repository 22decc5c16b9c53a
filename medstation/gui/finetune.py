"""The fine-tuning panel: train the detector on this site's labelled series, watch it, keep or roll back.

Choose a base model (the label counts of the study database are shown), start:
``medstation train`` runs as a child process (``ChildProcessTask``); its JSON lines
drive live charts (pyqtgraph) of the training loss and of the validation CPM
against the base model's CPM on the same split, a status line with the ETA, and
Cancel (the child saves its checkpoint) / Resume. At the end the base's and the
new version's FROC curves on the validation split are drawn side by side, and
"Use this version" / "Roll back" set the registry's detection model (the viewer
switches with it). The versions list shows each version's parent, date, data
and validation CPM.

For the version selected in the list (else the new one, else the base):
"Site report" writes the HTML validation report beside its parent on the site's
held-out labelled series (``medstation evaluate --site --report``) and links it;
"Calibrate for this site" fits the score calibration and operating point on those
series as a new version (``medstation calibrate --site``; the old one unchanged),
which "Use this version" then offers. Both run as child processes with stage
progress and Cancel, like training.
"""

from __future__ import annotations

import json

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .child import ChildProcessTask
from .lazy import LazyArea

FP_RATES = ("0.125", "0.25", "0.5", "1.0", "2.0", "4.0", "8.0")


class FinetunePanel(QWidget):
    """Fine-tuning on local labels; ``version_saved(path)`` when a run has written a new version."""

    version_saved = Signal(str)

    def __init__(self, ctx, use_model=None, queue=None, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        #: the viewer's review queue (``gui.review_queue``): its size and where it lies against the split
        self.queue = queue
        #: makes a model version the detection model (the AI controller's ``set_model``: it checks the
        #: weights load first); without one the registry's pointer is set directly
        self.use_model = use_model
        self.task: ChildProcessTask | None = None
        #: labels change in bursts (a review, a drawn nodule): the counts and split follow, coalesced
        self._labels_timer = QTimer(self, singleShot=True, interval=400)
        self._labels_timer.timeout.connect(self.refresh)
        self.out_version = ""
        self.base_id = ""
        self.new_id = ""
        self.steps: list[tuple[int, float]] = []
        self.cpm: list[tuple[int, float]] = []
        self.parent_cpm: float | None = None

        self.base_box = QComboBox(self)
        self.base_box.setToolTip("The model to start from")
        self.counts = QLabel(self)
        self.counts.setWordWrap(True)
        self.queue_label = QLabel(self)
        self.queue_label.setWordWrap(True)
        self.epochs = QSpinBox(self)
        self.epochs.setRange(1, 200)
        self.epochs.setValue(4)
        self.epochs.setPrefix("epochs ")
        self.epoch_length = QSpinBox(self)
        self.epoch_length.setRange(1, 10000)
        self.epoch_length.setValue(100)
        self.epoch_length.setSuffix(" steps each")
        self.replay = QSpinBox(self)
        self.replay.setRange(0, 20000)
        self.replay.setValue(400)
        self.replay.setPrefix("replay ")
        self.replay.setToolTip("Synthetic samples mixed in so the model does not forget what it knew")
        self.start_button = QPushButton("Start", self)
        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.status = QLabel("Label nodules (accept AI findings, draw them with Tools ▸ Nodule label, or "
                             "`medstation labels import`), then start.", self)
        self.status.setWordWrap(True)

        #: the charts (pyqtgraph) are built on first paint: the first window does not wait for them
        self.charts_box = LazyArea(self._build_charts, self)
        self.loss_plot = self.cpm_plot = self.froc_plot = None
        self.use_button = QPushButton("Use this version", self)
        self.use_button.clicked.connect(lambda: self._use(self.new_id))
        self.rollback_button = QPushButton("Roll back", self)
        self.rollback_button.setToolTip("Use the base model again")
        self.rollback_button.clicked.connect(lambda: self._use(self.base_id))
        self.report_button = QPushButton("Site report", self)
        self.report_button.setToolTip("An HTML validation report of the selected version beside its parent "
                                      "on this site's labelled series it was not trained on")
        self.report_button.clicked.connect(self.write_report)
        self.calibrate_button = QPushButton("Calibrate for this site", self)
        self.calibrate_button.setToolTip("Fit the score calibration and the operating point of the selected "
                                         "version on this site's held-out labelled series: a new version")
        self.calibrate_button.clicked.connect(self.calibrate)
        self.report_link = QLabel(self)
        self.report_link.setOpenExternalLinks(True)
        self.report_link.setTextInteractionFlags(Qt.TextBrowserInteraction)
        self.report_path = ""
        self.versions = QTreeWidget(self)
        self.versions.setHeaderLabels(["version", "parent", "created", "data", "validation CPM"])
        self.versions.setRootIsDecorated(False)
        self._picked = False
        self.versions.itemSelectionChanged.connect(lambda: self.refresh_targets())

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("base", self))
        row.addWidget(self.base_box, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        for w in (self.epochs, self.epoch_length, self.replay):
            row.addWidget(w)
        lay.addLayout(row)
        lay.addWidget(self.counts)
        lay.addWidget(self.queue_label)
        row = QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.resume_button):
            row.addWidget(b)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addWidget(self.charts_box, 3)
        row = QHBoxLayout()
        for b in (self.use_button, self.rollback_button, self.report_button, self.calibrate_button):
            row.addWidget(b)
        lay.addLayout(row)
        lay.addWidget(self.report_link)
        lay.addWidget(self.versions, 1)
        self.refresh()

    # -- state ---------------------------------------------------------------------------------
    def labels_changed(self) -> None:
        """A review or a drawn label changed what would be trained on: refresh shortly, or when the
        panel is next painted (measurement edits and selections are frequent: no database reads for a
        panel that is hidden or behind another tab)."""
        if self.isVisible() and not self.visibleRegion().isEmpty():  # a tab behind others is off screen
            self._labels_timer.start()
        else:
            self._stale = True

    def build_charts(self) -> None:
        """The loss, CPM and FROC charts, now if not built yet (they build on first paint)."""
        self.charts_box.ensure()

    def _build_charts(self, box) -> None:
        import pyqtgraph as pg

        pg.setConfigOptions(antialias=True)
        self.loss_plot = pg.PlotWidget(self, title="training loss")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#5ab4ff", width=2))
        self.cpm_plot = pg.PlotWidget(self, title="validation CPM (dashed: base model)")
        self.cpm_plot.setLabel("bottom", "step")
        self.cpm_plot.setYRange(0, 1)
        self.cpm_curve = self.cpm_plot.plot([], [], pen=pg.mkPen("#7ddc7d", width=2), symbol="o",
                                            symbolSize=6)
        self.parent_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#bbbbbb", style=Qt.DashLine))
        self.parent_line.hide()
        self.cpm_plot.addItem(self.parent_line)
        self.froc_plot = pg.PlotWidget(self, title="FROC on the validation split")
        self.froc_plot.setLabel("bottom", "false positives per scan (log2)")
        self.froc_plot.setLabel("left", "sensitivity")
        self.froc_plot.setYRange(0, 1)
        self.froc_plot.addLegend()
        for w in (self.loss_plot, self.cpm_plot, self.froc_plot):
            w.setMinimumHeight(120)
            box.addWidget(w, 1)
        if self.parent_cpm is not None:
            self.parent_line.setValue(self.parent_cpm)
            self.parent_line.show()
        self._redraw()

    def paintEvent(self, event) -> None:  # noqa: N802
        # painted: shown, or its tab brought to the front (a tabbed dock behind others is moved off
        # screen, never hidden, so no showEvent comes): what changed meanwhile is read now
        super().paintEvent(event)
        if getattr(self, "_stale", False):
            self._stale = False
            self._labels_timer.start()

    def refresh(self) -> None:
        from medstation.dicom.labels import collect_labels, counts
        from medstation.training.finetune import cases_from_database, plan

        registry = self.ctx.registry
        versions = registry.versions("detection")
        current = self.base_box.currentData()
        self.base_box.clear()
        default = registry.default("detection").id
        for v in versions:
            self.base_box.addItem(v.label if hasattr(v, "label") else v.id, v.id)
        idx = self.base_box.findData(current or default)
        self.base_box.setCurrentIndex(max(0, idx))
        found = collect_labels(self.ctx.db)
        c = counts(found.labels)
        left_out = ""
        if found.skipped:  # named, never dropped silently
            left_out = (f"\n{len(found.skipped)} label(s) cannot be used: "
                        + "; ".join(s.text() for s in found.skipped[:3])
                        + (" …" if len(found.skipped) > 3 else ""))
        cases = cases_from_database(self.ctx.db)
        p = plan(cases, seed=0)  # the seed Start uses
        if p["refused"]:
            split = f"\nNot enough to train on yet: {p['refused']}"
        else:
            tr, va = p["train"], p["validation"]
            split = (f"\nSplit by patient (seed 0): train {len(tr['series'])} series of "
                     f"{len(tr['patients'])} patient(s), {tr['nodules']} nodule(s); "
                     f"validate {len(va['series'])} series of {len(va['patients'])} patient(s), "
                     f"{va['nodules']} nodule(s)")
            split += "".join(f"\n⚠ {w}" for w in p["warnings"])
        self.counts.setText(f"Labels in the study database: {c['nodules']} nodule(s) and {c['negatives']} "
                            f"negative(s) in {c['series']} series"
                            + (f" ({', '.join(f'{k} {v}' for k, v in sorted(c['by_source'].items()))})"
                               if c["by_source"] else "") + split + left_out)
        self.counts.setToolTip("\n".join(s.text() for s in found.skipped))
        self.queue_label.setText(self._queue_text(cases))
        selected = self.selected_id()
        self._picked = bool(self.versions.selectedItems())
        self.versions.clear()
        for v in versions:
            m = v.manifest
            ft = (m.training_data or {}).get("fine_tuned_on") or {}
            val = (m.metrics or {}).get("validation") or {}
            cpm = (val.get("new") or {}).get("cpm")
            data = (f"{ft.get('nodules')} nodules, {ft.get('series')} series" if ft else
                    str((m.training_data or {}).get("source", ""))[:40])
            item = QTreeWidgetItem(self.versions, [v.id + (" (in use)" if registry.is_default(v) else ""),
                                                   m.parent_version or "", m.created[:16], data,
                                                   "" if cpm is None else f"{cpm:.3f}"])
            item.setData(0, Qt.UserRole, v.id)
            if v.id == selected and self._picked:
                item.setSelected(True)
        running = self.task is not None and self.task.running
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(not running and bool(self.out_version) and not self.new_id
                                      and self.checkpoint_path().exists())
        self.use_button.setEnabled(bool(self.new_id) and not running)
        self.rollback_button.setEnabled(bool(self.new_id) and not running)
        self.report_button.setEnabled(not running and not p["refused"])
        self.calibrate_button.setEnabled(not running and not p["refused"])
        self.refresh_targets()

    # -- running ---------------------------------------------------------------------------------
    def start(self, resume: bool = False) -> None:
        if self.task is not None and self.task.running:
            return
        base = self.base_box.currentData()
        if not base:
            return
        if not resume:
            self.base_id = base
            self.out_version = self._next_version(base)
            self.new_id = ""
            self.steps, self.cpm, self.parent_cpm = [], [], None
            self.build_charts()
            self.froc_plot.clear()
            self.parent_line.hide()
            self._redraw()
        args = ["--db", str(self.ctx.db.path), "train", "--base", self.base_id, "--epochs",
                str(self.epochs.value()), "--epoch-length", str(self.epoch_length.value()),
                "--replay", str(self.replay.value()), "--out-version", self.out_version]
        if resume:
            args.append("--resume")
        self.task = ChildProcessTask(args, name="fine-tuning", parent=self)
        self.task.event.connect(self._on_event)
        self.task.finished.connect(self._on_finished)
        self.task.start()
        self.status.setText(f"{'Resuming' if resume else 'Starting'} fine-tuning of {self.base_id} "
                            f"-> {self.out_version} …")
        self.refresh()

    def _queue_text(self, cases) -> str:
        if self.queue is None:
            return ""
        from medstation.training.finetune import queue_split_effect

        items = self.queue.items()
        if not items:
            return "Review queue: empty (no unreviewed AI findings of the model in use)."
        patients = {r.ref.key: r.patient_id for r in self.ctx.db.index.series()}
        e = queue_split_effect(items, cases, patients)
        return (f"Review queue: {e['findings']} unreviewed finding(s) in {e['series']} series, least sure "
                f"first (U steps through them; Y / X review). {e['train']} in training series, "
                f"{e['validation']} in validation series, {e['changes_split']} would change the split "
                "(a patient not in it yet).")

    def refresh_targets(self) -> None:
        target = self.selected_id()
        self.report_button.setToolTip(f"An HTML validation report of {target} (select another version in the "
                                      "list) beside its parent, on this site's labelled series it was not "
                                      "trained on")
        self.calibrate_button.setToolTip(f"Fit the score calibration and the operating point of {target} on "
                                         "this site's held-out labelled series: a new version")

    def selected_id(self) -> str:
        """The version the report and the calibration are for: the one selected in the list, else the
        new one, else the base."""
        items = self.versions.selectedItems()
        return (items[0].data(0, Qt.UserRole) if items else "") or self.new_id or \
            (self.base_box.currentData() or "")

    def _run_child(self, args: list[str], name: str, done) -> bool:
        if self.task is not None and self.task.running:
            return False
        self.task = ChildProcessTask(["--db", str(self.ctx.db.path), *args, "--progress", "jsonl"], name=name,
                                     parent=self)
        self.task.event.connect(self._on_event)
        self.task.finished.connect(done)
        self.task.start()
        self.refresh()
        return True

    def write_report(self) -> None:
        """``medstation evaluate --site --report``: the selected version beside its parent."""
        from medstation.core.paths import user_data_path

        model = self.selected_id()
        if not model:
            return
        folder = user_data_path() / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        self.report_path = str(folder / f"{model.replace('@', '-')}-site-report.html")
        if self._run_child(["evaluate", "--site", "--model", model, "--report", self.report_path],
                           "site report", self._on_report_finished):
            self.status.setText(f"Writing the site report of {model} (its parent on the same series) …")

    def _on_report_finished(self, result) -> None:
        if result.ok:
            from PySide6.QtCore import QUrl

            url = QUrl.fromLocalFile(self.report_path).toString()
            self.report_link.setText(f'Site report: <a href="{url}">{self.report_path}</a>')
            self.status.setText("The site report is written: open it from the link below.")
        else:
            self.status.setText(f"The site report {result.describe()}")
        self.refresh()

    def calibrate(self) -> None:
        """``medstation calibrate --site``: a new version calibrated on this site's held-out series."""
        model = self.selected_id()
        if model and self._run_child(["calibrate", "--site", "--model", model], "site calibration",
                                     self._on_calibrated):
            self.base_id = model
            self.new_id = ""
            self.status.setText(f"Calibrating {model} on this site's held-out labelled series …")

    def _on_calibrated(self, result) -> None:
        ev = result.last_event if result.ok else {}
        if ev.get("event") == "saved":
            self.new_id = f"{self.base_id.partition('@')[0]}@{ev['version']}"
            self.status.setText(f"{self.new_id} is ready (from {self.base_id}): operating point "
                                f"{ev['operating_point']:.3f}, calibration error {ev['ece_before']:.3f} -> "
                                f"{ev['ece_after']:.3f} on the fitting series. Use it, or keep "
                                f"{self.base_id}.")  # version_saved went out with the event
        else:
            self.status.setText(f"Site calibration {result.describe()}")
        self.refresh()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def checkpoint_path(self):
        """Where ``medstation train`` keeps this run's checkpoint (``cli.train``): Resume needs it."""
        name = self.base_id.partition("@")[0]
        return self.ctx.registry.user_dir / ".training" / f"{name}-{self.out_version}.ckpt"

    def _next_version(self, base_id: str) -> str:
        name, _, version = base_id.partition("@")
        taken = {v.version for v in self.ctx.registry.versions("detection") if v.name == name}
        n = 1
        while f"{version}-ft{n}" in taken:
            n += 1
        return f"{version}-ft{n}"

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "step" and "step" in ev:
            if "loss" in ev:  # the trainer's total: the panel knows no loss names
                self.steps.append((int(ev["step"]), float(ev["loss"])))
            eta = f", about {ev['eta_s'] / 60:.1f} min left" if "eta_s" in ev else ""
            self.status.setText(f"step {ev['step']} of {ev['steps']} (epoch {ev.get('epoch')}){eta}")
        elif kind == "validation" and "cpm" in ev:
            self.cpm.append((int(ev.get("step", 0)), float(ev["cpm"])))
        elif kind == "baseline" and "cpm" in ev:
            self.parent_cpm = float(ev["cpm"])
            if self.loss_plot is not None:
                self.parent_line.setValue(self.parent_cpm)
                self.parent_line.show()
        elif kind == "data":
            self.status.setText(f"{ev.get('nodules')} nodules in {ev.get('series')} series of "
                                f"{ev.get('patients')} patients: {ev.get('train_series')} series train, "
                                f"{ev.get('validation_series')} validate")
        elif kind == "stage":  # the trainer's typed progress: stage, counts, ETA
            eta = f", about {ev['eta_s'] / 60:.1f} min left" if "eta_s" in ev else ""
            count = f" {ev.get('done')} of {ev.get('total')}" if ev.get("total", 0) > 1 else ""
            self.status.setText(f"{ev.get('stage', '')}{count}{eta}")
        elif kind == "saved":
            self.new_id = f"{self.base_id.partition('@')[0]}@{ev.get('version')}"
            self._draw_froc(ev.get("path", ""))
            self.version_saved.emit(str(ev.get("path", "")))
        self._redraw()

    def _on_finished(self, result) -> None:
        if result.ok and self.new_id:
            self.status.setText(f"{self.new_id} is ready: validation CPM "
                                f"{self.cpm[-1][1] if self.cpm else float('nan'):.3f} against "
                                f"{self.parent_cpm if self.parent_cpm is not None else float('nan'):.3f} "
                                "for the base. Use it, or keep the base.")
        elif result.cancelled:
            if self.checkpoint_path().exists():
                self.status.setText("Cancelled; the last checkpoint is kept: Resume continues from it.")
            else:  # cancelled before the first checkpoint: say so, never promise a resume
                self.status.setText("Cancelled before the first checkpoint: nothing to resume; Start "
                                    "begins again.")
        else:
            self.status.setText(f"Fine-tuning {result.describe()}")
        self.refresh()

    def _redraw(self) -> None:
        if self.loss_plot is None:  # not built yet: _build_charts draws what was gathered
            if self.charts_box.on_screen():
                self.build_charts()
            return
        if self.steps:
            s = np.array(self.steps, float)
            self.loss_curve.setData(s[:, 0], s[:, 1])
        else:
            self.loss_curve.setData([], [])
        if self.cpm:
            c = np.array(self.cpm, float)
            self.cpm_curve.setData(c[:, 0], c[:, 1])
        else:
            self.cpm_curve.setData([], [])

    def _draw_froc(self, path: str) -> None:
        from pathlib import Path

        try:
            manifest = json.loads((Path(path) / "manifest.json").read_text())
        except (OSError, ValueError):
            return
        val = (manifest.get("metrics") or {}).get("validation") or {}
        import pyqtgraph as pg

        self.build_charts()
        x = np.log2([float(r) for r in FP_RATES])
        self.froc_plot.clear()
        for key, colour, name in (("parent", "#bbbbbb", f"base {self.base_id}"),
                                  ("new", "#7ddc7d", f"new {self.new_id}")):
            sens = (val.get(key) or {}).get("sensitivity_at_fp_per_scan") or {}
            if sens:
                self.froc_plot.plot(x, [float(sens.get(r, 0.0)) for r in FP_RATES], name=name,
                                    pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6)

    def _use(self, model_id: str) -> None:
        if not model_id:
            return
        if self.use_model is not None:
            self.use_model(model_id)
        else:
            self.ctx.registry.use(model_id, "detection")
        self.status.setText(f"{model_id} is now the detection model")
        self.refresh()

    def shutdown(self) -> None:
        """On window close: stop a run (its checkpoint stays) and wait for the child."""
        if self.task is not None and self.task.running:
            self.task.cancel()
            self.task.wait(15000)
