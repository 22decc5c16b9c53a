"""Where a database series' voxels lie, from its headers alone: what labels and masks are checked
and drawn against (kept apart from ``labels`` and ``masks`` so neither imports the other)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medstation.core.geometry import Grid

#: a lesion larger than this is no nodule label (LUNA16 and LIDC stop far below; a mass reaches 10 cm)
MAX_DIAMETER_MM = 150.0


@dataclass
class SeriesGeometry:
    """Where a series' voxels lie: what a label is checked and drawn against (no pixels needed)."""

    series_uid: str
    key: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray
    slice_uids: list[str]
    sources: list[tuple[str, int]]

    @property
    def grid(self) -> Grid:
        return Grid.of(self.shape, self.spacing, self.origin, self.direction)

    def patient_to_index(self, point) -> np.ndarray:
        return self.grid.patient_to_index(point)

    def index_to_patient(self, index) -> np.ndarray:
        return self.grid.index_to_patient(index)

    def inside(self, point) -> bool:
        return self.grid.contains(point)


def series_geometry(db, series_uid: str) -> SeriesGeometry | None:
    """The geometry of the database's series ``series_uid`` (its largest part), None if unknown."""
    from medstation.core.series import SeriesRef
    from medstation.dicom.opening import resolve_series

    rows = [r for r in db.index.series() if r.series_uid == series_uid]
    if not rows:
        return None
    try:
        resolved = resolve_series(SeriesRef(rows[0].study_uid, series_uid), db=db)
    except Exception:  # noqa: BLE001 (files gone: reported as an unknown series by the caller)
        return None
    st = resolved.stack
    if not st.has_geometry:
        return None
    return SeriesGeometry(series_uid, resolved.ref.key, tuple(st.shape),
                          tuple(abs(float(s)) for s in st.spacing),
                          np.asarray(st.origin, float), np.asarray(st.direction, float),
                          [s.header.sop_instance_uid for s in st.slices],
                          [(s.header.path, s.frame) for s in st.slices])


def plan_label_export(db, labels, what: str) -> list[tuple[str, SeriesGeometry, list]]:
    """(series UID, geometry, its nodule labels) per series, every label checked before the first file
    is written: all of them out, or none and why (``LabelError`` naming each, ``what`` the format)."""
    from medstation.core.errors import LabelError

    by_series: dict[str, list] = {}
    for lab in labels:
        if lab.is_nodule:
            by_series.setdefault(lab.series_uid, []).append(lab)
    plans, problems = [], []
    for uid, labs in sorted(by_series.items()):
        g = series_geometry(db, uid)
        if g is None:
            problems.append(f"series {uid} is no longer in the study database")
            continue
        for lab in labs:
            if not (math.isfinite(lab.diameter_mm) and 0 < lab.diameter_mm <= MAX_DIAMETER_MM):
                problems.append(f"label {lab.id} on {uid}: diameter {lab.diameter_mm:g} mm "
                                f"(expected 0-{MAX_DIAMETER_MM:g} mm)")
            elif not g.inside(lab.center_mm):
                problems.append(f"label {lab.id} on {uid}: its centre lies outside the series")
        plans.append((uid, g, labs))
    if problems:
        raise LabelError(f"{len(problems)} label(s) cannot be written as {what}; nothing was written: "
                         f"{problems[0]}",
                         "import the series again, or delete those labels (`medstation labels list` names "
                         "them)", problems)
    return plans
