"""The follow-up panel: the open patient's studies matched into lesion tracks, with their course.

*Follow up this patient* gathers the patient's CT studies from the study
database (the open series' patient ID), and runs ``workflows.jobs.FollowupJob`` on the
engine's lane (detection, registration of each prior onto the next study,
matching; never on the GUI thread; cancellable). The tracks table shows each
lesion's status, its size at every date, the volume change, the doubling time
and the Lung-RADS category; the growth chart (pyqtgraph) draws the selected
track's volume against the date. Clicking a track whose lesion lies in the open
series centres the views on it.
"""

from __future__ import annotations

import datetime as _dt
import math

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medstation.ai.engine import JobEvent
from medstation.core.tracks import doubling_text

from .lazy import LazyArea


def _measurement_text(m: dict | None) -> str:
    """One visit's sizes, each named with its unit ("-": not measured)."""
    if m is None:
        return "absent"
    from medstation.core.findings import fmt

    d = m["study_date"]
    axes = (f"long x short axis {fmt(m.get('long_axis_mm'))} x {fmt(m.get('short_axis_mm'))} mm"
            if m.get("long_axis_mm") is not None else "long x short axis - (not segmented)")
    return (f"{d[:4]}-{d[4:6]}-{d[6:]}: {m.get('type') or '-'}, {axes}, {m.get('size_name', 'size')} "
            f"{m['diameter_mm']:.1f} mm ({m.get('size_method', '')}), "
            f"volume {fmt(m.get('volume_mm3'), '.0f')} mm³")


def _days(date: str) -> float:
    return float(_dt.date(int(date[:4]), int(date[4:6]), int(date[6:8])).toordinal())


class FollowupPanel(QWidget):
    finished = Signal(object)  # the report dict (or None after a failure)
    predicted_report = Signal(object)  # the report with predictions (or None)

    def __init__(self, ctx, ai, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.ai = ai
        self.report: dict | None = None
        self.tracks: list = []
        self.patient = ""
        self.handle = None
        self.run_button = QPushButton("Follow up this patient", self)
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.compare_button = QPushButton("Compare with the prior", self)
        self.compare_button.setToolTip("The previous study beside this one, scrolling in step through the "
                                       "registration")
        self.compare_button.clicked.connect(self.compare_prior)
        self.compare_button.setEnabled(False)
        #: ``show_beside(series_uid, registration)``: the window opens the prior beside the current one
        self.show_beside = None
        self.alias_edit = QLineEdit(self)
        self.alias_edit.setPlaceholderText("another patient ID of this person")
        self.alias_button = QPushButton("Same patient", self)
        self.alias_button.setToolTip("Studies filed under another patient ID (another site) are followed too")
        self.alias_button.clicked.connect(lambda: self.link_patient(self.alias_edit.text()))
        self.timeline = QLabel(self)
        self.status = QLabel("Open a CT series, then follow the patient's studies.", self)
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, 10, self)
        self.table.setHorizontalHeaderLabels(["track", "name", "status", "sizes (mm)", "volume change",
                                              "VDT", "Lung-RADS", "predicted", "p(growth)", "Fleischner"])
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._selected)
        self.name_edit = QLineEdit(self)
        self.name_edit.setPlaceholderText("name of the selected track")
        self.rename_button = QPushButton("Rename", self)
        self.rename_button.clicked.connect(lambda: self.rename(self.name_edit.text()))
        self.link_button = QPushButton("Link the two selected", self)
        self.link_button.setToolTip("One lesion the matching split in two (never seen twice on one date)")
        self.link_button.clicked.connect(self.link_selected)
        self.unlink_button = QPushButton("Split off the last", self)
        self.unlink_button.setToolTip("The last measurement is another lesion: it becomes a track of its own")
        self.unlink_button.clicked.connect(self.unlink_selected)
        self.predict_date = QDateEdit(self)
        self.predict_date.setCalendarPopup(True)
        self.predict_date.setDisplayFormat("yyyy-MM-dd")
        self.predict_button = QPushButton("Predict at", self)
        self.predict_button.setToolTip("Each lesion's size at this date, with an 80% interval, and the "
                                       "chance it grows by more than 1.5 mm (the follow-up model; not for "
                                       "clinical use)")
        self.predict_button.clicked.connect(self.predict)
        self.predict_button.setEnabled(False)
        self.predict_handle = None
        #: the volume chart (pyqtgraph) is built on first paint: the first window does not wait for it
        self.chart_box = LazyArea(self._build_chart, self)
        self.chart = None
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.compare_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.alias_edit, 1)
        row.addWidget(self.alias_button)
        lay.addLayout(row)
        lay.addWidget(self.timeline)
        lay.addWidget(self.status)
        lay.addWidget(self.table, 2)
        row = QHBoxLayout()
        for w in (self.name_edit, self.rename_button, self.link_button, self.unlink_button):
            row.addWidget(w)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.predict_button)
        row.addWidget(self.predict_date)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(self.chart_box, 1)
        ctx.engine.ready.connect(lambda bridge: bridge.job_event.connect(self._on_job_event))

    def build_chart(self) -> None:
        """The volume-by-date chart, now if not built yet (it builds on first paint)."""
        self.chart_box.ensure()

    def _build_chart(self, box) -> None:
        import pyqtgraph as pg

        self.chart = pg.PlotWidget(self, title="volume (mm³) by date")
        self.chart.setLabel("bottom", "days since the first study")
        self.chart.setLabel("left", "volume", units="mm³")
        self.chart.getAxis("left").enableAutoSIPrefix(False)  # never "kmm³"
        self.chart.showGrid(x=True, y=True, alpha=0.25)
        self.curve = self.chart.plot([], [], pen=pg.mkPen("#ffb347", width=2), symbol="o", symbolSize=7)
        self.band_low = self.chart.plot([], [], pen=pg.mkPen("#8fbcff", style=Qt.DashLine))
        self.band_high = self.chart.plot([], [], pen=pg.mkPen("#8fbcff", style=Qt.DashLine))
        self.band = pg.FillBetweenItem(self.band_low, self.band_high, brush=pg.mkBrush(120, 170, 255, 60))
        self.chart.addItem(self.band)
        self.predicted = self.chart.plot([], [], pen=pg.mkPen("#8fbcff", width=2), symbol="t", symbolSize=8)
        box.addWidget(self.chart)

    # -- running -----------------------------------------------------------------------------
    def patient_paths(self) -> tuple[str, list[str]]:
        """The open series' patient and the files of every CT series of theirs in the database."""
        key = self.ctx.state.series_key
        uid = key.split("#")[0]
        rows = self.ctx.db.index.series()
        me = next((r for r in rows if r.series_uid == uid), None)
        if me is None:
            return "", []
        same = self.ctx.db.followup.same_patient(me.patient_id)
        paths = []
        for r in rows:
            if r.patient_id in same and r.modality == "CT":
                paths += [h.path for h in self.ctx.db.index.series_headers(r.ref)]
        return me.patient_id, paths

    def run(self) -> None:
        from medstation.ai.jobs import ModelRef
        from medstation.workflows.jobs import FollowupJob

        patient, paths = self.patient_paths()
        if not paths or self.ai.version is None:
            self.status.setText("Open a CT series first (its patient's studies are followed).")
            return
        self.status.setText(f"Following patient {patient}: {len(paths)} files …")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.patient = patient
        aliases = tuple(sorted(self.ctx.db.followup.same_patient(patient) - {patient}))
        job = FollowupJob(tuple(paths), ModelRef.of(self.ai.version), patient, cache=self.ctx.db.followup,
                          edits=tuple(self.ctx.db.followup.track_edits(patient)), aliases=aliases)
        self.ctx.engine.when_ready(lambda: setattr(self, "handle", self.ctx.engine.submit(job)))

    def predict(self) -> None:
        from medstation.ai.jobs import PredictJob

        if self.report is None:
            return
        try:
            version = self.ctx.registry.default("followup")
        except Exception as exc:  # noqa: BLE001 (no follow-up model installed: say so)
            self.status.setText(f"No follow-up model: {exc}")
            return
        date = self.predict_date.date().toString("yyyyMMdd")
        report = {k: v for k, v in self.report.items() if k != "tracks"} | {"tracks": self.report["tracks"]}
        job = PredictJob(report, date, str(version.path))
        self.status.setText(f"Predicting each lesion at {self.predict_date.date().toString('yyyy-MM-dd')} …")
        self.ctx.engine.when_ready(lambda: setattr(self, "predict_handle", self.ctx.engine.submit(job)))

    def cancel(self) -> None:
        if self.handle is not None and not self.handle.done():
            self.handle.cancel()

    def _on_job_event(self, handle, kind: JobEvent, payload) -> None:
        if handle is self.predict_handle and handle is not None:
            if kind == JobEvent.DONE:
                self.report = payload
                self._show(payload)
                self.status.setText(f"Predicted with the follow-up model (not for clinical use): "
                                    f"{sum(1 for t in payload['tracks'] if t.get('prediction'))} of "
                                    f"{len(payload['tracks'])} tracks; the others are withheld "
                                    "(see the tooltip).")
                self.predicted_report.emit(payload)
            elif kind == JobEvent.FAILED:
                self.status.setText(f"Prediction failed: {payload}")
                self.predicted_report.emit(None)
            return
        if handle is not self.handle:
            return
        if kind == JobEvent.STAGE:  # what is being done, how far the whole is, and (once known) how long
            share = payload["done"] / max(1, payload["total"])
            eta = payload.get("eta_s")
            self.status.setText(f"Following up: {payload['stage']} · {share:.0%}"
                                + (f" · about {eta:.0f} s left" if eta is not None else ""))
        elif kind == JobEvent.DONE:
            report, self.tracks = payload
            self._show(report)
            self.finished.emit(report)
        elif kind in (JobEvent.FAILED, JobEvent.CANCELLED):
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            self.status.setText("Follow-up cancelled." if kind == JobEvent.CANCELLED
                                else f"Follow-up failed: {payload}")
            self.finished.emit(None)

    # -- showing -------------------------------------------------------------------------------
    def _show(self, report: dict) -> None:
        self.report = report
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        tracks = report["tracks"]
        dates = [tp["study_date"] for tp in report["timepoints"]]
        self.compare_button.setEnabled(self._prior() is not None)
        self.predict_button.setEnabled(bool(dates))
        if dates and (self.predict_date.date() <= QDate(int(dates[-1][:4]), int(dates[-1][4:6]),
                                                        int(dates[-1][6:]))):
            self.predict_date.setDate(QDate(int(dates[-1][:4]), int(dates[-1][4:6]), int(dates[-1][6:]))
                                      .addMonths(12))
        steps = [dates[0][:4] + "-" + dates[0][4:6] + "-" + dates[0][6:]] if dates else []
        for a, b in zip(dates, dates[1:]):
            months = (_days(b) - _days(a)) / 30.44
            steps.append(f"─ {months:.0f} mo ─ {b[:4]}-{b[4:6]}-{b[6:]}")
        self.timeline.setText("Timeline: " + " ".join(steps) if steps else "")
        regs = report["registrations"]
        failed = [r for r in regs if not r["ok"]]
        from medstation.ai.followup import summary_text

        self.status.setText(f"Patient {report['patient_id']}: {len(dates)} studies ({', '.join(dates)}), "
                            f"{len(tracks)} tracks"
                            + summary_text(report.get("patient") or {})
                            + (f"; {len(failed)} registration(s) failed: matched in patient coordinates"
                               if failed else "") + ". Not for clinical use.")
        self.table.setRowCount(len(tracks))
        for r, t in enumerate(tracks):
            sizes = " / ".join("–" if m is None else f"{m['diameter_mm']:.1f}"
                               + (" (box)" if m.get("size_method") == "box" else "")
                               for m in t["measurements"])
            change = t["percent_change_volume"]
            vdt = doubling_text(t["volume_doubling_days"], change)
            lr = (t.get("guideline") or {}).get("lung_rads") or {}
            fl = (t.get("guideline") or {}).get("fleischner") or {}
            pred = t.get("prediction")
            predicted = (f"{pred['diameter_mm']:.1f} mm" if pred else
                         ("withheld" if t.get("prediction_withheld") else ""))
            status = t["status"] + ("" if t.get("confirmed", True) else " (unconfirmed)")
            cells = [t["track_id"], t.get("name", ""), status, sizes,
                     "-" if change is None or not math.isfinite(change) else f"{change:+.0f}%",
                     vdt, lr.get("category", "") + (" (box size)" if lr.get("caveat") else ""),
                     predicted, f"{pred['p_growth']:.2f}" if pred else "", fl.get("recommendation", "")]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c == 7 and t.get("prediction_withheld"):
                    item.setToolTip(t["prediction_withheld"])
                if c == 3:
                    item.setToolTip("\n".join(_measurement_text(m) for m in t["measurements"]))
                if c == 2 and t.get("evidence"):
                    item.setToolTip(t["evidence"])
                if c == 6 and lr:
                    item.setToolTip("\n".join(x for x in (
                        f"Lung-RADS v2022 {lr.get('category', '')}: {lr.get('rule', '')}",
                        lr.get("management", ""), lr.get("caveat", ""),
                        "visits: " + ", ".join("-" if h is None else f"{h['study_date']} {h['category']}"
                                               for h in lr.get("history") or [])) if x))
                if c == 9 and fl:
                    item.setToolTip("\n".join(x for x in (f"Fleischner 2017: {fl.get('rule', '')}",
                                                           fl.get("remark", ""), fl.get("caveat", "")) if x))
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        if tracks:
            rows = self._rows()
            self.table.selectRow(rows[0] if rows and rows[0] < len(tracks) else 0)
            self._selected()  # the chart follows the new report (a prediction's band) even on the same row

    def link_patient(self, other: str) -> None:
        patient, _paths = self.patient_paths()
        if patient and other.strip():
            self.ctx.db.followup.link_patients(patient, other.strip())
            self.status.setText(f"{other.strip()} is now followed as patient {patient}: "
                                "run the follow-up again.")

    # -- the reader's corrections (kept in the database, applied to every later run) -------------
    def _rows(self) -> list[int]:
        return sorted({i.row() for i in self.table.selectedItems()})

    def _edit(self, edit: dict) -> None:
        from medstation.ai.followup import edited, patient_summary

        if self.report is None or not self.tracks:
            return
        self.ctx.db.followup.add_track_edit(self.patient or self.report["patient_id"], edit)
        last = self.report["timepoints"][-1]["study_date"] if self.report["timepoints"] else ""
        self.tracks = edited(self.tracks, [edit], last)
        self.report["tracks"] = [t.to_dict() for t in self.tracks]
        self.report["patient"] = patient_summary(self.tracks)
        self._show(self.report)

    def rename(self, name: str) -> None:
        rows = self._rows()
        if rows and self.report is not None:
            self._edit({"kind": "rename", "tracking_uid": self.report["tracks"][rows[0]]["tracking_uid"],
                        "name": name.strip()})

    def link_selected(self) -> None:
        rows = self._rows()
        if len(rows) == 2 and self.report is not None:
            a, b = (self.report["tracks"][r]["tracking_uid"] for r in rows)
            self._edit({"kind": "link", "a": a, "b": b})

    def unlink_selected(self) -> None:
        rows = self._rows()
        if rows and self.report is not None:
            t = self.report["tracks"][rows[0]]
            dates = [m["study_date"] for m in t["measurements"] if m is not None]
            if len(dates) > 1:
                self._edit({"kind": "unlink", "tracking_uid": t["tracking_uid"], "at": dates[-1]})

    def _prior(self) -> tuple[str, object] | None:
        """The open series' previous timepoint and the registration from it onto the open one."""
        from medstation.imaging.registration import Registration

        if self.report is None:
            return None
        uid = self.ctx.state.series_key.split("#")[0]
        series = [tp["series_uid"] for tp in self.report["timepoints"]]
        if uid not in series or series.index(uid) == 0:
            return None
        t = series.index(uid)
        reg = self.report["registrations"][t - 1]
        if not reg.get("matrix") and not reg["ok"]:
            return series[t - 1], None
        return series[t - 1], Registration.from_dict(reg) if "matrix" in reg else None

    def compare_prior(self) -> None:
        prior = self._prior()
        if prior is not None and self.show_beside is not None:
            self.show_beside(*prior)

    def _selected(self) -> None:
        if self.report is None:
            return
        rows = {i.row() for i in self.table.selectedItems()}
        if not rows:
            return
        t = self.report["tracks"][min(rows)]
        pts = [(m["study_date"], m["volume_mm3"]) for m in t["measurements"]
               if m is not None and m.get("volume_mm3") is not None]
        if pts:
            self.build_chart()
            d0 = _days(pts[0][0])
            self.curve.setData([_days(d) - d0 for d, _ in pts], [v for _, v in pts])
            pred = t.get("prediction")
            if pred:  # the band from the last measurement to the predicted date
                x0, v0 = _days(pts[-1][0]) - d0, pts[-1][1]
                x1 = x0 + pred["days_ahead"]
                self.band_low.setData([x0, x1], [v0, pred["volume_low"]])
                self.band_high.setData([x0, x1], [v0, pred["volume_high"]])
                self.predicted.setData([x0, x1], [v0, pred["volume_mm3"]])
            else:
                for c in (self.band_low, self.band_high, self.predicted):
                    c.setData([], [])
        self._jump(t)

    def _jump(self, track: dict) -> None:
        """Centre the views on the track's lesion when it lies in the open series."""
        st = self.ctx.state
        if st.volume is None:
            return
        uid = st.series_key.split("#")[0]
        for m in track["measurements"]:
            if m is not None and m["series_uid"] == uid:
                st.centre_on(st.volume.patient_to_index(m["center_patient"]))
                return

