"""torchvision without torch._dynamo (issue 31): the detector's process never imports dynamo for
roi_align, and whatever imports it later gets the real package."""

from __future__ import annotations

import subprocess
import sys

CHECK = r"""
import sys
import medstation.ai.detector  # torch, torchvision and the network
assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
ra = sys.modules["torchvision.ops.roi_align"]
import torch._dynamo.utils as real
assert hasattr(real, "counters") and real.__spec__ is not None, "a stand-in, not torch._dynamo.utils"
assert ra.is_compile_supported("cpu") == real.is_compile_supported("cpu")
import torch
boxes = torch.tensor([[0, 0.0, 0.0, 3.0, 3.0]])
out = ra.roi_align(torch.arange(16.0).reshape(1, 1, 4, 4), boxes, output_size=2)  # still works
assert out.shape == (1, 1, 2, 2)
print("ok")
"""


def test_the_detector_imports_without_dynamo_and_dynamo_stays_real_afterwards():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
