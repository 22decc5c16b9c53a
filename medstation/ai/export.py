"""Model versions exported as ONNX for use elsewhere, each checked by running the written file with
onnxruntime on the same inputs as torch and comparing the outputs.

What is exported is the network, not medstation's whole pipeline:

* **detector**: the FCOS backbone and head on a batch of pre-processed slices
  ``(N, channels, H, W)`` float32 (0..1 after medstation's lung window and resampling,
  ``H`` and ``W`` multiples of 32), with the model's own normalisation inside the graph.
  Outputs per anchor point, all levels concatenated: ``cls_logits`` (N, A, 2),
  ``bbox_regression`` (N, A, 4) and ``bbox_ctrness`` (N, A, 1); the box decoding, NMS,
  3-D grouping, sizing and calibration stay medstation's (``ai/detector.py``).
* **follow-up predictor**: the GRU and its head on padded tracks ``x`` (B, T, features),
  ``lengths`` (B,) int64 and ``ahead_years`` (B,), giving ``rate``, ``s0``, ``s1`` and
  ``growth_logit``. The GRU runs over the padding and reads its state at each track's last
  real step, which is exactly what the packed sequence in torch computes.

The ONNX file's metadata names the model, its version, the sha256 of the weights it came
from and that it is not for clinical use. A version never changes once written: the
export is a copy beside it, never a part of it.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medstation.core.errors import MedstationError, ModelError

OPSET = 17
#: largest difference allowed between torch and onnxruntime (float32, CPU)
ATOL, RTOL = 1e-4, 1e-3


class ExportError(MedstationError):
    """An export that could not be written or did not match torch."""


class _DetectorCore(nn.Module):
    def __init__(self, model, channels: int) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        mean = torch.tensor(model.transform.image_mean, dtype=torch.float32).reshape(1, channels, 1, 1)
        std = torch.tensor(model.transform.image_std, dtype=torch.float32).reshape(1, channels, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x):
        feats = list(self.backbone((x - self.mean) / self.std).values())
        out = self.head(feats)
        return out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"]


class _PredictorCore(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.gru, self.head = model.gru, model.head

    def forward(self, x, lengths, ahead_years):
        out, _h = self.gru(x)
        last = out[torch.arange(x.shape[0]), lengths - 1]  # the state after each track's last step
        z = self.head(torch.cat([last, ahead_years[:, None]], dim=1))
        return (z[:, 0], nn.functional.softplus(z[:, 1]) + 0.02, nn.functional.softplus(z[:, 2]) + 0.01,
                z[:, 3])


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("onnxruntime is not installed: the export cannot be checked",
                          "pip install 'medstation[onnx]' (onnx and onnxruntime)") from None
    return onnxruntime


def _write(module: nn.Module, inputs: tuple, names: list[str], outputs: list[str], dynamic: dict,
           path: Path, metadata: dict) -> None:
    import onnx

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{path}: cannot make its folder ({exc.strerror})",
                          "choose a writable folder for the .onnx file") from None
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with torch.no_grad(), contextlib.redirect_stdout(None), warnings.catch_warnings():
            # the exporter warns that a GRU's batch may not vary: each export is checked on a second batch
            warnings.simplefilter("ignore", UserWarning)
            # the TorchScript exporter is deprecated for the torch.export one, which needs onnxscript and
            # data-dependent shapes FCOS's head does not have; the written file is checked either way
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # GroupNorm's batch check: see above
            torch.onnx.export(module, inputs, str(tmp), input_names=names, output_names=outputs,
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
        proto = onnx.load(str(tmp))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write it ({exc.strerror})", "choose a writable folder") from None
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"{path}: the ONNX export failed ({' '.join(str(exc).split())[:200]})",
                          "report it with the model's name and version") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _compare(path: Path, feeds: dict, expected: list[np.ndarray], names: list[str]) -> dict:
    ort = _runtime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    got = session.run(names, feeds)
    seconds = time.perf_counter() - t0
    worst = {}
    for name, a, b in zip(names, expected, got):
        if a.shape != b.shape:
            raise ExportError(f"{path}: output {name} has shape {b.shape} in onnxruntime, {a.shape} in torch",
                              "report it with the model's name and version")
        worst[name] = float(np.max(np.abs(a - b))) if a.size else 0.0
        if not np.allclose(a, b, atol=ATOL, rtol=RTOL):
            raise ExportError(f"{path}: onnxruntime's {name} differs from torch's by up to {worst[name]:.3g}",
                              "the export is not faithful; report it with the model's name and version")
    return {"max_abs_difference": worst, "onnxruntime_seconds": round(seconds, 4),
            "atol": ATOL, "rtol": RTOL, "onnxruntime": ort.__version__}


def _metadata(manifest: dict, what: str) -> dict:
    return {"medstation_model": str(manifest.get("name", "")),
            "medstation_version": str(manifest.get("version", "")),
            "weights_sha256": str(manifest.get("sha256", "")), "exported_part": what,
            "intended_use": "research only; not for clinical use"}


def export_detector(detector, path: str | Path, *, size: int = 256, batch: int = 2, seed: int = 0) -> dict:
    """Write the detector's network as ONNX and check it with onnxruntime on the same batch."""
    path = Path(path)
    channels = detector.channels
    core = _DetectorCore(detector.model, channels).to("cpu").eval()
    core = core.to(memory_format=torch.contiguous_format)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.random((batch, channels, size, size), dtype=np.float32))
    with torch.no_grad():
        expected = [t.numpy() for t in core(x)]
    outputs = ["cls_logits", "bbox_regression", "bbox_ctrness"]
    _write(core, (x,), ["slices"], outputs,
           {"slices": {0: "batch", 2: "rows", 3: "columns"},
            **{o: {0: "batch", 1: "anchors"} for o in outputs}},
           path, {**_metadata(detector.manifest, "detector network (backbone + head)"),
                  "input": f"slices float32 (N, {channels}, H, W), 0..1, H and W multiples of 32"})
    check = _compare(path, {"slices": x.numpy()}, expected, outputs)
    # a second size: the rows and columns really are free
    x2 = torch.from_numpy(rng.random((1, channels, size // 2, size + 32), dtype=np.float32))
    with torch.no_grad():
        expected2 = [t.numpy() for t in core(x2)]
    _compare(path, {"slices": x2.numpy()}, expected2, outputs)
    return {"file": str(path), "bytes": path.stat().st_size, "model": detector.name,
            "version": detector.version, "part": "detector network", "opset": OPSET,
            "checked_on": [list(x.shape), list(x2.shape)], **check}


def export_predictor(predictor, path: str | Path, *, seed: int = 0) -> dict:
    """Write the follow-up predictor's network as ONNX and check it against the torch model (packed)."""
    from medstation.ai.predictor import FEATURES

    path = Path(path)
    core = _PredictorCore(predictor.model).eval()
    rng = np.random.default_rng(seed)
    lengths = torch.tensor([4, 2, 3], dtype=torch.int64)
    x = torch.from_numpy(rng.normal(0, 0.5, (3, 4, FEATURES)).astype(np.float32))
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 0  # padding, as predict_many pads
    ahead = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in predictor.model(x, lengths, ahead)]  # the packed torch model itself
    outputs = ["rate", "s0", "s1", "growth_logit"]
    _write(core, (x, lengths, ahead), ["x", "lengths", "ahead_years"], outputs,
           {"x": {0: "batch", 1: "steps"}, "lengths": {0: "batch"}, "ahead_years": {0: "batch"},
            **{o: {0: "batch"} for o in outputs}},
           path, {**_metadata(predictor.manifest, "follow-up growth predictor (GRU + head)"),
                  "input": f"x float32 (B, T, {FEATURES}) padded, lengths int64 (B,), "
                           "ahead_years float32 (B,)"})
    check = _compare(path, {"x": x.numpy(), "lengths": lengths.numpy(), "ahead_years": ahead.numpy()},
                     expected, outputs)
    # another batch size and track length: the batch and steps really are free
    lengths2 = torch.tensor([1, 6, 2, 5, 6], dtype=torch.int64)
    x2 = torch.from_numpy(rng.normal(0, 0.5, (5, 6, FEATURES)).astype(np.float32))
    for b, n in enumerate(lengths2.tolist()):
        x2[b, n:] = 0
    ahead2 = torch.tensor([0.25, 0.5, 1.0, 1.5, 3.0], dtype=torch.float32)
    with torch.no_grad():
        expected2 = [t.numpy() for t in predictor.model(x2, lengths2, ahead2)]
    _compare(path, {"x": x2.numpy(), "lengths": lengths2.numpy(), "ahead_years": ahead2.numpy()},
             expected2, outputs)
    return {"file": str(path), "bytes": path.stat().st_size, "model": predictor.name,
            "version": predictor.version, "part": "follow-up predictor network", "opset": OPSET,
            "checked_on": [list(x.shape), list(x2.shape)], **check}


def export_version(version, path: str | Path) -> dict:
    """Export a registry ``ModelVersion`` (its task picks the network)."""
    if version.task == "detection":
        from medstation.ai.store import load_detector

        return export_detector(load_detector(version.path), path)
    if version.task == "followup":
        from medstation.ai.predictor import load_predictor

        return export_predictor(load_predictor(version.path), path)
    raise ModelError(f"{version.id}: a {version.task} model has no ONNX export",
                     "export a detection or follow-up model")
