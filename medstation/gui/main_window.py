"""The main window: the layout of the study browser, viewer, panels, menus and status bar.

It owns no behaviour of its own beyond layout and actions: the parts get the
application context (``gui/context.py``) and do their work there: importing
(``Importer``), opening and streaming a series (``SeriesLoader``), AI
(``AiController`` and the engine service), the PACS dialog and the DICOM
exports. Only ``gui/app.py`` builds a ``MainWindow``.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
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

from medstation.imaging import PRESETS, Window

from .ai import AiController
from .browser import StudyBrowser
from .context import AppContext
from .dialogs import DISCLAIMER, AboutDialog, HelpDialog, ProblemsDialog
from .findings import FindingsPanel
from .importing import Importer
from .loader import SeriesLoader
from .panels import MeasurementPanel, TagInspector
from .viewer import LAYOUTS, Viewer

MAX_RECENT = 10


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
    """medstation's main window on an application context (``gui.app.build_window`` makes both)."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.setWindowTitle("medstation")
        self.setAcceptDrops(True)
        self.ctx = ctx
        self.state = ctx.state
        self.settings = ctx.settings
        self.importer = Importer(ctx)
        self.loader = SeriesLoader(ctx)
        self.viewer = Viewer(self.state, self)
        self.setCentralWidget(self.viewer)
        self.browser = StudyBrowser(ctx.db, self)
        self.measurements = MeasurementPanel(self.state, self)
        self.tags = TagInspector(self.state, self)
        self.problems = ProblemsDialog(self)
        self.ai = AiController(ctx)
        self.findings = FindingsPanel(self.ai, self)
        self.pacs_dialog = None
        self.panels: dict[str, QDockWidget] = {}
        # what tests and the single-instance server reach through the window
        self.series_loaded = self.loader.series_loaded
        self.first_image = self.loader.first_image
        self.open_failed = self.loader.open_failed
        self.import_finished = self.importer.import_finished
        self._build_docks()
        self._build_status()
        self._build_actions()
        self._cine = QTimer(self, interval=66)
        self._cine.timeout.connect(self._cine_step)
        self._wire()
        self._restore_settings()
        self.browser.refresh()
        self.importer.thumbnails_for([r.series_uid for r in self.browser.rows])
        if ctx.db.needs_rebuild:
            self.notify(f"The study database was damaged; it was moved to {ctx.db.recovered_from}. "
                        "Re-importing the folders it knew.")
            self.import_paths(ctx.db.roots())

    def _wire(self) -> None:
        ctx, st = self.ctx, self.state
        ctx.notified.connect(self.notify)
        ctx.problems_found.connect(self.add_problems)
        ctx.studies_changed.connect(self.browser.refresh)
        ctx.open_requested.connect(self.open_series)
        ctx.tasks.progress_shown.connect(self._show_progress)
        ctx.tasks.progress_hidden.connect(self._hide_progress)
        ctx.engine.ready.connect(self._engine_ready)
        self.importer.thumbnail_ready.connect(self.browser.set_thumbnail)
        self.browser.series_activated.connect(self.open_series)
        self.loader.opened.connect(self._series_opened)
        self.series_loaded.connect(lambda _uid: self.ai.series_opened(self.state.series_key))
        self.ai.detection_failed.connect(self._detection_failed)
        self.viewer.active_changed.connect(lambda _v: self._sync_actions())
        for sig in (st.window_changed, st.tool_changed, st.findings.display_changed):
            sig.connect(self._sync_toggles)
        for view in self.viewer.views.values():
            view.hover.connect(self.hover_label.setText)

    # -- what the parts do, reached from the window --------------------------------------------
    @property
    def db(self):
        return self.ctx.db

    @property
    def data_dir(self):
        return self.ctx.data_dir

    @property
    def load_job(self):
        return self.loader.load_job

    @property
    def current_uid(self) -> str:
        return self.loader.current_uid

    @property
    def _tasks(self):
        return self.ctx.tasks.tasks

    def open_series(self, series):
        return self.loader.open(series)

    def import_paths(self, paths: list[str], open_after: bool = False):
        return self.importer.import_paths(paths, open_after)

    def open_demo(self):
        return self.importer.open_demo()

    def run_task(self, fn, name: str, label: str, on_done=None, show_progress: bool = True, on_error=None):
        return self.ctx.run_task(fn, name, label, on_done, show_progress, on_error)

    # -- building -------------------------------------------------------------------------------
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
                                            lambda on: self.state.findings.set_show(on), "Shift+F",
                                            checkable=True)
        self.findings_action.setChecked(True)
        a.addSeparator()
        findings = self.state.findings
        self._action(a, "Next finding", lambda: findings.step(1), ".")
        self._action(a, "Previous finding", lambda: findings.step(-1), ",")
        self._action(a, "Accept the selected finding", lambda: findings.toggle_review("accepted"), "Y")
        self._action(a, "Reject the selected finding", lambda: findings.toggle_review("rejected"), "X")
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

    # -- status bar ------------------------------------------------------------------------------
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
        self.ctx.tasks.cancel_all()
        self.loader.cancel()
        self.notify("Cancelled.")

    def notify(self, text: str) -> None:
        self.message.setText(text)

    def add_problems(self, errors, context: str, show: bool = False) -> None:
        """List files that could not be used in the (non-modal) problems window."""
        self.problems.add(errors, context)
        self.problems_button.setText(f"⚠ {len(self.problems.errors)} problems")
        self.problems_button.show()
        if show:
            self.problems.show()

    def report_error(self, exc: BaseException, context: str) -> None:
        self.ctx.report_error(exc, context)

    def _engine_ready(self, bridge) -> None:
        from .bridge import EngineStatus

        self.engine_status = EngineStatus(bridge, self)
        self.statusBar().addPermanentWidget(self.engine_status)

    def _detection_failed(self, _key: str, exc) -> None:
        from medstation.core.errors import CancelledError

        if not isinstance(exc, CancelledError):
            self.ctx.report_error(exc, "Detection")

    # -- importing and opening -----------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of DICOM files")
        if folder:
            self.import_paths([folder], open_after=True)

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open DICOM files, a DICOMDIR or a .zip")
        if files:
            self.import_paths(files, open_after=True)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.import_paths(paths, open_after=True)
            event.acceptProposedAction()

    def _series_opened(self, ref, label: str) -> None:
        self.browser.select_series(ref.series_uid)
        self._refresh_dicom_windows()
        self._sync_actions()
        vol = self.state.volume
        if vol is not None and vol.shape[0] == 1 and self.viewer.layout_name != "1x1":
            self.set_layout("1x1")
        self._remember(ref.series_uid, label)
        self.setWindowTitle(f"medstation — {label}")

    def _refresh_dicom_windows(self) -> None:
        self.dicom_windows_menu.clear()
        vol = self.state.volume
        for c, w, name in (vol.windows if vol is not None else []):
            act = self.dicom_windows_menu.addAction(f"{name}  (W {w:.0f} / L {c:.0f})")
            act.triggered.connect(lambda _=False, win=Window(c, w, name): self.state.set_window(win))
        self.dicom_windows_menu.setEnabled(bool(vol is not None and vol.windows))

    # -- PACS and DICOM exports -------------------------------------------------------------------
    def show_pacs(self):
        from .pacs_dialog import PacsDialog

        if self.pacs_dialog is None:
            self.pacs_dialog = PacsDialog(self.ctx, self)
        self.pacs_dialog.show()
        self.pacs_dialog.raise_()
        return self.pacs_dialog

    def export_results(self, out_dir: str | None = None):
        from .exports import export_results_task

        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Folder for the DICOM SR and SEG")
            if not out_dir:
                return None
        return export_results_task(self.ctx, out_dir)

    def send_results(self, node=None):
        from .exports import export_results_task

        if node is None:
            dialog = self.show_pacs()
            node = dialog.current_node()
            if node is None:
                dialog.set_status("Add the PACS to send to, then choose Send again.", error=True)
                return None
        return export_results_task(self.ctx, None, node)

    def export_deidentified(self, out_dir: str | None = None):
        from .exports import deidentify_task, study_series

        series = study_series(self.ctx)
        if not series:
            self.notify("Open a study first.")
            return None
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Empty folder for the de-identified copy")
            if not out_dir:
                return None
        return deidentify_task(self.ctx, series, out_dir, parent=self)

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

    def _sync_toggles(self) -> None:
        self.invert_action.setChecked(self.state.invert)
        self.tool_actions[self.state.tool].setChecked(True)
        self.findings_action.setChecked(self.state.findings.show)

    def _sync_actions(self) -> None:
        self.layout_actions[self.viewer.layout_name].setChecked(True)

    # -- closing ------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop loads and tasks, the engine and the worker processes (idempotent)."""
        self._cine.stop()
        self.loader.shutdown()
        self.ctx.shutdown()
