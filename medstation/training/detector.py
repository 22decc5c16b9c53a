"""Train the 2.5D nodule detector on synthetic chest CT; progress as JSON lines.

The loop is ``trainer.Trainer``: :func:`detector_step` is the iteration; the JSON-lines
logger, LR schedule, FROC validation, checkpoints, early stop and cancel attach as
handlers.

``medstation train-detector --out DIR`` runs :func:`train`; the same seeds and
step count give the same samples and the same schedule (on CPU, bit-identical
weights are not promised: torch's CPU kernels may sum in a different order).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from medstation.ai.network import ARCHITECTURE, DEFAULT_INPUT, DEFAULT_NETWORK, build_model
from medstation.ai.store import save_model
from medstation.training.recipe import Recipe, fit
from medstation.training.synthetic import TRAIN_SEEDS, make_bank
from medstation.training.trainer import Trainer


@dataclass
class TrainConfig:
    name: str = "nodule-detector"
    version: str = "1.0.0"
    parent_version: str | None = None
    samples: int = 12000
    crop: int = 128
    steps: int = 3500
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    phantom_seeds: tuple[int, int] = TRAIN_SEEDS
    threads: int = 0  # 0: torch's default
    device: str = "cpu"
    input: dict = field(default_factory=lambda: dict(DEFAULT_INPUT))
    network: dict = field(default_factory=lambda: dict(DEFAULT_NETWORK))
    warmup: float = 0.05  # share of the steps the learning rate warms up over (1.0.0 and 1.1.0 used 1/20)
    epoch_length: int = 250  # iterations per epoch (validation and checkpoints happen per epoch)
    validate_every: int = 0  # epochs between FROC validations (0: none)
    val_studies: int = 0  # held-out generated studies validated on
    val_data: str = ""  # where they are written (default: the user data folder's eval/)
    early_stop: int = 0  # validations without a better CPM before stopping (0: never)
    checkpoint: str = ""  # resumable checkpoint file ("" : none)
    resume: bool = False
    base: str = ""  # a model directory to start from (fine-tuning); "" : random initialisation
    generator: str = "1"  # the sample generator (``training.synthetic.GENERATORS``)
    #: on CPU, torch's team sized to the free cores before every step (``trainer.CpuThreads``): a
    #: long run on a busy machine keeps going at its share instead of collapsing at every barrier;
    #: a resume is then not bit-exact (a float sum depends on the team), ``threads`` N is
    adapt_threads: bool = False


def _emit(out, **event) -> None:
    if out is not None:
        out.write(json.dumps(event) + "\n")
        out.flush()


#: TrainConfig fields that say how a run was executed, not what was trained (kept out of the manifest)
RUNTIME_FIELDS = ("threads", "device", "checkpoint", "resume", "val_data", "base", "adapt_threads")


#: what each sample generator draws (the model card's "Training data")
TRAINING_DATA = {
    "1": {
        "nodule_diameters_mm": [3.0, 30.0],
        "masses_mm": [30.0, 50.0],
        "acquisition": ["pixel 0.6-1.5 mm", "slices 1-3 mm", "soft/standard/sharp kernels",
                        "correlated noise 6-45 HU", "motion blur"],
    },
    "2": {
        "nodule_diameters_mm": [3.0, 30.0],
        "masses_mm": [30.0, 100.0],
        "masses": ["on the mediastinum and hilum", "on the chest wall", "atelectasis beside them",
                   "pleural effusion below them"],
        "small_nodules_mm": [4.0, 6.0],
        "acquisition": ["pixel 0.6-1.5 mm", "slices 1-8 mm, Gaussian slice profile (FWHM = thickness)",
                        "soft/standard/sharp kernels measured on real CT (synth.kernels: Gaussian MTF, "
                        "edge enhancement, ramp-shaped noise power spectrum, noise outside the body "
                        "0.35-0.7x)", "noise SD 4-70 HU in soft tissue", "motion blur"],
    },
}


def _manifest(config: TrainConfig, samples: int, positives: int) -> dict:
    data = TRAINING_DATA[config.generator]
    return {
        "name": config.name,
        "version": config.version,
        "parent_version": config.parent_version,
        "task": "detection",
        "architecture": ARCHITECTURE,
        "network": config.network,
        "input": config.input,
        "classes": ["background", "nodule"],
        "training_data": {
            "source": "medstation.synth analytic chest CT phantom, domain-randomized "
                      "(medstation.synth.varied; synthetic, no patient data)",
            "phantom_seeds": list(config.phantom_seeds),
            "samples": samples,
            "samples_with_nodules": positives,
            "generator": config.generator,
            **{k: v for k, v in data.items() if k != "acquisition"},
            "nodule_types": ["solid", "ground-glass", "part-solid", "calcified", "lobulated", "spiculated",
                             "juxtapleural", "juxtavascular"],
            "anatomy": ["tapering vessels", "trachea and main bronchi", "fissures", "contrast in heart and "
                        "great vessels", "mediastinal fat and nodes", "oesophagus", "breast", "neck",
                        "liver dome, stomach, spleen"],
            "disease": ["emphysema", "fibrosis-like texture"],
            "acquisition": data["acquisition"],
            "crop_px": config.crop,
        },
        "training": {k: v for k, v in asdict(config).items()
                     if k not in ("input", "network") + RUNTIME_FIELDS},
        "metrics": {},
        "intended_use": "Research and demonstration on synthetic data. Not for clinical use.",
        # generator 2 draws masses on the mediastinum: its models keep findings in the search region
        **({"keep_findings_in": "search region"} if config.generator != "1" else {}),
    }


def _augment(rng: np.random.Generator, img: torch.Tensor, boxes: torch.Tensor) -> tuple:
    size = img.shape[-1]
    if rng.random() < 0.5:  # left-right
        img = img.flip(-1)
        boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
    if rng.random() < 0.5:  # anterior-posterior
        img = img.flip(-2)
        boxes[:, [1, 3]] = size - boxes[:, [3, 1]]
    if rng.random() < 0.5:  # slice order (head-feet)
        img = img.flip(0)
    return img, boxes


def detector_step(bank, config: TrainConfig, device: torch.device):
    """One optimisation step of the detector: a random batch from ``bank``, flipped, FCOS losses."""
    images = torch.from_numpy(bank.images)

    def step(t: Trainer, _iteration: int) -> dict[str, float]:
        idx = t.rng.integers(0, len(bank), config.batch_size)
        batch = images[idx].float().div_(255.0)
        targets = []
        for b, n in enumerate(idx):
            batch[b], boxes = _augment(t.rng, batch[b], torch.from_numpy(bank.boxes[n]).clone())
            targets.append({"boxes": boxes.to(device), "labels": torch.ones(len(boxes), dtype=torch.int64,
                                                                             device=device)})
        losses = t.model(list(batch.to(device)), targets)
        loss = sum(losses.values())
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), 5.0)
        t.optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    return step


#: first phantom seed of the studies validated on during training
VALIDATION_SEED0 = 30000


def froc_validation(config: TrainConfig, manifest: dict, log=None):
    """Validation for the trainer: FROC/CPM of a copy of the model on held-out generated studies."""
    import copy
    from pathlib import Path

    from medstation.ai.detector import Detector
    from medstation.core.paths import user_data_path
    from medstation.training.evaluate import ensure_eval_set, evaluate

    folder = Path(config.val_data) if config.val_data else user_data_path() / "eval"
    # seeds of their own: neither the card's evaluation (10000+) nor the calibration (20000+)
    studies = ensure_eval_set(folder / f"validation-{VALIDATION_SEED0}", config.val_studies,
                              seed0=VALIDATION_SEED0)

    def run(t: Trainer) -> dict[str, float]:
        detector = Detector(copy.deepcopy(t.module).cpu(), manifest, "cpu")
        result, _extra = evaluate(detector, studies)
        return {"cpm": result.cpm, "sensitivity_at_1fp": result.sensitivity_at.get(1.0, 0.0),
                "threshold_at_1fp": result.threshold_at_1fp}

    return run


def train(config: TrainConfig, out_dir: str, *, log=sys.stdout,
          check: Callable[[], None] | None = None) -> dict:
    """Render the samples, train on the ``Trainer``, write the model directory; returns the manifest.

    With ``config.checkpoint`` a resumable checkpoint is written every epoch (and on cancel);
    ``config.resume`` continues from it. A cancel (``check`` raising ``CancelledError``) saves the
    checkpoint and raises ``CancelledError``; no model directory is written.
    """
    from medstation.training.distributed import setup, teardown

    world = setup(config.device)  # (idempotent: the recipe joins the same group)
    if not world.main:
        log = None  # rank 0 alone reports, validates, checkpoints and saves
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    _emit(log, event="render", done=0, total=config.samples)
    bank = make_bank(config.samples, config.input, crop=config.crop, seed=config.seed,
                     phantom_seeds=config.phantom_seeds, generator=config.generator,
                     progress=lambda d, t: (check() if check else None,
                                            _emit(log, event="render", done=d, total=t)))
    render_s = time.perf_counter() - t0
    positives = sum(1 for b in bank.boxes if len(b))
    _emit(log, event="rendered", samples=len(bank), with_nodules=positives, seconds=round(render_s, 1))
    if world.distributed:
        _emit(log, event="distributed", world_size=world.size,
              backend="nccl" if config.device == "cuda" else "gloo")
    model = build_model(ARCHITECTURE, config.input, config.network)
    if config.base:  # fine-tune: the base's weights (hash-checked), its input and network
        from medstation.ai.store import load_state

        base_manifest, state = load_state(config.base)
        if base_manifest.get("input") != config.input or base_manifest.get("network", config.network) != \
                config.network:
            model = build_model(ARCHITECTURE, base_manifest["input"], base_manifest.get("network"))
            config.input, config.network = dict(base_manifest["input"]), dict(base_manifest["network"])
        model.load_state_dict(state)
        config.parent_version = str(base_manifest.get("version"))
        _emit(log, event="base", name=base_manifest.get("name"), version=config.parent_version)
    manifest = _manifest(config, len(bank), positives)
    manifest["training"]["world_size"] = world.size
    validate = (froc_validation(config, manifest, log)
                if config.validate_every and config.val_studies and world.main else None)
    recipe = Recipe(model=model, make_step=lambda device: detector_step(bank, config, device),
                    steps=config.steps, epoch_length=config.epoch_length or config.steps, lr=config.lr,
                    weight_decay=config.weight_decay, warmup=config.warmup, seed=config.seed, log_every=50,
                    validate=validate, validate_every=config.validate_every or 1,
                    early_stop=config.early_stop, checkpoint=config.checkpoint, resume=config.resume,
                    what="training", device=config.device,
                    adapt_threads=config.adapt_threads and not config.threads,
                    resume_hint=f"resume with --resume from {config.checkpoint}",
                    # (not the steps: a run may be resumed to more of them)
                    settings={k: config.__dict__[k] for k in ("samples", "batch_size", "lr", "seed",
                                                             "epoch_length", "generator", "crop")}
                    | {"network": json.dumps(config.network, sort_keys=True)})
    state, world = fit(recipe, log=log, check=check,
                       on_resume=lambda st: _emit(log, event="resumed", step=st.iteration, epoch=st.epoch))
    if not world.main:
        teardown(world)
        return manifest
    running = state.running
    train_s = state.seconds
    model.eval()
    manifest["training_seconds"] = {"render": round(render_s, 1), "train": round(train_s, 1)}
    manifest["final_losses"] = {k: round(v, 4) for k, v in running.items()}
    if state.history:
        manifest["validation"] = {"history": state.history, "best_cpm": state.best,
                                  "best_epoch": state.best_epoch, "stopped": state.stop_reason}
    manifest["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    save_model(out_dir, model.state_dict(), manifest)
    from medstation.training.card import write_card

    write_card(out_dir)
    _emit(log, event="saved", path=str(out_dir))
    teardown(world)
    return manifest


