"""The detector's post-processing: single-slice detections (``SliceDetections``) grouped into 3D
lesion candidates (``core.Finding``), elongated groups split at their valleys, nested ones merged.
The inferer then sizes each from its voxels (``ai.sizing``), calibrates the scores and reduces
false positives (``ai.detector``, ``ai.calibration``, ``ai.fpr``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from medstation.ai.vision import box_iou
from medstation.core.findings import Finding
from medstation.core.volume import Volume


@dataclass
class SliceDetections:
    """Boxes found on one model slice, in volume voxel indices (i0, j0, i1, j1)."""

    k: float  # fractional volume slice index
    boxes: np.ndarray  # (n, 4)
    scores: np.ndarray  # (n,)


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

