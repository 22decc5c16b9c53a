"""The inference engine: a priority queue served by one device-lane thread per device.

``Engine.submit(fn)`` queues ``fn(ctx)`` and returns a ``JobHandle`` at once. A
lane thread owns its device and the models loaded on it (``ctx.models``, a
cache that lives as long as the lane), runs one job at a time, lowest priority
number first (``INTERACTIVE`` overtakes ``BACKGROUND``; first come, first served
within a priority). A job reports with ``ctx.progress(done, total)`` and
``ctx.partial(result)`` and checks ``ctx.check()`` between steps; ``cancel()``
on its handle makes that raise ``CancelledError``. A job that raises ends with
that exception on its handle; the lane goes on with the next job.
``shutdown()`` cancels what is queued, waits for the running jobs and joins
every lane thread.

Events go to the handle's listeners on the lane thread, as ``(kind, payload)``, ``kind`` a
:class:`JobEvent` (a ``str`` enum shared with the GUI's bridge): ``STARTED`` (the device),
``PROGRESS`` ``(done, total)``, ``PARTIAL`` (any object), ``DONE`` (the result), ``FAILED``
(the exception), ``CANCELLED``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from medstation.core.errors import CancelledError, ModelError


class JobEvent(str, Enum):
    """What a job's listener is told (equal to its plain string: ``JobEvent.DONE == "done"``)."""

    STARTED = "started"
    PROGRESS = "progress"
    #: where a job of several stages is: ``core.progress.stage_event`` (stage, done, total, eta_s)
    STAGE = "stage"
    PARTIAL = "partial"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

log = logging.getLogger(__name__)

INTERACTIVE = 0  # the reader is waiting on it
BACKGROUND = 10  # prefetching, batch runs

Listener = Callable[[str, Any], None]


def choose_device(preference: str = "auto") -> str:
    """``cuda``, then ``mps``, then ``cpu``; or the preference if it is available.

    Raises ``ModelError`` when a device is asked for that this machine lacks.
    """
    import torch

    available = ["cpu"]
    if torch.cuda.is_available():
        available.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.insert(0 if "cuda" not in available else 1, "mps")
    if preference in ("", "auto"):
        return available[0]
    base = preference.split(":")[0]
    if base not in available:
        raise ModelError(f"device {preference!r} is not available here (available: {', '.join(available)})",
                         "choose another device in the settings or with --device")
    return preference


class JobHandle:
    """What ``Engine.submit`` returns: state, events, cancel, and the outcome."""

    def __init__(self, name: str, priority: int, fn: Callable[[JobContext], Any]) -> None:
        self.name = name
        self.priority = priority
        self.fn = fn
        self.state = "queued"  # running, done, failed, cancelled
        self.progress_value: tuple[int, int] = (0, 0)
        self.partials: list[Any] = []
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.started_perf: float = time.perf_counter()  # reset when it starts running (ETA)
        self.finished: float | None = None
        self.device = ""
        self._listeners: list[Listener] = []
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<JobHandle {self.name!r} {self.state}>"

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(kind, payload)`` for every event from now on (on the lane thread)."""
        with self._lock:
            self._listeners.append(listener)

    def _emit(self, kind: str, payload: Any = None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(kind, payload)
            except Exception:  # a broken listener must not kill the lane
                log.exception("listener of job %s failed on %s", self.name, kind)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The job's result; raises its exception, ``CancelledError``, or ``TimeoutError``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.name!r} is still {self.state}")
        if self._error is not None:
            raise self._error
        return self._result

    def _finish(self, state: str, result: Any = None, error: BaseException | None = None) -> None:
        self.state = state
        self._result, self._error = result, error
        self.finished = time.monotonic()
        self._done.set()
        self._emit(JobEvent(state), result if state == "done" else error)


class JobContext:
    """Handed to a running job: its device, the lane's model cache, progress, partials, cancel."""

    def __init__(self, handle: JobHandle, lane: _Lane) -> None:
        self._handle = handle
        self.device = lane.device
        self.models: dict[Any, Any] = lane.models

    def progress(self, done: int, total: int) -> None:
        self._handle.progress_value = (int(done), int(total))
        self._handle._emit(JobEvent.PROGRESS, (int(done), int(total)))

    def stage(self, stage: str, done: int, total: int) -> None:
        """Progress with what is being done (``JobEvent.STAGE``, then the plain ``PROGRESS``); the ETA
        from the pace since the job started, once 2 s and some progress are in."""
        from medstation.core.progress import stage_event

        started = self._handle.started_perf
        event = stage_event(stage, int(done), int(total), started)
        if time.perf_counter() - started < 2.0:
            event.pop("eta_s", None)
        self._handle._emit(JobEvent.STAGE, event)
        self.progress(done, total)

    def partial(self, result: Any) -> None:
        self._handle.partials.append(result)
        self._handle._emit(JobEvent.PARTIAL, result)

    @property
    def cancelled(self) -> bool:
        return self._handle.cancel_requested

    def check(self) -> None:
        """Raise ``CancelledError`` if the job was cancelled (call it between steps)."""
        if self._handle.cancel_requested:
            raise CancelledError(f"job {self._handle.name!r} was cancelled")


class _Lane:
    """One device, one thread, the models loaded on that device."""

    def __init__(self, engine: Engine, device: str, threads: int | None) -> None:
        self.engine = engine
        self.device = device
        self.threads = threads
        self.models: dict[Any, Any] = {}
        self.current: JobHandle | None = None
        self.thread = threading.Thread(target=self._run, name=f"medstation-lane-{device}", daemon=True)

    def _run(self) -> None:
        if self.threads and self.device == "cpu":
            try:
                import torch

                torch.set_num_threads(self.threads)
            except ImportError:  # engines without torch (tests, plain CPU jobs) are fine
                pass
        while True:
            handle = self.engine._next()
            if handle is None:
                break
            self.current = handle
            self._execute(handle)
            self.current = None
        self.models.clear()

    def _execute(self, handle: JobHandle) -> None:
        if handle.cancel_requested:
            handle._finish("cancelled", error=CancelledError(f"job {handle.name!r} was cancelled"))
            return
        handle.state = "running"
        handle.started = time.monotonic()
        handle.started_perf = time.perf_counter()
        handle.device = self.device
        handle._emit(JobEvent.STARTED, self.device)
        try:
            result = handle.fn(JobContext(handle, self))
        except CancelledError as exc:
            handle._finish("cancelled", error=exc)
        except BaseException as exc:  # the job's failure is its handle's, never the lane's
            log.warning("job %s failed: %s", handle.name, exc)
            handle._finish("failed", error=exc)
        else:
            if handle.cancel_requested:
                handle._finish("cancelled", error=CancelledError(f"job {handle.name!r} was cancelled"))
            else:
                handle._finish("done", result=result)


class Engine:
    """Job queue and device lanes. ``devices`` default: the best device found (``choose_device``).

    ``cpu_threads``: torch threads for a CPU lane (None leaves torch's default).
    """

    def __init__(self, devices: list[str] | None = None, cpu_threads: int | None = None) -> None:
        self.devices = list(devices) if devices else [choose_device()]
        self._queue: list[tuple[int, int, JobHandle]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._lanes = [_Lane(self, d, cpu_threads) for d in self.devices]
        for lane in self._lanes:
            lane.thread.start()

    def submit(self, fn: Callable[[JobContext], Any], *, name: str = "job", priority: int = INTERACTIVE,
               on_event: Callable[[JobHandle, str, Any], None] | None = None) -> JobHandle:
        """Queue ``fn(ctx)``. ``on_event(handle, kind, payload)`` is subscribed before the job can
        start, so it sees every event (``subscribe`` later may miss the first ones)."""
        handle = JobHandle(name, priority, fn)
        if on_event is not None:
            handle.subscribe(lambda kind, payload: on_event(handle, kind, payload))
        with self._cv:
            if self._closed:
                raise RuntimeError("the engine is shut down")
            heapq.heappush(self._queue, (priority, next(self._seq), handle))
            self._cv.notify()
        return handle

    def _next(self) -> JobHandle | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                return None
            return heapq.heappop(self._queue)[2]

    @property
    def queue_length(self) -> int:
        with self._cv:
            return sum(1 for _p, _s, h in self._queue if not h.cancel_requested)

    @property
    def running(self) -> list[JobHandle]:
        return [lane.current for lane in self._lanes if lane.current is not None]

    def shutdown(self, timeout: float | None = 30.0) -> bool:
        """Cancel queued and running jobs and join every lane; True if all lanes ended in time."""
        with self._cv:
            self._closed = True
            pending = [h for _p, _s, h in self._queue]
            for h in pending:
                h.cancel()
            self._cv.notify_all()
        for h in self.running:
            h.cancel()
        deadline = None if timeout is None else time.monotonic() + timeout
        for lane in self._lanes:
            lane.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(lane.thread.is_alive() for lane in self._lanes)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
