"""A small pool of worker processes for parsing and decoding untrusted files.

Why not ``concurrent.futures.ProcessPoolExecutor``: one worker that dies breaks
the whole executor, and it has no per-task timeout. Here every worker has its
own pipe; the caller's thread dispatches one task per worker and waits on the
pipes and the process sentinels together, so:

* a task that takes longer than ``timeout`` has its worker killed and
  replaced, and becomes a ``LoadError`` for that file;
* a worker that dies (a decoder segfault, the memory cap) is replaced, and
  its task becomes a ``LoadError``;
* any exception inside a task comes back as a ``LoadError`` (typed errors
  pass through unchanged).

Workers cap their own address space (``RLIMIT_AS``) so a decoder that
explodes fails inside the worker, not in the app.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait

from medstation.core.errors import CancelledError, LoadError

DEFAULT_TIMEOUT = 30.0
DEFAULT_MEMORY_CAP = 3 * 1024**3
_START_TIMEOUT = 120.0


def _context():
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        # the fork server imports the decoders once; each worker forks from it
        ctx.set_forkserver_preload(["medstation.dicom._tasks"])
        return ctx
    return mp.get_context("spawn")


def _worker_main(conn, memory_cap: int) -> None:
    """Loop of a worker process: receive (task id, function, args), send back a result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _quiet_stderr()
    _cap_memory(memory_cap)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    conn.send(("ready", os.getpid()))  # task deadlines start only once a worker is up
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, func, args = msg
        try:
            result = ("ok", func(*args))
        except LoadError as exc:
            result = ("err", exc)
        except MemoryError:
            result = ("err", LoadError(_path_of(args), "decoding needs more memory than the "
                                       f"per-file cap ({memory_cap / 1024**3:.1f} GiB)",
                                       "the file is damaged or too large; re-export it"))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # any decoder bug (even a Rust panic) becomes a typed error
            text = " ".join(str(exc).split())[:300]
            result = ("err", LoadError(_path_of(args), f"cannot decode: {type(exc).__name__}"
                                       + (f": {text}" if text else ""),
                                       "the file is damaged or uses an unsupported encoding"))
        try:
            conn.send((task_id, *result))
        except Exception as exc:  # result could not be pickled / sent
            conn.send((task_id, "err", LoadError(_path_of(args), f"internal error: {exc}")))


def _quiet_stderr() -> None:
    """Decoder libraries print to stderr on bad data (a Rust panic prints a whole backtrace): every
    failure already comes back as a typed LoadError, so a worker's stderr goes nowhere.
    ``MEDSTATION_WORKER_STDERR=1`` keeps it, for debugging a decoder."""
    if os.environ.get("MEDSTATION_WORKER_STDERR") == "1":
        return
    os.environ["RUST_BACKTRACE"] = "0"
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def _path_of(args) -> str:
    first = args[0] if args else ""
    return str(getattr(first, "path", first))


def _cap_memory(cap: int) -> None:
    if cap <= 0:
        return
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = current + cap
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass  # not Linux: no cap, the timeout still applies


@dataclass
class _Worker:
    process: mp.Process
    conn: object
    task: tuple | None = None  # (task id, item index, deadline)


class WorkerPool:
    """Worker processes with a per-task timeout and memory cap.

    Parameters
    ----------
    workers
        Number of processes (default: the number of CPUs, at most 4).
    timeout
        Seconds one task may take before its worker is killed.
    memory_cap
        Bytes of address space a worker may add once started.
    """

    def __init__(self, workers: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                 memory_cap: int = DEFAULT_MEMORY_CAP) -> None:
        self.size = max(1, workers or min(4, os.cpu_count() or 1))
        self.timeout = timeout
        self.memory_cap = memory_cap
        self._ctx = _context()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # one map() at a time
        self._closed = False
        self._next_id = 0
        self.replaced = 0  # workers killed or dead and replaced (for reports and tests)
        self._deaths_in_a_row = 0  # guards against a crash loop of workers that cannot start

    # -- life cycle -------------------------------------------------------
    def start(self) -> WorkerPool:
        """Start the workers now (otherwise they start on first use)."""
        with self._lock:
            self._ensure_workers()
        return self

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        p = self._ctx.Process(target=_worker_main, args=(child, self.memory_cap),
                              daemon=True, name="medstation-loader")
        p.start()
        child.close()
        # Wait for the handshake, so a slow start (the fork server importing the
        # decoders on a busy machine) never counts against a file's timeout.
        ready = False
        try:
            ready = parent.poll(_START_TIMEOUT) and parent.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            p.kill()
            p.join(timeout=5)
            raise LoadError(None, f"a loader worker process did not start within {_START_TIMEOUT:g} s",
                            "check the installation and free memory, then try again")
        return _Worker(p, parent)

    def _ensure_workers(self) -> None:
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        while len(self._workers) < self.size:
            self._workers.append(self._spawn())

    def _replace(self, w: _Worker) -> None:
        self._deaths_in_a_row += 1
        if self._deaths_in_a_row > 3 * self.size + 5:
            raise LoadError(None, "the loader worker processes keep dying on start-up",
                            "check the installation (python -m medstation info --help) and memory")
        with contextlib.suppress(Exception):
            w.process.kill()
        w.process.join(timeout=5)
        with contextlib.suppress(Exception):
            w.conn.close()
        self._workers.remove(w)
        self.replaced += 1
        self._workers.append(self._spawn())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for w in self._workers:
                with contextlib.suppress(Exception):
                    w.conn.send(None)
            deadline = time.monotonic() + 2
            for w in self._workers:
                w.process.join(timeout=max(0.0, deadline - time.monotonic()))
                if w.process.is_alive():
                    w.process.kill()
                    w.process.join(timeout=2)
                with contextlib.suppress(Exception):
                    w.conn.close()
            self._workers.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    # -- work -------------------------------------------------------------
    def map_unordered(
        self,
        func: Callable,
        items: Iterable,
        *,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Iterator[tuple[int, object]]:
        """Run ``func(item)`` for every item in the workers.

        Yields ``(index, result)`` as tasks finish, where ``result`` is the
        return value or a ``LoadError``. Raises ``CancelledError`` once
        ``cancel`` is set (tasks in flight are let finish and dropped).
        """
        timeout = self.timeout if timeout is None else timeout
        items = list(items)
        with self._lock:
            self._ensure_workers()
            pending = list(range(len(items)))[::-1]  # pop() from the end = first item
            busy: dict[int, _Worker] = {}
            cancelled = False
            while pending or busy:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    pending.clear()
                # hand out tasks to idle workers
                for w in self._workers:
                    if not pending:
                        break
                    if w.task is None:
                        index = pending.pop()
                        self._next_id += 1
                        try:
                            w.conn.send((self._next_id, func, (items[index],)))
                        except (OSError, ValueError):
                            pending.append(index)
                            self._replace(w)
                            break
                        w.task = (self._next_id, index, time.monotonic() + timeout)
                        busy[self._next_id] = w
                if not busy:
                    continue
                now = time.monotonic()
                next_deadline = min(w.task[2] for w in busy.values())
                waitables = []
                for w in busy.values():
                    waitables += [w.conn, w.process.sentinel]
                ready = wait(waitables, timeout=max(0.0, min(next_deadline - now, 0.25)))
                ready_set = set(ready) if ready else set()
                for task_id, w in list(busy.items()):
                    _, index, deadline = w.task
                    result = None
                    done = False
                    if w.conn in ready_set:
                        try:
                            rid, status, value = w.conn.recv()
                            if rid == task_id:
                                result, done = value, True
                                self._deaths_in_a_row = 0
                        except (EOFError, OSError):
                            pass
                        if not done:  # pipe broken: the worker died mid-send
                            result = self._died(w, items[index])
                            done = True
                    elif w.process.sentinel in ready_set or not w.process.is_alive():
                        result = self._died(w, items[index])
                        done = True
                    elif time.monotonic() > deadline:
                        result = LoadError(_path_of((items[index],)),
                                           f"reading the file took longer than {timeout:g} s "
                                           "and was stopped",
                                           "the file is damaged or its encoding is unsupported")
                        self._replace(w)
                        done = True
                    if done:
                        busy.pop(task_id, None)
                        w.task = None
                        if not cancelled:
                            yield index, result
            if cancelled:
                raise CancelledError("loading was cancelled")

    def _died(self, w: _Worker, item) -> LoadError:
        w.process.join(timeout=1)
        code = w.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
        else:
            how = f"exit code {code}"
        self._replace(w)
        return LoadError(_path_of((item,)), f"the decoder crashed ({how})",
                         "the file is damaged or triggers a decoder bug; re-export it")
