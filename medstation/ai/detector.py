"""The 2.5D CNN lesion detector's inferer: the batched loop over a volume (``Detector.detect``),
the heatmap, calibration and false-positive reduction; cut as MONAI cuts it, the network is in
``ai.network``, the pre-processing in ``ai.preprocess`` and the 3D grouping in ``ai.postprocess``
(their names are re-exported here for callers of the whole detector).

Network (``ai.network``): torchvision's FCOS (anchor-free one-stage detector: its head, focal
and GIoU losses, box coder and NMS) on a small ResNet backbone built from
torchvision's ``BasicBlock`` and ``FeaturePyramidNetwork``. The input is 2.5D:
``channels`` neighbouring slices (resampled to the model's slice spacing)
stacked as image channels, so the network can tell a nodule (a sphere: it
appears and vanishes within a few slices) from a vessel (a tube: it goes on).

Pre-processing follows the model's manifest (``input``): resample to its pixel
and slice spacing, window to its HU range, skip slices that hold no lung and
crop every slice to the box around the lungs (+ margin). Detections of single
slices are merged into 3D lesion candidates (``medstation.core.Finding``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from medstation.ai.network import ARCHITECTURE, DEFAULT_INPUT, DEFAULT_NETWORK, Backbone, build_model
from medstation.ai.postprocess import SliceDetections, group_slices
from medstation.ai.preprocess import (
    AIR_HU,
    CROP_MARGIN_MM,
    MIN_LUNG_AREA_MM2,
    Prepared,
    check_volume,
    prepare,
    stack_channels,
)
from medstation.ai.sizing import SIZE_MIN_SCORE, size_findings
from medstation.ai.vision import FCOS
from medstation.core.cpu import CpuShare
from medstation.core.errors import ModelError
from medstation.core.findings import Finding
from medstation.core.volume import Volume
from medstation.imaging.lungs import has_lung, lung_mask
from medstation.imaging.threads import itk_threads

__all__ = ["AIR_HU", "ARCHITECTURE", "CROP_MARGIN_MM", "DEFAULT_INPUT", "DEFAULT_NETWORK",
           "MIN_LUNG_AREA_MM2", "Backbone", "DetectionRun", "Detector", "Heatmap", "Prepared",
           "SliceDetections", "build_model", "check_volume", "group_slices", "prepare", "stack_channels"]


@dataclass
class Heatmap:
    """The network's nodule probability on a coarse grid aligned with the volume's slices.

    ``values[m]`` (uint8, 0..255 = probability 0..1) is model slice ``m``; it covers the whole
    slice: heat pixel (r, c) spans volume rows ``[r, r + 1) * step[0]`` and columns
    ``[c, c + 1) * step[1]`` (pixel edges, from -0.5). Volume slice ``k`` shows model slice
    ``round(k / k_per_slice)``.
    """

    values: np.ndarray  # (model slices, rows, cols) uint8
    k_per_slice: float  # volume slices per model slice
    step: tuple[float, float]  # volume rows and columns per heat pixel

    def slice_for(self, k: int) -> np.ndarray | None:
        m = int(round(k / self.k_per_slice)) if self.k_per_slice > 0 else k
        return self.values[m] if 0 <= m < len(self.values) else None


@dataclass
class DetectionRun:
    findings: list[Finding]
    slices_total: int
    slices_run: int
    seconds: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    heatmap: Heatmap | None = None
    #: torch threads each batch ran on (CPU: the cores other processes left free, ``core.cpu``)
    threads: list[int] = field(default_factory=list)
    #: the volume's lung mask (``imaging.lungs``), for whatever comes next (registration)
    lungs: np.ndarray | None = None


@contextlib.contextmanager
def _threads_restored(n: int):
    """torch's thread count set back to ``n`` however the block ends."""
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


class Detector:
    """A loaded detector: network on a device plus its manifest."""

    def __init__(self, model: FCOS, manifest: dict, device: str = "cpu",
                 fpr: nn.Module | None = None) -> None:
        self.manifest = manifest
        #: the false-positive reduction stage (``ai.fpr``), when the model has one
        self.fpr = fpr.to(device).eval() if fpr is not None else None
        self.fpr_spec = dict(manifest.get("fp_reduction") or {}) if fpr is not None else {}
        self.input_spec = dict(manifest["input"])
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.name = str(manifest.get("name", ""))
        self.version = str(manifest.get("version", ""))
        cal = manifest.get("calibration")
        self.calibration = cal if isinstance(cal, dict) else None
        self._tap: dict[str, object] = {}
        #: on CPU, run each batch on as many threads as there are free cores (``core.cpu.CpuShare``):
        #: a team larger than that waits at every barrier for a member another process holds
        self.adapt_threads = True
        # the heatmap: the stride-4 level's shape and the head's raw outputs of the last batch
        tap = self._tap
        self.model.backbone.register_forward_hook(lambda _m, _i, out: tap.__setitem__("p2", out["p2"].shape))
        self.model.head.register_forward_hook(lambda _m, _i, out: tap.__setitem__("head", out))

    @property
    def threshold(self) -> float:
        """The operating point: the (calibrated) score at 1 false positive per scan, else 0.5."""
        op = self.manifest.get("operating_point")
        if op is None:
            op = ((self.manifest.get("metrics") or {}).get("froc") or {}).get("threshold_at_1fp", 0.5)
        return float(op)

    @property
    def keeps_in(self) -> str:
        """Where a finding's centre must lie to be kept: "lung mask" (1.x: the air-based mask, which
        leaves a tumour on the mediastinum out) or "search region" (each lung's hull grown 5 mm,
        ``imaging.lungs``); the manifest's ``keep_findings_in``, so that a version's behaviour, and
        its card's figures, stay what they were when it was written."""
        return str(self.manifest.get("keep_findings_in") or "lung mask")

    @property
    def channels(self) -> int:
        return int(self.input_spec["channels"])

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The network on ``(channels, rows, cols)`` images (any sizes: padded to the largest);
        one dict of boxes/scores/labels per image."""
        images = [im.to(self.device, non_blocking=True) for im in images]
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                return self.model(images)
        return self.model(images)

    def detect(
        self,
        volume: Volume,
        *,
        batch_size: int = 8,
        min_score: float = 0.15,
        progress: Callable[[int, int], None] | None = None,
        partial: Callable[[list[SliceDetections]], None] | None = None,
        check: Callable[[], None] | None = None,
        heatmap: bool = True,
    ) -> DetectionRun:
        """Find lesions in ``volume``: findings sorted by score (highest first).

        A series with no lung in it (a head, an abdomen) is refused before anything runs
        (``ModelError``: "no lung in this series"); findings whose centre lies outside where the
        model keeps them (``keeps_in``: the lung mask, or the search region around the lungs that
        holds central tumours; never the neck or the abdomen) are dropped.
        """
        t0 = time.perf_counter()
        # measured from here, so the first batch already knows what the lung mask left free
        adapt = self.adapt_threads and self.device.type == "cpu"
        cpu = CpuShare(most=torch.get_num_threads()) if adapt else None
        check_volume(volume, self.input_spec)
        first = cpu.threads() if cpu else None  # the free cores now (an instant reading at first)
        with itk_threads(first), _threads_restored(torch.get_num_threads()):
            if first:  # ITK's team (the lung mask) and torch's (the resampling) sized alike
                torch.set_num_threads(first)
            lungs = lung_mask(volume)
            if not has_lung(lungs):
                raise ModelError(f"{volume.series_uid or 'this series'}: no lung in this series "
                                 f"({lungs.volume_ml:.0f} ml of air inside the body): detection skipped",
                                 "the detector reads chest CT; open a series that covers the lungs")
            prep = prepare(volume, self.input_spec, check)
        t1 = time.perf_counter()
        per_slice: list[SliceDetections] = []
        total = len(prep.kept)
        heat = None
        if heatmap:
            heat = np.zeros((prep.images.shape[0], -(-int(round(volume.shape[1] / prep.scale[1])) // 4),
                             -(-int(round(volume.shape[2] / prep.scale[2])) // 4)), np.uint8)
        team = torch.get_num_threads()
        used: list[int] = []
        with torch.inference_mode(), _threads_restored(team):
            for start in range(0, total, batch_size):
                if check:
                    check()
                if cpu is not None:
                    n = cpu.threads()
                    if n != torch.get_num_threads():
                        torch.set_num_threads(n)
                used.append(torch.get_num_threads())
                chunk = prep.kept[start:start + batch_size]
                stacked = stack_channels(prep.images, chunk, self.channels)
                boxes = [prep.slice_boxes.get(m) for m in chunk]
                images = [x if b is None else x[:, b[0]:b[1], b[2]:b[3]] for x, b in zip(stacked, boxes)]
                outputs = self.forward(images)
                if heat is not None:
                    self._paint_heat(heat, prep, chunk, images, boxes)
                found = [self._to_volume(prep, m, out, min_score, b)
                         for m, out, b in zip(chunk, outputs, boxes)]
                per_slice.extend(found)
                if partial:  # shown while running: the slices' scores through the calibration
                    partial([SliceDetections(f.k, f.boxes, self._calibrated(f.scores)) for f in found
                             if len(f.scores)])
                if progress:  # in the series' own slices (the model runs on resampled ones)
                    share = min(start + batch_size, total) / total
                    progress(int(round(share * volume.shape[0])), volume.shape[0])
        t2 = time.perf_counter()
        findings = group_slices(per_slice, volume, self.name, self.version)
        keep = lungs.in_region if self.keeps_in == "search region" else lungs.contains
        findings = [f for f in findings if keep(f.center_voxel)]
        t_fpr = time.perf_counter()
        if self.fpr is not None:
            self._reduce_false_positives(volume, findings, check)
        t_fpr = time.perf_counter() - t_fpr
        if self.calibration:
            for f in findings:
                f.score = round(float(self._calibrated(np.array([f.score]))[0]), 4)
                cal = self._calibrated(np.array([b[5] for b in f.boxes]))
                f.boxes = [(*b[:5], round(float(v), 4)) for b, v in zip(f.boxes, cal)]
        findings.sort(key=lambda f: -f.score)
        for n, f in enumerate(findings, start=1):
            f.finding_id = f"F{n}"
        with itk_threads(cpu.threads() if cpu else None):
            findings = size_findings(volume, findings, check=check,
                                     min_score=min(SIZE_MIN_SCORE, 0.6 * self.threshold),
                                     lungs=lungs.mask)
        for n, f in enumerate(findings, start=1):  # numbered again: one finding per lesion
            f.finding_id = f"F{n}"
        t3 = time.perf_counter()
        hm = None
        if heat is not None:
            hm = Heatmap(heat, prep.scale[0], (4 * prep.scale[1], 4 * prep.scale[2]))
        return DetectionRun(findings, prep.images.shape[0], total,
                            {"prepare": t1 - t0, "network": t2 - t1, "group": t3 - t2 - t_fpr,
                             "fp_reduction": t_fpr, "total": t3 - t0}, str(self.device), hm, used,
                            lungs.mask)

    def _calibrated(self, scores: np.ndarray) -> np.ndarray:
        if not self.calibration or not len(scores):
            return scores
        from medstation.ai.calibration import apply

        return np.asarray(apply(np.asarray(scores, np.float64), self.calibration), np.float32).reshape(-1)

    def _reduce_false_positives(self, volume: Volume, findings: list[Finding], check=None) -> None:
        """Each candidate's score becomes the geometric mean of its detector score and the 3D patch
        classifier's probability (``ai.fpr``); box scores are scaled alike."""
        from medstation.ai import fpr

        if not findings:
            return
        if check:
            check()
        vol = fpr.volume_tensor(volume.voxels, self.fpr_spec.get("window", self.input_spec["window"]))
        patches = fpr.extract(vol, volume.spacing, [f.center_voxel for f in findings], self.fpr_spec)
        prob = fpr.probabilities(self.fpr, patches, self.device)
        new = fpr.combine([f.score for f in findings], prob, float(self.fpr_spec.get("weight", 0.5)))
        for f, score in zip(findings, new):
            ratio = float(score) / max(f.score, 1e-6)
            f.score = round(float(score), 4)
            f.boxes = [(*b[:5], round(min(1.0, b[5] * ratio), 4)) for b in f.boxes]

    def _paint_heat(self, heat: np.ndarray, prep: Prepared, chunk: list[int], images, boxes) -> None:
        """The stride-4 level's nodule probability (sqrt of class x centre-ness, as FCOS scores) of
        each image of the batch, written at its place in the full slice."""
        out = self._tap.get("head")
        shape = self._tap.get("p2")
        if out is None or shape is None:
            return
        _n, _c, h4, w4 = shape  # type: ignore[misc]
        cls = out["cls_logits"][:, : h4 * w4, -1].float()  # type: ignore[index]
        ctr = out["bbox_ctrness"][:, : h4 * w4, 0].float()  # type: ignore[index]
        prob = torch.sqrt(torch.sigmoid(cls) * torch.sigmoid(ctr)).view(-1, h4, w4).cpu().numpy()
        if self.calibration:
            from medstation.ai.calibration import apply

            prob = apply(prob, self.calibration)
        for n, (m, im, b) in enumerate(zip(chunk, images, boxes)):
            hh, ww = -(-im.shape[1] // 4), -(-im.shape[2] // 4)
            r0 = prep.crop[0] + (b[0] if b is not None else 0)
            c0 = prep.crop[1] + (b[2] if b is not None else 0)
            r, c = int(round(r0 / 4)), int(round(c0 / 4))
            tile = prob[n, :hh, :ww]
            tile = tile[: max(0, heat.shape[1] - r), : max(0, heat.shape[2] - c)]
            heat[m, r:r + tile.shape[0], c:c + tile.shape[1]] = np.rint(np.clip(tile, 0, 1) * 255)

    @staticmethod
    def _to_volume(prep: Prepared, m: int, out: dict, min_score: float, box=None) -> SliceDetections:
        scores = out["scores"].float().cpu().numpy()
        keep = scores >= min_score
        b = out["boxes"].float().cpu().numpy()[keep]  # x0, y0, x1, y1 in crop pixels
        sk, si, sj = prep.scale
        r0, c0 = prep.crop
        if box is not None:
            r0, c0 = r0 + box[0], c0 + box[2]
        # pixel edges: model pixel edge u maps to volume edge u * scale
        i0 = (b[:, 1] + r0) * si - 0.5
        i1 = (b[:, 3] + r0) * si - 0.5
        j0 = (b[:, 0] + c0) * sj - 0.5
        j1 = (b[:, 2] + c0) * sj - 0.5
        return SliceDetections(m * sk, np.stack([i0, j0, i1, j1], axis=1), scores[keep])


