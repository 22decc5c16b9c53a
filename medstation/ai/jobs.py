"""Job types for the inference engine, built from a volume and a model version.

A job is an immutable request that the engine's device lane calls as
``job(ctx)``: it loads its model through the lane's cache (``ctx.models``, one
copy per device), reports ``ctx.progress(done, total)``, streams partial
results with ``ctx.partial(...)`` and calls ``ctx.check()`` between chunks, so
a cancel takes effect within one chunk.

* :class:`DetectJob` -- lesion detection; partial results are
  :class:`PartialFindings` (the findings of the slices done so far).

A new job type (segmentation of one finding, tracking across priors, follow-up
prediction) is one more frozen dataclass here with ``name``, ``priority`` and
``__call__(ctx)``; the GUI submits it through the bridge like ``DetectJob``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medstation.ai.engine import INTERACTIVE, JobContext
from medstation.core.findings import Finding
from medstation.core.volume import Volume

#: partial findings are re-grouped at most this often (grouping all slices so far costs ~10 ms)
PARTIAL_EVERY_S = 0.25


@dataclass(frozen=True)
class ModelRef:
    """The model version a job runs: its directory and the weights' sha256 (the cache key)."""

    path: Path
    sha256: str
    name: str = ""
    version: str = ""

    @classmethod
    def of(cls, version) -> ModelRef:
        """From a ``registry.ModelVersion``."""
        m = version.manifest
        return cls(Path(version.path), m.sha256, m.name, m.version)


def cached_detector(ctx: JobContext, model: ModelRef):
    """The lane's copy of the detector (loaded, hash-checked, on the lane's device, once)."""
    from medstation.ai.store import load_detector

    key = ("detector", str(model.path), model.sha256)
    detector = ctx.models.get(key)
    if detector is None:
        detector = ctx.models[key] = load_detector(model.path, ctx.device)
    return detector


@dataclass(frozen=True)
class PartialFindings:
    """Findings of the slices the detector has done so far (final ids and scores may change)."""

    findings: list[Finding]
    done: int
    total: int


@dataclass(frozen=True)
class DetectJob:
    """Find lesions in ``volume`` with ``model``; the result is a ``detector.DetectionRun``."""

    volume: Volume = field(repr=False)
    model: ModelRef
    name: str = "Detecting lesions"
    priority: int = INTERACTIVE
    partial_every_s: float = PARTIAL_EVERY_S

    def __call__(self, ctx: JobContext) -> Any:
        from medstation.ai.postprocess import group_slices

        detector = cached_detector(ctx, self.model)
        slices: list = []
        state = {"last": 0.0, "done": 0, "total": 0}

        def progress(done: int, total: int) -> None:
            state["done"], state["total"] = done, total
            ctx.progress(done, total)

        def partial(found: list) -> None:
            slices.extend(found)
            now = time.monotonic()
            if now - state["last"] < self.partial_every_s:
                return
            state["last"] = now
            findings = group_slices(slices, self.volume, detector.name, detector.version)
            ctx.partial(PartialFindings(findings, state["done"], state["total"]))

        return detector.detect(self.volume, progress=progress, partial=partial, check=ctx.check)


@dataclass(frozen=True)
class PredictJob:
    """Each track of a follow-up ``report`` predicted at ``date`` by the follow-up model at ``model_dir``:
    a copy of the report with ``prediction`` / ``prediction_withheld`` on every track."""

    report: dict = field(repr=False)
    date: str = ""
    model_dir: str = ""
    name: str = "Predicting the lesions' course"
    priority: int = INTERACTIVE

    def __call__(self, ctx: JobContext) -> Any:
        import copy

        from medstation.ai.followup import add_predictions
        from medstation.ai.predictor import load_predictor

        key = ("followup", self.model_dir)
        predictor = ctx.models.get(key)
        if predictor is None:
            predictor = ctx.models[key] = load_predictor(self.model_dir)
        report = copy.deepcopy(self.report)
        add_predictions(report, predictor, self.date)
        return report
