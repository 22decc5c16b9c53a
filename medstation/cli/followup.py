"""``medstation followup PATH... [--patient ID] [--json]``: a patient's studies, matched into lesion tracks.

Each PATH is a study (folder, DICOMDIR, zip) or a series, in any order. Per study
the most comparable series is used (CT, axial, the thinnest slices, then the most
of them); the studies are ordered by date, the detector runs on each, each prior
is registered onto the next study and the lesions are matched into tracks with
their sizes, change, doubling time and guideline categories (``ai.followup``).
Series of several patients are an error that names them, unless ``--patient``
picks one.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np

from medstation.core import jsonout
from medstation.core.errors import LoadError, MedstationError


def add_parser(sub, run) -> None:
    s = sub.add_parser("followup", help="match a patient's lesions across studies: tracks, change, VDT, "
                       "Lung-RADS and Fleischner (JSON with --json)")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--patient", help="the patient ID to follow when the paths hold several")
    s.add_argument("--risk", choices=("low", "high"), default="high", help="Fleischner risk (default high)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--model", help="detection model (default: the one in use)")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=0)
    s.set_defaults(func=run)


def _comparable(stacks):
    """The series of a study a follow-up reads: CT, axial, thinnest slices, most slices."""
    def key(st):
        h = st.first
        axial = abs(float(np.asarray(st.direction)[0][2])) > 0.9
        return (h.modality == "CT", axial and st.has_geometry, -abs(float(st.spacing[0])), len(st.slices))
    return max(stacks, key=key)


def cmd_followup(args) -> int:
    from medstation.ai.followup import Timepoint, build_tracks
    from medstation.ai.store import open_detector
    from medstation.dicom import WorkerPool, list_series, open_series
    from medstation.imaging.registration import register

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="medstation-followup-") as tmp, WorkerPool() as pool:
        listing = list_series(args.paths, pool, extract_dir=tmp)
        if not listing.stacks:
            raise LoadError(", ".join(args.paths), "no image series found",
                            "give the studies' folders or files")
        patients = sorted({s.first.patient_id for s in listing.stacks})
        if args.patient:
            stacks = [s for s in listing.stacks if s.first.patient_id == args.patient]
            if not stacks:
                raise MedstationError(f"no series of patient {args.patient!r} (found {', '.join(patients)})",
                                      "name one of the patients found")
        elif len(patients) > 1:
            raise MedstationError(f"the series belong to {len(patients)} patients: {', '.join(patients)}",
                                  "follow one with --patient ID")
        else:
            stacks = listing.stacks
        patient = args.patient or patients[0]
        by_study: dict[str, list] = {}
        for st in stacks:
            by_study.setdefault(st.first.study_uid, []).append(st)
        chosen = sorted((_comparable(v) for v in by_study.values()),
                        key=lambda st: (st.first.study_date or "", st.first.study_time or ""))
        detector, _model_dir = open_detector(args.model, args.device, args.threads)
        threshold = detector.threshold
        timepoints, volumes = [], []
        for st in chosen:
            volume = open_series(st, pool=pool).volume
            run = detector.detect(volume, heatmap=False)
            found = [f for f in run.findings if f.score >= threshold]
            timepoints.append(Timepoint(st.first.study_uid, st.first.study_date, st.series_uid, found))
            volumes.append(volume)
            say(f"{st.first.study_date}: {len(found)} finding(s) at the operating point ({threshold:.2f})")
        registrations, reg_rows = [], []
        for i in range(len(volumes) - 1):
            reg = register(volumes[i + 1], volumes[i])
            registrations.append(reg)
            say(f"{timepoints[i].study_date} -> {timepoints[i + 1].study_date}: {reg.method} "
                f"{'ok' if reg.ok else 'FAILED: ' + reg.message} ({reg.seconds:.1f} s)")
            reg_rows.append(reg)
            volumes[i] = None  # type: ignore[call-overload]  # memory: one pair at a time
        tracks = build_tracks(patient, timepoints, registrations, risk=args.risk)
    out_regs = []
    for i, reg in enumerate(registrations):
        pairs = [(t.points[i], t.points[i + 1]) for t in tracks if t.points[i] and t.points[i + 1]]
        gaps = [np.linalg.norm(reg.map_point(a.center_patient) - np.asarray(b.center_patient))
                for a, b in pairs]
        residual = float(np.mean(gaps)) if gaps else None
        out_regs.append({"from_series_uid": timepoints[i].series_uid,
                         "to_series_uid": timepoints[i + 1].series_uid, "method": reg.method, "ok": reg.ok,
                         "message": reg.message, "seconds": round(reg.seconds, 2),
                         "residual_mm": None if residual is None else round(residual, 2)})
    report = {"patient_id": patient, "timepoints": [tp.to_dict() for tp in timepoints],
              "registrations": out_regs, "tracks": [t.to_dict() for t in tracks],
              "model": {"name": detector.name, "version": detector.version}, "not_for_clinical_use": True}
    if args.json:
        print(jsonout.dumps(report, indent=1))
        return 0
    print(f"patient {patient}: {len(timepoints)} timepoint(s), {len(tracks)} track(s)")
    for t in tracks:
        sizes = ", ".join("-" if p is None else f"{p.diameter_mm:.1f} mm" for p in t.points)
        vdt = t.volume_doubling_days
        lr = (t.guideline.get("lung_rads") or {}).get("category", "")
        print(f"  {t.track_id} {t.status:9s} {sizes}"
              + (f"  VDT {vdt:.0f} d" if vdt is not None and np.isfinite(vdt) else "")
              + (f"  Lung-RADS {lr}" if lr else ""))
    return 0
