"""Each lung's convex hull on an axial slice, and the pixels inside a convex polygon: the lungs'
envelope that segmentation confines a lesion to (``imaging.segment``) and that the detector's
search region is grown from (``imaging.lungs.search_region``)."""

from __future__ import annotations

import numpy as np


def slice_hulls(lung_slice: np.ndarray, spacing, step: int,
                min_column_share: float = 0.2) -> list[np.ndarray]:
    """The convex hull (vertices, row and column of the slice) of each lung on ``lung_slice``: the
    mask split at the mediastinum's column (the emptiest column of the middle 30%, a 6 mm band
    either side left out), columns holding less than ``min_column_share`` of a lung's fullest
    column dropped (the thin strip where the lungs meet in front), parts under 5 cm^2 skipped."""
    _sk, si, sj = spacing
    found = []
    m = lung_slice[::step, ::step]
    if m.any():
        profile = m.sum(axis=0)
        used = np.nonzero(profile)[0]
        a, b = int(used.min()), int(used.max())
        l0, l1 = int(a + 0.35 * (b - a)), int(a + 0.65 * (b - a)) + 1
        mid = l0 + int(np.argmin(profile[l0:l1]))
        band = max(1, int(round(6.0 / (sj * step))))
        for part in (slice(0, max(0, mid - band)), slice(mid + band, None)):
            lung = np.zeros_like(m)
            lung[:, part] = m[:, part]
            per_col = lung.sum(axis=0)
            lung[:, per_col < min_column_share * max(1, int(per_col.max()))] = False
            if lung.sum() * si * sj * step * step < 500.0:
                continue
            # the hull of a pixel set is the hull of each row's leftmost and rightmost pixel
            rr = np.nonzero(lung.any(axis=1))[0]
            first = np.argmax(lung[rr], axis=1)
            last = lung.shape[1] - 1 - np.argmax(lung[rr, ::-1], axis=1)
            pts = np.concatenate([np.stack([rr, first], axis=1), np.stack([rr, last], axis=1)])
            found.append(convex_hull(pts.astype(float)) * step)
    return found


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: the hull's vertices (row, col), counter-clockwise.

    Only each row's leftmost and rightmost points can be vertices (any other lies between two points
    of its row), so the chain runs over at most two points per row rather than every edge pixel."""
    pts = np.unique(points, axis=0)  # sorted by row, then column
    if len(pts) > 2:
        first = np.r_[True, pts[1:, 0] != pts[:-1, 0]]
        last = np.r_[pts[1:, 0] != pts[:-1, 0], True]
        pts = pts[first | last]
    if len(pts) < 3:
        return pts

    chain: list[list] = [[], []]
    listed = pts.tolist()  # Python floats: numpy scalars cost several times more per product
    for half, seq in zip(chain, (listed, listed[::-1])):
        for p in seq:
            pr, pc = p
            while len(half) >= 2:
                (orr, oc), (ar, ac) = half[-2], half[-1]
                if (ar - orr) * (pc - oc) - (ac - oc) * (pr - orr) > 0:
                    break
                half.pop()
            half.append(p)
    return np.array(chain[0][:-1] + chain[1][:-1], float)


def inside_polygon(hull: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The grid points (``rows`` x ``cols``) inside or on the convex polygon ``hull`` (row, col): on
    each row the polygon is one span, from the leftmost to the rightmost edge crossing that row."""
    if len(hull) < 3:
        return np.zeros((len(rows), len(cols)), bool)
    a, b = hull, np.roll(hull, -1, axis=0)
    r = rows.astype(float)[:, None]  # (rows, 1) against (edges,)
    lo, hi = np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0])
    crosses = (r >= lo - 1e-9) & (r <= hi + 1e-9)
    dr = b[:, 0] - a[:, 0]
    flat = np.abs(dr) < 1e-12
    t = (r - a[:, 0]) / np.where(flat, 1.0, dr)
    at = a[:, 1] + t * (b[:, 1] - a[:, 1])
    c_lo = np.where(flat, np.minimum(a[:, 1], b[:, 1]), at)  # a flat edge covers its whole length
    c_hi = np.where(flat, np.maximum(a[:, 1], b[:, 1]), at)
    left = np.where(crosses, c_lo, np.inf).min(axis=1)
    right = np.where(crosses, c_hi, -np.inf).max(axis=1)
    c = cols.astype(float)[None, :]
    return (c >= left[:, None] - 1e-9) & (c <= right[:, None] + 1e-9)
