"""False-positive reduction: a small 3D CNN that re-scores the detector's candidates.

The detector sees 5 slices at a time; a vessel running obliquely, a bronchus
seen end-on, the dome of the diaphragm ringed by lung or the heart's border can
look like a nodule in that slab. As in the LUNA16 pipelines and nnDetection's
second stage, a patch classifier looks at a cube around each candidate (``size``
voxels of ``spacing_mm``, isotropic, windowed like the detector's input) and says
how nodule-like it is in 3D. The candidate's score becomes the geometric mean of
the detector's score and the classifier's probability (``weight`` 0.5), which the
model's calibration then maps to a probability.

Its weights live in the detector's own ``model.safetensors`` under ``fpr.`` (one
file, one hash); the manifest's ``fp_reduction`` section describes it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURE = "patch3d-cnn"
DEFAULT_SPEC = {"architecture": ARCHITECTURE, "size": 24, "spacing_mm": 1.25, "window": [-1000.0, 400.0],
                "widths": [8, 16, 32], "weight": 0.5}


class PatchNet(nn.Module):
    """Three conv-BN-ReLU blocks with max-pooling, global average pool, one logit."""

    def __init__(self, widths=(8, 16, 32)) -> None:
        super().__init__()
        layers, cin = [], 1
        for w in widths:
            layers += [nn.Conv3d(cin, w, 3, padding=1, bias=False), nn.BatchNorm3d(w), nn.ReLU(inplace=True),
                       nn.Conv3d(w, w, 3, padding=1, bias=False), nn.BatchNorm3d(w), nn.ReLU(inplace=True),
                       nn.MaxPool3d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3, 4)))[:, 0]


def build(spec: dict) -> PatchNet:
    return PatchNet(tuple(int(w) for w in spec.get("widths", DEFAULT_SPEC["widths"])))


def volume_tensor(voxels: np.ndarray, window) -> torch.Tensor:
    """The volume windowed to 0..1 as (1, 1, K, I, J) float32 (the block every patch samples)."""
    lo, hi = (float(v) for v in window)
    t = torch.from_numpy(np.ascontiguousarray(voxels, dtype=np.float32))
    return ((t - lo) / (hi - lo)).clamp_(0, 1)[None, None]


def extract(vol: torch.Tensor, spacing, centres_voxel, spec: dict) -> torch.Tensor:
    """Patches (n, 1, s, s, s) around ``centres_voxel`` (k, i, j) by trilinear sampling of ``vol``
    (from :func:`volume_tensor`) at ``spec['spacing_mm']``; outside the volume reads as air."""
    n = len(centres_voxel)
    size = int(spec["size"])
    if n == 0:
        return torch.zeros((0, 1, size, size, size))
    step = float(spec["spacing_mm"])
    sk, si, sj = (abs(float(s)) for s in spacing)
    offs = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * step  # mm
    c = torch.tensor(np.asarray(centres_voxel, np.float32))
    nk, ni, nj = vol.shape[2:]
    # grid_sample wants (x, y, z) = (j, i, k) normalised to -1..1 (align_corners=True: voxel centres)
    gk = (c[:, 0, None] + offs[None] / sk) / max(nk - 1, 1) * 2 - 1
    gi = (c[:, 1, None] + offs[None] / si) / max(ni - 1, 1) * 2 - 1
    gj = (c[:, 2, None] + offs[None] / sj) / max(nj - 1, 1) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gj[:, None, None, :], gi[:, None, :, None],
                                               gk[:, :, None, None]), dim=-1)
    out = []
    for start in range(0, n, 64):
        g = grid[start:start + 64]
        out.append(F.grid_sample(vol.expand(len(g), -1, -1, -1, -1), g, mode="bilinear",
                                 padding_mode="zeros", align_corners=True))
    return torch.cat(out)


@torch.inference_mode()
def probabilities(net: PatchNet, patches: torch.Tensor, device: torch.device) -> np.ndarray:
    net.eval()
    out = [torch.sigmoid(net(patches[s:s + 64].to(device))).float().cpu() for s in range(0, len(patches), 64)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def combine(det_score: np.ndarray, prob: np.ndarray, weight: float) -> np.ndarray:
    """Geometric mean of the detector's score and the classifier's probability."""
    d = np.clip(np.asarray(det_score, np.float64), 1e-6, 1)
    p = np.clip(np.asarray(prob, np.float64), 1e-6, 1)
    return d ** (1 - weight) * p ** weight
