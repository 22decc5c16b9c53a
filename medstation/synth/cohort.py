"""Synthetic longitudinal cohorts: one patient's chest seen in several studies, nodules on known courses.

Each study of a patient sees the same body (the training family's ``ChestPhantom``)
at its own pose (turned on the table by up to 5 degrees about z, shifted by up
to 15 mm in x and y and 25 mm in z), its own breath-hold (a 0.95-1.05 scale
along z about the carina), pixel spacing, slice thickness, noise and date
(60-400 days apart). Tilts out of the axial plane are not drawn. Nodules follow courses:

- ``stable``: the same volume;
- ``growing``: volume doubling time ``vdt_days`` (100-600 days);
- ``shrinking``: a negative doubling time (the volume halves in ``-vdt_days``);
- ``resolving``: present, then gone from timepoint ``gone_at`` on;
- ``new``: absent before timepoint ``appears_at``, then growing.

Solid, part-solid (rendered as ground glass with a solid core) and ground glass.
Studies are real DICOM (the writer); ``cohort.json`` holds the truth: per
timepoint each nodule's centre in that study's patient mm, diameter and volume,
or ``null`` where it is absent.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from medstation.core.files import atomic_writer
from medstation.synth.phantom import GROUND_GLASS_HU, SOLID_HU, ChestPhantom, Nodule, random_nodules
from medstation.synth.writer import PatientSpec, SeriesSpec, write_study

COURSES = ("stable", "growing", "shrinking", "resolving", "new")
YAW_DEG = 5.0  # the largest turn on the table between studies


@dataclass(frozen=True)
class Course:
    label: str
    kind: str  # one of COURSES
    type: str  # solid | part-solid | ground-glass
    center: tuple[float, float, float]  # in the body (the first study's patient mm without pose)
    volume0_mm3: float  # at the first timepoint where it is present
    vdt_days: float | None = None  # growing (> 0) or shrinking (< 0)
    appears_at: int = 0
    gone_at: int | None = None

    def volume_at(self, t: int, days_from_first: float, days_at_appearance: float) -> float | None:
        if t < self.appears_at or (self.gone_at is not None and t >= self.gone_at):
            return None
        if self.vdt_days:
            return self.volume0_mm3 * 2 ** ((days_from_first - days_at_appearance) / self.vdt_days)
        return self.volume0_mm3


@dataclass(frozen=True)
class Pose:
    shift: tuple[float, float, float]  # mm added to the body's coordinates
    z_scale: float  # breath-hold: the chest's extent along z about the carina (z = 0)
    yaw_deg: float = 0.0  # the body turned on the table: a rotation about z (before the shift)

    def to_patient(self, p) -> tuple[float, float, float]:
        x, y, z = p
        c, s = math.cos(math.radians(self.yaw_deg)), math.sin(math.radians(self.yaw_deg))
        return (c * x - s * y + self.shift[0], s * x + c * y + self.shift[1],
                z * self.z_scale + self.shift[2])


class PosedPhantom:
    """A phantom seen at a pose: what the writer samples (``render_slice``) and the truth it records."""

    def __init__(self, body: ChestPhantom, pose: Pose) -> None:
        self.body = body
        self.pose = pose

    def render_slice(self, z: float, x: np.ndarray, y: np.ndarray, thickness: float = 1.0) -> np.ndarray:
        sx, sy, sz = self.pose.shift
        s = self.pose.z_scale
        bz, bt = (z - sz) / s, thickness / s
        if not self.pose.yaw_deg:
            return self.body.render_slice(bz, x - sx, y - sy, bt)
        # turned: each pixel's place in the body (the inverse rotation), sampled bilinearly from the body
        # drawn on an axis-aligned grid of the same pitch that covers them
        c, sn = math.cos(math.radians(self.pose.yaw_deg)), math.sin(math.radians(self.pose.yaw_deg))
        px, py = np.meshgrid(x - sx, y - sy)
        bx, by = c * px + sn * py, -sn * px + c * py
        step = float(abs(x[1] - x[0])) if x.size > 1 else 1.0
        gx = np.arange(bx.min() - step, bx.max() + 2 * step, step)
        gy = np.arange(by.min() - step, by.max() + 2 * step, step)
        img = self.body.render_slice(bz, gx, gy, bt)
        fx, fy = (bx - gx[0]) / step, (by - gy[0]) / step
        j0 = np.clip(np.floor(fx).astype(int), 0, gx.size - 2)
        i0 = np.clip(np.floor(fy).astype(int), 0, gy.size - 2)
        tx, ty = np.clip(fx - j0, 0, 1), np.clip(fy - i0, 0, 1)
        return ((1 - ty) * ((1 - tx) * img[i0, j0] + tx * img[i0, j0 + 1])
                + ty * ((1 - tx) * img[i0 + 1, j0] + tx * img[i0 + 1, j0 + 1])).astype(np.float32)

    def truth(self) -> list[dict]:
        out = []
        for n in self.body.nodules:
            d = n.to_dict()
            d["center"] = list(self.pose.to_patient(n.center))
            out.append(d)
        return out


@dataclass
class CohortTruth:
    patient_id: str
    folder: str
    courses: list[Course]
    timepoints: list[dict] = field(default_factory=list)  # date, study uid, series uid, pose, nodules

    def to_dict(self) -> dict:
        return {"patient_id": self.patient_id, "folder": self.folder,
                "courses": [asdict(c) for c in self.courses], "timepoints": self.timepoints}


def _diameter(volume: float) -> float:
    return (6 * volume / math.pi) ** (1 / 3)


def make_courses(body: ChestPhantom, rng: np.random.Generator, timepoints: int, count: int = 5,
                 z_range: tuple[float, float] | None = None) -> list[Course]:
    placed = random_nodules(body, rng, count, diameters=(5.0, 14.0),
                            z_range=z_range or (body.z_bottom + 40, body.z_top - 30))
    placed = [n for n in placed if not body.in_mediastinum(n.center, n.diameter_mm)]
    kinds = list(COURSES) + list(rng.choice(["stable", "growing"], max(0, len(placed) - len(COURSES))))
    out = []
    for n, (nod, kind) in enumerate(zip(placed, kinds), start=1):
        typ = str(rng.choice(["solid", "solid", "part-solid", "ground-glass"]))
        vdt = None
        if kind == "growing" or kind == "new":
            vdt = float(rng.uniform(100, 600))
        elif kind == "shrinking":
            vdt = -float(rng.uniform(150, 400))
        appears = int(rng.integers(1, timepoints)) if kind == "new" and timepoints > 1 else 0
        gone = int(rng.integers(1, timepoints)) if kind == "resolving" and timepoints > 1 else None
        out.append(Course(f"C{n}-{kind}", kind, typ, nod.center, math.pi / 6 * nod.diameter_mm ** 3, vdt,
                          appears, gone))
    return out


def write_cohort_patient(out_dir: str | Path, seed: int, *, timepoints: int = 3, count: int = 5,
                         small: bool = False, slices: int | None = None) -> CohortTruth:
    """One patient of a cohort: ``timepoints`` studies under ``out_dir/<date>/`` and ``cohort.json``.
    ``small`` writes coarse, short series (tests); ``slices`` a fixed count of 1.25 mm slices."""
    rng = np.random.default_rng([seed, 2024])
    body = ChestPhantom(seed=seed)
    courses = make_courses(body, rng, timepoints, count, z_range=(-50.0, 10.0) if small else None)
    gaps = [0] + [int(rng.integers(60, 400)) for _ in range(timepoints - 1)]
    first = _dt.date(2022, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 365)))
    days = list(np.cumsum(gaps))
    patient = PatientSpec(patient_id=f"COH-{seed:04d}", name=f"Cohort^{seed}")
    truth = CohortTruth(patient.patient_id, str(out_dir), courses)
    appear_day = {c.label: days[c.appears_at] for c in courses}
    for t in range(timepoints):
        date = (first + _dt.timedelta(days=int(days[t]))).strftime("%Y%m%d")
        shift = (float(rng.uniform(-15, 15)), float(rng.uniform(-15, 15)), float(rng.uniform(-25, 25)))
        # the turn on the table comes from a stream of its own: the other draws stay as they were
        yaw = float(np.random.default_rng([seed, t, 7]).uniform(-YAW_DEG, YAW_DEG))
        pose = Pose(shift, float(rng.uniform(0.95, 1.05)), round(yaw, 3))
        nodules, rows = [], []
        for c in courses:
            v = c.volume_at(t, float(days[t]), float(appear_day[c.label]))
            if v is None:
                rows.append(None)
                continue
            d = _diameter(v)
            hu = {"solid": SOLID_HU, "ground-glass": GROUND_GLASS_HU, "part-solid": -350.0}[c.type]
            nodules.append(Nodule(c.center, round(d, 3), hu, c.label))
            if c.type == "part-solid":  # a solid core of half the diameter inside the ground glass
                nodules.append(Nodule(c.center, round(d / 2, 3), SOLID_HU, c.label + "-core"))
            rows.append({"label": c.label, "center_patient": list(pose.to_patient(c.center)),
                         "diameter_mm": round(d, 3), "volume_mm3": round(v, 2), "type": c.type})
        ph = PosedPhantom(ChestPhantom(seed=seed, nodules=nodules), pose)
        pixel = 2.0 if small else float(rng.choice([0.7, 0.8, 0.9]))
        thick = 2.5 if small else float(rng.choice([1.0, 1.25, 2.0]))
        extent = 120.0 if small else 380.0
        if slices:  # a fixed slice count (benchmarks): 1.25 mm slices
            thick, extent = 1.25, slices * 1.25
        spec = SeriesSpec(description=f"Chest {thick} mm", slices=int(extent / thick),
                          rows=int(round(360 / pixel)), columns=int(round(360 / pixel)),
                          pixel_spacing=pixel,
                          slice_thickness=thick, z_center=-20.0 * pose.z_scale + pose.shift[2],
                          noise_hu=float(rng.uniform(10, 25)))
        study = write_study(Path(out_dir) / date, ph, series=[spec], patient=patient, study_date=date,
                            seed=seed * 100 + t)
        truth.timepoints.append({"date": date, "study_uid": study.study_uid,
                                 "series_uid": study.series[0].series_uid, "pose": asdict(pose),
                                 "spacing": [thick, pixel, pixel], "nodules": rows})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_writer(out / "cohort.json", "w") as f:
        json.dump(truth.to_dict(), f, indent=1)
    return truth

