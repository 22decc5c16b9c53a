"""The inference engine as the GUI sees it: started lazily off the GUI thread, jobs through the bridge.

torch is imported only when AI is first needed, on a worker thread, so the
viewer starts fast and the GUI thread never waits on it. ``when_ready(call)``
runs ``call`` once the engine is up (at once if it is); ``submit(job)`` queues
an ``ai.jobs`` job and returns its handle; its events arrive on the GUI thread
through ``bridge.job_event``.
"""

from __future__ import annotations

import logging
import os

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)


def cpu_threads_for_gui() -> int:
    """torch threads of the CPU lane: one per core.

    Measured with ``medstation bench infer`` on a 2-core machine (README): with a
    GUI-like thread ticking every 10 ms beside the detector, 2 torch threads
    detected in 3.8 s with ticks late by 3.5 ms (p95) and 30 ms (max); 1 thread
    took 6.2 s with ticks late by 1.6 ms (p95) and 53 ms (max). Over three runs
    one thread never gave the GUI thread better worst cases (the GIL-bound Python
    parts of the detector, not the torch kernels, delay it, and they last longer
    with one thread), and it is 1.6x slower.
    """
    return max(1, os.cpu_count() or 1)


def default_engine(device_preference: str):
    """The real engine: one lane on the best (or the preferred) device."""
    from medstation.ai.engine import Engine, choose_device

    return Engine([choose_device(device_preference)], cpu_threads=cpu_threads_for_gui())


class EngineService(QObject):
    ready = Signal(object)  # the EngineBridge, once the engine is up
    failed = Signal(object)  # the engine could not start

    def __init__(self, ctx, factory=None) -> None:
        super().__init__(ctx)
        self.ctx = ctx
        self.factory = factory or default_engine
        self.engine = None
        self.bridge = None
        self._task = None
        self._new = None
        self._pending: list = []

    @property
    def device_preference(self) -> str:
        return str(self.ctx.settings.value("ai/device", "auto"))

    def when_ready(self, call) -> None:
        if self.engine is not None:
            call()
            return
        self._pending.append(call)
        if self._task is not None:
            return
        pref = self.device_preference

        def start(progress, cancel):
            engine = self.factory(pref)
            self._new = engine  # shutdown() finds it even if started() never ran
            return engine

        def started(engine) -> None:
            from .bridge import EngineBridge

            self._task = None
            self.engine = engine
            self.bridge = EngineBridge(engine, self)
            self.ready.emit(self.bridge)
            pending, self._pending = self._pending, []
            for c in pending:
                c()

        def failed(exc) -> None:
            self._task = None
            self._pending.clear()
            self.failed.emit(exc)

        self._task = self.ctx.run_task(start, "ai-engine", "Starting the AI engine", on_done=started,
                                       show_progress=False, on_error=failed)

    def submit(self, job):
        """Queue an ``ai.jobs`` job (the engine must be up: use ``when_ready``)."""
        return self.bridge.submit(job, name=job.name, priority=job.priority)

    def shutdown(self) -> None:
        if self._task is not None:
            self._task.join(60)
        for engine in {id(e): e for e in (self.engine, self._new) if e is not None}.values():
            engine.shutdown(30)
        self.engine = self._new = None
