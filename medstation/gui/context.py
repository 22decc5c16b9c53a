"""The application context: what the window's parts share, built once in ``gui/app.py``.

Controllers, panels and dialogs get an ``AppContext`` instead of the main
window, so none of them knows the window and their dependencies are plain to
see (and to test):

* ``db`` the study database, ``settings`` (``settings.ini``), ``data_dir``;
* ``state`` the viewer model (``ViewState``, with the findings layer); ``compare`` the
  model of the series shown beside it (1x2);
* ``registry`` the model registry (by task, with the version in use);
* ``engine`` the inference engine service (started lazily, off the GUI thread);
* ``tasks`` background work with progress in the status bar; ``pools`` the
  decoder worker processes;
* signals for what the window shows: ``notified`` (status text),
  ``problems_found`` (the problems window), ``studies_changed`` (the study
  browser reloads), ``open_requested`` (open a series in the viewer).

A new panel or dialog takes the context in its constructor and subscribes to
what it needs; ``MainWindow`` only lays the parts out and wires the menus.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from medstation.core.errors import CancelledError, LoadError, MedstationError
from medstation.core.paths import settings_path, user_data_path
from medstation.dicom import WorkerPool
from medstation.dicom.database import StudyDatabase

from .state import ViewState
from .tasks import Task


class Pools:
    """The decoder worker processes: two for loading a series, one for scans and thumbnails."""

    def __init__(self) -> None:
        self._load: WorkerPool | None = None
        self._scan: WorkerPool | None = None

    @property
    def load(self) -> WorkerPool:
        if self._load is None:
            self._load = WorkerPool(2, timeout=30)
        return self._load

    @property
    def scan(self) -> WorkerPool:
        if self._scan is None:
            self._scan = WorkerPool(1, timeout=30)
        return self._scan

    def close(self) -> None:
        for pool in (self._load, self._scan):
            if pool is not None:
                pool.close()
        self._load = self._scan = None


class TaskRunner(QObject):
    """Runs ``fn(progress, cancel)`` on threads; shows their progress in the status bar."""

    progress_shown = Signal(str, int, int)  # label, done, total
    progress_hidden = Signal()

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.ctx = ctx
        self.tasks: list[Task] = []
        #: other work that keeps the progress bar up (a series load); each returns True while busy
        self.busy_while: list[Callable[[], bool]] = []

    def run(self, fn, name: str, label: str, on_done=None, show_progress: bool = True, on_error=None) -> Task:
        """Run ``fn(progress, cancel)`` on a thread; every slot is connected before it starts."""
        task = Task(fn, name)
        self.tasks.append(task)
        if show_progress:
            self.show(label, 0, 0)
            task.progress.connect(lambda d, t: self.show(label, d, t))

        def finished():
            self.tasks.remove(task)
            if show_progress:
                self.hide_if_idle()

        task.finished.connect(finished)
        task.failed.connect(lambda exc: self.ctx.report_error(exc, label))
        if on_done is not None:
            task.done.connect(on_done)
        if on_error is not None:
            task.failed.connect(on_error)
        return task.start()

    def busy(self) -> bool:
        return bool(self.tasks) or any(f() for f in self.busy_while)

    def show(self, label: str, done: int, total: int) -> None:
        self.progress_shown.emit(label, done, total)

    def hide_if_idle(self) -> None:
        if not self.busy():
            self.progress_hidden.emit()

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def join_all(self, timeout: float = 10.0) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            task.join(timeout)


class AppContext(QObject):
    """Database, settings, viewer model, model registry, engine, tasks and pools (see the module doc).

    ``engine_factory`` builds the inference engine (called on a worker thread the first time
    AI is needed); tests pass one that makes a stub engine.
    """

    notified = Signal(str)
    problems_found = Signal(object, str, bool)  # errors, context, show the problems window
    studies_changed = Signal()
    open_requested = Signal(object)  # a SeriesRef or a series UID

    def __init__(self, db_path: str | Path | None = None, *, engine_factory=None) -> None:
        super().__init__()
        from medstation.ai.registry import ModelRegistry

        from .engine import EngineService

        self.db = StudyDatabase(db_path)
        self.data_dir = user_data_path()
        self.settings = QSettings(str(settings_path()), QSettings.IniFormat)
        self.state = ViewState()
        self.compare = ViewState()  # the second series of the side-by-side (1x2) layout
        self.registry = ModelRegistry()
        self.tasks = TaskRunner(self)
        self.pools = Pools()
        self.engine = EngineService(self, factory=engine_factory)

    # -- what the window shows -----------------------------------------------------------------
    def notify(self, text: str) -> None:
        self.notified.emit(text)

    def add_problems(self, errors: list[LoadError], context: str, show: bool = False) -> None:
        self.problems_found.emit(list(errors), context, show)

    def report_error(self, exc: BaseException, context: str) -> None:
        if isinstance(exc, CancelledError):
            self.notify(f"{context}: cancelled.")
            return
        if isinstance(exc, LoadError):
            self.add_problems([exc], context)
        text = str(exc) if isinstance(exc, MedstationError) else f"{type(exc).__name__}: {exc}"
        self.notify(f"{context} failed: {text}")

    def run_task(self, fn, name: str, label: str, on_done=None, show_progress: bool = True,
                 on_error=None) -> Task:
        return self.tasks.run(fn, name, label, on_done, show_progress, on_error)

    def shutdown(self) -> None:
        """Stop the engine, the tasks and the worker processes (idempotent)."""
        self.engine.shutdown()
        self.tasks.join_all()
        self.pools.close()
