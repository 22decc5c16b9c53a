"""The one place where inference-engine events become Qt signals on the main thread."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from medstation.ai.engine import INTERACTIVE, Engine, JobEvent, JobHandle


class EngineBridge(QObject):
    """Submit jobs through this; their events arrive as ``job_event(handle, kind, payload)``.

    The engine calls back on its lane threads; emitting a signal of this QObject
    (which lives on the main thread) from there queues the call to the main thread.
    """

    job_event = Signal(object, object, object)  # handle, JobEvent, payload
    changed = Signal()  # queue length or running job changed

    def __init__(self, engine: Engine, parent=None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.job_event.connect(lambda *_: self.changed.emit())

    def submit(self, fn, *, name: str, priority: int = INTERACTIVE) -> JobHandle:
        handle = self.engine.submit(fn, name=name, priority=priority, on_event=self._relay)
        self.changed.emit()
        return handle

    def _relay(self, handle: JobHandle, kind: JobEvent, payload: Any) -> None:
        self.job_event.emit(handle, kind, payload)


class EngineStatus(QWidget):
    """Status-bar widget: device, queue length, the running job's progress, and Cancel."""

    def __init__(self, bridge: EngineBridge, parent=None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.label = QLabel(self)
        self.bar = QProgressBar(self)
        self.bar.setMaximumWidth(140)
        self.cancel = QPushButton("Cancel AI job", self)
        self.cancel.clicked.connect(self._cancel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel)
        bridge.changed.connect(self.refresh)
        self.refresh()

    def _cancel(self) -> None:
        for h in self.bridge.engine.running:
            h.cancel()

    def refresh(self) -> None:
        engine = self.bridge.engine
        running = [h for h in engine.running if not h.done()]  # a lane clears its job after "done"
        queued = engine.queue_length
        text = f"AI on {', '.join(d.upper() for d in engine.devices)}"
        if queued:
            text += f" · {queued} queued"
        if running:
            h = running[0]
            done, total = h.progress_value
            text += f" · {h.name}"
            self.bar.setRange(0, max(total, 0))
            self.bar.setValue(done)
        self.label.setText(text)
        self.bar.setVisible(bool(running))
        self.cancel.setVisible(bool(running))
