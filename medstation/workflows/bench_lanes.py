"""What ``bench infer`` and ``bench followup`` add beside their quiet figures: the same work with busy
processes beside it (``--contend N``), and the detector network on onnxruntime against torch.

- **Contention.** ``busy(n)`` starts ``n`` processes that spin on one core each, as other jobs on a
  desktop do, and stops them however the block ends. The detector is timed with its adaptive team
  (``Detector.adapt_threads``: threads sized per batch to the free cores) and with a fixed team of
  the quiet thread count, interleaved, against the quiet median of the same command.
- **Lanes.** The network part of a detection (backbone + head on the batches ``Detector.detect``
  runs: the lung crops of 8 slices, normalised and padded by the model's own transform) on torch
  (channels-last, as the detector runs it), on onnxruntime and on OpenVINO's CPU plugin (both on the
  ``models export --onnx`` graph; OpenVINO when installed: the ``bench`` extra), the same threads,
  interleaved, outputs compared.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SPIN = "while True:\n    sum(range(10000))\n"
#: a detection beside 2 busy processes on 2 cores: a fair share is 2x its quiet time
CONTENDED_TARGET_RATIO = 2.5
#: onnxruntime becomes the CPU lane only when it is at least this much faster (issue 31)
LANE_SWITCH_RATIO = 1.3


@contextlib.contextmanager
def busy(n: int):
    procs = [subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL) for _ in range(int(n))]
    try:
        time.sleep(0.5 if procs else 0.0)  # let them take their cores
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def contended_detection(detector, volume, n: int, rounds: int, quiet_s: float, ticks) -> dict:
    """Detection beside ``n`` busy processes: adaptive and fixed teams interleaved, with a GUI-like
    thread ticking (``ticks(stop, late)``, the render bench's stand-in) during the adaptive runs."""
    import threading

    adaptive, fixed, late, used = [], [], [], []
    keep = detector.adapt_threads
    try:
        with busy(n):
            for _ in range(max(1, rounds)):
                detector.adapt_threads = False
                t0 = time.perf_counter()
                detector.detect(volume)
                fixed.append(time.perf_counter() - t0)
                detector.adapt_threads = True
                stop = threading.Event()
                gui = threading.Thread(target=ticks, args=(stop, late), daemon=True)
                gui.start()
                t0 = time.perf_counter()
                run = detector.detect(volume)
                adaptive.append(time.perf_counter() - t0)
                stop.set()
                gui.join()
                used = run.threads
    finally:
        detector.adapt_threads = keep
    a, f = statistics.median(adaptive), statistics.median(fixed)
    return {"busy_processes": n, "quiet_detect_s": round(quiet_s, 2),
            "adaptive_detect_s": round(a, 2), "fixed_threads_detect_s": round(f, 2),
            "adaptive_ratio_vs_quiet": round(a / quiet_s, 2), "fixed_ratio_vs_quiet": round(f / quiet_s, 2),
            "target_ratio": CONTENDED_TARGET_RATIO, "threads_per_batch": used,
            "gui_tick_late_p95_ms": round(float(np.percentile(late, 95)) * 1000, 1) if late else None}


def _batches(detector, volume, batch_size: int = 8) -> list[torch.Tensor]:
    """The normalised, padded batches ``Detector.detect`` gives the network for ``volume``."""
    from medstation.ai.preprocess import prepare, stack_channels

    prep = prepare(volume, detector.input_spec)
    out = []
    for start in range(0, len(prep.kept), batch_size):
        chunk = prep.kept[start:start + batch_size]
        stacked = stack_channels(prep.images, chunk, detector.channels)
        boxes = [prep.slice_boxes.get(m) for m in chunk]
        images = [x if b is None else x[:, b[0]:b[1], b[2]:b[3]] for x, b in zip(stacked, boxes)]
        out.append(detector.model.transform(images)[0].tensors)
    return out


def lanes(detector, volume, rounds: int = 2) -> dict:
    """torch against onnxruntime on the network part of one detection (same batches, same threads)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"onnxruntime": None, "note": "onnxruntime is not installed (pip install '.[onnx]')"}
    from medstation.ai.export import _DetectorCore, export_detector

    threads = torch.get_num_threads()
    batches = _batches(detector, volume)
    core = _DetectorCore(detector.model, detector.channels).eval()
    mean, std = core.mean, core.std
    with tempfile.TemporaryDirectory(prefix="medstation-bench-lanes-") as tmp:
        path = Path(tmp) / "detector.onnx"
        export_detector(detector, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = [(b * std + mean).numpy() for b in batches]  # ONNX normalises inside the graph

        def run_torch():
            with torch.inference_mode():
                return [core.head(list(core.backbone(b.to(memory_format=torch.channels_last)).values()))
                        for b in batches]

        def run_ort():
            return [session.run(None, {"slices": x}) for x in feeds]

        run_ov = _openvino_lane(path, threads, feeds)
        runners = {"torch": run_torch, "onnxruntime": run_ort, **({"openvino": run_ov} if run_ov else {})}
        for run in runners.values():  # warm-up
            run()
        times: dict[str, list[float]] = {k: [] for k in runners}
        got: dict[str, list] = {}
        for _ in range(max(1, rounds)):  # interleaved
            for name, run in runners.items():
                t0 = time.perf_counter()
                got[name] = run()
                times[name].append(time.perf_counter() - t0)
    tt = statistics.median(times["torch"])
    out = {"onnxruntime": ort.__version__, "threads": threads, "batches": len(batches),
           "slices": int(sum(b.shape[0] for b in batches)), "torch_network_s": round(tt, 3),
           "switch_at": LANE_SWITCH_RATIO}
    best = ""
    for name in runners:
        if name == "torch":
            continue
        worst = 0.0
        for a, b in zip(got["torch"], got[name]):
            for head, other in zip(("cls_logits", "bbox_regression", "bbox_ctrness"), b):
                worst = max(worst, float(np.max(np.abs(a[head].numpy() - other))))
        t = statistics.median(times[name])
        out.update({f"{name}_network_s": round(t, 3), f"{name}_speedup": round(tt / t, 2),
                    f"{name}_max_abs_difference" if name != "onnxruntime" else "max_abs_difference": worst})
        if tt / t >= LANE_SWITCH_RATIO and (not best or t < statistics.median(times[best])):
            best = name
    if run_ov is None:
        out["openvino"] = None
        out["openvino_note"] = "OpenVINO is not installed (pip install '.[bench]')"
    else:
        import openvino

        out["openvino"] = openvino.__version__
    out["verdict"] = (f"{best} is faster by the switch ratio" if best else
                      f"torch stays the CPU lane (no runtime is {LANE_SWITCH_RATIO}x faster)")
    return out


def _openvino_lane(onnx_path: Path, threads: int, feeds: list):
    """OpenVINO's CPU plugin on the same ONNX graph (latency hint, the same threads, fp32); None when
    OpenVINO is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None
    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()

    def run():
        return [list(request.infer({0: x}).values()) for x in feeds]

    return run
