"""ONNX export (issue 29, item 3): the shipped detector and follow-up predictor written as ONNX, run
with onnxruntime, and compared with the torch models computed here, independently of the export's
own check."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from medstation.ai.predictor import FEATURES, load_predictor
from medstation.ai.registry import ModelRegistry
from medstation.ai.store import load_detector
from tests.cli.test_cli import medstation


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


def test_the_detector_exports_and_onnxruntime_gives_torchs_head_outputs(registry, tmp_path):
    from medstation.ai.export import export_detector

    version = registry.default("detection")
    detector = load_detector(version.path)
    info = export_detector(detector, tmp_path / "det.onnx")
    assert info["version"] == detector.version and max(info["max_abs_difference"].values()) < 1e-3
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "det.onnx")).metadata_props}
    assert meta["medstation_version"] == detector.version and "not for clinical use" in meta["intended_use"]
    assert meta["weights_sha256"] == detector.manifest["sha256"]
    # a lung-like slice batch through torch's own FCOS pieces (its transform normalises)
    rng = np.random.default_rng(5)
    x = rng.random((1, detector.channels, 96, 128), dtype=np.float32)
    model = detector.model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        images, _ = model.transform([torch.from_numpy(x[0])])
        head = model.head(list(model.backbone(images.tensors).values()))
    session = ort.InferenceSession(str(tmp_path / "det.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["cls_logits", "bbox_regression", "bbox_ctrness"], {"slices": x})
    for name, value in zip(("cls_logits", "bbox_regression", "bbox_ctrness"), got):
        assert np.allclose(head[name].numpy(), value, atol=1e-4, rtol=1e-3), name


def test_the_follow_up_predictor_exports_and_matches_the_packed_torch_model(registry, tmp_path):
    version = registry.default("followup")
    proc = medstation("models", "export", version.id, "--onnx", str(tmp_path / "rnn.onnx"), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["part"] == "follow-up predictor network" and info["file"].endswith("rnn.onnx")
    predictor = load_predictor(version.path)
    rng = np.random.default_rng(2)
    lengths = np.array([3, 1, 2, 3], np.int64)
    x = rng.normal(0, 0.5, (4, 3, FEATURES)).astype(np.float32)
    for b, n in enumerate(lengths):
        x[b, n:] = 0
    ahead = np.array([0.5, 1, 2, 0.25], np.float32)
    with torch.no_grad():
        want = predictor.model(torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(ahead))
    session = ort.InferenceSession(str(tmp_path / "rnn.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x, "lengths": lengths, "ahead_years": ahead})
    for a, b in zip(want, got):
        assert np.allclose(a.numpy(), b, atol=1e-5, rtol=1e-4)
    # a folder that cannot be written: one line, no traceback
    (tmp_path / "file").write_text("x")
    proc = medstation("models", "export", version.id, "--onnx", str(tmp_path / "file" / "rnn.onnx"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
