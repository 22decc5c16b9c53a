"""Fine-tune the detector on a site's own labelled series (``medstation train``).

The cases come from the study database's labels (``cases_from_database``, through
``dicom.labels``): per series its patient, its nodule labels and its known
non-nodules (rejected AI findings), and a loader for its volume. ``plan`` says what
a run would train and validate on before anything runs (``train --dry-run``, the panel).

- **Split** by patient with a fixed seed (a patient's series never sit on both
  sides); about a fifth of the patients validate. The split is recorded.
- **Samples**: each training series is decoded once, resampled like the
  detector's input, and cut into 2.5D crops around every nodule (jittered, several
  per nodule), around every rejected finding and at random places in the lung
  (negatives, with any nodule inside the crop still boxed). The crops are cached
  on disk (``cache_dir``, one ``.npz`` per series and label set), so an epoch, a
  resume or the next run does not decode DICOM again.
- **Replay**: a share of synthetic samples (the training generator) is mixed in
  against forgetting.
- **Validation**: FROC/CPM of the model on the validation series (LUNA16 hits),
  the parent measured the same way before training; both go in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medstation.core.errors import LabelError
from medstation.core.progress import stage_event
from medstation.training.bank import LABEL_DZ, SampleBank

MIN_NODULES = 4  # fewer labelled nodules than this: no fine-tuning
MIN_SERIES = 2  # one to train on, one to validate


@dataclass
class Case:
    key: str  # the series' database key
    patient: str
    nodules: list[tuple[tuple[float, float, float], float]]  # (centre mm, diameter mm)
    negatives: list[tuple[tuple[float, float, float], float]] = field(default_factory=list)


def cases_from_database(db, skipped: list | None = None) -> list:
    """One training case per labelled series; what cannot be used goes to ``skipped`` (``SkippedLabel``)."""
    from medstation.dicom.labels import collect_labels

    patients = {r.series_uid: r.patient_id for r in db.index.series()}
    found = collect_labels(db)  # labels on series the database no longer has are among the skipped
    if skipped is not None:
        skipped.extend(found.skipped)
    by_key: dict[str, object] = {}
    for lab in found.labels:
        case = by_key.setdefault(lab.series_key, Case(lab.series_key, patients[lab.series_uid], [], []))
        (case.nodules if lab.is_nodule else case.negatives).append((tuple(lab.center_mm), lab.diameter_mm))
    return list(by_key.values())


def check_counts(cases: list[Case]) -> dict:
    """The counts found; ``LabelError`` saying them when they are too few to train on."""
    nodules = sum(len(c.nodules) for c in cases)
    labelled = [c for c in cases if c.nodules]
    patients = {c.patient for c in labelled}
    counts = {"series": len(labelled), "patients": len(patients), "nodules": nodules,
              "negatives": sum(len(c.negatives) for c in cases)}
    if nodules < MIN_NODULES or len(labelled) < MIN_SERIES or len(patients) < 2:
        raise LabelError(f"too few labels to fine-tune: {nodules} nodule(s) in {len(labelled)} series of "
                         f"{len(patients)} patient(s) (at least {MIN_NODULES} nodules in {MIN_SERIES} series "
                         "of 2 patients are needed)",
                         "label more nodules (accept AI findings, draw nodules, or "
                         "`medstation labels import`)")
    return counts


def split_by_patient(cases: list[Case], seed: int = 0,
                     fraction: float = 0.2) -> tuple[list[Case], list[Case]]:
    labelled = [c for c in cases if c.nodules]
    patients = sorted({c.patient for c in labelled})
    order = np.random.default_rng(seed).permutation(len(patients))
    n_val = max(1, int(round(fraction * len(patients))))
    val_patients = {patients[i] for i in order[:n_val]}
    train = [c for c in cases if c.patient not in val_patients]
    val = [c for c in labelled if c.patient in val_patients]
    return train, val


#: a validation side smaller than this measures nothing worth a number: warned about, with the counts
MIN_VAL_SERIES = 2
MIN_VAL_NODULES = 5


def plan(cases: list[Case], seed: int = 0) -> dict:
    """What a fine-tune would train and validate on, before anything runs: the counts, the split by
    patient (with its seed) and warnings where the validation side is too small to measure anything.
    ``refused`` holds the reason when there are too few labels to train at all."""
    try:
        counts = check_counts(cases)
        refused = ""
    except LabelError as exc:
        counts, refused = {}, exc.reason
    out: dict = {"seed": seed, "refused": refused, "counts": counts, "warnings": []}
    if refused:
        return out
    train, val = split_by_patient(cases, seed)

    def side(cs: list[Case]) -> dict:
        return {"series": [c.key for c in cs], "patients": sorted({c.patient for c in cs}),
                "nodules": sum(len(c.nodules) for c in cs), "negatives": sum(len(c.negatives) for c in cs)}

    out["train"], out["validation"] = side(train), side(val)
    v = out["validation"]
    if len(v["series"]) < MIN_VAL_SERIES or v["nodules"] < MIN_VAL_NODULES:
        out["warnings"].append(
            f"the validation side is too small to measure the new version: {len(v['series'])} series, "
            f"{v['nodules']} nodule(s) (at least {MIN_VAL_SERIES} series and {MIN_VAL_NODULES} nodules are "
            "needed for a CPM worth reading); label more patients")
    return out


def _cache_name(case: Case, input_spec: dict, crop: int, per_nodule: int, negatives: int) -> str:
    key = json.dumps([case.key, case.nodules, case.negatives, input_spec, crop, per_nodule, negatives],
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:24] + ".npz"


def case_samples(case: Case, volume, input_spec: dict, *, crop: int = 128, per_nodule: int = 8,
                 negatives: int = 16, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """2.5D crops (uint8, channels x crop x crop) and their boxes (model pixels) from one series."""
    import torch

    from medstation.ai.preprocess import prepare, stack_channels
    from medstation.imaging.lungs import lung_mask

    rng = np.random.default_rng(seed)
    prep = prepare(volume, input_spec, crop_to_lungs=False)
    images = prep.images
    n_m, rows, cols = images.shape
    sk, si, sj = prep.scale  # volume index per model index
    dz = float(input_spec["slice_spacing_mm"])
    px = float(input_spec["pixel_spacing_mm"])
    channels = int(input_spec["channels"])

    def model_index(point) -> np.ndarray:
        k, i, j = volume.patient_to_index(point)
        return np.array([k / sk, (i + 0.5) / si, (j + 0.5) / sj])

    nod = [(model_index(c), d / 2) for c, d in case.nodules]
    centres: list[np.ndarray] = []
    for m, r in nod:  # around each nodule, jittered in-plane and along its extent
        for _ in range(per_nodule):
            centres.append(m + [rng.uniform(-LABEL_DZ, LABEL_DZ) * r / dz, rng.uniform(-40, 40) / px,
                                rng.uniform(-40, 40) / px])
    for c, _d in case.negatives:
        centres.append(model_index(c))
    lungs = lung_mask(volume)
    where = np.argwhere(lungs.mask[:, ::8, ::8])
    for _ in range(negatives if len(where) else 0):
        k, i, j = where[int(rng.integers(len(where)))] * [1, 8, 8]
        centres.append(np.array([k / sk, (i + 0.5) / si, (j + 0.5) / sj]))
    out_images, out_boxes = [], []
    for c in centres:
        m = int(round(float(c[0])))
        if not 0 <= m < n_m:
            continue
        r0 = int(round(float(c[1]))) - crop // 2
        c0 = int(round(float(c[2]))) - crop // 2
        stack = stack_channels(images, [m], channels)[0]
        tile = torch.zeros((channels, crop, crop))
        a0, a1 = max(0, r0), min(rows, r0 + crop)
        b0, b1 = max(0, c0), min(cols, c0 + crop)
        if a0 >= a1 or b0 >= b1:
            continue
        tile[:, a0 - r0:a1 - r0, b0 - c0:b1 - c0] = stack[:, a0:a1, b0:b1]
        boxes = []
        for (mk, mi, mj), r in nod:
            d_mm = (m - mk) * dz
            if abs(d_mm) > LABEL_DZ * r:
                continue
            rr = math.sqrt(max(r * r - d_mm * d_mm, 0.0)) / px
            ci, cj = mi - r0, mj - c0
            if 0 <= ci < crop and 0 <= cj < crop:
                boxes.append([max(0.0, cj - rr), max(0.0, ci - rr), min(float(crop), cj + rr),
                              min(float(crop), ci + rr)])
        out_images.append(np.rint(tile.numpy() * 255).astype(np.uint8))
        out_boxes.append(np.array(boxes, np.float32).reshape(-1, 4))
    if not out_images:
        return np.zeros((0, channels, crop, crop), np.uint8), []
    return np.stack(out_images), out_boxes


def build_bank(cases: list[Case], load: Callable[[str], object], input_spec: dict, *, cache_dir: Path | None,
               crop: int = 128, replay: int = 0, seed: int = 0,
               progress: Callable[[dict], None] | None = None,
               check: Callable[[], None] | None = None) -> tuple[SampleBank, dict]:
    """The training bank: every case's crops (from the cache when there) plus ``replay`` synthetic
    samples; and a summary (samples, from cache, replayed)."""
    import time

    images, boxes = [], []
    cached = 0
    t0 = time.perf_counter()
    if progress:
        progress(stage_event("preparing crops", 0, len(cases), t0))
    for n, case in enumerate(cases):
        if check:
            check()
        name = _cache_name(case, input_spec, crop, 8, 16)
        path = cache_dir / name if cache_dir else None
        if path is not None and path.exists():
            with np.load(path) as z:
                imgs = z["images"]
                bx = [z[f"b{i}"] for i in range(len(imgs))]
            cached += 1
        else:
            imgs, bx = case_samples(case, load(case.key), input_spec, crop=crop, seed=seed + n)
            if path is not None:
                from medstation.core.files import atomic_writer

                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_writer(path, "wb") as f:
                    np.savez_compressed(f, images=imgs, **{f"b{i}": b for i, b in enumerate(bx)})
        images.append(imgs)
        boxes += list(bx)
        if progress:
            progress({"event": "series", "done": n + 1, "total": len(cases), "samples": int(len(imgs))})
            progress(stage_event("preparing crops", n + 1, len(cases), t0))
    own = sum(len(i) for i in images)
    replay_cached = False
    if replay:
        synth, replay_cached = replay_bank(replay, input_spec, crop=crop, seed=seed + 99, cache_dir=cache_dir,
                                           progress=progress, check=check)
        images.append(synth.images)
        boxes += synth.boxes
    bank = SampleBank(np.concatenate(images) if images else np.zeros((0,)), boxes, (0, 0))
    return bank, {"samples": own, "replayed": replay, "series_from_cache": cached,
                  "replay_from_cache": replay_cached,
                  "with_nodules": int(sum(1 for b in boxes[:own] if len(b)))}


#: bump when the synthetic renderer changes what it draws: cached replay samples of an older format
#: are rendered again
REPLAY_FORMAT = 1


def replay_bank(count: int, input_spec: dict, *, crop: int, seed: int, cache_dir: Path | None,
                progress: Callable[[dict], None] | None = None,
                check: Callable[[], None] | None = None) -> tuple[SampleBank, bool]:
    """``count`` synthetic samples of the training generator (against forgetting), and whether they came
    from the cache. Rendering them takes about 25 ms a sample on 2 cores (10 s for the default 400), the
    same for the same arguments: they are cached beside the series' crops, so only the first run pays."""
    import time

    from medstation.core.files import atomic_writer
    from medstation.training.synthetic import make_bank

    key = json.dumps(["replay", REPLAY_FORMAT, count, input_spec, crop, seed], sort_keys=True)
    name = "replay-" + hashlib.sha256(key.encode()).hexdigest()[:24] + ".npz"
    path = cache_dir / name if cache_dir else None
    if path is not None and path.exists():
        try:
            with np.load(path) as z:
                images, seeds = z["images"], tuple(int(v) for v in z["seeds"])
                return SampleBank(images, [z[f"b{i}"] for i in range(len(images))], seeds), True
        except (OSError, ValueError, KeyError):
            pass  # unreadable (a disk error): rendered again and rewritten below
    t0 = time.perf_counter()
    stage = "rendering synthetic replay samples"
    if progress:
        progress(stage_event(stage, 0, count, t0))

    def tick(done: int, total: int) -> None:
        if check:
            check()
        if progress:
            progress(stage_event(stage, done, total, t0))

    bank = make_bank(count, input_spec, crop=crop, seed=seed, progress=tick)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path, "wb") as f:
            np.savez_compressed(f, images=bank.images, seeds=np.array(bank.seeds),
                                **{f"b{i}": b for i, b in enumerate(bank.boxes)})
    return bank, False


def froc_on_cases(detector, cases: list[Case], load: Callable[[str], object],
                  progress: Callable[[dict], None] | None = None, stage: str = "validating") -> dict:
    """FROC/CPM of ``detector`` on labelled cases (LUNA16 hits), as the validation reports it;
    ``progress`` hears a stage event per series."""
    import time

    from medstation.training.metrics import Candidate, Reference, froc

    cands, refs = [], []
    t0 = time.perf_counter()
    if progress:
        progress(stage_event(stage, 0, len(cases), t0))
    for n, case in enumerate(cases, start=1):
        run = detector.detect(load(case.key), heatmap=False)
        cands.append([Candidate(f.center_mm, f.score) for f in run.findings])
        refs.append([Reference(tuple(c), d) for c, d in case.nodules])
        if progress:
            progress(stage_event(stage, n, len(cases), t0))
    r = froc(cands, refs)
    return {"cpm": r.cpm, "sensitivity_at_1fp": r.sensitivity_at.get(1.0, 0.0), "scans": r.scans,
            "nodules": r.nodules,
            "sensitivity_at_fp_per_scan": {str(k): v for k, v in r.sensitivity_at.items()}}


@dataclass
class FinetuneConfig:
    name: str
    version: str
    epochs: int = 4
    epoch_length: int = 100
    batch_size: int = 8
    lr: float = 5e-4
    replay: int = 400
    seed: int = 0
    device: str = "cpu"
    checkpoint: str = ""
    resume: bool = False
    #: torch CPU threads: 0 sizes the team to the free cores before every step (a desktop is never
    #: idle); N fixes it (a resumed run then matches an uninterrupted one bit for bit)
    threads: int = 0


def run_finetune(config: FinetuneConfig, cases: list[Case], load: Callable[[str], object],
                 base_dir: str | Path, out_dir: str | Path, *, cache_dir: Path | None = None, log=None,
                 check: Callable[[], None] | None = None) -> dict:
    """Fine-tune the detector in ``base_dir`` on ``cases``; write the new version to ``out_dir``."""
    import copy
    import datetime as _dt
    import sys

    import torch

    from medstation.ai.detector import Detector, build_model
    from medstation.ai.store import load_detector, load_state, save_model
    from medstation.training.card import write_card
    from medstation.training.detector import TrainConfig, detector_step
    from medstation.training.distributed import setup, teardown
    from medstation.training.recipe import Recipe, fit
    from medstation.training.trainer import Trainer

    world = setup(config.device)
    log = (log if log is not None else sys.stdout) if world.main else None

    def emit(**event) -> None:
        if log is not None:
            log.write(json.dumps(event) + "\n")
            log.flush()

    counts = check_counts(cases)
    train_cases, val_cases = split_by_patient(cases, config.seed)
    emit(event="data", **counts, train_series=len(train_cases), validation_series=len(val_cases))
    base_manifest, state = load_state(base_dir)
    det_state = {k: v for k, v in state.items() if not k.startswith("fpr.")}
    fpr_state = {k: v for k, v in state.items() if k.startswith("fpr.")}
    input_spec = dict(base_manifest["input"])
    volumes: dict[str, object] = {}

    def cached_load(key: str):
        if key not in volumes:
            volumes.clear() if len(volumes) > 4 else None
            volumes[key] = load(key)
        return volumes[key]

    parent: dict = {}
    if world.main:
        emit(event="baseline", status="measuring the parent on the validation series")
        parent = froc_on_cases(load_detector(base_dir), val_cases, cached_load, progress=lambda e: emit(**e),
                               stage="validating the base")
        emit(event="baseline", **{k: v for k, v in parent.items() if k != "sensitivity_at_fp_per_scan"})
    bank, data = build_bank(train_cases, cached_load, input_spec, cache_dir=cache_dir, replay=config.replay,
                            seed=config.seed, progress=lambda e: emit(**e), check=check)
    emit(event="samples", **data)
    torch.manual_seed(config.seed)
    if world.distributed:
        emit(event="distributed", world_size=world.size,
             backend="nccl" if config.device == "cuda" else "gloo")
    model = build_model(str(base_manifest["architecture"]), input_spec, base_manifest.get("network"))
    model.load_state_dict(det_state)
    steps = config.epochs * config.epoch_length
    manifest = {k: v for k, v in base_manifest.items()
                if k not in ("sha256", "calibration", "operating_point")}

    def validate(t: Trainer) -> dict:
        m = copy.deepcopy(t.module).cpu().eval()
        return {k: v for k, v in froc_on_cases(Detector(m, manifest, "cpu"), val_cases, cached_load,
                                               progress=lambda e: emit(**e)).items()
                if isinstance(v, float)}

    tc = TrainConfig(batch_size=config.batch_size)
    recipe = Recipe(model=model, make_step=lambda device: detector_step(bank, tc, device), steps=steps,
                    epoch_length=config.epoch_length, lr=config.lr, weight_decay=1e-4, warmup=0.1,
                    seed=config.seed, log_every=max(1, min(10, config.epoch_length // 3)),
                    validate=validate, checkpoint=config.checkpoint, resume=config.resume, what="fine-tuning",
                    device=config.device, adapt_threads=config.threads <= 0,
                    settings={"epochs": config.epochs, "epoch_length": config.epoch_length,
                              "batch_size": config.batch_size, "lr": config.lr, "replay": config.replay,
                              "seed": config.seed})
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    st, world = fit(recipe, log=log, check=check,
                    on_resume=lambda s: emit(event="resumed", step=s.iteration, epoch=s.epoch))
    if not world.main:
        teardown(world)
        return manifest
    model.eval()
    new = froc_on_cases(Detector(copy.deepcopy(model).cpu(), manifest, "cpu"), val_cases, cached_load,
                        progress=lambda e: emit(**e), stage="validating the new version")
    manifest.update({
        "name": config.name, "version": config.version, "parent_version": str(base_manifest.get("version")),
        "training_data": {**(base_manifest.get("training_data") or {}),
                          "fine_tuned_on": {"source": "labelled series of the local study database", **counts,
                                            "split": {"seed": config.seed,
                                                      "train": [c.key for c in train_cases],
                                                      "validation": [c.key for c in val_cases]},
                                            "samples": data, "replay_synthetic": config.replay}},
        "training": {**(base_manifest.get("training") or {}), "fine_tuning": {
            "epochs": config.epochs, "epoch_length": config.epoch_length, "batch_size": config.batch_size,
            "lr": config.lr, "seed": config.seed, "device": config.device, "seconds": round(st.seconds, 1)}},
        "metrics": {"validation": {"split": "local validation series", "new": new, "parent": parent}},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    weights = {**model.state_dict(), **fpr_state}
    save_model(out_dir, weights, manifest)
    write_card(out_dir)
    emit(event="saved", path=str(out_dir), version=config.version, parent=manifest["parent_version"],
         cpm=round(new["cpm"], 4), parent_cpm=round(parent["cpm"], 4))
    teardown(world)
    return manifest


def queue_split_effect(queue: list, cases: list[Case], patients: dict[str, str], seed: int = 0) -> dict:
    """Where the review queue's findings lie against the split fine-tuning would use (``plan``):
    in training series, in validation series, or in series whose patient is not in the split yet
    (a review there changes the split: a new patient is drawn to one side). ``patients`` maps a
    series key to its patient. Keys are compared by series UID: the AI cache keys a series by its
    stack (``UID#1``) where labels and the database may use the bare UID."""
    from medstation.core.series import SeriesRef

    def uid(key: str) -> str:
        return SeriesRef.parse(key).series_uid

    out = {"findings": len(queue), "series": len({q.series_key for q in queue}), "train": 0, "validation": 0,
           "changes_split": 0}
    train, val = split_by_patient(cases, seed)
    train_uids, val_uids = {uid(c.key) for c in train}, {uid(c.key) for c in val}
    patient_of = {uid(k): p for k, p in patients.items()}
    in_split = {c.patient for c in cases if c.nodules}
    for q in queue:
        u = uid(q.series_key)
        if u in val_uids:
            out["validation"] += 1
        elif u in train_uids and patient_of.get(u) in in_split:
            out["train"] += 1
        else:
            out["changes_split"] += 1
    return out
