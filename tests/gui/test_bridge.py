"""Engine events arrive as Qt signals on the main thread; the status widget follows the running job."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread

from medstation.ai import Engine
from medstation.gui.bridge import EngineBridge, EngineStatus


@pytest.fixture
def bridge(qtbot):
    engine = Engine(["cpu"])
    yield EngineBridge(engine)
    assert engine.shutdown(10)


def test_events_arrive_on_the_main_thread_in_order(qtbot, bridge):
    seen = []
    main = QThread.currentThread()
    bridge.job_event.connect(lambda h, kind, payload: seen.append((kind, payload,
                                                                   QThread.currentThread() is main)))

    def job(ctx):
        for k in range(3):
            ctx.partial(k)
            ctx.progress(k + 1, 3)
        return "ok"

    with qtbot.waitSignal(bridge.job_event, timeout=10000,
                          check_params_cb=lambda h, kind, payload: kind == "done"):
        handle = bridge.submit(job, name="detect")
    assert handle.result(1) == "ok"
    kinds = [k for k, _p, _m in seen]
    assert kinds == ["started", "partial", "progress", "partial", "progress", "partial", "progress", "done"]
    assert all(on_main for _k, _p, on_main in seen)


def test_failures_and_cancel_reach_the_gui(qtbot, bridge):
    with qtbot.waitSignal(bridge.job_event, timeout=10000,
                          check_params_cb=lambda h, kind, payload: kind == "failed") as sig:
        bridge.submit(lambda ctx: 1 / 0, name="bad")
    assert isinstance(sig.args[2], ZeroDivisionError)

    status = EngineStatus(bridge)
    qtbot.addWidget(status)
    status.show()
    started = threading.Event()

    def long_job(ctx):
        ctx.progress(1, 10)
        started.set()
        while True:
            ctx.check()
            threading.Event().wait(0.005)

    with qtbot.waitSignal(bridge.job_event, timeout=10000,
                          check_params_cb=lambda h, kind, payload: kind == "progress"):
        bridge.submit(long_job, name="detect nodules")
    assert started.wait(5)
    qtbot.waitUntil(lambda: "detect nodules" in status.label.text(), timeout=5000)
    assert "CPU" in status.label.text() and status.cancel.isVisible() and status.bar.value() == 1
    with qtbot.waitSignal(bridge.job_event, timeout=10000,
                          check_params_cb=lambda h, kind, payload: kind == "cancelled"):
        status.cancel.click()
    qtbot.waitUntil(lambda: not status.cancel.isVisible(), timeout=5000)
