"""``LesionTrack``: one lesion followed across a patient's studies, its sizes and its course.

A track holds one ``TrackPoint`` per timepoint (``None`` where the lesion is
absent: not yet there, or gone), in date order, and a DICOM tracking UID that
an SR carries at every timepoint. From the points:

- percent volume change and volume doubling time (VDT, days) between each pair
  of consecutive present timepoints and from the first to the last:
  ``VDT = dt * ln 2 / ln(V2 / V1)`` (negative when it shrinks, infinite when
  the volume is unchanged);
- a status: ``new`` (absent at the first timepoint), ``resolved`` (absent at
  the last), else ``growing`` / ``shrinking`` when the volume changed by more
  than ``VOLUME_CHANGE`` (25%, about twice the volumetry's error) or the mean
  diameter by more than 1.5 mm, else ``stable``.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field

#: a volume change beyond this fraction is growth or shrinkage
VOLUME_CHANGE = 0.25
#: so is a mean-diameter change beyond this (Lung-RADS' growth threshold)
DIAMETER_CHANGE_MM = 1.5
STATUSES = ("stable", "growing", "shrinking", "new", "resolved")


@dataclass
class TrackPoint:
    study_date: str  # YYYYMMDD
    series_uid: str
    center_patient: tuple[float, float, float]  # in that study's patient mm
    diameter_mm: float  # the finding's size (``Finding.size``): the mean diameter, or a box's long axis
    volume_mm3: float | None  # None: not segmented (a box has no volume)
    mean_hu: float = 0.0
    type: str = ""
    finding_id: str = ""
    #: the solid component's long axis (part-solid nodules; 0 otherwise): Lung-RADS sizes them by it.
    #: Not in ``to_dict`` (the report's measurement keys are fixed)
    solid_mm: float = 0.0
    #: how ``diameter_mm`` was measured and what it is ("segmentation" / "mean diameter", "box" / "long axis")
    size_method: str = "segmentation"
    size_name: str = "mean diameter"
    #: the detector's score for it (None: measured where another study's lesion maps, not detected)
    score: float | None = None
    #: the axes the mean diameter came from (None: not segmented; a box's long side is ``diameter_mm``)
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None

    def to_dict(self) -> dict:
        return {"study_date": self.study_date, "series_uid": self.series_uid,
                "center_patient": [float(v) for v in self.center_patient], "diameter_mm": self.diameter_mm,
                "volume_mm3": self.volume_mm3, "mean_hu": self.mean_hu, "type": self.type,
                "size_method": self.size_method, "size_name": self.size_name, "score": self.score,
                "long_axis_mm": self.long_axis_mm, "short_axis_mm": self.short_axis_mm}


def days_between(a: str, b: str) -> float:
    da = _dt.date(int(a[:4]), int(a[4:6]), int(a[6:8]))
    db = _dt.date(int(b[:4]), int(b[4:6]), int(b[6:8]))
    return float((db - da).days)


def percent_change(v1: float | None, v2: float | None) -> float | None:
    """Percent volume change; None when either volume was not measured."""
    if v1 is None or v2 is None:
        return None
    return 100.0 * (v2 - v1) / v1 if v1 > 0 else math.inf


def doubling_text(vdt: float | None, percent_change: float | None) -> str:
    """The doubling time as a reader reads it: days when the volume grew (beyond ``VOLUME_CHANGE``),
    "stable" when it did not change beyond it, "shrinking" when it fell (a negative or infinite doubling
    time means nothing), "n/a" without two measured volumes. It never contradicts the volume change."""
    if vdt is None or percent_change is None or not math.isfinite(percent_change):
        return "n/a"
    if percent_change < -100 * VOLUME_CHANGE:
        return "shrinking"
    if percent_change <= 100 * VOLUME_CHANGE or not math.isfinite(vdt) or vdt <= 0:
        return "stable"
    return f"{vdt:.0f} d"


def doubling_time_days(v1: float | None, v2: float | None, days: float) -> float:
    """Volume doubling time; ``inf`` when unchanged, negative when shrinking, NaN without a valid pair
    (a volume not measured, or none elapsed)."""
    if v1 is None or v2 is None or v1 <= 0 or v2 <= 0 or days <= 0:
        return math.nan
    ratio = math.log(v2 / v1)
    return math.inf if ratio == 0 else days * math.log(2) / ratio


@dataclass
class LesionTrack:
    track_id: str
    tracking_uid: str
    points: list[TrackPoint | None] = field(default_factory=list)  # one per timepoint, date order
    #: False for a lesion first seen after the first study without enough evidence that it is new
    #: (looked for where it maps on the prior, and a score above the stricter point for new lesions):
    #: shown as unconfirmed, and it does not set the patient's category
    confirmed: bool = True
    evidence: str = ""  # why it is (or is not) a confirmed new lesion
    name: str = ""  # a reader's name for it ("RUL nodule"); "" until renamed
    #: management at the last timepoint: ``{"lung_rads": {...}, "fleischner": {...}}`` ({} when gone)
    guideline: dict = field(default_factory=dict)

    @property
    def present(self) -> list[TrackPoint]:
        return [p for p in self.points if p is not None]

    @property
    def status(self) -> str:
        if not self.points or not self.present:
            return "stable"
        if self.points[0] is None:
            return "new"
        if self.points[-1] is None:
            return "resolved"
        first, last = self.present[0], self.present[-1]
        dv = ((last.volume_mm3 - first.volume_mm3) / first.volume_mm3
              if first.volume_mm3 and last.volume_mm3 is not None else 0.0)
        dd = last.diameter_mm - first.diameter_mm
        if dv > VOLUME_CHANGE or dd > DIAMETER_CHANGE_MM:
            return "growing"
        if dv < -VOLUME_CHANGE or dd < -DIAMETER_CHANGE_MM:
            return "shrinking"
        return "stable"

    def intervals(self) -> list[dict]:
        """Between each pair of consecutive present timepoints: days, percent volume change, VDT."""
        out = []
        pts = self.present
        for a, b in zip(pts, pts[1:]):
            days = days_between(a.study_date, b.study_date)
            out.append({"from": a.study_date, "to": b.study_date, "days": days,
                        "percent_change_volume": percent_change(a.volume_mm3, b.volume_mm3),
                        "volume_doubling_days": doubling_time_days(a.volume_mm3, b.volume_mm3, days)})
        return out

    @property
    def percent_change_volume(self) -> float | None:
        pts = self.present
        return percent_change(pts[0].volume_mm3, pts[-1].volume_mm3) if len(pts) > 1 else None

    @property
    def volume_doubling_days(self) -> float | None:
        pts = self.present
        if len(pts) < 2:
            return None
        return doubling_time_days(pts[0].volume_mm3, pts[-1].volume_mm3,
                                  days_between(pts[0].study_date, pts[-1].study_date))

    def to_dict(self) -> dict:
        def num(v):
            return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(v, 2)

        return {"track_id": self.track_id, "tracking_uid": self.tracking_uid, "name": self.name,
                "status": self.status,
                "measurements": [p.to_dict() if p is not None else None for p in self.points],
                "percent_change_volume": num(self.percent_change_volume),
                "volume_doubling_days": num(self.volume_doubling_days),
                "volume_doubling_text": doubling_text(self.volume_doubling_days, self.percent_change_volume),
                "intervals": [{k: num(v) if isinstance(v, float) else v for k, v in i.items()}
                              for i in self.intervals()],
                "guideline": self.guideline, "confirmed": self.confirmed, "evidence": self.evidence}


def apply_edits(tracks: list[LesionTrack], edits: list[dict]) -> list[LesionTrack]:
    """A reader's corrections, in the order made: ``{"kind": "rename", "tracking_uid", "name"}``,
    ``{"kind": "link", "a", "b"}`` (b's measurements join a; only where a has none) and
    ``{"kind": "unlink", "tracking_uid", "at"}`` (the measurements from date ``at`` on become a track
    of their own). Edits naming tracks that are not there (another run found other lesions) are
    skipped. Returns the edited list (the same track objects where they survive)."""
    tracks = list(tracks)
    by_uid = {t.tracking_uid: t for t in tracks}
    for e in edits:
        kind = e.get("kind")
        if kind == "rename" and e.get("tracking_uid") in by_uid:
            by_uid[e["tracking_uid"]].name = str(e.get("name", ""))
        elif kind == "link" and e.get("a") in by_uid and e.get("b") in by_uid and e["a"] != e["b"]:
            a, b = by_uid[e["a"]], by_uid[e["b"]]
            if any(p is not None and q is not None for p, q in zip(a.points, b.points)):
                continue  # both seen at one timepoint: not one lesion
            a.points = [p if p is not None else q for p, q in zip(a.points, b.points)]
            tracks.remove(b)
            del by_uid[b.tracking_uid]
        elif kind == "unlink" and e.get("tracking_uid") in by_uid:
            t = by_uid[e["tracking_uid"]]
            at = str(e.get("at", ""))
            cut = [i for i, p in enumerate(t.points) if p is not None and p.study_date >= at]
            keep = [i for i, p in enumerate(t.points) if p is not None and p.study_date < at]
            if not cut or not keep:
                continue
            uid = f"{t.tracking_uid}.{len(tracks) + 1}"[:64]
            part = LesionTrack(f"{t.track_id}b", uid,
                               [p if i in cut else None for i, p in enumerate(t.points)])
            t.points = [p if i in keep else None for i, p in enumerate(t.points)]
            tracks.insert(tracks.index(t) + 1, part)
            by_uid[uid] = part
    return tracks
