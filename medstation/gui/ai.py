"""The viewer's side of AI: the detector in use, detection runs for the open series, the result
cache, partial results drawn as they arrive, and the reader's reviews stored.

Jobs are ``ai.jobs.DetectJob``s on the engine service (``gui/engine.py``); their
events arrive on the GUI thread. Findings go into the view model's findings
layer (``state.findings``); what the reader decides there is stored here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from medstation.ai.engine import JobEvent
from medstation.core.errors import CancelledError, MedstationError, ModelError
from medstation.core.findings import Finding

log = logging.getLogger(__name__)


class AiController(QObject):
    """Signals arrive on the main thread."""

    findings_changed = Signal()  # the findings layer was filled (a run ended, a cache hit, partials)
    detection_started = Signal(str)  # series key
    detection_finished = Signal(str, object)  # series key, DetectionRun (or None from the cache)
    detection_failed = Signal(str, object)  # series key, the exception
    progress = Signal(str, int, int)  # series key, slices done, slices of the series
    model_changed = Signal()

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.ctx = ctx
        self.state = ctx.state
        self.findings = ctx.state.findings
        self.db = ctx.db
        self.settings = ctx.settings
        self.handle = None  # the running detection job
        self._handle_key = ""
        #: the running job's model (name, version, fingerprint): its results are cached under it
        #: and shown only while it is still the model in use
        self._handle_model: tuple[str, str, str] | None = None
        self.version = None  # registry.ModelVersion in use
        self.last_run = None
        self.partials = 0  # partial results drawn during the last run
        self._choose_initial_model()
        ctx.engine.failed.connect(lambda exc: self.detection_failed.emit(self.state.series_key, exc))
        ctx.engine.ready.connect(lambda bridge: bridge.job_event.connect(self._on_job_event))
        self.findings.reviewed.connect(self._store_review)

    # -- settings ---------------------------------------------------------------------------------
    @property
    def auto_detect(self) -> bool:
        return str(self.settings.value("ai/auto_detect", "true")).lower() in ("1", "true", "yes")

    def set_auto_detect(self, on: bool) -> None:
        self.settings.setValue("ai/auto_detect", "true" if on else "false")

    # -- model --------------------------------------------------------------------------------------
    def _choose_initial_model(self) -> None:
        try:
            self.version = self.ctx.registry.default("detection")
        except ModelError as exc:
            log.warning("no detector model: %s", exc)
            self.version = None

    @property
    def model_dir(self) -> Path | None:
        return self.version.path if self.version is not None else None

    @property
    def manifest(self) -> dict | None:
        return self.version.manifest.raw if self.version is not None else None

    @property
    def model_label(self) -> str:
        return self.version.label if self.version is not None else "no detector model"

    def operating_threshold(self) -> float:
        """The score threshold at 1 false positive per scan from the model's evaluation, else 0.5."""
        return self.version.manifest.threshold if self.version is not None else 0.5

    def set_model(self, spec: str | Path) -> None:
        """Use the model ``spec`` (a directory or ``name@version``) once it has loaded (hash checked,
        no pickle, known architecture) on a worker thread; it becomes the registry's detection
        model in use. On a ``ModelError`` the previous model stays in use."""
        registry = self.ctx.registry

        def check(progress, cancel):
            from medstation.ai.store import load_detector

            version = registry.resolve(spec, "detection")
            load_detector(version.path, "cpu")
            return registry.use(version.path)

        def done(version) -> None:
            self.version = version
            if self.handle is not None and not self.handle.done() and self._handle_model != self._cache_key():
                self.cancel()  # a run of the model left: its findings would be shown under this one's name
            self.model_changed.emit()
            if self.state.series_key and self.state.volume is not None:
                if self.cached(self.state.series_key) is None:
                    self.findings.clear()  # the previous model's findings are not this one's
                    self.findings_changed.emit()
                self.series_opened(self.state.series_key)

        def failed(exc) -> None:
            self.model_changed.emit()  # the panel shows the model still in use

        self.ctx.run_task(check, "model-check", "Loading the model", on_done=done, on_error=failed)

    # -- detection ------------------------------------------------------------------------------------
    def _cache_key(self) -> tuple[str, str, str]:
        m = self.version.manifest
        return m.name, m.version, m.fingerprint  # the weights and the whole manifest (its calibration)

    def cached(self, series_key: str) -> list[Finding] | None:
        if self.version is None or not series_key:
            return None
        rows = self.db.ai_cache.findings(series_key, *self._cache_key())
        return None if rows is None else [Finding.from_dict(r) for r in rows]

    def _show_cached(self, key: str, cached: list[Finding]) -> None:
        self.findings.set_items(cached)
        self.link_series(key)
        self.findings_changed.emit()
        self.detection_finished.emit(key, None)

    def link_series(self, key: str) -> None:
        """Link each finding to the same lesion in the study's other series, from their cached
        results (``core.linking``)."""
        from medstation.core.linking import link_series
        from medstation.core.series import SeriesRef

        ref = self.state.ref
        if self.version is None or ref is None or not self.findings.items:
            return
        rows = self.db.index.series()
        study = next((r.study_uid for r in rows if r.series_uid == ref.series_uid), "")
        labels = {r.series_uid: f"#{r.series_number if r.series_number is not None else '?'}"
                  for r in rows if r.study_uid == study and r.series_uid != ref.series_uid}
        cached = [(k, [Finding.from_dict(d) for d in self.db.ai_cache.findings(k, *self._cache_key()) or []])
                  for k in self.db.ai_cache.keys(*self._cache_key())
                  if SeriesRef.parse(k).series_uid in labels]  # only this study's series are read
        self.findings.set_links(link_series(key, self.findings.items, cached, labels))

    def series_opened(self, series_key: str) -> None:
        """Called when a series has loaded: show cached findings, or run if the setting says so."""
        cached = self.cached(series_key)
        if cached is not None:
            self._show_cached(series_key, cached)
        elif self.auto_detect and self.version is not None:
            self.detect()

    def detect(self, force: bool = False) -> None:
        """Run the detector on the open series (from the cache unless ``force``)."""
        key = self.state.series_key
        volume = self.state.volume
        if volume is None or not key:
            return
        if self.version is None:
            self.detection_failed.emit(key, ModelError("no detector model is installed",
                                                       "reinstall medstation or train one"))
            return
        if not force:
            cached = self.cached(key)
            if cached is not None:
                self._show_cached(key, cached)
                return
        if self.running_for(key) and self._handle_model == self._cache_key():
            return  # already running for this series with this model
        self.cancel()
        self.ctx.engine.when_ready(lambda: self._submit(key, volume))

    def _submit(self, key: str, volume) -> None:
        from medstation.ai.jobs import DetectJob, ModelRef

        if self.state.series_key != key:  # the reader moved on while the engine started
            return
        self._handle_key = key
        self._handle_model = self._cache_key()
        self.partials = 0
        self.handle = self.ctx.engine.submit(DetectJob(volume, ModelRef.of(self.version)))
        self.detection_started.emit(key)

    def running_for(self, key: str) -> bool:
        """A detection of series ``key`` is running."""
        return self.handle is not None and not self.handle.done() and self._handle_key == key

    def cancel(self) -> None:
        if self.handle is not None and not self.handle.done():
            self.handle.cancel()

    def _on_job_event(self, handle, kind: JobEvent, payload) -> None:
        if handle is not self.handle:
            return
        key = self._handle_key
        current = self.version is not None and self._handle_model == self._cache_key()
        if kind == JobEvent.PROGRESS:
            self.progress.emit(key, *payload)
        elif kind == JobEvent.PARTIAL:
            if self.state.series_key == key and not handle.cancel_requested and current:
                self.partials += 1
                self.findings.set_items(payload.findings, partial=True)
                self.findings_changed.emit()
        elif kind == JobEvent.DONE:
            run = payload
            self.last_run = run
            if self._handle_model is not None:  # under the model that made them, never the one now in use
                self.db.ai_cache.save(key, *self._handle_model, [f.to_dict() for f in run.findings])
            if self.state.series_key == key and current:
                self.findings.set_items(run.findings)
                self.state.heatmap.set_heatmap(getattr(run, "heatmap", None))
                self.link_series(key)
                self.findings_changed.emit()
            self.detection_finished.emit(key, run)
        elif kind in (JobEvent.FAILED, JobEvent.CANCELLED):
            if kind == JobEvent.FAILED and not isinstance(payload, (MedstationError, CancelledError)):
                log.error("detection failed", exc_info=payload)
            if self.state.series_key == key and self.findings.partial:
                self.findings.clear()  # a stopped run's partial findings are not a result
            self.detection_failed.emit(key, payload)

    # -- reviews ---------------------------------------------------------------------------------------
    def review(self, finding: Finding, status: str) -> None:
        """Accept / reject (``""`` clears): stored with the model version, used for fine-tuning."""
        self.findings.review(finding, status)

    def correct_extent(self, finding: Finding | None = None) -> None:
        """Accept the (selected) finding and put a nodule label on it, at its centre with its
        measured diameter, on the axial slice through it: the reader drags its edge to the true
        extent. The label wins over the accepted finding in the label list (``dicom.labels``)."""
        from medstation.imaging import Measurement

        f = finding or self.findings.selected
        vol = self.state.volume
        if f is None or vol is None:
            return
        if f.status != "accepted":
            self.review(f, "accepted")
        k, i, j = f.center_voxel
        r_px = f.size.mm / 2 / abs(float(vol.spacing[2]))  # the size the list shows
        m = Measurement("nodule", 0, int(round(k)), [(float(k), float(i), float(j)),
                                                    (float(k), float(i), float(j) + r_px)])
        self.state.set_position((k, i, j))
        self.state.add_measurement(m)

    def _store_review(self, finding: Finding, status: str) -> None:
        if self.version is None or not self.state.series_key or self.findings.partial:
            return
        m = self.version.manifest
        self.db.annotations.review_finding(self.state.series_key, finding.model_name or m.name,
                               finding.model_version or m.version, finding.to_dict(), status)
        self.findings_changed.emit()
