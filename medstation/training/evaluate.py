"""``medstation evaluate``: FROC of a detector on generated chest CT studies with known nodules.

The studies are written as real DICOM (so loading and geometry are part of
what is measured), from phantom seeds starting at ``EVAL_SEED0``: the default
detector never saw them (it trains on seeds in ``TRAIN_SEEDS``). Each study
varies the acquisition (pixel spacing, slice thickness, noise) and holds 3-6
nodules of 4-20 mm, one in five ground glass, none inside the mediastinum.

``family="held-out"`` writes studies of ``medstation.synth.heldout`` instead: a
generator written separately from the training one (its own body, vessel,
nodule and noise code), which training never sees. A score measured there says
more than one measured on the training generator's unseen seeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medstation.core.errors import MedstationError
from medstation.synth import ChestPhantom, PatientSpec, SeriesSpec, random_nodules, write_study
from medstation.training.metrics import Candidate, FrocResult, Reference, froc
from medstation.training.synthetic import TRAIN_SEEDS

EVAL_SEED0 = 10000
HELD_OUT_SEED0 = 50000
HELD_OUT_MASSES_SEED0 = 60000
#: "held-out-masses": the held-out family with one 35-90 mm mass on the mediastinum or the chest
#: wall in each study and 1.25, 2.5 or 5 mm slices (tumours as a radiologist meets them first)
FAMILIES = ("own", "held-out", "held-out-masses")
#: diameter bins of the size-error table (mm)
SIZE_BINS = ((4.0, 6.0), (6.0, 10.0), (10.0, 20.0), (20.0, 30.0))


def eval_study_spec(seed: int) -> tuple[ChestPhantom, SeriesSpec]:
    rng = np.random.default_rng([seed, 7])
    ph = ChestPhantom(seed=seed)
    # nodules in the lungs only: the phantom paints the aorta and the heart over the lung
    # ellipses, and a nodule placed there is not a lung nodule a reader could see
    nodules = random_nodules(ph, rng, 12, diameters=(4.0, 20.0), ground_glass_fraction=0.2,
                             z_range=(ph.z_bottom + 25, ph.z_top - 20))
    keep = int(rng.integers(3, 7))
    ph.nodules = [n for n in nodules if not ph.in_mediastinum(n.center, n.diameter_mm / 2)][:keep]
    pixel = float(rng.choice([0.75, 0.9, 1.1]))
    thick = float(rng.choice([1.0, 1.25, 2.0, 2.5]))
    size = int(round(380 / pixel / 2) * 2)
    z_lo, z_hi = ph.z_bottom - 10, ph.z_top + 10
    slices = int((z_hi - z_lo) / thick) + 1
    spec = SeriesSpec(description=f"Eval chest {thick} mm", slices=slices, rows=size, columns=size,
                      pixel_spacing=pixel, slice_thickness=thick, z_center=(z_lo + z_hi) / 2,
                      noise_hu=float(rng.uniform(10, 25)))
    return ph, spec


def held_out_mass_study_spec(seed: int):
    """A held-out study with a mass: the held-out phantom, one mass added by its own code, and a
    slice thickness of 1.25, 2.5 or 5 mm."""
    rng = np.random.default_rng([seed, 13])
    ph, spec = held_out_study_spec(seed)
    ph.add_mass(rng)
    from dataclasses import replace

    thick = float(rng.choice([1.25, 2.5, 5.0]))
    z_lo, z_hi = ph.base - 15, ph.apex + 15
    spec = replace(spec, description=f"Held-out chest mass {thick} mm {ph.kernel}", slice_thickness=thick,
                   slices=int((z_hi - z_lo) / thick) + 1)
    return ph, spec


def held_out_study_spec(seed: int):
    """A study of the held-out family: its phantom and acquisition (noise is the phantom's own)."""
    from medstation.synth.heldout import HeldOutPhantom

    rng = np.random.default_rng([seed, 11])
    ph = HeldOutPhantom(seed)
    pixel = float(rng.choice([0.65, 0.72, 0.8, 0.9]))
    thick = float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5]))
    size = int(round(2 * (ph.a + 20) / pixel / 2) * 2)
    z_lo, z_hi = ph.base - 15, ph.apex + 15
    slices = int((z_hi - z_lo) / thick) + 1
    spec = SeriesSpec(description=f"Held-out chest {thick} mm {ph.kernel}", slices=slices, rows=size,
                      columns=size, pixel_spacing=pixel, slice_thickness=thick,
                      z_center=(z_lo + z_hi) / 2 - 10.0, kernel=ph.kernel.upper(), noise_hu=0.0)
    return ph, spec


def ensure_eval_set(folder: Path, count: int, seed0: int | None = None,
                    progress: Callable[[str], None] | None = None, *, family: str = "own") -> list[Path]:
    """Write (or reuse) ``count`` evaluation studies of ``family`` under ``folder``."""
    if family not in FAMILIES:
        raise MedstationError(f"unknown generator family {family!r}", f"use one of {', '.join(FAMILIES)}")
    if family == "held-out":
        seed0 = HELD_OUT_SEED0 if seed0 is None else seed0
        return _write_set(folder, count, seed0, "heldout-v1", held_out_study_spec, "HOUT", progress)
    if family == "held-out-masses":
        seed0 = HELD_OUT_MASSES_SEED0 if seed0 is None else seed0
        return _write_set(folder, count, seed0, "heldout-masses-v1", held_out_mass_study_spec, "HMAS",
                          progress)
    seed0 = EVAL_SEED0 if seed0 is None else seed0
    if seed0 < TRAIN_SEEDS[1] and seed0 + count > TRAIN_SEEDS[0]:
        raise MedstationError(f"seeds {seed0}..{seed0 + count - 1} overlap the training seeds "
                              f"{TRAIN_SEEDS[0]}..{TRAIN_SEEDS[1] - 1}", "choose --seed0 10000 or above")
    return _write_set(folder, count, seed0, "eval-v2", eval_study_spec, "EVAL", progress)


def _write_set(folder: Path, count: int, seed0: int, prefix: str, make, pid: str,
               progress: Callable[[str], None] | None) -> list[Path]:
    out = []
    for n in range(count):
        seed = seed0 + n
        study = folder / f"{prefix}-{seed}"
        if not (study / "truth.json").exists():
            if progress:
                progress(f"writing study {n + 1}/{count} (seed {seed})")
            ph, spec = make(seed)
            write_study(study, ph, series=[spec], seed=seed,
                        patient=PatientSpec(f"{pid}-{seed}", f"{pid.title()}^{seed}"))
        out.append(study)
    return out


def size_table(pairs: list[dict]) -> list[dict]:
    """Size error by diameter bin: median signed error of the sphere-equivalent diameter and of the
    volume, and the share of nodules within 15% (volume) and 1 mm or 10% (diameter)."""
    rows = []
    for lo, hi in SIZE_BINS:
        sel = [p for p in pairs if lo <= p["truth_mm"] < hi]
        if not sel:
            continue
        d_err = np.array([(p["measured_mm"] - p["truth_mm"]) / p["truth_mm"] for p in sel])
        v_err = np.array([(p["measured_mm3"] - p["truth_mm3"]) / p["truth_mm3"] for p in sel])
        d_ok = [abs(p["measured_mm"] - p["truth_mm"]) <= max(1.0, 0.1 * p["truth_mm"]) for p in sel]
        rows.append({"bin_mm": [lo, hi], "nodules": len(sel),
                     "diameter_median_error": round(float(np.median(d_err)), 4),
                     "volume_median_error": round(float(np.median(v_err)), 4),
                     "diameter_within_1mm_or_10pct": round(float(np.mean(d_ok)), 3),
                     "volume_within_15pct": round(float(np.mean(np.abs(v_err) <= 0.15)), 3)})
    return rows


def evaluate(detector, studies: list[Path], *, min_diameter: float = 0.0, max_diameter: float = float("inf"),
             pool=None,
             progress: Callable[[str], None] | None = None) -> tuple[FrocResult, dict]:
    """Run ``detector`` on every study; FROC (LUNA16's) over every nodule, or those in
    [``min_diameter``, ``max_diameter``] mm (the others ignored, as LUNA16 ignores excluded ones)."""
    from medstation.dicom import WorkerPool, open_series

    own_pool = pool is None
    pool = pool or WorkerPool()
    cands: list[list[Candidate]] = []
    refs: list[list[Reference]] = []
    per_study = []
    seconds = []
    scored: list[tuple[float, bool]] = []
    sizes: list[dict] = []
    try:
        for n, study in enumerate(studies):
            truth = json.loads((study / "truth.json").read_text())
            files = truth["series"][0]["files"]
            volume = open_series(files, pool=pool).volume
            t0 = time.perf_counter()
            run = detector.detect(volume)
            seconds.append(time.perf_counter() - t0)
            refs.append([Reference(tuple(nd["center"]), float(nd["diameter_mm"])) for nd in truth["nodules"]])
            _record(run.findings, truth["nodules"], n, cands, scored, sizes)
            per_study.append({"study": study.name, "nodules": len(truth["nodules"]),
                              "candidates": len(run.findings), "seconds": round(seconds[-1], 2),
                              "slice_mm": round(abs(float(volume.spacing[0])), 2),
                              "kernel": _kernel_of(truth["series"][0])})
            if progress:
                progress(f"study {n + 1}/{len(studies)}: {len(run.findings)} candidates, "
                         f"{seconds[-1]:.1f} s")
    finally:
        if own_pool:
            pool.close()
    result = froc(cands, refs, min_diameter=min_diameter, max_diameter=max_diameter)
    points = {"at 1 FP/scan": result.threshold_at_1fp, "operating point": float(detector.threshold)}
    extra = {"studies": per_study, "median_seconds_per_study": float(np.median(seconds)) if seconds else 0.0,
             "breakdown": {name: breakdown(cands, refs, per_study, score, min_diameter, max_diameter)
                           for name, score in points.items()},
             "min_diameter_mm": min_diameter,
             "seeds": [int(s.name.split("-")[-1]) for s in studies if s.name.split("-")[-1].isdigit()],
             "sizes": size_table(sizes), "size_pairs": sizes, "scored": scored, "per_scan": (cands, refs)}
    return result, extra


#: the breakdown's size groups (mm): small new nodules, Lung-RADS' 6-10 mm, the rest, masses
BREAKDOWN_SIZES = ((4.0, 6.0), (6.0, 10.0), (10.0, 30.0), (30.0, float("inf")))


def _kernel_of(series: dict) -> str:
    """The reconstruction kernel a generated series was written with (soft, standard, sharp), from
    its description (the held-out family names it last), else ""."""
    words = str(series.get("description", "")).lower().split()
    return words[-1] if words and words[-1] in ("soft", "standard", "sharp") else ""


def breakdown(cands: list, refs: list, studies: list[dict], score: float, min_diameter: float = 0.0,
              max_diameter: float = float("inf")) -> dict:
    """Sensitivity at ``score`` by reconstruction kernel, by slice thickness and by size: the share of
    the nodules (in [``min_diameter``, ``max_diameter``]) with a candidate at or above ``score`` strictly
    inside their radius (LUNA16's hit), and the false positives per scan of each group's scans."""
    groups: dict[str, dict[str, list[int]]] = {"kernel": {}, "slice_mm": {}, "size_mm": {}}
    fps: dict[str, dict[str, list[int]]] = {"kernel": {}, "slice_mm": {}}
    for scan, (cs, rs) in enumerate(zip(cands, refs)):
        meta = studies[scan] if scan < len(studies) else {}
        kept = [c for c in cs if c.score >= score]
        hit_any = [False] * len(kept)
        for r in rs:
            inside = [np.linalg.norm(np.subtract(c.center_mm, r.center_mm)) < r.diameter_mm / 2 for c in kept]
            for n, v in enumerate(inside):
                hit_any[n] = hit_any[n] or v
            if r.excluded or not min_diameter <= r.diameter_mm <= max_diameter:
                continue
            found = int(any(inside))
            size = next((f"{lo:g}-{hi:g}" if hi != float("inf") else f"{lo:g}+" for lo, hi in BREAKDOWN_SIZES
                         if lo <= r.diameter_mm < hi), "<4")
            for key, value in (("kernel", meta.get("kernel") or "-"),
                               ("slice_mm", str(meta.get("slice_mm", "-"))), ("size_mm", size)):
                groups[key].setdefault(value, []).append(found)
        for key in fps:
            value = (meta.get("kernel") or "-") if key == "kernel" else str(meta.get("slice_mm", "-"))
            fps[key].setdefault(value, []).append(sum(1 for h in hit_any if not h))
    out: dict = {"score": round(float(score), 4)}
    for key, table in groups.items():
        out[f"by_{key}"] = {v: {"nodules": len(f), "sensitivity": round(float(np.mean(f)), 3) if f else None,
                                **({"fp_per_scan": round(float(np.mean(fps[key][v])), 2)}
                                   if key in fps and v in fps[key] else {})}
                            for v, f in sorted(table.items())}
    return out


def _record(findings, nodules: list[dict], scan: int, cands: list, scored: list, sizes: list) -> None:
    """One scan's candidates, (score, is a nodule) pairs and matched sizes, appended."""
    cands.append([Candidate(f.center_mm, f.score) for f in findings])
    scored.extend(_label_scores(findings, nodules))
    sizes.extend(_match_sizes(findings, nodules, scan))


def _hits(f, nodules: list[dict]) -> list[int]:
    return [n for n, nd in enumerate(nodules)
            # LUNA16: a hit lies strictly inside the radius
            if np.linalg.norm(np.subtract(f.center_mm, nd["center"])) < float(nd["diameter_mm"]) / 2]


def _label_scores(findings, nodules: list[dict]) -> list[tuple[float, bool]]:
    """(score, is a nodule) per finding: what calibration is fitted and checked on."""
    return [(float(f.score), bool(_hits(f, nodules))) for f in findings]


def _match_sizes(findings, nodules: list[dict], scan: int) -> list[dict]:
    """Each nodule's best-scoring hit, sized from the segmentation, against the truth."""
    out = []
    for n, nd in enumerate(nodules):
        hits = [f for f in findings if n in _hits(f, nodules) and f.size_method == "segmentation"]
        if not hits:
            continue
        f = max(hits, key=lambda f: f.score)
        d = float(nd["diameter_mm"])
        truth_mm3 = float(nd.get("volume_mm3") or np.pi / 6 * d ** 3)
        out.append({"scan": scan, "truth_mm": d, "truth_mm3": truth_mm3,
                    "measured_mm": float(f.equivalent_diameter_mm or f.diameter_mm),
                    "measured_mm3": float(f.volume_mm3 or 0.0), "type": nd.get("type", ""),
                    "measured_type": f.nodule_type, "score": float(f.score)})
    return out


def evaluate_annotated(detector, studies_dir: str | Path, annotations: str | Path, *,
                       min_diameter: float = 0.0, max_diameter: float = float("inf"), pool=None,
                       progress: Callable[[str], None] | None = None) -> tuple[FrocResult, dict]:
    """FROC on labelled studies of any origin (LUNA16 protocol): the series of ``studies_dir`` named
    in the ``annotations`` CSV; a hit is a candidate centre within the nodule's radius."""
    from medstation.core.errors import LabelError
    from medstation.dicom import WorkerPool, list_series, open_series
    from medstation.training.annotations import read_luna16_csv

    wanted = read_luna16_csv(annotations)
    own_pool = pool is None
    pool = pool or WorkerPool()
    try:
        listing = list_series([studies_dir], pool)
        stacks: dict = {}
        for stack in listing.stacks:  # the largest part of each series
            have = stacks.get(stack.series_uid)
            if stack.series_uid in wanted and (have is None or len(stack.slices) > len(have.slices)):
                stacks[stack.series_uid] = stack
        absent = [uid for uid in wanted if uid not in stacks]
        if absent:
            raise LabelError(f"{annotations}: {len(absent)} annotated series not found under {studies_dir}: "
                             f"{absent[0]}", "point --studies-dir at the folder holding them, or remove "
                             "their rows", [f"{annotations}: series {u} not found" for u in absent])
        cands, refs, per_study, scored, sizes = [], [], [], [], []
        for n, (uid, stack) in enumerate(stacks.items()):
            volume = open_series(stack, pool=pool).volume
            outside = [r for r in wanted[uid] if not _inside(volume, r.center_mm)]
            if outside:
                raise LabelError(f"{annotations}: a nodule of series {uid} at {outside[0].center_mm} mm lies "
                                 "outside its volume", "check the coordinates: LUNA16 uses patient mm (LPS)")
            t0 = time.perf_counter()
            run = detector.detect(volume)
            truth = [{"center": list(r.center_mm), "diameter_mm": r.diameter_mm} for r in wanted[uid]]
            refs.append(wanted[uid])
            _record(run.findings, truth, n, cands, scored, sizes)
            per_study.append({"series": uid, "nodules": len(truth), "candidates": len(run.findings),
                              "seconds": round(time.perf_counter() - t0, 2)})
            if progress:
                progress(f"series {n + 1}/{len(stacks)}: {len(run.findings)} candidates")
    finally:
        if own_pool:
            pool.close()
    result = froc(cands, refs, min_diameter=min_diameter, max_diameter=max_diameter)
    extra = {"studies": per_study, "min_diameter_mm": min_diameter, "seeds": [],
             "sizes": size_table(sizes), "size_pairs": sizes, "scored": scored, "per_scan": (cands, refs)}
    return result, extra


def evaluate_cases(detector, cases: list, load: Callable[[str], object], *, min_diameter: float = 0.0,
                   max_diameter: float = float("inf"), progress: Callable[[str], None] | None = None,
                   on_scan: Callable[[int, int], None] | None = None) -> tuple[FrocResult, dict]:
    """FROC on the study database's labelled series (``training.finetune.Case``: nodule labels with
    their centres and diameters; ``load(key)`` gives the volume), LUNA16 hits. What the site report
    and the site calibration measure on. ``on_scan(done, total)`` hears the count before the first
    series and after each."""
    cands, refs, per_study, scored, sizes = [], [], [], [], []
    if on_scan:
        on_scan(0, len(cases))
    for n, case in enumerate(cases):
        volume = load(case.key)
        t0 = time.perf_counter()
        run = detector.detect(volume, heatmap=False)
        truth = [{"center": list(c), "diameter_mm": float(d)} for c, d in case.nodules]
        refs.append([Reference(tuple(c), float(d)) for c, d in case.nodules])
        _record(run.findings, truth, n, cands, scored, sizes)
        per_study.append({"series": case.key, "patient": case.patient, "nodules": len(truth),
                          "candidates": len(run.findings), "seconds": round(time.perf_counter() - t0, 2)})
        if progress:
            progress(f"series {n + 1}/{len(cases)}: {len(run.findings)} candidates")
        if on_scan:
            on_scan(n + 1, len(cases))
    result = froc(cands, refs, min_diameter=min_diameter, max_diameter=max_diameter)
    extra = {"studies": per_study, "min_diameter_mm": min_diameter, "seeds": [],
             "sizes": size_table(sizes), "size_pairs": sizes, "scored": scored, "per_scan": (cands, refs)}
    return result, extra


def _inside(volume, point) -> bool:
    return volume.grid.contains(point)
