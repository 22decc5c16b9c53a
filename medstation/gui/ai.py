"""The viewer's side of AI: the engine (started lazily, off the GUI thread), the chosen
detector model, detection runs for the open series, the result cache and reviews.

torch is imported only when AI is first needed, on a worker thread, so the
viewer starts fast and the GUI thread never waits on it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from medstation.core.errors import CancelledError, MedstationError, ModelError
from medstation.core.findings import Finding

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


class AiController(QObject):
    """Owned by the main window. Signals arrive on the main thread."""

    findings_changed = Signal()  # state.findings replaced (a run ended, a cache hit, a review)
    detection_started = Signal(str)  # series key
    detection_finished = Signal(str, object)  # series key, DetectionRun (or None from the cache)
    detection_failed = Signal(str, object)  # series key, the exception
    progress = Signal(int, int)
    model_changed = Signal()
    engine_ready = Signal()

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.state = window.state
        self.db = window.db
        self.settings = window.settings
        self.engine = None
        self.bridge = None
        self.status_widget = None
        self._engine_task = None
        self._new_engine = None
        self._pending: list = []  # calls waiting for the engine
        self.handle = None  # the running detection job
        self._handle_key = ""
        self.model_dir: Path | None = None
        self.manifest: dict | None = None
        self.last_run = None
        self._choose_initial_model()

    # -- settings ---------------------------------------------------------------------
    @property
    def auto_detect(self) -> bool:
        return str(self.settings.value("ai/auto_detect", "true")).lower() in ("1", "true", "yes")

    def set_auto_detect(self, on: bool) -> None:
        self.settings.setValue("ai/auto_detect", "true" if on else "false")

    @property
    def device_preference(self) -> str:
        return str(self.settings.value("ai/device", "auto"))

    # -- model --------------------------------------------------------------------------
    def _choose_initial_model(self) -> None:
        from medstation.ai.store import default_detector_dir, read_manifest

        chosen = self.settings.value("ai/model", "")
        for candidate in ([Path(chosen)] if chosen else []) + [None]:
            try:
                path = candidate or default_detector_dir()
                self.manifest = read_manifest(path)
                self.model_dir = path
                return
            except ModelError as exc:
                log.warning("model %s not usable: %s", candidate, exc)
        self.model_dir, self.manifest = None, None

    @property
    def model_label(self) -> str:
        if not self.manifest:
            return "no detector model"
        return f"{self.manifest['name']} {self.manifest['version']}"

    def operating_threshold(self) -> float:
        """The score threshold at 1 false positive per scan from the model's evaluation, else 0.5."""
        froc = ((self.manifest or {}).get("metrics") or {}).get("froc") or {}
        return float(froc.get("threshold_at_1fp", 0.5))

    def set_model(self, path: str | Path) -> None:
        """Switch to the model in ``path`` once it has loaded (hash checked, no pickle, known
        architecture) on a worker thread; on a ``ModelError`` the previous model stays in use."""
        path = Path(path)

        def check(progress, cancel):
            from medstation.ai.store import load_detector

            return load_detector(path, "cpu").manifest

        def done(manifest) -> None:
            self.model_dir, self.manifest = path, manifest
            self.settings.setValue("ai/model", str(path))
            self.model_changed.emit()
            series_key = self.state.series_key
            if series_key and self.state.volume is not None:
                self.series_opened(series_key)

        def failed(exc) -> None:
            self.model_changed.emit()  # the panel shows the model still in use

        self.window.run_task(check, "model-check", "Loading the model", on_done=done, on_error=failed)

    # -- engine --------------------------------------------------------------------------
    def _with_engine(self, call) -> None:
        if self.engine is not None:
            call()
            return
        self._pending.append(call)
        if self._engine_task is not None:
            return

        pref = self.device_preference

        def start(progress, cancel):
            from medstation.ai.engine import Engine, choose_device

            engine = Engine([choose_device(pref)], cpu_threads=cpu_threads_for_gui())
            self._new_engine = engine  # shutdown() finds it even if ready() never ran
            return engine

        def ready(engine) -> None:
            from medstation.gui.bridge import EngineBridge, EngineStatus

            self._engine_task = None
            self.engine = engine
            self.bridge = EngineBridge(engine, self)
            self.bridge.job_event.connect(self._on_job_event)
            self.status_widget = EngineStatus(self.bridge, self.window)
            self.window.statusBar().addPermanentWidget(self.status_widget)
            self.engine_ready.emit()
            pending, self._pending = self._pending, []
            for c in pending:
                c()

        def failed(exc) -> None:
            self._engine_task = None
            self._pending.clear()
            self.detection_failed.emit(self.state.series_key, exc)

        self._engine_task = self.window.run_task(start, "ai-engine", "Starting the AI engine", on_done=ready,
                                                 show_progress=False, on_error=failed)

    # -- detection ------------------------------------------------------------------------
    def cached(self, series_key: str) -> list[Finding] | None:
        if not self.manifest or not series_key:
            return None
        rows = self.db.ai_result(series_key, self.manifest["name"], self.manifest["version"],
                                 self.manifest["sha256"])
        return None if rows is None else [Finding.from_dict(r) for r in rows]

    def series_opened(self, series_key: str) -> None:
        """Called when a series has loaded: show cached findings, or run if the setting says so."""
        cached = self.cached(series_key)
        if cached is not None:
            self.state.set_findings(cached)
            self.findings_changed.emit()
            self.detection_finished.emit(series_key, None)
        elif self.auto_detect and self.model_dir is not None:
            self.detect()

    def detect(self, force: bool = False) -> None:
        """Run the detector on the open series (from the cache unless ``force``)."""
        key = self.state.series_key
        volume = self.state.volume
        if volume is None or not key:
            return
        if self.model_dir is None:
            self.detection_failed.emit(key, ModelError("no detector model is installed",
                                                       "reinstall medstation or train one"))
            return
        if not force:
            cached = self.cached(key)
            if cached is not None:
                self.state.set_findings(cached)
                self.findings_changed.emit()
                self.detection_finished.emit(key, None)
                return
        if self.handle is not None and not self.handle.done() and self._handle_key == key:
            return  # already running for this series
        self.cancel()
        self._with_engine(lambda: self._submit(key, volume))

    def _submit(self, key: str, volume) -> None:
        if self.state.series_key != key:  # the reader moved on while the engine started
            return
        model_dir = self.model_dir
        sha = self.manifest["sha256"]

        def job(ctx):
            from medstation.ai.store import load_detector

            cache_key = ("detector", str(model_dir), sha)
            detector = ctx.models.get(cache_key)
            if detector is None:
                detector = ctx.models[cache_key] = load_detector(model_dir, ctx.device)
            return detector.detect(volume, progress=ctx.progress, partial=ctx.partial, check=ctx.check)

        self._handle_key = key
        self.handle = self.bridge.submit(job, name="Detecting lesions")
        self.detection_started.emit(key)

    def cancel(self) -> None:
        if self.handle is not None and not self.handle.done():
            self.handle.cancel()

    def _on_job_event(self, handle, kind: str, payload) -> None:
        if handle is not self.handle:
            return
        key = self._handle_key
        if kind == "progress":
            self.progress.emit(*payload)
        elif kind == "done":
            run = payload
            self.last_run = run
            findings = run.findings
            if self.manifest:
                self.db.save_ai_result(key, self.manifest["name"], self.manifest["version"],
                                       self.manifest["sha256"], [f.to_dict() for f in findings])
            if self.state.series_key == key:
                self.state.set_findings(findings)
                self.findings_changed.emit()
            self.detection_finished.emit(key, run)
        elif kind in ("failed", "cancelled"):
            if kind == "failed" and not isinstance(payload, (MedstationError, CancelledError)):
                log.error("detection failed", exc_info=payload)
            self.detection_failed.emit(key, payload)

    # -- reviews -------------------------------------------------------------------------------
    def review(self, finding: Finding, status: str) -> None:
        """Accept / reject (``""`` clears): stored with the model version, used for fine-tuning."""
        if not self.manifest or not self.state.series_key:
            return
        finding.status = status
        self.db.review_finding(self.state.series_key, finding.model_name or self.manifest["name"],
                               finding.model_version or self.manifest["version"], finding.to_dict(), status)
        self.state.changed.emit("findings")
        self.findings_changed.emit()

    # -- closing ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        if self._engine_task is not None:
            self._engine_task.join(60)
        for engine in {id(e): e for e in (self.engine, self._new_engine) if e is not None}.values():
            engine.shutdown(30)
        self.engine = self._new_engine = None
