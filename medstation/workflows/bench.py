"""``medstation bench infer``: the detector end to end against a plain slice loop, interleaved.

Input: a generated 300-slice 512x512 chest CT written as DICOM. Per round:

* medstation: load (header scan + decode) + ``Detector.detect`` (resample,
  lung crop and slice skip, batched channels-last inference, 3D grouping);
* baseline: the same network on the same resampled volume, every slice, full
  field of view, one slice per call in a plain Python loop under
  ``torch.no_grad()`` (what a first script would do).

Also measured: the torch thread count for the inference lane while a
GUI-like thread ticks every 10 ms (how late its ticks come).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

TARGET_S = 20.0
GPU_TARGET_S = 2.0
SPEEDUP_TARGET = 2.0


def _generate(folder: Path, slices: int, size: int) -> Path:
    from medstation.synth import ChestPhantom, Nodule, SeriesSpec, write_study

    ph = ChestPhantom(seed=21, nodules=[Nodule((-60.0, 0.0, -10.0), 12.0), Nodule((70.0, 20.0, 40.0), 8.0),
                                        Nodule((-80.0, 30.0, -90.0), 6.0)])
    spec = SeriesSpec(description="bench infer", slices=slices, rows=size, columns=size,
                      pixel_spacing=360.0 / size, slice_thickness=1.0, z_center=-20.0)
    truth = write_study(folder, ph, series=[spec], seed=21)
    return Path(truth.series[0].files[0]).parent


def _load(folder: Path, pool):
    from medstation.dicom import open_series

    files = sorted(str(p) for p in folder.iterdir() if p.name != "truth.json")
    return open_series(files, pool=pool).volume


def baseline_loop(detector, volume) -> int:
    """The same network, every resampled slice, whole field of view, one call per slice."""
    from medstation.ai.preprocess import prepare, stack_channels

    full = prepare(volume, dict(detector.input_spec), crop_to_lungs=False).images
    with torch.no_grad():
        for m in range(full.shape[0]):
            detector.model([stack_channels(full, [m], detector.channels)[0].to(detector.device)])
    return int(full.shape[0])


def _gui_ticks(stop: threading.Event, lateness: list[float]) -> None:
    """A GUI-like thread: every 10 ms, 1 ms of numpy work; records how late each tick is."""
    a = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    nxt = time.perf_counter()
    while not stop.is_set():
        nxt += 0.010
        delay = nxt - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        lateness.append(max(0.0, time.perf_counter() - nxt))
        np.sqrt(a)  # a little drawing-like work


def run_infer(args) -> dict:
    from medstation.ai.registry import open_detector
    from medstation.dicom import WorkerPool

    detector, _ = open_detector(args.model, args.device, args.threads)
    out: dict = {"model": f"{detector.name} {detector.version}", "device": str(detector.device),
                 "slices": args.slices, "size": args.size, "rounds": args.rounds,
                 "cpu_threads_default": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="medstation-bench-infer-") as tmp, WorkerPool() as pool:
        folder = _generate(Path(tmp), args.slices, args.size)
        _load(folder, pool)  # warm the page cache and the workers
        volume = _load(folder, pool)
        detector.detect(volume)  # warm-up: allocator, kernels
        other = None
        if getattr(args, "against", None):  # another version, the same CT and threads, interleaved
            other, _ = open_detector(args.against, args.device, args.threads)
            other.detect(volume)
        ours, loads, base, nets, net_only = [], [], [], [], []
        theirs: dict[str, list[float]] = {"detect": [], "network": []}
        runs = None
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            vol = _load(folder, pool)
            t1 = time.perf_counter()
            run = detector.detect(vol)
            t2 = time.perf_counter()
            loads.append(t1 - t0)
            ours.append(t2 - t0)
            nets.append(t2 - t1)
            net_only.append(run.seconds["network"])
            runs = run
            if other is not None:
                t4 = time.perf_counter()
                their = other.detect(vol)
                theirs["detect"].append(time.perf_counter() - t4)
                theirs["network"].append(their.seconds["network"])
            t3 = time.perf_counter()
            n_base = baseline_loop(detector, vol)
            base.append(time.perf_counter() - t3)
        # thread count for the inference lane with a GUI thread ticking beside it
        threads = {}
        for n in sorted({1, 2, max(1, torch.get_num_threads())}):
            torch.set_num_threads(n)
            stop = threading.Event()
            late: list[float] = []
            gui = threading.Thread(target=_gui_ticks, args=(stop, late), daemon=True)
            gui.start()
            t0 = time.perf_counter()
            detector.detect(volume)
            dt = time.perf_counter() - t0
            stop.set()
            gui.join()
            threads[str(n)] = {"detect_s": round(dt, 2),
                               "gui_tick_late_p95_ms": round(float(np.percentile(late, 95)) * 1000, 1),
                               "gui_tick_late_max_ms": round(max(late) * 1000, 1)}
        torch.set_num_threads(out["cpu_threads_default"])
        from medstation.workflows.bench_lanes import contended_detection, lanes

        if getattr(args, "contend", 0) and detector.device.type == "cpu":
            out["contended"] = contended_detection(detector, volume, args.contend, args.rounds,
                                                   statistics.median(nets), _gui_ticks)
        if detector.device.type == "cpu" and not getattr(args, "no_lanes", False):
            out["lanes"] = lanes(detector, volume, args.rounds)
    end_to_end = statistics.median(ours)
    detect_s = statistics.median(nets)
    baseline = statistics.median(base)
    assert runs is not None
    target = GPU_TARGET_S if detector.device.type == "cuda" else TARGET_S
    out.update({
        "end_to_end_s": round(end_to_end, 2),
        "load_s": round(statistics.median(loads), 2),
        "detect_s": round(detect_s, 2),
        "detect_breakdown_s": {k: round(v, 2) for k, v in runs.seconds.items()},
        "model_slices": runs.slices_total,
        "model_slices_run": runs.slices_run,
        "findings": len(runs.findings),
        "target_s": target,
        "ratio_vs_target": round(end_to_end / target, 3),
        "baseline_plain_loop_s": round(baseline, 2),
        "baseline_slices": n_base,
        "speedup_vs_baseline": round(baseline / detect_s, 2),
        "speedup_target": SPEEDUP_TARGET,
        "threads_with_gui_thread": threads,
        "network_s": round(statistics.median(net_only), 2),
    })
    if other is not None:
        out["against"] = {
            "model": f"{other.name} {other.version}",
            "detect_s": round(statistics.median(theirs["detect"]), 2),
            "network_s": round(statistics.median(theirs["network"]), 2),
            # this model's network time over the other's, the same CT and threads, interleaved
            "network_ratio": round(statistics.median(net_only)
                                   / max(statistics.median(theirs["network"]), 1e-9), 3),
            "detect_ratio": round(detect_s / max(statistics.median(theirs["detect"]), 1e-9), 3),
        }
    return out


def run_followup(args) -> dict:
    """A 3-timepoint follow-up of ``args.slices``-slice CTs: registration per pair, matching, the whole."""
    from medstation.ai.followup import match_pair
    from medstation.ai.registry import open_detector
    from medstation.synth.cohort import write_cohort_patient
    from medstation.workflows.followup import follow

    detector, _ = open_detector(args.model, args.device, args.threads)
    with tempfile.TemporaryDirectory(prefix="medstation-bench-followup-") as tmp:
        truth = write_cohort_patient(Path(tmp), seed=70100, timepoints=args.timepoints, slices=args.slices)
        paths = [Path(tmp) / tp["date"] for tp in truth.timepoints]
        follow(paths[:1], detector)  # warm-up: workers, kernels
        t0 = time.perf_counter()
        report, tracks = follow(paths, detector)
        total = time.perf_counter() - t0
        contended = None
        if getattr(args, "contend", 0):  # the same follow-up beside N busy processes
            from medstation.workflows.bench_lanes import busy

            with busy(args.contend):
                t0 = time.perf_counter()
                again, _ = follow(paths, detector)
                took = time.perf_counter() - t0
            contended = {"busy_processes": args.contend, "followup_total_s": round(took, 2),
                         "ratio_vs_quiet": round(took / total, 2),
                         "registration_seconds": [r["seconds"] for r in again["registrations"]]}
    regs = [r["seconds"] for r in report["registrations"]]
    # matching alone, timed on the findings of the run (registration excluded)
    from medstation.core.findings import Finding
    from medstation.imaging.registration import Registration

    def as_findings(i):
        return [Finding(f"F{k}", tuple(m["center_patient"]), (0, 0, 0), m["diameter_mm"], 1.0, (0, 0),
                        m["volume_mm3"], mean_diameter_mm=m["diameter_mm"])
                for k, m in enumerate(t["measurements"][i] for t in report["tracks"] if t["measurements"][i])]
    identity = Registration(np.eye(3), np.zeros(3), "affine", True)
    pairs = [(as_findings(i), as_findings(i + 1)) for i in range(len(paths) - 1)]
    t1 = time.perf_counter()
    reps = 200
    for _ in range(reps):
        for prior, current in pairs:
            match_pair(prior, current, identity)
    matching_ms = (time.perf_counter() - t1) / reps / max(1, len(paths) - 1) * 1000
    # the follow-up predictor on 50 tracks of 3 timepoints (one engine job's work)
    from medstation.ai.predictor import load_predictor
    from medstation.ai.registry import ModelRegistry
    from medstation.synth.courses import make_tracks

    predictor = load_predictor(ModelRegistry().default("followup").path)
    sample = [t["points"][:3] for t in make_tracks(200, 9) if len(t["points"]) >= 3][:50]
    predictor.predict_many(sample, [365.0] * len(sample))  # warm-up
    t2 = time.perf_counter()
    for _ in range(20):
        predictor.predict_many(sample, [365.0] * len(sample))
    predict_ms = (time.perf_counter() - t2) / 20 * 1000
    return {"model": f"{detector.name} {detector.version}", "slices": args.slices,
            "timepoints": args.timepoints,
            "registration_seconds": regs, "registration_max_s": max(regs) if regs else None,
            "matching_ms_per_pair": round(matching_ms, 2), "followup_total_s": round(total, 2),
            "tracks": len(tracks), "predict_ms_50_tracks": round(predict_ms, 2), "contended": contended,
            "targets": {"registration_s": 2.0, "followup_total_s": 10.0, "predict_ms_50_tracks": 50.0}}
