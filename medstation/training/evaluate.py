"""``medstation evaluate``: FROC of a detector on generated chest CT studies with known nodules.

The studies are written as real DICOM (so loading and geometry are part of
what is measured), from phantom seeds starting at ``EVAL_SEED0``: the default
detector never saw them (it trains on seeds in ``TRAIN_SEEDS``). Each study
varies the acquisition (pixel spacing, slice thickness, noise) and holds 3-6
nodules of 4-20 mm, one in five ground glass, none inside the mediastinum.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medstation.core.errors import MedstationError
from medstation.synth import ChestPhantom, PatientSpec, SeriesSpec, random_nodules, write_study
from medstation.training.detector import TRAIN_SEEDS
from medstation.training.metrics import Candidate, FrocResult, Reference, froc

EVAL_SEED0 = 10000


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


def ensure_eval_set(folder: Path, count: int, seed0: int = EVAL_SEED0,
                    progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write (or reuse) ``count`` evaluation studies under ``folder``."""
    if seed0 < TRAIN_SEEDS[1] and seed0 + count > TRAIN_SEEDS[0]:
        raise MedstationError(f"seeds {seed0}..{seed0 + count - 1} overlap the training seeds "
                              f"{TRAIN_SEEDS[0]}..{TRAIN_SEEDS[1] - 1}", "choose --seed0 10000 or above")
    out = []
    for n in range(count):
        seed = seed0 + n
        study = folder / f"eval-v2-{seed}"
        if not (study / "truth.json").exists():
            if progress:
                progress(f"writing study {n + 1}/{count} (seed {seed})")
            ph, spec = eval_study_spec(seed)
            write_study(study, ph, series=[spec], seed=seed,
                        patient=PatientSpec(f"EVAL-{seed}", f"Eval^{seed}"))
        out.append(study)
    return out


def evaluate(detector, studies: list[Path], *, min_diameter: float = 6.0, pool=None,
             progress: Callable[[str], None] | None = None) -> tuple[FrocResult, dict]:
    """Run ``detector`` on every study; FROC for nodules >= ``min_diameter`` mm."""
    from medstation.dicom import WorkerPool, open_series

    own_pool = pool is None
    pool = pool or WorkerPool()
    cands: list[list[Candidate]] = []
    refs: list[list[Reference]] = []
    per_study = []
    seconds = []
    try:
        for n, study in enumerate(studies):
            truth = json.loads((study / "truth.json").read_text())
            files = truth["series"][0]["files"]
            volume = open_series(files, pool=pool).volume
            t0 = time.perf_counter()
            run = detector.detect(volume)
            seconds.append(time.perf_counter() - t0)
            cands.append([Candidate(f.center_mm, f.score) for f in run.findings])
            refs.append([Reference(tuple(nd["center"]), float(nd["diameter_mm"])) for nd in truth["nodules"]])
            per_study.append({"study": study.name, "nodules": len(truth["nodules"]),
                              "candidates": len(run.findings), "seconds": round(seconds[-1], 2)})
            if progress:
                progress(f"study {n + 1}/{len(studies)}: {len(run.findings)} candidates, "
                         f"{seconds[-1]:.1f} s")
    finally:
        if own_pool:
            pool.close()
    result = froc(cands, refs, min_diameter=min_diameter)
    extra = {"studies": per_study, "median_seconds_per_study": float(np.median(seconds)) if seconds else 0.0,
             "min_diameter_mm": min_diameter,
             "seeds": [int(s.name.split("-")[-1]) for s in studies if s.name.split("-")[-1].isdigit()]}
    return result, extra
