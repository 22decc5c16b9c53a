"""The main window: the layout of the study browser, viewer, panels, menus and status bar.

It owns no behaviour of its own beyond layout and actions: the parts get the
application context (``gui/context.py``) and do their work there: importing
(``Importer``), opening and streaming a series (``SeriesLoader``), AI
(``AiController`` and the engine service), the PACS dialog and the DICOM
exports. Only ``gui/app.py`` builds a ``MainWindow``.
"""

from __future__ import annotations

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, QTimer
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QTabBar,
    QToolButton,
    QWidget,
)

from medstation.core.files import atomic_writer
from medstation.imaging import PRESETS, Window

from .actions import build_menus, refocus
from .ai import AiController
from .browser import StudyBrowser
from .compare import CompareLink
from .context import AppContext
from .dialogs import HelpDialog, ProblemsDialog, WindowDialog
from .findings import FindingsPanel
from .finetune import FinetunePanel
from .followup import FollowupPanel
from .importing import Importer
from .panels import MeasurementPanel, TagInspector
from .review_queue import ReviewQueue
from .series_loader import SeriesLoader
from .settings import SettingsDialog, apply_settings, read
from .viewer import LAYOUTS, Viewer

MAX_RECENT = 10


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
        self.compare_loader = SeriesLoader(ctx, ctx.compare)
        apply_settings(ctx.settings, self.state)
        self.viewer = Viewer(self.state, self, compare=ctx.compare)
        self.setCentralWidget(self.viewer)
        self.browser = StudyBrowser(ctx.db, self)
        self.measurements = MeasurementPanel(self.state, self)
        self.tags = TagInspector(self.state, self)
        self.problems = ProblemsDialog(self)
        self.ai = AiController(ctx)
        self.findings = FindingsPanel(self.ai, self)
        self.review_queue = ReviewQueue(self.ai, self.open_series, self)
        self.review_queue.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        self.finetune = FinetunePanel(ctx, use_model=self.ai.set_model, queue=self.review_queue, parent=self)
        self.ai.findings_changed.connect(self.finetune.labels_changed)  # reviews: labels for training
        self.state.measurements_changed.connect(self.finetune.labels_changed)  # drawn nodule labels
        self.followup = FollowupPanel(ctx, self.ai, self)
        self.followup.show_beside = self.compare_prior
        self.compare_link = CompareLink(self)  # same scale, and the prior's findings drawn
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
        self._empty_hint()
        self.importer.thumbnails_for([r.series_uid for r in self.browser.rows])
        if ctx.db.needs_rebuild:
            text = ctx.db.recovery_text()
            self.notify(text[:1].upper() + text[1:] + ".")
            self.import_paths(ctx.db.index.roots())

    def _wire(self) -> None:
        ctx, st = self.ctx, self.state
        ctx.notified.connect(self.notify)
        ctx.problems_found.connect(self.add_problems)
        ctx.studies_changed.connect(self.browser.refresh)
        ctx.studies_changed.connect(self._empty_hint)
        ctx.open_requested.connect(self.open_series)
        ctx.tasks.progress_shown.connect(self._show_progress)
        ctx.tasks.progress_hidden.connect(self._hide_progress)
        ctx.engine.ready.connect(self._engine_ready)
        self.importer.thumbnail_ready.connect(self.browser.set_thumbnail)
        self.browser.studies_added.connect(self.importer.thumbnails_for)
        self.browser.series_activated.connect(self.open_series)
        self.browser.compare_requested.connect(self.open_beside)
        # a registration belongs to one pair: another series opened here drops it
        self.state.volume_changed.connect(lambda: setattr(self.viewer, "registration", None))
        self.viewer.series_dropped.connect(lambda uid, right: self.open_beside(uid) if right
                                           else self.open_series(uid))
        self.loader.opened.connect(self._series_opened)
        self.series_loaded.connect(lambda _uid: self.ai.series_opened(self.state.series_key))
        self.ai.detection_failed.connect(self._detection_failed)
        self.viewer.active_changed.connect(lambda _v: self._sync_actions())
        for sig in (st.window_changed, st.tool_changed, st.findings.display_changed):
            sig.connect(self._sync_toggles)
        st.history.changed.connect(self._sync_history)
        self._sync_history()
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

    def open_beside(self, series, registration=None):
        """Show ``series`` in the right half of the 1x2 layout, beside the open one (through
        ``registration`` when it is a prior of the open series)."""
        self.viewer.registration = registration
        self.set_layout("1x2")
        return self.compare_loader.open(series)

    def compare_prior(self, series_uid: str, registration=None):
        """A prior study beside the open one, scrolling in step through ``registration`` (prior ->
        current patient mm; None: patient coordinates)."""
        self.viewer.set_sync(True)
        return self.open_beside(series_uid, registration)

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
        # short titles: five tabs share the right dock and read in full at 1400 x 900
        self.add_panel("measurements", "Measure", self.measurements)
        self.add_panel("tags", "Tags", self.tags)
        self.add_panel("findings", "Findings", self.findings)
        self.add_panel("finetune", "Fine-tune", self.finetune)
        self.add_panel("followup", "Follow-up", self.followup)
        self.tabifyDockWidget(self.panels["findings"], self.panels["followup"])
        self.tabifyDockWidget(self.panels["followup"], self.panels["finetune"])
        self.tabifyDockWidget(self.panels["finetune"], self.panels["measurements"])
        self.tabifyDockWidget(self.panels["measurements"], self.panels["tags"])
        self.panels["findings"].raise_()
        self.resizeDocks([self.panels["browser"], self.panels["measurements"]], [290, 330], Qt.Horizontal)
        QTimer.singleShot(0, self._whole_tab_titles)

    def _whole_tab_titles(self) -> None:
        """Dock tabs never elide (scroll arrows instead when the dock is narrower than its tabs)."""
        for bar in self.findChildren(QTabBar):
            bar.setElideMode(Qt.ElideNone)
            bar.setUsesScrollButtons(True)

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

    def _build_actions(self) -> None:
        build_menus(self)

    def shortcuts(self) -> list[tuple[str, str]]:
        return [(a.text().split("  (")[0].replace("&", ""), ", ".join(k.toString() for k in a.shortcuts()))
                for a in self.actions() if not a.shortcut().isEmpty()]

    def show_help(self):
        dialog = HelpDialog(self.shortcuts(), self)
        dialog.finished.connect(lambda _r: (self.activateWindow(), refocus(self)))
        dialog.show()
        return dialog

    def _empty_hint(self) -> None:
        listed = bool(self.browser.rows)
        self.state.empty_hint = ("Click a series in Studies to open it, or drag it here" if listed else
                                 "Open a study: File ▸ Open folder, or drop a folder here")
        self.ctx.compare.empty_hint = "Drag a series here from Studies to compare"
        for view in [*self.viewer.views.values(), self.viewer.compare.view]:
            view.update()

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
        files, _ = QFileDialog.getOpenFileNames(self, "Open DICOM files, a DICOMDIR, a .zip, or NIfTI / "
                                                      "MetaImage / NRRD volumes")
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
        default = str(self.settings.value("viewer/default_layout", ""))
        if vol is not None and vol.shape[0] == 1 and self.viewer.layout_name != "1x1":
            self.set_layout("1x1")
        elif default in LAYOUTS and default != self.viewer.layout_name:  # Settings: layout for a new series
            self.set_layout(default)
        self._remember(ref.series_uid, label)
        self.setWindowTitle(label)  # Qt adds " — medstation" (the application display name)

    def _refresh_dicom_windows(self) -> None:
        self.dicom_windows_menu.clear()
        vol = self.state.volume
        builtin = {(p.center, p.width) for p in PRESETS.values()} | {n.lower() for n in PRESETS}
        shown = [(c, w, name) for c, w, name in (vol.windows if vol is not None else [])
                 if (c, w) not in builtin and name.lower() not in builtin]  # "LUNG" is the Lung preset
        for c, w, name in shown:
            act = self.dicom_windows_menu.addAction(f"{name}  (W {w:.0f} / L {c:.0f})")
            act.triggered.connect(lambda _=False, win=Window(c, w, name): self.state.set_window(win))
        self.dicom_windows_menu.setEnabled(bool(shown))

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

    def set_sync(self, on: bool) -> None:
        self.viewer.set_sync(on)

    def reset_view(self) -> None:
        self.state.reset_window()
        self.invert_action.setChecked(False)
        for view in [*self.viewer.views.values(), self.viewer.compare.view]:
            view.fit()

    def toggle_overlays(self, on: bool) -> None:
        for view in [*self.viewer.views.values(), self.viewer.compare.view]:
            view.show_overlays = on
            view.update()

    def toggle_cine(self, on: bool) -> None:
        self._cine.setInterval(int(1000 / max(1, read(self.settings, "viewer/cine_fps", 15, int))))
        self._cine.start() if on else self._cine.stop()

    def cine_speed(self, factor: float) -> None:
        fps = min(60, max(1, round(read(self.settings, "viewer/cine_fps", 15, int) * factor)))
        if fps == read(self.settings, "viewer/cine_fps", 15, int):
            fps = fps + (1 if factor > 1 else -1)
        fps = min(60, max(1, fps))
        self.settings.setValue("viewer/cine_fps", fps)
        self._cine.setInterval(int(1000 / fps))
        self.notify(f"Cine: {fps} images per second.")

    def _cine_step(self) -> None:
        view = self.viewer.active
        p = view.plane
        if p is None:
            return
        state = view.state
        d = state.depth(p)
        state.step(p, 1 if d < p.depth - 1 else -d)

    def toggle_fullscreen(self, on: bool) -> None:
        self.showFullScreen() if on else self.showNormal()

    def toggle_panels(self, hide: bool) -> None:
        """Tab: hide the panels and the toolbar for the largest image; again: bring them back."""
        if hide:
            self._hidden = [d for d in self.panels.values() if d.isVisible()]
            for d in self._hidden:
                d.hide()
            self.toolbar.hide()
        else:
            for d in getattr(self, "_hidden", []):
                d.show()
            self.toolbar.show()

    def undo(self) -> None:
        text = self.state.history.undo()
        self.notify(f"Undone: {text}." if text else "Nothing to undo.")

    def redo(self) -> None:
        text = self.state.history.redo()
        self.notify(f"Redone: {text}." if text else "Nothing to redo.")

    def _sync_history(self) -> None:
        h = self.state.history
        self.undo_action.setEnabled(h.can_undo())
        self.redo_action.setEnabled(h.can_redo())
        self.undo_action.setText(f"Undo {h.undo_text()}".strip())
        self.redo_action.setText(f"Redo {h.redo_text()}".strip())

    def find_study(self) -> None:
        self.panels["browser"].show()
        self.panels["browser"].raise_()
        self.browser.search.setFocus(Qt.ShortcutFocusReason)
        self.browser.search.selectAll()

    def show_settings(self) -> None:
        dialog = SettingsDialog(self.settings, LAYOUTS, self)
        if dialog.exec():
            apply_settings(self.settings, self.state)
            self.findings.auto_box.setChecked(self.ai.auto_detect)
            self._sync_toggles()
        refocus(self)

    def view_image(self):
        """What the viewer shows now (every visible view with its overlays), as a QImage."""
        return self.viewer.grab().toImage()

    def save_view_image(self, path: str | None = None) -> str:
        from PySide6.QtWidgets import QFileDialog

        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save the view as an image", "view.png",
                                                  "PNG (*.png)")
            if not path:
                return ""
        buf = QBuffer()
        buf.open(QIODevice.WriteOnly)
        self.view_image().save(buf, "PNG")
        with atomic_writer(path, "wb") as f:
            f.write(bytes(buf.data()))
        self.notify(f"View saved to {path}.")
        return path

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
        self.finetune.shutdown()
        server = getattr(self, "instance_server", None)
        if server is not None:
            server.server.close()  # removes the socket file
        self.loader.shutdown()
        self.compare_loader.shutdown()
        self.ctx.shutdown()
