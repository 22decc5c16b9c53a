"""Job types on the engine: a DetectJob streams partial findings per chunk and stops within one chunk."""

from __future__ import annotations

import threading

import pytest

from medstation.ai.engine import Engine
from medstation.ai.jobs import DetectJob, ModelRef, PartialFindings
from medstation.ai.registry import ModelRegistry
from medstation.core.errors import CancelledError
from tests.ai.test_store import tiny_model  # noqa: F401 (fixture)


@pytest.fixture
def engine():
    e = Engine(["cpu"], cpu_threads=1)
    yield e
    assert e.shutdown(30)


def _ref(path):
    return ModelRef.of(ModelRegistry(path.parent, path.parent / "user").resolve(str(path)))


def test_partials_arrive_per_chunk_before_the_result(engine, tiny_model, small_volume):  # noqa: F811
    path, _ = tiny_model
    volume, _ = small_volume
    events = []
    job = DetectJob(volume, _ref(path), partial_every_s=0.0)
    handle = engine.submit(job, name=job.name, priority=job.priority,
                           on_event=lambda h, kind, payload: events.append((kind, payload)))
    run = handle.result(120)
    kinds = [k for k, _ in events]
    partials = [p for k, p in events if k == "partial"]
    progress = [p for k, p in events if k == "progress"]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert partials and all(isinstance(p, PartialFindings) for p in partials)
    assert len(partials) == len(progress) == -(-run.slices_run // 8)  # one per chunk of 8 slices
    assert kinds.index("partial") < kinds.index("done")
    assert progress[-1] == (volume.shape[0], volume.shape[0])  # in the series' slices, not the model's
    # the model is loaded once per lane and reused by the next job
    assert len(engine._lanes[0].models) == 1
    engine.submit(job, name="again").result(120)
    assert len(engine._lanes[0].models) == 1


def test_cancel_takes_effect_within_one_chunk(engine, tiny_model, small_volume):  # noqa: F811
    path, _ = tiny_model
    volume, _ = small_volume
    first = threading.Event()
    chunks = []

    def on_event(handle, kind, payload):
        if kind == "progress":
            chunks.append(payload)
            handle.cancel()
            first.set()

    job = DetectJob(volume, _ref(path), partial_every_s=0.0)
    handle = engine.submit(job, name=job.name, on_event=on_event)
    with pytest.raises(CancelledError):
        handle.result(120)
    assert first.is_set() and len(chunks) == 1 and handle.state == "cancelled"
