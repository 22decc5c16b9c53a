"""The CUDA paths, run where a GPU is (``pytest -m gpu``; ``packaging/gpu-check.sh`` runs them on a lent
machine). Skipped on a machine without CUDA: each compares the GPU result with the CPU one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medstation.synth import Nodule
from tests.ai.test_detector import phantom_volume

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


def test_the_detector_on_cuda_finds_what_it_finds_on_the_cpu():
    from medstation.ai.registry import open_detector

    nodule = Nodule((-70.0, 5.0, -10.0), 9.0)
    vol = phantom_volume([nodule])
    cpu, _ = open_detector(None, "cpu")
    gpu, _ = open_detector(None, "cuda")
    a, b = cpu.detect(vol), gpu.detect(vol)
    top_a = [f for f in a.findings if f.score >= cpu.threshold]
    top_b = [f for f in b.findings if f.score >= gpu.threshold]
    assert top_b and len(top_a) == len(top_b)
    for f, g in zip(top_a, top_b):  # float16 autocast on the GPU: the same lesions, near the same scores
        assert np.linalg.norm(np.subtract(f.center_mm, g.center_mm)) < 1.5
        assert abs(f.score - g.score) < 0.05


def test_a_training_step_on_cuda_lowers_the_loss_like_one_on_the_cpu():
    from medstation.ai.detector import build_model
    from medstation.ai.registry import open_detector

    det, _ = open_detector(None, "cpu")
    losses = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = build_model(det.manifest["architecture"], det.manifest["input"], det.manifest.get("network"))
        model.to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.rand(2, int(det.manifest["input"].get("channels", 3)), 128, 128, device=device)
        targets = [{"boxes": torch.tensor([[40.0, 40.0, 60.0, 60.0]], device=device),
                    "labels": torch.tensor([1], device=device)} for _ in range(2)]
        out = []
        for _ in range(3):
            loss = sum(model(list(x), targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(float(loss))
        losses[device] = out
    assert all(np.isfinite(losses["cuda"]))
    assert losses["cuda"][0] == pytest.approx(losses["cpu"][0], rel=0.05)
