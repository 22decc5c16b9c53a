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
import os
from pathlib import Path

from medstation.core.errors import ModelError
from medstation.core.files import atomic_write_bytes, atomic_write_text
from medstation.core.paths import user_models_path

WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
REQUIRED = ("name", "version", "architecture", "input", "classes", "sha256")


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
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: no manifest.json", "a model directory needs manifest.json and "
                         "model.safetensors; reinstall or retrain the model") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc})", "reinstall or retrain the model") from None
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


def open_detector(model: str | Path | None = None, device: str = "auto", threads: int = 0):
    """``(Detector, model_dir)`` for the command line: the given model (``NAME``, ``NAME@VERSION``
    or a directory) or the one in use, on the chosen device (``auto``: CUDA, then MPS, then CPU);
    ``threads`` > 0 sets torch's CPU threads."""
    import torch

    from medstation.ai.engine import choose_device
    from medstation.ai.registry import ModelRegistry

    registry = ModelRegistry()
    model_dir = registry.resolve(model, "detection").path if model else registry.default("detection").path
    if threads:
        torch.set_num_threads(threads)
    return load_detector(model_dir, choose_device(device or "auto")), model_dir


def save_model(model_dir: str | Path, state_dict: dict, manifest: dict) -> Path:
    """Write ``model.safetensors`` and ``manifest.json`` (with its sha256) atomically."""
    from safetensors.torch import save as save_safetensors

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    data = save_safetensors(tensors)
    atomic_write_bytes(model_dir / WEIGHTS, data)
    manifest = {**manifest, "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_text(model_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return model_dir


def list_models(task: str | None = None):
    """Every model version found (built-in first, then the user's), and the problems met
    (see ``registry.ModelRegistry``)."""
    from medstation.ai.registry import ModelRegistry

    registry = ModelRegistry()
    return registry.versions(task), registry.problems


def default_detector_dir() -> Path:
    """The detector in use: the one set with ``medstation models use``, else the built-in one."""
    from medstation.ai.registry import ModelRegistry

    return ModelRegistry().default("detection").path


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
