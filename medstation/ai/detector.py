"""The 2.5D CNN lesion detector: network, pre-processing, inference, 3D grouping.

Network: torchvision's FCOS (anchor-free one-stage detector: its head, focal
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

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import BasicBlock
from torchvision.ops import FeaturePyramidNetwork, box_iou
from torchvision.ops.misc import Conv2dNormActivation

from medstation.ai.sizing import SIZE_MIN_SCORE, size_findings
from medstation.core.errors import ModelError
from medstation.core.findings import Finding
from medstation.core.volume import Volume
from medstation.imaging.lungs import has_lung, lung_mask

ARCHITECTURE = "fcos-resnet-2.5d"

#: the input spec of the default detector (stored in every manifest)
DEFAULT_INPUT = {
    "channels": 5,  # neighbouring slices as channels, centre slice in the middle
    "slice_spacing_mm": 2.0,
    "pixel_spacing_mm": 1.0,
    "window": [-1000.0, 400.0],  # HU mapped to 0..1
    "modality": "CT",
}
DEFAULT_NETWORK = {"widths": [24, 32, 64, 128], "fpn_channels": 64, "head_convs": 2}

#: lungs: voxels below this HU inside the body
AIR_HU = -400.0
#: slices with less lung than this (mm^2) are skipped
MIN_LUNG_AREA_MM2 = 150.0
#: margin around the lungs kept in the crop (mm): juxtapleural nodules sit on the edge
CROP_MARGIN_MM = 12.0


# -- network ----------------------------------------------------------------

class Backbone(nn.Module):
    """Stem (stride 2) + three ResNet basic blocks (strides 4, 8, 16) + FPN.

    Returns the FPN levels at strides 4 and 8 (``p2``, ``p3``); stride 16 feeds
    the top-down path. Lung nodules of 3-30 mm are 3-30 pixels at 1 mm: stride
    4 holds them.
    """

    def __init__(self, in_channels: int, widths: list[int], fpn_channels: int) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(
            Conv2dNormActivation(in_channels, w0, kernel_size=3, stride=2),
            Conv2dNormActivation(w0, w0, kernel_size=3, stride=1),
        )
        self.layer1 = _block(w0, w1)
        self.layer2 = _block(w1, w2)
        self.layer3 = _block(w2, w3)
        self.fpn = FeaturePyramidNetwork([w1, w2, w3], fpn_channels)
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        p = self.fpn(OrderedDict([("p2", c2), ("p3", c3), ("p4", c4)]))
        return OrderedDict([("p2", p["p2"]), ("p3", p["p3"])])


def _block(cin: int, cout: int) -> nn.Module:
    down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(BasicBlock(cin, cout, stride=2, downsample=down), BasicBlock(cout, cout))


class _NoResize(GeneralizedRCNNTransform):
    """Normalise and batch only: the input is already at the model's spacing."""

    def resize(self, image, target=None):
        return image, target


def build_model(architecture: str, input_spec: dict, network: dict | None = None,
                *, score_thresh: float = 0.05) -> FCOS:
    """The network for ``architecture``; ``ModelError`` if this version does not know it."""
    if architecture != ARCHITECTURE:
        raise ModelError(f"unknown model architecture {architecture!r} "
                         f"(this medstation knows {ARCHITECTURE!r})",
                         "update medstation or pick another model")
    net = {**DEFAULT_NETWORK, **(network or {})}
    channels = int(input_spec["channels"])
    backbone = Backbone(channels, list(net["widths"]), int(net["fpn_channels"]))
    anchors = AnchorGenerator(sizes=((4,), (8,)), aspect_ratios=((1.0,), (1.0,)))
    head = FCOSHead(backbone.out_channels, 1, num_classes=2, num_convs=int(net["head_convs"]))
    model = FCOS(backbone, num_classes=2, anchor_generator=anchors, head=head,
                 score_thresh=score_thresh, nms_thresh=0.3, detections_per_img=30, topk_candidates=300,
                 center_sampling_radius=1.5)
    model.transform = _NoResize(min_size=64, max_size=4096, image_mean=[0.3] * channels,
                                image_std=[0.3] * channels, size_divisible=32)
    return model


# -- pre-processing -----------------------------------------------------------

@dataclass
class Prepared:
    """A volume at the model's spacing, windowed, cropped to the lungs."""

    images: torch.Tensor  # (slices, rows, cols) float32 in 0..1, model spacing
    kept: list[int]  # model slice indices that hold lung
    crop: tuple[int, int]  # (row, col) offset of the crop in the resampled slice
    scale: tuple[float, float, float]  # volume index per model index along k, i, j
    model_spacing: tuple[float, float, float]
    seconds: float = 0.0
    #: per kept slice: (r0, r1, c0, c1) in ``images`` around the lungs of it and its neighbours
    slice_boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


def _check_volume(volume: Volume, input_spec: dict) -> None:
    where = volume.series_uid or "this series"
    if volume.is_color or volume.voxels.ndim != 3:
        raise ModelError(f"{where}: the detector needs a grey image volume", "open a CT series")
    if input_spec.get("modality") and volume.modality and volume.modality != input_spec["modality"]:
        raise ModelError(f"{where}: the detector is for {input_spec['modality']}, "
                         f"this series is {volume.modality}",
                         "open a chest CT series")
    if volume.shape[0] < 3:
        raise ModelError(f"{where}: {volume.shape[0]} slice(s); the detector needs a stack of axial slices",
                         "open a thin-slice chest CT series")
    if volume.geometry_errors or not volume.has_geometry:
        why = "; ".join(volume.geometry_errors) or "no slice positions or orientation in the files"
        raise ModelError(f"{where}: the series has no valid patient geometry ({why})",
                         "the detector measures in mm: fix or re-export the series with its geometry")
    repeats = [w for w in volume.warnings if "repeat a position" in w]
    if repeats:  # two images at one position: not one volume, sizes and scores would be invented
        raise ModelError(f"{where}: {repeats[0]}; the stack is not one volume",
                         "open one acquisition of the series (split by echo or phase, or without the copies)")
    if not all(math.isfinite(s) and s > 0 for s in volume.spacing):
        raise ModelError(f"{where}: impossible voxel spacing {volume.spacing}",
                         "re-export the series from the scanner or PACS")
    if abs(float(volume.direction[0][2])) < 0.9:
        raise ModelError(f"{where}: the slices are not axial; the detector reads axial chest CT",
                         "open the axial series of the study")


def prepare(volume: Volume, input_spec: dict, check: Callable[[], None] | None = None, *,
            crop_to_lungs: bool = True) -> Prepared:
    """Resample to the model's spacing, window, find the lungs and crop to them."""
    t0 = time.perf_counter()
    _check_volume(volume, input_spec)
    sk, si, sj = (abs(s) for s in volume.spacing)
    px = float(input_spec["pixel_spacing_mm"])
    dz = float(input_spec["slice_spacing_mm"])
    lo, hi = (float(v) for v in input_spec["window"])
    n, rows, cols = volume.shape
    out_rows = max(8, int(round(rows * si / px)))
    out_cols = max(8, int(round(cols * sj / px)))
    out_n = max(1, int(math.floor((n - 1) * sk / dz)) + 1)
    src_k = np.arange(out_n) * dz / sk  # fractional source slice of every model slice
    needed = sorted({int(math.floor(f)) for f in src_k}
                    | {min(n - 1, int(math.floor(f)) + 1) for f in src_k if f - math.floor(f) > 1e-6})
    planes: dict[int, torch.Tensor] = {}
    vox = volume.voxels
    for start in range(0, len(needed), 32):
        if check:
            check()
        ks = needed[start:start + 32]
        block = torch.from_numpy(np.ascontiguousarray(vox[ks], dtype=np.float32))[:, None]
        block = F.interpolate(block, size=(out_rows, out_cols), mode="bilinear", align_corners=False,
                              antialias=(out_rows < rows or out_cols < cols))[:, 0]
        block = ((block - lo) / (hi - lo)).clamp_(0.0, 1.0)
        for k, plane in zip(ks, block):
            planes[k] = plane
    images = torch.empty((out_n, out_rows, out_cols), dtype=torch.float32)
    for m, f in enumerate(src_k):
        k0 = int(math.floor(f))
        w = f - k0
        if w < 1e-6 or k0 + 1 >= n:
            images[m] = planes[min(k0, n - 1)]
        else:
            torch.lerp(planes[k0], planes[k0 + 1], float(w), out=images[m])
    del planes
    # lungs: air enclosed by the body along both its row and its column (found on every
    # second pixel: the mask only decides which slices to run and where to crop)
    step = 2
    air = images[:, ::step, ::step] < (AIR_HU - lo) / (hi - lo)
    body = ~air
    inside = _between(body, 2) & _between(body, 1)
    lung = air & inside
    area = lung.sum(dim=(1, 2)).numpy() * (px * step) ** 2
    kept = [int(m) for m in np.nonzero(area >= MIN_LUNG_AREA_MM2)[0]]
    crop = (0, 0)
    slice_boxes: dict[int, tuple[int, int, int, int]] = {}
    if kept and crop_to_lungs:
        margin = int(round(CROP_MARGIN_MM / px))
        rows_any = lung.any(dim=2).repeat_interleave(step, dim=1)[:, :out_rows]  # (slices, rows)
        cols_any = lung.any(dim=1).repeat_interleave(step, dim=1)[:, :out_cols]  # (slices, cols)
        r0, r1, c0, c1 = _extent(rows_any[kept].any(dim=0), cols_any[kept].any(dim=0), margin,
                                 out_rows, out_cols)
        images = images[:, r0:r1, c0:c1].contiguous()
        crop = (r0, c0)
        half = int(input_spec["channels"]) // 2
        for m in kept:  # each slice cropped to the lungs it and its neighbours hold
            lo, hi = max(0, m - half), min(out_n, m + half + 1)
            a0, a1, b0, b1 = _extent(rows_any[lo:hi].any(dim=0), cols_any[lo:hi].any(dim=0), margin,
                                     out_rows, out_cols)
            slice_boxes[m] = (max(0, a0 - r0), min(r1, a1) - r0, max(0, b0 - c0), min(c1, b1) - c0)
    scale = (dz / sk, rows / out_rows, cols / out_cols)
    spacing = (dz, si * rows / out_rows, sj * cols / out_cols)
    return Prepared(images, kept, crop, scale, spacing, time.perf_counter() - t0, slice_boxes)


def _extent(rows: torch.Tensor, cols: torch.Tensor, margin: int, n_rows: int,
            n_cols: int) -> tuple[int, int, int, int]:
    r = torch.nonzero(rows).flatten()
    c = torch.nonzero(cols).flatten()
    if not len(r) or not len(c):
        return 0, n_rows, 0, n_cols
    return (max(0, int(r[0]) - margin), min(n_rows, int(r[-1]) + 1 + margin),
            max(0, int(c[0]) - margin), min(n_cols, int(c[-1]) + 1 + margin))


def _between(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """True between the first and the last True along ``dim`` (inclusive)."""
    fwd = mask.cummax(dim=dim).values
    bwd = mask.flip(dim).cummax(dim=dim).values.flip(dim)
    return fwd & bwd


def stack_channels(images: torch.Tensor, slices: list[int], channels: int) -> torch.Tensor:
    """``(len(slices), channels, rows, cols)``: each slice with its neighbours (edges repeated)."""
    half = channels // 2
    idx = torch.tensor(slices)[:, None] + torch.arange(-half, half + 1)[None, :]
    idx = idx.clamp_(0, images.shape[0] - 1)
    return images[idx]


# -- inference ----------------------------------------------------------------

@dataclass
class SliceDetections:
    """Boxes found on one model slice, in volume voxel indices (i0, j0, i1, j1)."""

    k: float  # fractional volume slice index
    boxes: np.ndarray  # (n, 4)
    scores: np.ndarray  # (n,)


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
        (``ModelError``: "no lung in this series"); findings whose centre lies outside the
        lung mask (heart, mediastinum, spine, chest wall, neck, abdomen) are dropped.
        """
        t0 = time.perf_counter()
        _check_volume(volume, self.input_spec)
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
        with torch.inference_mode():
            for start in range(0, total, batch_size):
                if check:
                    check()
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
        findings = [f for f in findings if lungs.contains(f.center_voxel)]
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
                             "fp_reduction": t_fpr, "total": t3 - t0}, str(self.device), hm)

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


# -- 3D grouping --------------------------------------------------------------

def group_slices(per_slice: list[SliceDetections], volume: Volume, model_name: str = "",
                 model_version: str = "", *, iou: float = 0.2, max_gap: int = 1) -> list[Finding]:
    """Merge slice detections into 3D lesion candidates.

    Boxes on consecutive model slices (``max_gap`` empty slices allowed) that
    overlap (IoU >= ``iou``, or one box's centre inside the other) form one
    lesion. Its score is the best slice's; its centre is the score-weighted
    mean of the box centres; its diameter is the longest box side in mm.
    """
    sk, si, sj = (abs(s) for s in volume.spacing)
    order = sorted(range(len(per_slice)), key=lambda n: per_slice[n].k)
    tracks: list[dict] = []
    for pos, n in enumerate(order):
        sd = per_slice[n]
        if not len(sd.scores):
            continue
        boxes = torch.from_numpy(sd.boxes.astype(np.float32))
        live = [t for t in tracks if pos - t["last"] <= max_gap + 1]
        claimed: set[int] = set()
        if live:
            prev = torch.tensor([t["boxes"][-1][1:5] for t in live], dtype=torch.float32)
            overlap = box_iou(boxes, prev).numpy()
            for b in np.argsort(-sd.scores):
                best, best_iou = None, 0.0
                for t_i, t in enumerate(live):
                    if id(t) in claimed:
                        continue
                    o = float(overlap[b, t_i])
                    if o < iou and not _centre_inside(sd.boxes[b], t["boxes"][-1][1:5]):
                        continue
                    if o >= best_iou:
                        best, best_iou = t, o
                if best is not None:
                    claimed.add(id(best))
                    best["boxes"].append((sd.k, *sd.boxes[b], float(sd.scores[b])))
                    best["last"] = pos
                else:
                    tracks.append({"boxes": [(sd.k, *sd.boxes[b], float(sd.scores[b]))], "last": pos})
        else:
            for b in range(len(sd.scores)):
                tracks.append({"boxes": [(sd.k, *sd.boxes[b], float(sd.scores[b]))], "last": pos})
    findings = []
    chains = [seg for t in tracks
              for seg in _split_elongated(np.array(t["boxes"], dtype=float), sk, si, sj)]
    for arr in chains:  # k, i0, j0, i1, j1, score
        w = arr[:, 5]
        ci = (arr[:, 1] + arr[:, 3]) / 2
        cj = (arr[:, 2] + arr[:, 4]) / 2
        centre = (float(np.average(arr[:, 0], weights=w)), float(np.average(ci, weights=w)),
                  float(np.average(cj, weights=w)))
        h_mm = (arr[:, 3] - arr[:, 1]) * si
        w_mm = (arr[:, 4] - arr[:, 2]) * sj
        diameter = float(max(h_mm.max(), w_mm.max()))
        k_lo = int(math.floor(arr[:, 0].min()))
        k_hi = int(math.ceil(arr[:, 0].max()))
        # boxes on every volume slice the lesion spans (nearest model slice's box)
        boxes = []
        for k in range(max(0, k_lo), min(volume.shape[0] - 1, k_hi) + 1):
            near = int(np.argmin(np.abs(arr[:, 0] - k)))
            boxes.append((k, *(round(float(v), 2) for v in arr[near, 1:5]), round(float(arr[near, 5]), 4)))
        findings.append(Finding(
            finding_id="",
            center_mm=tuple(round(float(v), 2) for v in volume.index_to_patient(centre)),  # type: ignore[arg-type]
            center_voxel=tuple(round(v, 2) for v in centre),  # type: ignore[arg-type]
            diameter_mm=round(diameter, 1),
            score=round(float(w.max()), 4),
            slice_range=(max(0, k_lo), min(volume.shape[0] - 1, k_hi)),
            volume_mm3=None,  # a box has no volume: only a segmentation measures one
            boxes=boxes,  # type: ignore[arg-type]
            model_name=model_name,
            model_version=model_version,
        ))
    findings = _merge_nested(findings)
    findings.sort(key=lambda f: -f.score)
    for n, f in enumerate(findings, start=1):
        f.finding_id = f"F{n}"
    return findings


#: a chain of slice boxes longer in z than ``ELONGATED`` x its widest box (+ 5 mm) is not one
#: round lesion: split at its score valleys (a nodule chained with a vessel running through the slices)
ELONGATED = 1.5
VALLEY = 0.3


def _split_elongated(arr: np.ndarray, sk: float, si: float, sj: float) -> list[np.ndarray]:
    """``arr`` (rows k, i0, j0, i1, j1, score; k ascending) as one chain, or split where it is far
    longer than wide: the run around the best slice whose scores stay above ``VALLEY`` x its peak,
    then the rest on either side the same way (a vessel's low-scoring slices become their own
    candidates instead of pulling a nodule's centre, and its segmentation, along the vessel)."""
    if len(arr) < 3:
        return [arr]
    width = float(max(((arr[:, 3] - arr[:, 1]) * si).max(), ((arr[:, 4] - arr[:, 2]) * sj).max()))
    length = float((arr[-1, 0] - arr[0, 0] + 1) * sk)
    if length <= ELONGATED * width + 5.0:
        return [arr]
    scores = arr[:, 5]
    peak = int(np.argmax(scores))
    lo = hi = peak
    while lo > 0 and scores[lo - 1] >= VALLEY * scores[peak]:
        lo -= 1
    while hi < len(arr) - 1 and scores[hi + 1] >= VALLEY * scores[peak]:
        hi += 1
    if lo == 0 and hi == len(arr) - 1:
        return [arr]
    out = [arr[lo:hi + 1]]
    for rest in (arr[:lo], arr[hi + 1:]):
        if len(rest):
            out += _split_elongated(rest, sk, si, sj)
    return out


def _centre_inside(box, other) -> bool:
    ci, cj = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return other[0] <= ci <= other[2] and other[1] <= cj <= other[3]


def _merge_nested(findings: list[Finding]) -> list[Finding]:
    """Drop a candidate whose centre lies inside a higher-scoring one's 3D box."""
    order = sorted(findings, key=lambda f: -f.score)
    if not order:
        return []
    boxes = np.array([f.bbox() for f in order])  # k0, i0, j0, k1, i1, j1
    boxes[:, 0] -= 0.5
    boxes[:, 3] += 0.5
    centres = np.array([f.center_voxel for f in order])
    keep = np.zeros(len(order), bool)
    for n in range(len(order)):
        kb = boxes[keep]
        c = centres[n]
        inside = (kb[:, :3] <= c).all(axis=1) & (c <= kb[:, 3:]).all(axis=1)
        keep[n] = not inside.any()
    return [f for f, k in zip(order, keep) if k]
