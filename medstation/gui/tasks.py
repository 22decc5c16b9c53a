"""Background work for the GUI: a function on a thread, its progress and outcome as Qt signals.

The function gets ``(progress, cancel)``: a ``progress(done, total)`` callback and a
``threading.Event`` it checks between steps (cancelling is cooperative). Signals are
emitted from the worker thread and delivered on the main thread (queued), so slots
may touch widgets. An exception becomes ``failed(exc)``, never a dead thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

_PROGRESS_EVERY_S = 0.05


class Task(QObject):
    progress = Signal(int, int)
    done = Signal(object)
    failed = Signal(object)
    finished = Signal()

    _live: set[Task] = set()  # keeps a running task (and its signals) alive

    def __init__(self, fn: Callable, name: str = "task", parent=None) -> None:
        super().__init__(parent)
        self.name = name
        self._fn = fn
        self.cancel_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"medstation-{name}", daemon=True)
        self._last = 0.0
        self.finished.connect(lambda: Task._live.discard(self))

    def start(self) -> Task:
        Task._live.add(self)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= _PROGRESS_EVERY_S:
            self._last = now
            self.progress.emit(int(done), int(total))

    def _run(self) -> None:
        try:
            result = self._fn(self._progress, self.cancel_event)
        except BaseException as exc:  # delivered as a signal, never lost
            self.failed.emit(exc)
        else:
            self.done.emit(result)
        finally:
            self.finished.emit()

    @classmethod
    def running_tasks(cls) -> list[Task]:
        return [t for t in cls._live if t.running]
