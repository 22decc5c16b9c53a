"""Nodule labels in the study database: import and export as LUNA16 CSV and DICOM SR (TID 1500).

A label is a nodule (or, from a rejected AI finding, a known non-nodule) in one
series: centre in patient mm (LPS), diameter, where it came from (``reader``; ``accepted`` or
``rejected``: an AI finding a reader reviewed, ``core.findings.Review``; ``imported``), when, and the
model version that proposed it. The readers' accepts and rejects of AI findings are labels too
(``collect_labels`` merges them in), so fine-tuning and evaluation see one list.

Imports are all or nothing: every row is checked first (the series is in the
database, the point lies inside its volume) and every problem is reported with
its row (``LabelError.rows``) before anything is written.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medstation.core.errors import LabelError
from medstation.core.files import atomic_write_text
from medstation.core.findings import Finding, Review, size_of
from medstation.dicom.series_geometry import (  # noqa: F401 (re-exported: callers import them from here)
    MAX_DIAMETER_MM,
    SeriesGeometry,
    plan_label_export,
    series_geometry,
)

SOURCES = ("reader", Review.ACCEPTED.value, Review.REJECTED.value, "imported")
LUNA16_HEADER = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


# -- import ---------------------------------------------------------------------------------

def import_labels(db, path: str | Path, *, source: str = "imported",
                  already: list | None = None, series: str | None = None) -> list[int]:
    """Read a LUNA16 CSV (``.csv``), a label mask (NIfTI / NRRD / MetaImage: one label per connected
    structure, on the series whose grid it lies on or ``series``) or a DICOM SR, check every row, store
    them all; the new ids.

    Idempotent: a row that the database already holds (same series, centre and diameter to 0.01 mm,
    same nodule / not-nodule) is not stored twice; such rows are appended to ``already``."""
    from medstation.dicom.masks import is_mask_file, rows_from_mask

    path = Path(path)
    if path.suffix.lower() == ".csv":
        rows = _rows_from_csv(db, path)
    elif is_mask_file(path):
        rows = rows_from_mask(db, path, series)
    else:
        rows = _rows_from_sr(db, path)
    held = {_same_key(r["series_key"], r["center_mm"], r["diameter_mm"], r["is_nodule"])
            for r in db.annotations.labels()}
    new = []
    for r in rows:
        key = _same_key(r["series_key"], r["center_mm"], r["diameter_mm"], r["is_nodule"])
        if key in held:
            if already is not None:
                already.append(r)
            continue
        held.add(key)
        r.update(source=source, origin=str(path), created=time.time())
        new.append(r)
    return db.annotations.add_labels(new) if new else []


def _same_key(series_key: str, centre, diameter: float, is_nodule: bool) -> tuple:
    return (str(series_key), *(round(float(v), 2) for v in centre), round(float(diameter), 2),
            bool(is_nodule))


def _rows_from_csv(db, path: Path) -> list[dict]:
    from medstation.core.luna16 import read_luna16_rows

    parsed = read_luna16_rows(path)  # bad numbers: LabelError with every row
    geoms: dict[str, SeriesGeometry | None] = {}
    problems, rows = [], []
    for line, uid, centre, diameter in parsed:
        if uid not in geoms:
            geoms[uid] = series_geometry(db, uid)
        g = geoms[uid]
        if g is None:
            problems.append(f"{path}:{line}: series {uid} is not in the study database (or has no geometry)")
        elif not g.inside(centre):
            problems.append(f"{path}:{line}: ({', '.join(f'{v:g}' for v in centre)}) mm lies outside series "
                            f"{uid} ({g.grid.describe()})")
        else:
            rows.append({"series_key": g.key, "center_mm": list(centre), "diameter_mm": diameter,
                         "is_nodule": True})
    if problems:
        raise LabelError(f"{path}: {len(problems)} row(s) cannot be used; nothing was imported: "
                         f"{problems[0]}",
                         "import the series first, or fix the coordinates (patient mm, LPS)", problems)
    return rows


def _rows_from_sr(db, path: Path) -> list[dict]:
    from pydicom import dcmread

    from medstation.dicom.results import ExportError, read_sr

    try:
        ds = dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 (any unreadable file: one clear error)
        raise LabelError(f"{path}: neither a LUNA16 CSV nor a readable DICOM file ({type(exc).__name__})",
                         "import a .csv (seriesuid,coordX,coordY,coordZ,diameter_mm) or a DICOM SR") from None
    if ds.get("Modality") != "SR":
        raise LabelError(f"{path}: a DICOM {ds.get('Modality', '?')} file, not a structured report",
                         "import a TID 1500 SR or a LUNA16 CSV")
    refs = _referenced_instances(ds)
    series = sorted(set(db.index.series_of_instances(refs).values()))
    if not series:
        raise LabelError(f"{path}: the images the report refers to are not in the study database",
                         "import the series the report was made on first")
    rows, problems = [], []
    for uid in series:
        g = series_geometry(db, uid)
        if g is None:
            continue
        try:
            findings, _lengths = read_sr(path, g.slice_uids, g.patient_to_index)
        except ExportError as exc:
            raise LabelError(exc.reason, exc.hint) from None
        for f in findings:
            centre = f.center_mm if any(f.center_mm) else tuple(g.index_to_patient(f.center_voxel))
            size = f.size
            if not g.inside(centre):
                where = ", ".join(f"{v:g}" for v in centre)
                problems.append(f"{path}: finding {f.finding_id} at ({where}) mm "
                                f"lies outside series {uid} ({g.grid.describe()})")
            elif not (0 < size.mm <= MAX_DIAMETER_MM):
                problems.append(f"{path}: finding {f.finding_id} has a {size.what} of {size.mm:g} mm "
                                f"(expected 0-{MAX_DIAMETER_MM:g} mm)")
            rows.append({"series_key": g.key, "center_mm": [float(v) for v in centre],
                         "diameter_mm": size.mm, "is_nodule": f.status != "rejected",
                         "model": f"{f.model_name}@{f.model_version}" if f.model_name else "",
                         "extra": {"finding_id": f.finding_id, "volume_mm3": f.volume_mm3,
                                   "size_name": size.what, "size_method": size.method}})
    if problems:
        raise LabelError(f"{path}: {len(problems)} finding(s) cannot be used; nothing was imported: "
                         f"{problems[0]}",
                         "fix the report, or export it again from the series it was made on",
                         problems)
    if not rows:
        raise LabelError(f"{path}: no nodule measurement groups in the report", "export findings as TID 1500")
    return rows


def _referenced_instances(ds) -> list[str]:
    out = []
    for seq in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(seq, []):
            for s in study.get("ReferencedSeriesSequence", []):
                out += [str(i.ReferencedSOPInstanceUID) for i in s.get("ReferencedSOPSequence", [])]
    return out


# -- the merged list and exports ----------------------------------------------------------

@dataclass
class Label:
    id: int | None
    series_key: str
    center_mm: tuple[float, float, float]
    diameter_mm: float
    is_nodule: bool
    source: str
    created: float = 0.0
    model: str = ""
    origin: str = ""
    #: what ``diameter_mm`` is and how it was measured (an accepted finding: the size its list showed)
    size_name: str = "diameter"
    size_method: str = ""

    @property
    def series_uid(self) -> str:
        from medstation.core.series import SeriesRef

        return SeriesRef.parse(self.series_key).series_uid

    def to_dict(self) -> dict:
        return {"id": self.id, "series_key": self.series_key, "series_uid": self.series_uid,
                "center_mm": list(self.center_mm), "diameter_mm": self.diameter_mm,
                "size_name": self.size_name, "size_method": self.size_method, "is_nodule": self.is_nodule,
                "source": self.source, "created": self.created, "model": self.model, "origin": self.origin}


@dataclass(frozen=True)
class SkippedLabel:
    """A label the list cannot use, with where it is and why (shown, never dropped silently)."""

    series_key: str
    what: str  # "measurement 12", "accepted finding F3", "label 7"
    reason: str

    def text(self) -> str:
        return f"{self.what} on series {self.series_key}: {self.reason}"

    def to_dict(self) -> dict:
        return {"series_key": self.series_key, "what": self.what, "reason": self.reason}


@dataclass
class LabelSet:
    labels: list[Label]
    skipped: list[SkippedLabel]


def all_labels(db) -> list[Label]:
    """Stored labels plus the readers' nodule labels and their accepts (nodules) and rejects (not
    nodules) of AI findings; :func:`collect_labels` also says what could not be used and why."""
    return collect_labels(db).labels


def collect_labels(db) -> LabelSet:
    """Every label with the ones left out and why: a drawn label whose series has no patient
    geometry, a label on a series no longer in the study database."""
    known = {r.series_uid for r in db.index.series()}
    skipped: list[SkippedLabel] = []
    out = [Label(r["id"], r["series_key"], tuple(r["center_mm"]), r["diameter_mm"], r["is_nodule"],
                 r["source"], r["created"], r["model"], r["origin"],
                 str((r.get("extra") or {}).get("size_name") or "diameter"),
                 str((r.get("extra") or {}).get("size_method") or "")) for r in db.annotations.labels()]
    geoms: dict[str, SeriesGeometry | None] = {}
    for mid, key, data, modified in db.annotations.measurements_of_kind("nodule"):  # drawn in the viewer
        what = f"nodule label (measurement {mid})"
        lab = _drawn_label(db, geoms, mid, key, data, modified, known)
        if isinstance(lab, str):
            skipped.append(SkippedLabel(key, what, lab))
        else:
            out.append(lab)
    readers = [lab for lab in out if lab.source == "reader"]
    for r in db.annotations.reviewed_findings():
        f = r["finding"]
        try:
            centre = tuple(float(v) for v in f["center_mm"])
            size = size_of(f)  # the number the findings list showed for it
            if len(centre) != 3:
                raise ValueError(centre)
        except (KeyError, TypeError, ValueError) as exc:
            skipped.append(SkippedLabel(r["series_key"], f"{r['status']} finding {f.get('finding_id', '')}",
                                        "its stored finding has no readable centre or size "
                                        f"({type(exc).__name__})"))
            continue
        accepted = r["status"] == Review.ACCEPTED
        if accepted and any(lab.series_key == r["series_key"]
                            and np.linalg.norm(np.subtract(lab.center_mm, centre))
                            <= max(lab.diameter_mm / 2, 3.0) for lab in readers):
            continue  # a reader's label on it (its corrected extent) stands for it
        out.append(Label(None, r["series_key"], centre, size.mm, accepted,
                         r["status"], r["reviewed"],
                         f"{r['model_name']}@{r['model_version']}", f"finding {f.get('finding_id', '')}",
                         size.what, size.method))
    kept = []
    for lab in out:
        if lab.series_uid not in known:
            name = f"{lab.source} label" + (f" {lab.id}" if lab.id else "")
            skipped.append(SkippedLabel(lab.series_key, name,
                                        "the series is no longer in the study database (import it again)"))
        else:
            kept.append(lab)
    return LabelSet(kept, skipped)


def _drawn_label(db, geoms: dict, mid: int, key: str, data: dict, modified: float,
                 known: set[str]) -> Label | str:
    """The label a reader drew (a ``nodule`` measurement), or why it cannot be placed."""
    from medstation.core.series import SeriesRef

    if SeriesRef.parse(key).series_uid not in known:
        return "the series is no longer in the study database (import it again)"
    try:
        points = [tuple(float(v) for v in p) for p in data["points"]]
    except (KeyError, TypeError, ValueError):
        points = []
    centre = data.get("center_mm")
    diameter = float(data.get("diameter_mm") or 0.0)
    if (centre is None or diameter <= 0) and len(points) == 2:  # stored without its patient position
        uid = SeriesRef.parse(key).series_uid
        if uid not in geoms:
            geoms[uid] = series_geometry(db, uid)
        g = geoms[uid]
        if g is None:
            return "its series has no patient geometry (no positions or orientation), so it cannot be placed"
        a, b = (g.index_to_patient(p) for p in points)
        centre, diameter = [float(v) for v in a], 2 * float(np.linalg.norm(a - b))
    if centre is None or len(centre) != 3 or not np.all(np.isfinite(centre)):
        return "it has no centre"
    if not (diameter > 0 and np.isfinite(diameter)):
        return f"its diameter is {diameter:g} mm"
    return Label(None, key, tuple(float(v) for v in centre), round(diameter, 2), True, "reader", modified, "",
                 f"measurement {mid}", "diameter (drawn)", "reader")


def counts(labels: list[Label]) -> dict:
    series = {lab.series_key for lab in labels}
    by_source: dict[str, int] = {}
    for lab in labels:
        by_source[lab.source] = by_source.get(lab.source, 0) + 1
    return {"labels": len(labels), "nodules": sum(lab.is_nodule for lab in labels),
            "negatives": sum(not lab.is_nodule for lab in labels), "series": len(series),
            "by_source": by_source}


def export_luna16(labels: list[Label], out: str | Path) -> Path:
    """The nodules (negatives left out, as LUNA16 lists only nodules) as a LUNA16 CSV, atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LUNA16_HEADER)
    for lab in labels:
        if lab.is_nodule:
            w.writerow([lab.series_uid, *(f"{v:.3f}" for v in lab.center_mm), f"{lab.diameter_mm:.2f}"])
    out = Path(out)
    atomic_write_text(out, buf.getvalue())
    return out


def export_sr(db, labels: list[Label], out_dir: str | Path) -> list[str]:
    """One TID 1500 SR per series holding nodule labels (a sphere's box on each slice it spans)."""
    from medstation.dicom.results import export_results

    plans = plan_label_export(db, labels, "SR")
    return [export_results([_as_finding(g, lab, n) for n, lab in enumerate(labs, start=1)], g.sources,
                           Path(out_dir) / uid).sr for uid, g, labs in plans]


def _as_finding(g: SeriesGeometry, lab: Label, n: int) -> Finding:
    k, i, j = g.patient_to_index(lab.center_mm)
    r = lab.diameter_mm / 2
    ri, rj, rk = r / g.spacing[1], r / g.spacing[2], r / g.spacing[0]
    boxes = []
    for kk in range(max(0, int(np.ceil(k - rk))), min(g.shape[0] - 1, int(np.floor(k + rk))) + 1):
        f = np.sqrt(max(0.0, 1 - ((kk - k) / max(rk, 1e-6)) ** 2))
        boxes.append((kk, i - ri * f, j - rj * f, i + ri * f, j + rj * f, 1.0))
    if not boxes:
        kk = int(round(k))
        boxes = [(kk, i - ri, j - rj, i + ri, j + rj, 1.0)]
    return Finding(f"L{lab.id or n}", tuple(float(v) for v in lab.center_mm), (float(k), float(i), float(j)),
                   lab.diameter_mm, 1.0, (boxes[0][0], boxes[-1][0]), float(np.pi / 6 * lab.diameter_mm ** 3),
                   boxes, "label", lab.source)
