"""The main window: study browser, viewer, panels, menus, status bar, and the work behind them.

Everything slow runs off the GUI thread: imports, series preparation and
thumbnails in ``Task`` threads, pixel loading in a ``LoadJob`` (worker processes
for compressed files). The window polls a running load 30 times a second and
repaints the slices that arrived; the first image shows as soon as the middle
slice lands.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QImage, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QToolButton,
    QWidget,
)

from medstation.core.errors import CancelledError, LoadError, MedstationError
from medstation.core.files import atomic_writer
from medstation.dicom import WorkerPool
from medstation.dicom.database import StudyDatabase, user_data_path
from medstation.dicom.importer import import_paths
from medstation.dicom.loader import LoadJob
from medstation.imaging import PRESETS, Measurement, Window

from .ai import AiController
from .browser import StudyBrowser
from .dialogs import DISCLAIMER, AboutDialog, HelpDialog, ProblemsDialog
from .findings import FindingsPanel
from .loading import prepare_series, series_key, thumbnail_path, thumbnail_pixels
from .panels import MeasurementPanel, TagInspector
from .state import ViewState
from .tasks import Task
from .viewer import LAYOUTS, Viewer

MAX_RECENT = 10
POLL_MS = 30


def settings_path() -> Path:
    return user_data_path() / "settings.ini"


class WindowDialog(QDialog):
    """A custom window/level preset: name, centre, width."""

    def __init__(self, window: Window, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Custom window")
        form = QFormLayout(self)
        self.name = QLineEdit("Custom", self)
        self.center = QDoubleSpinBox(self, minimum=-32768, maximum=65535, decimals=1, value=window.center)
        self.width = QDoubleSpinBox(self, minimum=1, maximum=65535, decimals=1, value=window.width)
        form.addRow("Name", self.name)
        form.addRow("Level (centre)", self.center)
        form.addRow("Window (width)", self.width)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def window(self) -> Window:
        return Window(self.center.value(), self.width.value(), self.name.text().strip() or "Custom")


class MainWindow(QMainWindow):
    """medstation's main window. ``db_path`` None uses the default study database."""

    series_loaded = Signal(str)  # series UID, once every slice has arrived (or the load ended)
    first_image = Signal(str)  # series UID, when the first slice can be shown
    import_finished = Signal(object)  # ImportReport
    open_failed = Signal(str, object)  # series UID, the error: the series could not be opened

    def __init__(self, db_path: str | Path | None = None) -> None:
        super().__init__()
        self.setWindowTitle("medstation")
        self.setAcceptDrops(True)
        self.db = StudyDatabase(db_path)
        self.data_dir = user_data_path()
        self.settings = QSettings(str(settings_path()), QSettings.IniFormat)
        self._load_pool: WorkerPool | None = None
        self._scan_pool: WorkerPool | None = None
        self.load_job: LoadJob | None = None
        self.current_uid = ""
        self._ready_seen = -1
        self._window_set = False
        self._first_sent = False
        self._tasks: list[Task] = []
        self.state = ViewState()
        self.viewer = Viewer(self.state, self)
        self.setCentralWidget(self.viewer)
        self.browser = StudyBrowser(self.db, self)
        self.measurements = MeasurementPanel(self.state, self)
        self.tags = TagInspector(self.state, self)
        self.problems = ProblemsDialog(self)
        self.ai = AiController(self)
        self.findings = FindingsPanel(self.ai, self)
        self.panels: dict[str, QDockWidget] = {}
        self._build_docks()
        self._build_status()
        self._build_actions()
        self._poll = QTimer(self, interval=POLL_MS)
        self._poll.timeout.connect(self._poll_load)
        self._cine = QTimer(self, interval=66)
        self._cine.timeout.connect(self._cine_step)
        self.browser.series_activated.connect(self.open_series)
        self.series_loaded.connect(lambda _uid: self.ai.series_opened(self.state.series_key))
        self.ai.detection_failed.connect(self._detection_failed)
        self.viewer.active_changed.connect(lambda _v: self._sync_actions())
        self.state.changed.connect(self._on_state)
        self.state.measurement_edited.connect(self._save_measurement)
        self.state.measurement_deleted.connect(self._delete_measurement)
        for view in self.viewer.views.values():
            view.hover.connect(self.hover_label.setText)
        self._restore_settings()
        self.browser.refresh()
        self._thumbnails_for([r.series_uid for r in self.browser.rows])
        if self.db.needs_rebuild:
            self.notify(f"The study database was damaged; it was moved to {self.db.recovered_from}. "
                        "Re-importing the folders it knew.")
            self.import_paths(self.db.roots())

    # -- building -------------------------------------------------------------
    def add_panel(self, name: str, title: str, widget: QWidget,
                  area=Qt.RightDockWidgetArea, visible: bool = True) -> QDockWidget:
        """Dock ``widget`` as a panel (the AI findings, follow-up and fine-tuning panels use this)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{name}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        dock.setVisible(visible)
        self.panels[name] = dock
        if hasattr(self, "panels_menu"):
            self.panels_menu.addAction(dock.toggleViewAction())
        return dock

    def _build_docks(self) -> None:
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks)
        self.add_panel("browser", "Studies", self.browser, Qt.LeftDockWidgetArea)
        self.add_panel("measurements", "Measurements", self.measurements)
        self.add_panel("tags", "DICOM tags", self.tags)
        self.add_panel("findings", "AI findings", self.findings)
        self.tabifyDockWidget(self.panels["findings"], self.panels["measurements"])
        self.tabifyDockWidget(self.panels["measurements"], self.panels["tags"])
        self.panels["findings"].raise_()
        self.resizeDocks([self.panels["browser"], self.panels["measurements"]], [340, 380], Qt.Horizontal)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.message = QLabel("Ready", self)
        self.hover_label = QLabel(self)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_work)
        self.problems_button = QToolButton(self)
        self.problems_button.setText("⚠ problems")
        self.problems_button.hide()
        self.problems_button.clicked.connect(self.problems.show)
        sb.addWidget(self.message, 1)
        sb.addPermanentWidget(self.hover_label)
        sb.addPermanentWidget(self.problems_button)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)

    def _action(self, menu, text: str, slot, shortcut: str | None = None, checkable: bool = False,
                group: QActionGroup | None = None) -> QAction:
        act = QAction(text, self)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ApplicationShortcut)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        if group is not None:
            group.addAction(act)
        menu.addAction(act)
        self.addAction(act)
        return act

    def _build_actions(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "Open folder…", self.choose_folder, "Ctrl+O")
        self._action(f, "Open files…", self.choose_files, "Ctrl+Shift+O")
        self.recent_menu = f.addMenu("Recent series")
        self._action(f, "Show problems", self.problems.show)
        f.addSeparator()
        self._action(f, "PACS: search and retrieve…", self.show_pacs, "Ctrl+Shift+P")
        self._action(f, "Export this study de-identified…", self.export_deidentified)
        f.addSeparator()
        self._action(f, "Quit", self.close, "Ctrl+Q")

        v = mb.addMenu("&View")
        self.layout_actions = {}
        group = QActionGroup(self)
        for name, key in zip(LAYOUTS, ("Ctrl+1", "Ctrl+3", "Ctrl+4")):
            self.layout_actions[name] = self._action(
                v, f"Layout {name.replace('x', '×')}", lambda _=False, n=name: self.set_layout(n), key,
                checkable=True, group=group)
        v.addSeparator()
        for name, key in (("axial", "A"), ("coronal", "C"), ("sagittal", "S")):
            self._action(v, f"{name.capitalize()} (1×1)", lambda _=False, n=name: self.show_plane(n), key)
        v.addSeparator()
        self._action(v, "Zoom to fit", lambda: self.viewer.active.fit(), "F")
        self._action(v, "Zoom 1:1 (one image pixel per screen pixel)",
                     lambda: self.viewer.active.one_to_one(), "=")
        self._action(v, "Zoom in", lambda: self.viewer.active.zoom_by(1.25), "+")
        self._action(v, "Zoom out", lambda: self.viewer.active.zoom_by(0.8), "-")
        self._action(v, "Reset view (window, zoom, pan, invert)", self.reset_view, "Ctrl+R")
        self.overlay_action = self._action(v, "Show text and measurements", self._toggle_overlays, "T",
                                           checkable=True)
        self.overlay_action.setChecked(True)
        self.cine_action = self._action(v, "Cine (play slices)", self.toggle_cine, "Space", checkable=True)
        v.addSeparator()
        self.panels_menu = v.addMenu("Panels")
        for dock in self.panels.values():
            self.panels_menu.addAction(dock.toggleViewAction())

        w = mb.addMenu("&Window")
        for n, (name, preset) in enumerate(PRESETS.items(), start=1):
            self._action(w, f"{name}  (W {preset.width:.0f} / L {preset.center:.0f})",
                         lambda _=False, p=preset: self.state.set_window(p), str(n))
        self.dicom_windows_menu = w.addMenu("Stored in the DICOM")
        self._action(w, "Default for this series", self.state.reset_window, "0")
        w.addSeparator()
        self.custom_menu = w.addMenu("Custom presets")
        self._action(w, "New custom preset…", self.new_custom_preset)
        w.addSeparator()
        self.invert_action = self._action(w, "Invert", lambda c: self.state.set_invert(c), "I",
                                          checkable=True)

        t = mb.addMenu("&Tools")
        self.tool_actions = {}
        group = QActionGroup(self)
        for tool, text, key in (("navigate", "Navigate / crosshair", "N"), ("length", "Length", "L"),
                                ("rect", "Rectangle ROI", "R"), ("ellipse", "Ellipse ROI", "O"),
                                ("angle", "Angle", "G")):
            self.tool_actions[tool] = self._action(t, text, lambda _=False, x=tool: self.state.set_tool(x),
                                                   key, checkable=True, group=group)
        self.tool_actions["navigate"].setChecked(True)
        t.addSeparator()
        self._action(t, "Delete selected measurement", lambda: self.state.delete_measurement())

        a = mb.addMenu("&AI")
        self._action(a, "Detect lesions in this series", lambda: self.ai.detect(force=True), "D")
        self._action(a, "Cancel detection", self.ai.cancel)
        self.findings_action = self._action(a, "Show AI findings on the images",
                                            lambda on: self.state.set_show_findings(on), "Shift+F",
                                            checkable=True)
        self.findings_action.setChecked(True)
        a.addSeparator()
        self._action(a, "Next finding", lambda: self._step_finding(1), ".")
        self._action(a, "Previous finding", lambda: self._step_finding(-1), ",")
        self._action(a, "Accept the selected finding", lambda: self._review_selected("accepted"), "Y")
        self._action(a, "Reject the selected finding", lambda: self._review_selected("rejected"), "X")
        a.addSeparator()
        self._action(a, "Export findings as DICOM SR + SEG…", self.export_results)
        self._action(a, "Send findings to PACS (SR + SEG)", self.send_results)

        h = mb.addMenu("&Help")
        self._action(h, "Keyboard and mouse…", self.show_help, "F1")
        self._action(h, "About medstation…", lambda: AboutDialog(self).exec())

        tb = self.addToolBar("Tools")
        tb.setObjectName("toolbar-main")
        for a in self.tool_actions.values():
            tb.addAction(a)
        tb.addSeparator()
        for a in self.layout_actions.values():
            tb.addAction(a)
        tb.addSeparator()
        tb.addAction(self.invert_action)
        disclaimer = QLabel("  Research software — not for clinical use  ", self)
        disclaimer.setStyleSheet("color: #e0a040;")
        disclaimer.setToolTip(DISCLAIMER)
        tb.addWidget(disclaimer)

    def shortcuts(self) -> list[tuple[str, str]]:
        return [(a.text().split("  (")[0].replace("&", ""), a.shortcut().toString())
                for a in self.actions() if not a.shortcut().isEmpty()]

    def show_help(self) -> None:
        HelpDialog(self.shortcuts(), self).show()

    # -- settings ---------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        layout = s.value("viewer/layout", "1x1")
        self.set_layout(layout if layout in LAYOUTS else "1x1")
        self._refresh_custom_presets()
        self._refresh_recent()

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("viewer/layout", self.viewer.layout_name)
        s.sync()

    def custom_presets(self) -> list[Window]:
        out = []
        for item in self.settings.value("presets/custom", []) or []:
            try:
                name, c, w = str(item).split("|")
                out.append(Window(float(c), float(w), name))
            except ValueError:
                continue
        return out

    def add_custom_preset(self, window: Window) -> None:
        items = [f"{p.name}|{p.center}|{p.width}" for p in self.custom_presets() if p.name != window.name]
        items.append(f"{window.name}|{window.center}|{window.width}")
        self.settings.setValue("presets/custom", items)
        self.settings.sync()
        self._refresh_custom_presets()

    def new_custom_preset(self) -> None:
        dlg = WindowDialog(self.state.window, self)
        if dlg.exec() == QDialog.Accepted:
            self.add_custom_preset(dlg.window())
            self.state.set_window(dlg.window())

    def _refresh_custom_presets(self) -> None:
        self.custom_menu.clear()
        for p in self.custom_presets():
            act = self.custom_menu.addAction(f"{p.name}  (W {p.width:.0f} / L {p.center:.0f})")
            act.triggered.connect(lambda _=False, w=p: self.state.set_window(w))
        self.custom_menu.setEnabled(bool(self.custom_presets()))

    def recent(self) -> list[tuple[str, str]]:
        out = []
        for item in self.settings.value("recent/series", []) or []:
            uid, _, label = str(item).partition("|")
            if uid:
                out.append((uid, label))
        return out

    def _remember(self, uid: str, label: str) -> None:
        items = [(u, lab) for u, lab in self.recent() if u != uid]
        items.insert(0, (uid, label))
        self.settings.setValue("recent/series", [f"{u}|{lab}" for u, lab in items[:MAX_RECENT]])
        self.settings.sync()
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for uid, label in self.recent():
            act = self.recent_menu.addAction(label or uid)
            act.triggered.connect(lambda _=False, u=uid: self.open_series(u))
        self.recent_menu.setEnabled(bool(self.recent()))

    # -- pools and tasks ----------------------------------------------------------
    @property
    def load_pool(self) -> WorkerPool:
        if self._load_pool is None:
            self._load_pool = WorkerPool(2, timeout=30)
        return self._load_pool

    @property
    def scan_pool(self) -> WorkerPool:
        if self._scan_pool is None:
            self._scan_pool = WorkerPool(1, timeout=30)
        return self._scan_pool

    def run_task(self, fn, name: str, label: str, on_done=None, show_progress: bool = True,
                 on_error=None) -> Task:
        """Run ``fn(progress, cancel)`` on a thread; every slot is connected before it starts."""
        task = Task(fn, name)
        self._tasks.append(task)
        if show_progress:
            self._show_progress(label, 0, 0)
            task.progress.connect(lambda d, t: self._show_progress(label, d, t))

        def finished():
            self._tasks.remove(task)
            if show_progress and not self._busy():
                self._hide_progress()

        task.finished.connect(finished)
        task.failed.connect(lambda exc: self.report_error(exc, label))
        if on_done is not None:
            task.done.connect(on_done)
        if on_error is not None:
            task.failed.connect(on_error)
        return task.start()

    def _busy(self) -> bool:
        return bool(self._tasks) or (self.load_job is not None and not self.load_job.done())

    def _show_progress(self, label: str, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(done)
        self.progress.setFormat(f"{label} %v/%m" if total else label)
        self.progress.show()
        self.cancel_button.show()

    def _hide_progress(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()

    def cancel_work(self) -> None:
        """Cancel every running import, preparation and load (the cancel button)."""
        for task in list(self._tasks):
            task.cancel()
        if self.load_job is not None and not self.load_job.done():
            self.load_job.cancel()
        self.notify("Cancelled.")

    def notify(self, text: str) -> None:
        self.message.setText(text)

    def add_problems(self, errors: list[LoadError], context: str, show: bool = False) -> None:
        """List files that could not be used in the (non-modal) problems window."""
        self.problems.add(errors, context)
        self.problems_button.setText(f"⚠ {len(self.problems.errors)} problems")
        self.problems_button.show()
        if show:
            self.problems.show()

    def report_error(self, exc: BaseException, context: str) -> None:
        if isinstance(exc, CancelledError):
            self.notify(f"{context}: cancelled.")
            return
        if isinstance(exc, LoadError):
            self.add_problems([exc], context)
        text = str(exc) if isinstance(exc, MedstationError) else f"{type(exc).__name__}: {exc}"
        self.notify(f"{context} failed: {text}")

    # -- importing ----------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of DICOM files")
        if folder:
            self.import_paths([folder], open_after=True)

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open DICOM files, a DICOMDIR or a .zip")
        if files:
            self.import_paths(files, open_after=True)

    def import_paths(self, paths: list[str], open_after: bool = False) -> Task:
        db_path = self.db.path
        pool = self.scan_pool

        def work(progress, cancel):
            with StudyDatabase(db_path) as db:  # its own connection, on this thread
                return import_paths(db, paths, pool, progress=progress, cancel=cancel)

        def done(report):
            self.browser.refresh()
            if report.errors:
                self.add_problems(report.errors, f"Import of {', '.join(Path(p).name for p in paths)}",
                                  show=True)
            self.notify(f"Imported {report.files} files: {report.added} added, {report.unchanged} "
                        f"unchanged, {report.skipped} not DICOM, {len(report.errors)} with problems.")
            self._thumbnails_for(list(report.series))
            self.import_finished.emit(report)
            if open_after and report.series:
                self.open_series(max(report.series, key=report.series.get))

        return self.run_task(work, "import", "Importing", done)

    def open_demo(self) -> Task:
        """Write the built-in demo study (once), import it and open its lung series."""
        from medstation.synth import demo_study

        folder = self.data_dir / "demo"

        def work(progress, cancel):
            if not (folder / "truth.json").exists():
                demo_study(folder, progress=progress)
            return folder

        self.notify("Writing the demo study (synthetic chest CT, not a real patient)…")
        return self.run_task(work, "demo", "Writing demo study",
                             lambda f: self.import_paths([str(f)], open_after=True))

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.import_paths(paths, open_after=True)
            event.acceptProposedAction()

    # -- thumbnails ----------------------------------------------------------------
    def _thumbnails_for(self, uids: list[str]) -> None:
        todo = []
        for uid in uids:
            path = thumbnail_path(self.data_dir, uid)
            image = QImage(str(path)) if path.exists() else QImage()
            if not image.isNull():
                self.browser.set_thumbnail(uid, image)
            else:
                todo.append(uid)
        if not todo:
            return
        db, pool, data_dir = self.db, self.scan_pool, self.data_dir

        def work(progress, cancel):
            for uid in todo:
                if cancel.is_set():
                    break
                try:
                    pixels = thumbnail_pixels(db, pool, uid)
                except MedstationError:
                    continue
                h, w = pixels.shape[:2]
                fmt = QImage.Format_RGB888 if pixels.ndim == 3 else QImage.Format_Grayscale8
                image = QImage(pixels.data, w, h, pixels.strides[0], fmt).copy()
                path = thumbnail_path(data_dir, uid)
                path.parent.mkdir(parents=True, exist_ok=True)
                buf = QBuffer()
                buf.open(QIODevice.WriteOnly)
                image.save(buf, "PNG")
                with atomic_writer(path, "wb", fsync=False) as f:  # a cache: no fsync needed
                    f.write(bytes(buf.data()))
                ready.append(uid)
            return ready

        ready: list[str] = []
        self.run_task(work, "thumbnails", "Thumbnails", show_progress=False,
                      on_done=lambda uids: [self._thumbnail_ready(u) for u in uids])

    def _thumbnail_ready(self, uid: str) -> None:
        image = QImage(str(thumbnail_path(self.data_dir, uid)))
        if not image.isNull():
            self.browser.set_thumbnail(uid, image)

    # -- opening and loading a series --------------------------------------------
    def open_series(self, series_uid: str) -> Task:
        """Prepare ``series_uid`` on a thread, then stream its slices into the viewer."""
        if self.load_job is not None and not self.load_job.done():
            self.load_job.cancel()
        db = self.db

        def work(progress, cancel):
            return prepare_series(db, series_uid)

        def done(result):
            stack, parts, info = result
            try:
                self._start_load(series_uid, stack, parts, info)
            except MedstationError as exc:
                self.report_error(exc, "Opening")
                self.open_failed.emit(series_uid, exc)

        self.notify("Opening series…")
        return self.run_task(work, "prepare", "Opening", done,
                             on_error=lambda exc: self.open_failed.emit(series_uid, exc))

    def _start_load(self, uid: str, stack, parts, info: dict) -> None:
        self.current_uid = uid
        self.browser.select_series(uid)
        self.load_job = LoadJob(stack, self.load_pool)
        key = series_key(stack)
        self._window_set = False
        self._first_sent = False
        self._ready_seen = -1
        self.state.set_volume(self.load_job.volume, self.load_job.ready, info, key)
        vol = self.load_job.volume
        if vol.windows:
            self.state.reset_window()
            self._window_set = True
        self._load_measurements(key)
        self._refresh_dicom_windows()
        self._sync_actions()
        if vol.shape[0] == 1 and self.viewer.layout_name != "1x1":
            self.set_layout("1x1")
        notes = [f"{len(parts)} image stacks in this series (sizes or orientations differ); "
                 f"showing the largest"] if len(parts) > 1 else []
        notes += vol.warnings
        self.notify(f"{info.get('series', '')}: " + ("; ".join(notes) if notes else
                                                      f"{vol.shape[0]} slices"))
        self._remember(uid, f"{info.get('patient', '')} — {info.get('series', '')}")
        self.setWindowTitle(f"medstation — {info.get('patient', '')} — {info.get('series', '')}")
        self._show_progress("Loading", 0, vol.shape[0])
        self._poll.start()

    def _poll_load(self) -> None:
        job = self.load_job
        if job is None:
            self._poll.stop()
            return
        done, total = job.progress
        if done != self._ready_seen:
            self._ready_seen = done
            shown = job.ready[int(round(self.state.position[0]))]
            if shown and not self._window_set:
                self.state.reset_window()
                self._window_set = True
            if shown and not self._first_sent:
                self._first_sent = True
                self.first_image.emit(self.current_uid)
            self.state.data_arrived()
            self._show_progress("Loading", done, total)
        if job.done():
            self._poll.stop()
            try:
                result = job.result(0)
            except MedstationError as exc:
                self.report_error(exc, "Loading")
            else:
                if result.errors:
                    self.add_problems(result.errors, "Loading the series")
                self.notify(f"Loaded {total} slices in {result.seconds:.2f} s"
                            + (f"; {len(result.errors)} could not be read" if result.errors else ""))
            if not self._window_set:
                self.state.reset_window()
                self._window_set = True
            self.state.data_arrived()
            if not self._busy():
                self._hide_progress()
            self.series_loaded.emit(self.current_uid)

    def _refresh_dicom_windows(self) -> None:
        self.dicom_windows_menu.clear()
        vol = self.state.volume
        for c, w, name in (vol.windows if vol is not None else []):
            act = self.dicom_windows_menu.addAction(f"{name}  (W {w:.0f} / L {c:.0f})")
            act.triggered.connect(lambda _=False, win=Window(c, w, name): self.state.set_window(win))
        self.dicom_windows_menu.setEnabled(bool(vol is not None and vol.windows))

    # -- measurements ----------------------------------------------------------------
    def _load_measurements(self, key: str) -> None:
        items = []
        for mid, _kind, data in self.db.measurements(key):
            try:
                items.append(Measurement.from_dict(data, mid))
            except (KeyError, TypeError, ValueError):
                continue  # written by a newer medstation; left in the database untouched
        self.state.set_measurements(items)

    def _save_measurement(self, m: Measurement) -> None:
        if self.state.series_key:
            m.id = self.db.save_measurement(self.state.series_key, m.kind, m.to_dict(), m.id)

    def _delete_measurement(self, m: Measurement) -> None:
        if m.id is not None:
            self.db.delete_measurement(m.id)

    # -- PACS and DICOM exports -------------------------------------------------------
    def show_pacs(self):
        from medstation.gui.pacs import PacsDialog
        if getattr(self, "pacs_dialog", None) is None:
            self.pacs_dialog = PacsDialog(self)
        self.pacs_dialog.show()
        self.pacs_dialog.raise_()
        return self.pacs_dialog

    def export_results(self, out_dir: str | None = None):
        from medstation.gui.pacs import export_results_task
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Folder for the DICOM SR and SEG")
            if not out_dir:
                return None
        return export_results_task(self, out_dir)

    def send_results(self, node=None):
        from medstation.gui.pacs import export_results_task
        if node is None:
            dialog = self.show_pacs()
            node = dialog.current_node()
            if node is None:
                dialog.set_status("Add the PACS to send to, then choose Send again.", error=True)
                return None
        return export_results_task(self, None, node)

    def export_deidentified(self, out_dir: str | None = None):
        from medstation.gui.pacs import deidentify_task, study_series
        series = study_series(self)
        if not series:
            self.notify("Open a study first.")
            return None
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Empty folder for the de-identified copy")
            if not out_dir:
                return None
        return deidentify_task(self, series, out_dir)

    def _step_finding(self, delta: int) -> None:
        items = self.state.visible_findings()
        if not items:
            return
        cur = self.state.selected_finding
        n = items.index(cur) + delta if cur in items else (0 if delta > 0 else len(items) - 1)
        self.state.select_finding(items[n % len(items)])

    def _review_selected(self, status: str) -> None:
        f = self.state.selected_finding
        if f is not None:
            self.ai.review(f, "" if f.status == status else status)

    def _detection_failed(self, _key: str, exc) -> None:
        if not isinstance(exc, CancelledError):
            self.report_error(exc, "Detection")

    # -- view actions ----------------------------------------------------------------
    def set_layout(self, name: str) -> None:
        self.viewer.set_layout(name)
        self.layout_actions[name].setChecked(True)

    def show_plane(self, name: str) -> None:
        self.viewer.show_plane(name)
        self.set_layout("1x1")

    def reset_view(self) -> None:
        self.state.reset_window()
        self.invert_action.setChecked(False)
        for view in self.viewer.views.values():
            view.fit()

    def _toggle_overlays(self, on: bool) -> None:
        for view in self.viewer.views.values():
            view.show_overlays = on
            view.update()

    def toggle_cine(self, on: bool) -> None:
        self._cine.start() if on else self._cine.stop()

    def _cine_step(self) -> None:
        view = self.viewer.active
        p = view.plane
        if p is None:
            return
        d = self.state.depth(p)
        self.state.step(p, 1 if d < p.depth - 1 else -d)

    def _on_state(self, what: str) -> None:
        if what == "window":
            self.invert_action.setChecked(self.state.invert)
        elif what == "tool":
            self.tool_actions[self.state.tool].setChecked(True)
        elif what == "findings":
            self.findings_action.setChecked(self.state.show_findings)

    def _sync_actions(self) -> None:
        self.layout_actions[self.viewer.layout_name].setChecked(True)

    # -- closing ------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop loads and tasks and the worker processes (idempotent)."""
        self._poll.stop()
        self._cine.stop()
        self.ai.shutdown()
        if self.load_job is not None:
            self.load_job.cancel()
            try:
                self.load_job.result(10)
            except BaseException:  # noqa: BLE001 - shutting down; the outcome no longer matters
                pass
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            task.join(10)
        for pool in (self._load_pool, self._scan_pool):
            if pool is not None:
                pool.close()
        self._load_pool = self._scan_pool = None
