"""The window driven against a stub engine (the real queue and lane, jobs answered without torch).

The stub answers a DetectJob in three chunks, each a partial result; the test
holds it between chunks to see partial findings drawn and listed before the run
ends, the final findings cached, a cancel clear what was partial, and torch never
imported for any of it.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

import pytest
from PySide6.QtCore import QPointF

from medstation.ai.engine import Engine
from medstation.ai.jobs import DetectJob, PartialFindings
from tests.conftest import nodule_finding
from tests.gui.conftest import import_and_wait, open_and_wait


@dataclass
class StubRun:
    findings: list
    seconds: dict = field(default_factory=lambda: {"total": 0.01})
    device: str = "stub"


class StubEngine(Engine):
    """A real engine whose DetectJobs are answered by ``answer`` in chunks, a gate between them."""

    def __init__(self) -> None:
        super().__init__(["stub"])
        self.gate = threading.Semaphore(0)
        self.jobs: list[DetectJob] = []

    def submit(self, fn, **kw):
        if isinstance(fn, DetectJob):
            self.jobs.append(fn)
            fn = self._answer(fn)
        return super().submit(fn, **kw)

    def _answer(self, job: DetectJob):
        def run(ctx):
            volume = job.volume
            found = [nodule_finding(volume, score=0.92), nodule_finding(volume, finding_id="F2", score=0.61)]
            for f in found:  # as a real detector stamps them: the job's model
                f.model_name, f.model_version = job.model.name, job.model.version
            for n in range(1, 4):
                ctx.check()
                ctx.partial(PartialFindings(found[: min(n, 2)], n, 3))
                ctx.progress(n, 3)
                assert self.gate.acquire(timeout=30), "the test did not release the chunk"
                ctx.check()
            return StubRun(found)

        return run


@pytest.fixture
def stub_window(qtbot, small_study):
    from medstation.gui.app import build_window

    engines: list[StubEngine] = []

    def factory(_device):
        engines.append(StubEngine())
        return engines[-1]

    win = build_window(engine_factory=factory)
    win.ai.set_auto_detect(False)
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    import_and_wait(qtbot, win, [small_study.folder])
    open_and_wait(qtbot, win, small_study.series[0].series_uid)
    yield win, engines
    for e in engines:
        for _ in range(10):
            e.gate.release()
    win.shutdown()
    win.close()


def test_partial_findings_are_drawn_as_they_arrive_then_cached(qtbot, stub_window):
    win, engines = stub_window
    torch_before = "torch" in sys.modules
    layer, panel = win.state.findings, win.findings
    with qtbot.waitSignal(win.ai.findings_changed, timeout=30000):
        win.ai.detect(force=True)
    engine = engines[0]
    assert layer.partial and [f.finding_id for f in layer.items] == ["F1"]
    assert panel.tree.topLevelItemCount() == 1 and "so far" in panel.status.text()
    # while it runs a candidate has no id, score or size: they change as neighbouring slices arrive
    row = panel.tree.topLevelItem(0)
    assert [row.text(c) for c in range(3)] == ["…", "…", "pending"] and row.text(4) == "candidate"
    assert "ids, scores and sizes when the run ends" in panel.status.text()
    assert engine.jobs[0].volume is win.state.volume and engine.jobs[0].model.name == "nodule-detector"
    axial = win.viewer.views["axial"]
    k = layer.items[0].center_slice
    win.state.set_position((k, *win.state.position[1:]))
    assert axial.finding_rects(axial.plane, k)  # drawn while the run goes on
    with qtbot.waitSignal(win.ai.findings_changed, timeout=30000):
        engine.gate.release()
    assert [f.finding_id for f in layer.items] == ["F1", "F2"] and layer.partial
    with qtbot.waitSignal(win.ai.detection_finished, timeout=30000) as sig:
        engine.gate.release()
        engine.gate.release()
    assert sig.args[1].device == "stub" and not layer.partial and len(layer.items) == 2
    assert panel.tree.topLevelItem(0).text(0) == "F1" and panel.tree.topLevelItem(0).text(1) == "0.92"
    assert win.ai.partials == 3
    # reviews go to the database with the model version; a reopen comes from the cache
    layer.review(layer.items[0], "accepted")
    assert [r["status"] for r in win.db.annotations.reviewed_findings()] == ["accepted"]
    with qtbot.waitSignal(win.ai.detection_finished, timeout=30000) as sig:
        win.ai.detect()
    assert sig.args[1] is None and layer.items[0].status == "accepted"
    assert len(engine.jobs) == 1
    assert ("torch" in sys.modules) == torch_before  # the stub engine needs no torch
    # the thick series of the same study: its findings are linked to the thin series' ones
    open_and_wait(qtbot, win, win.db.index.series()[1].series_uid)
    with qtbot.waitSignal(win.ai.detection_finished, timeout=30000):
        win.ai.detect(force=True)
        for _ in range(3):
            engine.gate.release()
    thin_number = win.db.index.series()[0].series_number
    both = [f"#{thin_number} F1", f"#{thin_number} F2"]  # the stub puts both at the same nodule
    assert layer.links == {"F1": both, "F2": both}
    assert win.findings.tree.topLevelItem(0).text(5) == ", ".join(both)


def test_cancel_stops_within_a_chunk_and_clears_partial_findings(qtbot, stub_window):
    win, engines = stub_window
    layer = win.state.findings
    with qtbot.waitSignal(win.ai.findings_changed, timeout=30000):
        win.ai.detect(force=True)
    assert layer.partial and layer.items
    with qtbot.waitSignal(win.ai.detection_failed, timeout=30000) as sig:
        win.ai.cancel()
        engines[0].gate.release()
    assert type(sig.args[1]).__name__ == "CancelledError"
    assert not layer.items and not layer.partial
    assert win.findings.status.text() == "Detection cancelled."
    m = win.ai.version.manifest
    assert win.db.ai_cache.findings(win.state.series_key, m.name, m.version, m.sha256) is None


def test_a_run_on_another_series_says_nothing_in_this_ones_panel(qtbot, stub_window):
    """The findings panel shows its own series' job: a detection still running on the series read
    before does not write its progress, its end or its cancel over the one now open."""
    win, engines = stub_window
    with qtbot.waitSignal(win.ai.findings_changed, timeout=30000):
        win.ai.detect(force=True)
    first = win.state.series_key
    open_and_wait(qtbot, win, win.db.index.series()[1].series_uid)
    assert win.state.series_key != first
    before = win.findings.status.text()
    assert "Detecting" not in before
    with qtbot.waitSignal(win.ai.progress, timeout=30000) as sig:
        engines[0].gate.release()
    assert sig.args[0] == first and win.findings.status.text() == before
    with qtbot.waitSignal(win.ai.detection_finished, timeout=30000):
        engines[0].gate.release()
        engines[0].gate.release()
    assert win.findings.status.text() == before and win.findings.run_button.isEnabled()


def test_the_eta_appears_once_the_rate_is_known():
    from medstation.gui.findings import eta_text

    assert eta_text(1.9, 10, 100) == ""  # under 2 s: no rate yet
    assert eta_text(5.0, 0, 100) == ""
    assert eta_text(5.0, 100, 100) == ""  # done
    assert eta_text(5.0, 10, 100) == " · about 45 s left"
    assert eta_text(20.0, 10, 100) == " · about 3 min left"


def test_jumping_to_a_finding_while_zoomed_puts_it_in_the_middle_of_the_view(qtbot, stub_window):
    from tests.conftest import nodule_finding

    win, _engines = stub_window
    st, view = win.state, win.viewer.active
    f = nodule_finding(st.volume)
    st.findings.set_items([f])
    view.zoom_by(4.0)
    k, i, j = f.center_voxel
    # pan so the finding sits just inside the bottom-right corner, under the scale bar
    r, c, _ = view.plane.to_plane(f.center_voxel)
    at = view.to_widget(r, c)
    view._pan += QPointF(view.width() - 45, view.height() - 45) - at
    st.findings.select(None)
    st.findings.select(f)  # what a click in the list, "." or "," does
    at = view.to_widget(*view.plane.to_plane(f.center_voxel)[:2])
    assert abs(at.x() - view.width() / 2) < 2 and abs(at.y() - view.height() / 2) < 2
    assert st.depth(view.plane) == int(round(k)) and view.zoom_factor() > 1.5  # the zoom is kept


def test_switching_the_model_mid_run_never_shows_or_caches_one_models_findings_as_anothers(
        qtbot, stub_window, tmp_path):
    """A run of the built-in model is going when the reader picks another version: that run is
    cancelled (nothing cached under either name), the panel is cleared, and the next run is the
    chosen model's, drawn, listed and cached under its own name with its own ``model_version``."""
    import json
    import shutil

    from medstation.ai.store import builtin_models_dir

    win, engines = stub_window
    layer = win.state.findings
    other = win.ctx.registry.user_dir / "nodule-detector-1.1.1-test"
    other.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(builtin_models_dir() / "nodule-detector", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["version"] = "1.1.1-test"
    (other / "manifest.json").write_text(json.dumps(manifest))
    first = win.ai._cache_key()
    with qtbot.waitSignal(win.ai.findings_changed, timeout=30000):
        win.ai.detect(force=True)
    assert layer.partial and layer.items
    with qtbot.waitSignal(win.ai.model_changed, timeout=60000):
        win.ai.set_model("nodule-detector@1.1.1-test")
    for _ in range(3):  # the first run may go on to its end: it must not end as the new model's
        engines[0].gate.release()
    qtbot.waitUntil(lambda: win.ai.handle is None or win.ai.handle.done(), timeout=20000)
    qtbot.wait(200)  # its last events delivered
    while engines[0].gate.acquire(blocking=False):  # what the cancelled run did not take back
        pass
    second = win.ai._cache_key()
    assert second[1] == "1.1.1-test" and second != first
    assert not layer.items  # the built-in model's findings are gone from the panel
    key = win.state.series_key
    assert win.db.ai_cache.findings(key, *first) is None and win.db.ai_cache.findings(key, *second) is None
    with qtbot.waitSignal(win.ai.detection_finished, timeout=30000):
        win.ai.detect(force=True)
        for _ in range(3):
            engines[0].gate.release()
    assert engines[0].jobs[-1].model.version == "1.1.1-test"
    assert layer.items and {f.model_version for f in layer.items} == {"1.1.1-test"}
    cached = win.db.ai_cache.findings(key, *second)
    assert cached and {f["model_version"] for f in cached} == {"1.1.1-test"}
    assert win.db.ai_cache.findings(key, *first) is None
