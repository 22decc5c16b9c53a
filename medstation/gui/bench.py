"""``medstation bench render``: time per scroll frame of the real viewer widget, offscreen.

A frame is what one wheel notch costs: the next slice is windowed (lookup table)
and drawn with its corner text, orientation letters, scale bar and two
measurements (a length and an ellipse ROI with statistics). The baseline,
measured in the same run on the same widget, is the floor of the display
path: repainting an already-windowed slice with no text or measurements, so
the ratio is what windowing a new slice and the overlays add on top of
putting 512x512 pixels on the screen. A thick-slab MIP frame (10 mm: 8 slices
of the bench volume projected for every frame) is timed in the same rounds, so
its cost shows beside the plain frame. The bench draws two measurements on every
slice, and a slab draws those of every slice it covers (16 here, not 2): most of
what the slab frame adds is that text, the projection itself is about 0.2 ms.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from medstation.core.volume import AXIAL, Volume

TARGET_MS = 8.0
SLAB_MM = 10.0


def bench_volume(size: int, slices: int = 24) -> Volume:
    from medstation.synth import ChestPhantom
    from medstation.synth.phantom import random_nodules

    rng = np.random.default_rng(1)
    ph = ChestPhantom(seed=1)
    ph.nodules = random_nodules(ph, rng, 6, z_range=(-25.0, 15.0))
    spacing = 360.0 / size
    x = (np.arange(size) - size / 2) * spacing
    zs = np.arange(slices) * 1.25 - 20
    vox = np.empty((slices, size, size), np.int16)
    for k, z in enumerate(zs):
        noise = rng.normal(0, 12, (size, size))
        vox[k] = np.clip(ph.render_slice(z, x, x) + noise, -1024, 3000).astype(np.int16)
    return Volume(vox, spacing=(1.25, spacing, spacing), origin=(x[0], x[0], zs[0]),
                  direction=AXIAL.copy(), modality="CT", units="HU", windows=[(-600, 1500, "LUNG")])


def _frames(view, state, plane, n: int) -> list[float]:
    from PySide6.QtWidgets import QApplication

    times = []
    for f in range(n):
        d = state.depth(plane)
        t0 = time.perf_counter()
        state.step(plane, 1 if d < plane.depth - 1 else -d)
        view.repaint()
        times.append((time.perf_counter() - t0) * 1000)
        if f % 20 == 0:
            QApplication.processEvents()
    return times


def _contended_frames(args, view, state, plane, n: int, quiet: list[float]) -> dict:
    """The same frames while a detection runs on a worker thread of this process (as the inference
    engine's lane does beside the GUI thread: adaptive torch and ITK teams) and ``args.contend`` busy
    processes spin beside it; against the quiet frames of the same run."""
    import tempfile
    import threading
    from pathlib import Path

    from medstation.ai.registry import open_detector
    from medstation.core.errors import CancelledError
    from medstation.dicom import WorkerPool
    from medstation.workflows.bench import _generate, _load
    from medstation.workflows.bench_lanes import busy

    detector, _ = open_detector(None, "cpu", 0)
    with tempfile.TemporaryDirectory(prefix="medstation-bench-render-") as tmp, WorkerPool() as pool:
        volume = _load(_generate(Path(tmp), 120, 512), pool)
    stop = threading.Event()
    runs: list[float] = []

    def halt() -> None:
        if stop.is_set():
            raise CancelledError("the render bench is done")

    def lane() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                detector.detect(volume, check=halt)
            except CancelledError:
                return
            runs.append(time.perf_counter() - t0)

    frames: list[float] = []
    worker = threading.Thread(target=lane, name="inference-lane", daemon=True)
    with busy(args.contend):
        worker.start()
        time.sleep(0.5)  # into the detection
        try:
            while len(frames) < n:
                frames += _frames(view, state, plane, 10)
                if not worker.is_alive():
                    break
        finally:
            stop.set()
            worker.join()
    med, quiet_med = statistics.median(frames), statistics.median(quiet)
    return {"busy_processes": args.contend, "detections_completed_beside": len(runs), "frames": len(frames),
            "median_ms": round(med, 3), "p95_ms": round(float(np.percentile(frames, 95)), 3),
            "max_ms": round(max(frames), 3), "quiet_median_ms": round(quiet_med, 3),
            "ratio_vs_quiet": round(med / quiet_med, 3)}


def run_render(args) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QPointF

    from medstation.imaging import Measurement

    from .app import create_app
    from .slice_view import SliceView
    from .state import ViewState

    app = create_app()
    vol = bench_volume(args.size)
    state = ViewState()
    state.set_volume(vol, info={"patient": "Bench Phantom", "patient_id": "BENCH",
                                "study": "2026-01-01", "series": "CT #1 bench"})
    state.reset_window()
    view = SliceView(state, "axial")
    view.resize(900, 900)
    view.show()
    app.processEvents()
    plane = state.planes["axial"]
    c = args.size / 2
    for k in range(plane.depth):  # the measurements are visible on every slice
        state.measurements.append(Measurement("length", 0, k, [(k, c - 60, c - 80), (k, c + 40, c + 70)]))
        state.measurements.append(Measurement("ellipse", 0, k, [(k, c - 30, c + 20), (k, c + 10, c + 90)]))
    view._update_hover(QPointF(450, 450))  # the cursor readout is drawn too

    def floor_frames(n: int) -> list[float]:
        view.show_overlays = False
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            view.repaint()
            times.append((time.perf_counter() - t0) * 1000)
        view.show_overlays = True
        return times

    def slab_frames(n: int) -> list[float]:
        state.set_slab("mip", SLAB_MM)
        times = _frames(view, state, plane, n)
        state.set_slab("off")
        return times

    _frames(view, state, plane, 20)  # warm-up
    slab_frames(10)
    ours, floor, slab = [], [], []
    rounds = 4
    per = max(10, args.frames // rounds)
    for _ in range(rounds):  # interleaved, so all see the same machine state
        ours += _frames(view, state, plane, per)
        floor += floor_frames(per)
        slab += slab_frames(per)
    contended = _contended_frames(args, view, state, plane, per * rounds, ours) if getattr(
        args, "contend", None) is not None else None
    med, base = statistics.median(ours), statistics.median(floor)
    slab_med = statistics.median(slab)
    report = {
        "size": args.size, "widget": [view.width(), view.height()], "frames": len(ours),
        "median_ms": round(med, 3), "p95_ms": round(float(np.percentile(ours, 95)), 3),
        "baseline_redraw_only_median_ms": round(base, 3), "ratio_vs_baseline": round(med / base, 3),
        "slab_mip_mm": SLAB_MM, "slab_mip_median_ms": round(slab_med, 3),
        "slab_mip_p95_ms": round(float(np.percentile(slab, 95)), 3),
        "slab_mip_ratio_vs_plain_frame": round(slab_med / med, 3),
        "target_ms": TARGET_MS, "ratio_vs_target": round(med / TARGET_MS, 3),
        "platform": os.environ.get("QT_QPA_PLATFORM", ""),
        "contended": contended,
    }
    view.close()
    return report
