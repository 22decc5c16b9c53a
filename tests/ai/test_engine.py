"""The inference engine: ordering, priority, progress and partials, cancel, failures, shutdown."""

from __future__ import annotations

import threading

import pytest

from medstation.ai import BACKGROUND, INTERACTIVE, Engine, choose_device
from medstation.core.errors import CancelledError, ModelError


@pytest.fixture
def engine():
    e = Engine(["cpu"])
    yield e
    assert e.shutdown(10)
    assert not [t for t in threading.enumerate() if t.name.startswith("medstation-lane")]


def _blocker(engine):
    """A job that holds the lane until released, so later jobs queue up behind it."""
    go, running = threading.Event(), threading.Event()

    def hold(ctx):
        running.set()
        assert go.wait(10)
        return "held"

    handle = engine.submit(hold, name="blocker")
    assert running.wait(10)
    return handle, go


def test_jobs_run_in_order_within_a_priority_and_interactive_overtakes(engine):
    order = []
    blocker, go = _blocker(engine)
    handles = [engine.submit(lambda ctx, n=n: order.append(f"bg{n}"), name=f"bg{n}", priority=BACKGROUND)
               for n in range(3)]
    handles += [engine.submit(lambda ctx, n=n: order.append(f"ui{n}"), name=f"ui{n}", priority=INTERACTIVE)
                for n in range(2)]
    assert engine.queue_length == 5
    go.set()
    for h in handles:
        h.result(10)
    assert blocker.result(10) == "held"
    assert order == ["ui0", "ui1", "bg0", "bg1", "bg2"]
    assert engine.queue_length == 0


def test_progress_and_partial_results_arrive_in_order_then_the_result(engine):
    events = []

    def job(ctx):
        for k in range(4):
            ctx.check()
            ctx.partial({"chunk": k})
            ctx.progress(k + 1, 4)
        return "all"

    blocker, go = _blocker(engine)
    h = engine.submit(job, name="chunks")
    h.subscribe(lambda kind, payload: events.append((kind, payload)))
    go.set()
    assert h.result(10) == "all"
    assert events[0] == ("started", "cpu")
    assert [p for k, p in events if k == "partial"] == [{"chunk": k} for k in range(4)]
    assert [p for k, p in events if k == "progress"] == [(k, 4) for k in range(1, 5)]
    assert events[-1] == ("done", "all")
    assert h.state == "done" and h.progress_value == (4, 4) and len(h.partials) == 4


def test_cancel_a_queued_job_and_a_running_job(engine):
    blocker, go = _blocker(engine)
    queued = engine.submit(lambda ctx: "never", name="queued")
    queued.cancel()
    assert engine.queue_length == 0
    started = threading.Event()

    def long_job(ctx):
        started.set()
        while True:
            ctx.check()
            threading.Event().wait(0.005)

    running = engine.submit(long_job, name="long")
    go.set()
    assert started.wait(10)
    running.cancel()
    with pytest.raises(CancelledError):
        running.result(10)
    with pytest.raises(CancelledError):
        queued.result(10)
    assert (queued.state, running.state) == ("cancelled", "cancelled")
    assert engine.submit(lambda ctx: 42).result(10) == 42  # the lane is still serving


def test_an_exception_in_a_job_is_its_own_and_the_lane_goes_on(engine):
    def bad(ctx):
        raise ValueError("broken input")

    events = []
    h = engine.submit(bad, name="bad")
    h.subscribe(lambda kind, payload: events.append(kind))
    with pytest.raises(ValueError, match="broken input"):
        h.result(10)
    assert h.state == "failed"
    # a listener that raises does not kill the lane either
    h2 = engine.submit(lambda ctx: ctx.progress(1, 1) or "fine")
    h2.subscribe(lambda kind, payload: 1 / 0)
    assert h2.result(10) == "fine"
    assert engine.submit(lambda ctx: "next").result(10) == "next"


def test_models_are_cached_per_lane(engine):
    def load(ctx):
        return ctx.models.setdefault("detector", object())

    assert engine.submit(load).result(10) is engine.submit(load).result(10)


def test_shutdown_cancels_queued_work_and_joins_every_lane():
    e = Engine(["cpu", "cpu"])
    blockers = [_blocker(e) for _ in range(2)]
    pending = [e.submit(lambda ctx: None, priority=BACKGROUND) for _ in range(5)]
    for _h, go in blockers:
        go.set()
    assert e.shutdown(10)
    assert all(h.done() for h in pending)
    assert not [t for t in threading.enumerate() if t.name.startswith("medstation-lane")]
    with pytest.raises(RuntimeError):
        e.submit(lambda ctx: None)


def test_device_choice():
    import torch

    assert choose_device("cpu") == "cpu"
    best = choose_device()
    assert best == ("cuda" if torch.cuda.is_available() else best)
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="not available"):
            choose_device("cuda")
