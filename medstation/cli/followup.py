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

import numpy as np

from medstation.core import jsonout
from medstation.core.errors import MedstationError


def add_parser(sub, run) -> None:
    s = sub.add_parser("followup", help="match a patient's lesions across studies: tracks, change, VDT, "
                       "Lung-RADS and Fleischner (JSON with --json)")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--patient", help="the patient ID to follow when the paths hold several")
    s.add_argument("--same-patient", action="append", default=[], metavar="ID",
                   help="another patient ID of the same person (another site's numbering); repeatable")
    s.add_argument("--risk", choices=("low", "high"), default="high", help="Fleischner risk (default high)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--dicom", metavar="DIR", help="also write one DICOM SR (TID 1500) per study, each lesion "
                   "with the same tracking UID at every timepoint")
    s.add_argument("--predict-at", metavar="YYYY-MM-DD", help="predict each lesion's size at this date with "
                   "the follow-up model (a date after the last study)")
    s.add_argument("--predictor", help="follow-up model, NAME[@VERSION] or a directory (default: the one "
                   "in use)")
    s.add_argument("--model", help="detection model (default: the one in use)")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=0)
    s.set_defaults(func=run)


def cmd_followup(args) -> int:
    from medstation.ai.followup import follow
    from medstation.ai.store import open_detector

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr)

    detector, _model_dir = open_detector(args.model, args.device, args.threads)
    timepoints: list = []
    if args.same_patient and not args.patient:
        raise MedstationError("--same-patient needs --patient", "name the patient the other IDs belong to")
    report, tracks = follow(args.paths, detector, patient=args.patient, risk=args.risk, progress=say,
                            timepoints_out=timepoints, aliases=tuple(args.same_patient))
    if args.predict_at:
        from medstation.ai.followup import add_predictions
        from medstation.ai.predictor import load_predictor
        from medstation.ai.registry import ModelRegistry

        registry = ModelRegistry()
        version = (registry.resolve(args.predictor, "followup") if args.predictor
                   else registry.default("followup"))
        add_predictions(report, load_predictor(version.path), args.predict_at)
    if args.dicom:
        from medstation.ai.followup import export_sr

        preds = {t["tracking_uid"]: t["prediction"] for t in report["tracks"] if t.get("prediction")}
        report["dicom"] = export_sr(timepoints, tracks, args.dicom, preds)
    if args.json:
        print(jsonout.dumps(report, indent=1))
        return 0
    print(f"patient {report['patient_id']}: {len(report['timepoints'])} timepoint(s), {len(tracks)} track(s)")
    for t in tracks:
        sizes = ", ".join("-" if p is None else f"{p.diameter_mm:.1f} mm" for p in t.points)
        vdt = t.volume_doubling_days
        lr = (t.guideline.get("lung_rads") or {}).get("category", "")
        pred = next((d.get("prediction") for d in report["tracks"] if d["track_id"] == t.track_id), None)
        print(f"  {t.track_id} {t.status:9s} {sizes}"
              + (f"  VDT {vdt:.0f} d" if vdt is not None and np.isfinite(vdt) else "")
              + (f"  Lung-RADS {lr}" if lr else "")
              + (f"  -> {pred['diameter_mm']:.1f} mm on {pred['date']} (p growth {pred['p_growth']:.2f})"
                 if pred else ""))
    return 0
