"""``ChildProcessTask``: a medstation CLI entry run as a child process, its JSON lines as events.

Training (and any other work that may run for hours, exhaust memory or crash)
never runs in the viewer's process: it runs as ``medstation <command> ...`` in a
child process (``QProcess``, so every signal arrives on the GUI thread without
a thread of ours). Each line the child writes on stdout that is a JSON object
becomes ``event(dict)``; objects with ``done``/``total`` or ``step``/``steps``
also become ``progress(done, total)``. Other stdout lines are ignored; the last
lines of stderr are kept for the report.

``cancel()`` asks the child to stop (SIGTERM: ``medstation train-detector``
saves its checkpoint and exits), then kills it if it is still running after
``grace_s``. ``finished(ChildResult)`` reports the exit status, whether it was
cancelled or crashed, and the tail of stderr.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

STDERR_LINES = 40


def medstation_command(args: list[str]) -> tuple[str, list[str]]:
    """The program and arguments that run ``medstation ARGS`` here (source tree or bundle)."""
    if getattr(sys, "frozen", False):  # the PyInstaller bundle: the executable is medstation itself
        return sys.executable, list(args)
    return sys.executable, ["-m", "medstation", *args]


@dataclass
class ChildResult:
    exit_code: int
    cancelled: bool = False
    crashed: bool = False  # killed by a signal, or could not start
    stderr_tail: str = ""
    events: int = 0
    last_event: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.cancelled and not self.crashed

    def describe(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.ok:
            return "finished"
        last = self.stderr_tail.strip().splitlines()[-1] if self.stderr_tail.strip() else ""
        how = "crashed" if self.crashed else f"failed (exit code {self.exit_code})"
        return how + (f": {last}" if last else "")


class ChildProcessTask(QObject):
    """Run ``program args`` (default: ``medstation ARGS``) and report its JSON-lines progress."""

    event = Signal(dict)
    progress = Signal(int, int)
    finished = Signal(object)  # ChildResult

    def __init__(self, args: list[str], *, program: str | None = None, name: str = "child",
                 grace_s: float = 10.0, env: dict[str, str] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.name = name
        self.grace_s = float(grace_s)
        self.program, self.args = (program, list(args)) if program else medstation_command(args)
        self.events: list[dict] = []
        self.result: ChildResult | None = None
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._buffer = b""
        self._cancelled = False
        self.process = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")
        for k, v in (env or {}).items():
            environment.insert(k, v)
        self.process.setProcessEnvironment(environment)
        self.process.readyReadStandardOutput.connect(self._read_stdout)
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self._kill_timer = QTimer(self, singleShot=True)
        self._kill_timer.timeout.connect(self._kill)

    def start(self) -> ChildProcessTask:
        self.process.start(self.program, self.args)
        return self

    @property
    def running(self) -> bool:
        return self.process.state() != QProcess.NotRunning

    def cancel(self) -> None:
        """SIGTERM now (the child saves what it can), SIGKILL after ``grace_s`` seconds."""
        if not self.running:
            return
        self._cancelled = True
        self.process.terminate()
        self._kill_timer.start(int(self.grace_s * 1000))

    def _kill(self) -> None:
        if self.running:
            self.process.kill()

    def wait(self, ms: int = 30000) -> bool:
        """Block until the child ends (for shutdown and tests only; never on a user action)."""
        return self.process.waitForFinished(ms) if self.running else True

    # -- output --------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self._line(raw)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text.startswith("{"):
            return
        try:
            ev = json.loads(text)
        except ValueError:
            return
        if not isinstance(ev, dict):
            return
        self.events.append(ev)
        self.event.emit(ev)
        for done, total in (("done", "total"), ("step", "steps")):
            if isinstance(ev.get(done), int) and isinstance(ev.get(total), int):
                self.progress.emit(ev[done], ev[total])
                break

    def _read_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                self._stderr.append(line.rstrip())

    def _finished(self, code: int, status) -> None:
        self._kill_timer.stop()
        self._read_stdout()
        if self._buffer:
            self._line(self._buffer)
            self._buffer = b""
        self._read_stderr()
        crashed = status == QProcess.CrashExit
        self._report(ChildResult(int(code) if not crashed else -1, self._cancelled,
                                 crashed and not self._cancelled, "\n".join(self._stderr), len(self.events),
                                 self.events[-1] if self.events else {}))

    def _error(self, error) -> None:
        if error == QProcess.FailedToStart:
            self._stderr.append(f"could not start {self.program}: {self.process.errorString()}")
            self._report(ChildResult(-1, False, True, "\n".join(self._stderr)))

    def _report(self, result: ChildResult) -> None:
        if self.result is None:
            self.result = result
            self.finished.emit(result)

