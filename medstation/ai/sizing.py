"""Sizes of a detector's findings from their own voxels (``imaging.segment``), one finding per lesion.

Kept apart from the network and the 3D grouping (``ai.detector``): the detector hands over its grouped
candidates, this module segments the ones a reader may see, centres them on their masks and drops a
weaker candidate that lies inside a stronger one's segmentation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medstation.core.findings import Finding
from medstation.core.volume import Volume

#: findings sized from their voxels: those a reader may see (the lowest operating points are
#: above this score), the best first, at most this many
SIZE_MIN_SCORE = 0.3
SIZE_MAX_FINDINGS = 25
#: of those, the ones the first segmentation cannot contain get a second, wider try (about 2-3 s
#: each on 2 cores): the best this many
SIZE_MAX_SECOND_TRIES = 4


def size_findings(volume: Volume, findings: list[Finding], check: Callable[[], None] | None = None,
                  min_score: float = SIZE_MIN_SCORE, lungs: np.ndarray | None = None) -> list[Finding]:
    """Replace the box-based sizes by the lesion's own (``imaging.segment``) where it can be
    segmented: long and short axis, volume, sphere-equivalent diameter, the mask; a finding that
    cannot be segmented keeps its box's long axis and says why (``size_note``). ``lungs`` (the lung
    mask) lets a lesion on the chest wall or the mediastinum, or a mass, be segmented in the lungs'
    envelope. Returns the findings, one per lesion: a weaker finding whose centre lies inside a
    stronger one's segmentation (a mass's lower pole) is dropped."""
    from medstation.imaging.segment import BOXED_MIN_MM, LungEnvelope, segment_in_boxes, segment_lesion

    shared = LungEnvelope(lungs) if lungs is not None else None  # each slice's hulls found once
    second_tries = 0  # the lungs' envelope and a widening region: seconds each, for the best few only
    for f in sorted(findings, key=lambda f: -f.score)[:SIZE_MAX_FINDINGS]:
        if f.score < min_score:
            break
        if check:
            check()
        envelope = shared if second_tries < SIZE_MAX_SECOND_TRIES else None
        radius = 0.75 * max(f.diameter_mm, 4.0) + 4.0
        size, why = segment_lesion(volume, f.center_voxel, radius, envelope)
        boxes = _with_pieces(f, findings, volume) if envelope is not None and f.boxes else []
        if (size is None or size.widened) and boxes and _long_side_mm(boxes, volume) >= BOXED_MIN_MM:
            # not contained around its centre, and large: a mass, segmented through every slice the
            # detector boxed it on (its pieces included); the widened region is kept instead when it
            # held and found more of it (a detector's boxes of a mass may run small)
            boxed, why_boxed = segment_in_boxes(volume, boxes, envelope)
            if boxed is not None and (size is None or boxed.volume_mm3 >= size.volume_mm3):
                size, why = boxed, ""
            elif size is None:
                why = f"{why}; in its boxes: {why_boxed}"
        second_tries += envelope is not None and (size is None or size.widened)
        if size is None:
            f.size_note = why
            continue
        f.diameter_mm, f.short_axis_mm = size.long_axis_mm, size.short_axis_mm
        f.volume_mm3, f.equivalent_diameter_mm = size.volume_mm3, size.equivalent_diameter_mm
        f.mean_diameter_mm, f.mean_hu, f.max_hu = size.mean_diameter_mm, size.mean_hu, size.max_hu
        f.nodule_type, f.solid_diameter_mm = size.nodule_type, size.solid_long_axis_mm
        f.size_method, f.size_note = "segmentation", ""
        if size.mask is not None:
            f.set_mask(size.mask, size.origin)
            _recentre(volume, f, size.mask, size.origin)
            if size.widened:  # far beyond the detector's box (a mass): outline what was measured
                boxes_from_mask(f, size.mask, size.origin)
    return one_per_lesion(findings)


#: another finding's boxes are a piece of a mass when they lie within this of its slices (mm) ...
PIECE_GAP_MM = 10.0
#: ... and their in-plane box overlaps the mass's by at least this share of the smaller one
PIECE_OVERLAP = 0.5


def _with_pieces(f: Finding, findings: list[Finding], volume: Volume) -> list:
    """``f``'s per-slice boxes and those of the other findings that are pieces of the same lesion: a
    mass on thick slices is often found as two or three detections stacked along z (their slice
    ranges within ``PIECE_GAP_MM`` and their in-plane boxes overlapping by ``PIECE_OVERLAP``). Their
    centres then fall in the mass's segmentation, so :func:`one_per_lesion` drops them."""

    def extent(boxes):
        b = np.asarray([x[1:5] for x in boxes], float)
        return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()

    def overlap(a, b) -> float:
        h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
        return h * w / smaller if smaller > 0 else 0.0

    gap = PIECE_GAP_MM / max(abs(float(volume.spacing[0])), 1e-6)
    boxes = list(f.boxes)
    mine = extent(boxes)
    k_lo, k_hi = min(b[0] for b in boxes), max(b[0] for b in boxes)
    for g in findings:
        if g is f or not g.boxes:
            continue
        g_lo, g_hi = min(b[0] for b in g.boxes), max(b[0] for b in g.boxes)
        if g_lo > k_hi + gap or g_hi < k_lo - gap:
            continue
        if overlap(mine, extent(g.boxes)) >= PIECE_OVERLAP:
            boxes += list(g.boxes)
    return boxes


def _long_side_mm(boxes, volume: Volume) -> float:
    """The longest side (mm) of the in-plane box around ``boxes``."""
    b = np.asarray([x[1:5] for x in boxes], float)
    _sk, si, sj = (abs(float(v)) for v in volume.spacing)
    return float(max((b[:, 2].max() - b[:, 0].min()) * si, (b[:, 3].max() - b[:, 1].min()) * sj))


def boxes_from_mask(f: Finding, mask: np.ndarray, origin) -> None:
    """Per-slice boxes around the segmentation (each with the score of the detector's nearest box),
    so that the overlay, the slice range and the SR's regions show the lesion that was measured."""
    old = {int(b[0]): b[5] for b in f.boxes}
    boxes = []
    for n in range(mask.shape[0]):
        rows, cols = np.nonzero(mask[n])
        if not len(rows):
            continue
        k = int(origin[0]) + n
        near = min(old, key=lambda kk: abs(kk - k)) if old else None
        score = old[near] if near is not None else f.score
        boxes.append((k, float(rows.min() + origin[1] - 0.5), float(cols.min() + origin[2] - 0.5),
                      float(rows.max() + origin[1] + 0.5), float(cols.max() + origin[2] + 0.5), float(score)))
    if boxes:
        f.boxes = boxes  # type: ignore[assignment]
        f.slice_range = (boxes[0][0], boxes[-1][0])


def _recentre(volume: Volume, f: Finding, mask: np.ndarray, origin) -> None:
    """A segmented lesion's centre is its mask's centroid (a mass's detection sits off its core)."""
    nz = np.nonzero(mask)
    centre = tuple(float(np.mean(a)) + o for a, o in zip(nz, origin))
    f.center_voxel = tuple(round(v, 2) for v in centre)  # type: ignore[assignment]
    f.center_mm = tuple(round(float(v), 2) for v in volume.index_to_patient(centre))  # type: ignore[assignment]


def one_per_lesion(findings: list[Finding]) -> list[Finding]:
    """Drop a finding whose centre lies in a higher-scoring finding's segmentation (the same lesion
    found twice: a mass's poles, a nodule and its own edge); the survivors keep their ids' order."""
    order = sorted(findings, key=lambda f: -f.score)
    kept: list[Finding] = []
    masks: list[tuple[np.ndarray, tuple[int, int, int]]] = []
    for f in order:
        c = [int(round(v)) for v in f.center_voxel]
        inside = False
        for block, o in masks:
            rel = [c[a] - o[a] for a in range(3)]
            if all(0 <= rel[a] < block.shape[a] for a in range(3)) and block[tuple(rel)]:
                inside = True
                break
        if inside:
            continue
        kept.append(f)
        got = f.mask_array()
        if got is not None:
            masks.append(got)
    ids = {id(f) for f in kept}
    return [f for f in findings if id(f) in ids]
