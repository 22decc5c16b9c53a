"""The model store: built-in models in ``models/`` (read-only), user models in the user data directory.

A model is a directory holding ``model.safetensors`` (tensors only: nothing in
it can run code) and ``manifest.json``::

    {"name": "nodule-detector", "version": "1.0.0", "parent_version": null,
     "architecture": "fcos-resnet-2.5d", "network": {...}, "input": {...},
     "classes": ["background", "nodule"], "task": "detection",
     "training_data": {...}, "metrics": {...}, "intended_use": "...",
     "sha256": "<hex digest of model.safetensors>", "created": "..."}

Loading reads the manifest, hashes the weights file and compares before a byte
is deserialized, and refuses anything else (``ModelError`` naming the file and
the fix). Saving writes both files atomically; a new version goes into a new
directory, so the previous model stays usable.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

from medstation.core.errors import ModelError
from medstation.core.files import atomic_write_bytes, atomic_write_text
from medstation.core.paths import user_models_path

WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
REQUIRED = ("name", "version", "architecture", "input", "classes", "sha256")
#: a manifest is a few kB; anything far larger is not one (read in time and memory bounded by this)
MAX_MANIFEST_BYTES = 4_000_000


def builtin_models_dir() -> Path:
    """``models/`` next to the package (a checkout or the PyInstaller bundle)."""
    env = os.environ.get("MEDSTATION_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent.parent
    return here / "models"


def user_models_dir() -> Path:
    """Where models trained here are kept (``core.paths``: ``$MEDSTATION_USER_MODELS`` or the user
    data directory's ``models/``)."""
    return user_models_path()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(model_dir: str | Path) -> dict:
    path = Path(model_dir) / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ModelError(f"{path}: {path.stat().st_size} bytes; a manifest is at most "
                             f"{MAX_MANIFEST_BYTES // 1_000_000} MB", "reinstall or retrain the model")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: no manifest.json", "a model directory needs manifest.json and "
                         "model.safetensors; reinstall or retrain the model") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc})", "reinstall or retrain the model") from None
    except RecursionError:
        raise ModelError(f"{path}: the manifest is nested too deeply to be a model's",
                         "reinstall or retrain the model") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{path}: the manifest is not a JSON object", "reinstall or retrain the model")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ModelError(f"{path}: manifest lacks {', '.join(missing)}", "reinstall or retrain the model")
    return manifest


def load_state(model_dir: str | Path) -> tuple[dict, dict]:
    """``(manifest, state_dict)`` after checking the weights' sha256; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    weights = model_dir / WEIGHTS
    try:
        data = weights.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{weights}: weights file missing", "reinstall or retrain the model") from None
    except OSError as exc:
        raise ModelError(f"{weights}: unreadable ({exc.strerror})", "check the file's permissions") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != str(manifest["sha256"]).lower():
        raise ModelError(f"{weights}: sha256 {digest[:12]}... does not match the manifest's "
                         f"{str(manifest['sha256'])[:12]}...; the file was changed or truncated",
                         "reinstall the model or retrain it; medstation keeps using the previous model")
    try:
        state = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{weights}: not a valid safetensors file ({exc})",
                         "models must be saved as safetensors; retrain or reinstall") from None
    return manifest, state


def load_detector(model_dir: str | Path, device: str = "cpu"):
    """A ready ``Detector`` from a model directory; ``ModelError`` on any problem."""
    from medstation.ai.detector import Detector, build_model

    manifest, state = load_state(model_dir)
    model = build_model(str(manifest["architecture"]), dict(manifest["input"]), manifest.get("network"))
    fpr_state = {k[4:]: v for k, v in state.items() if k.startswith("fpr.")}
    state = {k: v for k, v in state.items() if not k.startswith("fpr.")}
    fpr_net = None
    if manifest.get("fp_reduction"):
        from medstation.ai import fpr

        spec = manifest["fp_reduction"]
        if spec.get("architecture") != fpr.ARCHITECTURE:
            raise ModelError(f"{Path(model_dir) / MANIFEST}: unknown false-positive reduction architecture "
                             f"{spec.get('architecture')!r}", "update medstation or pick another model")
        fpr_net = fpr.build(spec)
        try:
            fpr_net.load_state_dict(fpr_state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{Path(model_dir) / WEIGHTS}: the false-positive reduction weights do not fit "
                             f"({str(exc).splitlines()[0]})", "reinstall or retrain the model") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{Path(model_dir) / WEIGHTS}: weights do not fit architecture "
                         f"{manifest['architecture']!r} ({first})",
                         "reinstall or retrain the model") from None
    return Detector(model, manifest, device, fpr_net)


def save_model(model_dir: str | Path, state_dict: dict, manifest: dict) -> Path:
    """Write ``model.safetensors`` and ``manifest.json`` (with its sha256). A new folder appears whole
    or not at all: both files go into a hidden sibling that is then renamed into place. Weights or
    metrics that are not finite are refused (``ModelError``): such a model must never be saved."""
    import torch
    from safetensors.torch import save as save_safetensors

    model_dir = Path(model_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(f"{model_dir}: not saved: {len(bad)} weight tensor(s) hold NaN or Infinity "
                         f"({', '.join(bad[:3])}); the training diverged",
                         "check the training data for non-finite values, lower the learning rate")
    _check_finite(manifest.get("metrics"), f"{model_dir}: not saved: metric")
    data = save_safetensors(tensors)
    manifest = {**manifest, "sha256": hashlib.sha256(data).hexdigest()}
    text = json.dumps(manifest, indent=1, allow_nan=False) + "\n"
    if model_dir.is_dir():  # an existing folder (a caller's own output): the files, each atomically
        atomic_write_bytes(model_dir / WEIGHTS, data)
        atomic_write_text(model_dir / MANIFEST, text)
        return model_dir
    staging = model_dir.with_name(f".{model_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        atomic_write_bytes(staging / WEIGHTS, data)
        atomic_write_text(staging / MANIFEST, text)
        os.rename(staging, model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return model_dir


def _check_finite(value, where: str, depth: int = 0) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ModelError(f"{where} {value} is not a number", "the training diverged; see its log")
    if depth < 8 and isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where} {k}", depth + 1)
    elif depth < 8 and isinstance(value, (list, tuple)):
        for v in value:
            _check_finite(v, where, depth + 1)


def save_calibration(model_dir: str | Path, calibration: dict, operating_point: float) -> None:
    """Record a score calibration and the (calibrated) operating point in a model's manifest."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    manifest["calibration"] = calibration
    manifest["operating_point"] = round(float(operating_point), 4)
    atomic_write_text(model_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def save_metrics(model_dir: str | Path, metrics: dict) -> None:
    """Record evaluation figures in a model's manifest (the weights and their hash are untouched)."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    manifest["metrics"] = {**manifest.get("metrics", {}), **metrics}
    atomic_write_text(model_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
