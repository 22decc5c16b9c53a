"""``medstation bench load``: medstation's loader against SimpleITK, interleaved in one run.

Both sides start from a folder of files with a warm page cache and end with a
sorted volume in HU: SimpleITK runs ``GetGDCMSeriesFileNames`` +
``ImageSeriesReader`` + ``GetArrayViewFromImage``; medstation runs header scan +
series assembly + ``load_stack``. Times are medians over the rounds; ratios
are medstation / SimpleITK (lower is better).
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from medstation.core import jsonout

TARGETS = {"none": 0.5, "rle": 0.2}
FIRST_SLICE_TARGET_S = 0.2
MEMORY_TARGET = 1.5


def _generate(folder: Path, slices: int, size: int, compression: str) -> Path:
    from medstation.synth import ChestPhantom, SeriesSpec, write_study

    spec = SeriesSpec(description=f"bench {compression}", slices=slices, rows=size, columns=size,
                      pixel_spacing=360.0 / size, slice_thickness=1.0, compression=compression)
    truth = write_study(folder, ChestPhantom(seed=11), series=[spec], seed=11)
    return Path(truth.series[0].files[0]).parent


def _sitk_load(folder: Path):
    """Returns the image and a view on its voxels (the view lives only as long as the image)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    return image, sitk.GetArrayViewFromImage(image)


def _medstation_load(folder: Path, pool):
    from medstation.dicom import list_series, open_series

    files = sorted(str(p) for p in folder.iterdir())
    t0 = time.perf_counter()
    stack = list_series(files, pool).stacks[0]
    t_scan = time.perf_counter() - t0
    return open_series(stack, pool=pool), t_scan, stack


class _MemorySampler:
    """Peak resident memory of this process and the loader workers, above a baseline."""

    def __init__(self, pids: list[int]) -> None:
        import psutil

        self.procs = [psutil.Process()] + [psutil.Process(p) for p in pids]
        self.base = self._now()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _now(self) -> int:
        total = 0
        for p in self.procs:
            try:
                total += p.memory_info().rss
            except Exception:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._now())
            time.sleep(0.002)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._now())


def run_bench(args) -> int:
    from medstation.dicom import WorkerPool, open_series

    report: dict = {"slices": args.slices, "size": args.size, "rounds": args.rounds, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="medstation-bench-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        folders = {}
        for comp in ("none", "rle"):
            folders[comp] = _generate(root / comp, args.slices, args.size, comp)
            for f in folders[comp].iterdir():  # warm the page cache for both readers
                f.read_bytes()
        with WorkerPool() as pool:
            pool.start()
            _medstation_load(folders["none"], pool)  # warm-up: imports, page faults
            for comp, folder in folders.items():
                ms, sk, first, scans = [], [], [], []
                equal = None
                for _ in range(args.rounds):
                    gc.collect()
                    t = time.perf_counter()
                    image, ref = _sitk_load(folder)
                    sk.append(time.perf_counter() - t)
                    gc.collect()
                    t = time.perf_counter()
                    res, t_scan, stack = _medstation_load(folder, pool)
                    ms.append(time.perf_counter() - t)
                    scans.append(t_scan)
                    first.append(res.first_slice_seconds)
                    if equal is None:
                        equal = bool(np.array_equal(ref, res.volume.voxels))
                    del ref, image, res
                # memory: one more load, sampled
                gc.collect()
                time.sleep(0.05)
                with _MemorySampler(pool.pids()) as mem:
                    res = open_series(stack, pool=pool)
                vol_bytes = res.volume.nbytes
                extra = mem.peak - mem.base
                del res
                m_med, s_med = statistics.median(ms), statistics.median(sk)
                report["variants"][comp] = {
                    "medstation_s": round(m_med, 4),
                    "medstation_scan_s": round(statistics.median(scans), 4),
                    "simpleitk_s": round(s_med, 4),
                    "ratio": round(m_med / s_med, 3),
                    "target_ratio": TARGETS[comp],
                    "first_slice_s": round(statistics.median(first), 4),
                    "first_slice_target_s": FIRST_SLICE_TARGET_S,
                    "volume_mb": round(vol_bytes / 1e6, 1),
                    "peak_extra_mb": round(extra / 1e6, 1),
                    "memory_ratio": round(extra / vol_bytes, 3),
                    "memory_target_ratio": MEMORY_TARGET,
                    "identical_to_simpleitk": equal,
                }
    v = report["variants"]
    report["pass"] = all(
        r["ratio"] <= r["target_ratio"] and r["first_slice_s"] <= FIRST_SLICE_TARGET_S
        and r["memory_ratio"] <= MEMORY_TARGET and r["identical_to_simpleitk"] for r in v.values())
    if args.json:
        print(jsonout.dumps(report, indent=1))
    else:
        print(f"load {args.slices} x {args.size} x {args.size} CT to a sorted HU volume, "
              f"median of {args.rounds} interleaved rounds")
        for comp, r in v.items():
            print(f"  {comp:5s} medstation {r['medstation_s']:.3f} s (scan {r['medstation_scan_s']:.3f}) "
                  f"vs SimpleITK {r['simpleitk_s']:.3f} s: ratio {r['ratio']:.3f} "
                  f"(target <= {r['target_ratio']}); first slice {r['first_slice_s'] * 1000:.1f} ms; "
                  f"peak memory {r['memory_ratio']:.2f}x volume (target <= {MEMORY_TARGET}); "
                  f"identical: {r['identical_to_simpleitk']}")
        print("all targets met" if report["pass"] else "some targets missed")
    return 0
