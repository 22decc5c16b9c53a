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
from pathlib import Path

from medstation.core import jsonout
from medstation.core.errors import MedstationError
from medstation.core.tracks import doubling_text


def add_parser(sub, run) -> None:
    s = sub.add_parser("followup", help="match a patient's lesions across studies: tracks, change, VDT, "
                       "Lung-RADS and Fleischner (JSON with --json)")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--patient", help="the patient ID to follow when the paths hold several")
    s.add_argument("--all-patients", metavar="OUT",
                   help="a batch: follow every patient of the paths, one report per patient in OUT and an "
                   "index (under torchrun each rank takes its share of the patients)")
    s.add_argument("--same-patient", action="append", default=[], metavar="ID",
                   help="another patient ID of the same person (another site's numbering); repeatable")
    s.add_argument("--dates", type=lambda t: [d.strip().replace("-", "") for d in t.split(",")],
                   metavar="YYYYMMDD,...", help="NIfTI / MetaImage / NRRD timepoints carry no date: one "
                   "per PATH, in order")
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
    from medstation.ai.registry import open_detector
    from medstation.workflows.followup import follow

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr)

    detector, _model_dir = open_detector(args.model, args.device, args.threads,
                                         say=lambda t: print(t, file=sys.stderr))
    if args.all_patients:
        return _batch(args, detector, say)
    timepoints: list = []
    if args.same_patient and not args.patient:
        raise MedstationError("--same-patient needs --patient", "name the patient the other IDs belong to")
    report, tracks = follow(args.paths, detector, patient=args.patient, risk=args.risk, progress=say,
                            timepoints_out=timepoints, aliases=tuple(args.same_patient), dates=args.dates)
    if args.predict_at:
        from medstation.ai.followup import add_predictions
        from medstation.ai.predictor import load_predictor
        from medstation.ai.registry import ModelRegistry

        registry = ModelRegistry()
        version = (registry.resolve(args.predictor, "followup") if args.predictor
                   else registry.default("followup"))
        add_predictions(report, load_predictor(version.path), args.predict_at)
    if args.dicom:
        from medstation.workflows.followup import export_sr

        preds = {t["tracking_uid"]: t["prediction"] for t in report["tracks"] if t.get("prediction")}
        report["dicom"] = export_sr(timepoints, tracks, args.dicom, preds)
    if args.json:
        print(jsonout.dumps(report, indent=1))
        return 0
    from medstation.ai.followup import summary_text

    print(f"patient {report['patient_id']}: {len(report['timepoints'])} timepoint(s), {len(tracks)} track(s)"
          + summary_text(report.get("patient") or {}))
    for t in tracks:
        sizes = ", ".join("-" if p is None else f"{p.diameter_mm:.1f} mm"
                          + (" (box long axis)" if p.size_method == "box" else "") for p in t.points)
        vdt = doubling_text(t.volume_doubling_days, t.percent_change_volume)
        lr_d = t.guideline.get("lung_rads") or {}
        fl_d = t.guideline.get("fleischner") or {}
        lr = lr_d.get("category", "") + (f" ({lr_d['rule']})" if lr_d.get("rule") else "") + (
            f" [{lr_d['caveat']}]" if lr_d.get("caveat") else "")
        pred = next((d.get("prediction") for d in report["tracks"] if d["track_id"] == t.track_id), None)
        status = t.status + ("" if t.confirmed else " (unconfirmed)")
        print(f"  {t.track_id} {status:9s} {sizes}  VDT {vdt}"
              + (f"  Lung-RADS {lr}" if lr else "")
              + (f"  Fleischner: {fl_d['recommendation']} ({fl_d.get('rule', '')})" if fl_d else "")
              + (f" [{fl_d['remark']}]" if fl_d.get("remark") else "")
              + (f"  -> {pred['diameter_mm']:.1f} mm on {pred['date']} (p growth {pred['p_growth']:.2f})"
                 if pred else ""))
    return 0


def _batch(args, detector, say) -> int:
    """Every patient of the paths: ``OUT/<patient>.json`` each and ``OUT/followup-index.json``; under
    ``torchrun`` each rank follows its share of the patients and rank 0 writes the index."""
    import os
    import time

    from medstation.core.files import atomic_write_text
    from medstation.dicom import WorkerPool, list_series
    from medstation.workflows.followup import follow

    out = Path(args.all_patients)
    out.mkdir(parents=True, exist_ok=True)
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0) if size > 1 else 0
    with WorkerPool() as pool:
        stacks = list_series(args.paths, pool).stacks
        by_patient: dict[str, list[str]] = {}
        for st in stacks:
            by_patient.setdefault(st.first.patient_id, []).extend(s.header.path for s in st.slices)
        patients = sorted(by_patient)
        mine = patients[rank::size]
        rows = []
        for p in mine:
            say(f"patient {p}: {len(by_patient[p])} files")
            try:
                report, _tracks = follow(by_patient[p], detector, patient=p, risk=args.risk, pool=pool)
                atomic_write_text(out / f"{_safe(p)}.json", jsonout.dumps(report, indent=1) + "\n")
                rows.append({"patient_id": p, "file": f"{_safe(p)}.json",
                             "timepoints": len(report["timepoints"]), "tracks": len(report["tracks"]),
                             "ok": True})
            except MedstationError as exc:  # one patient's problem does not stop the batch
                rows.append({"patient_id": p, "ok": False, "error": exc.to_dict()})
    atomic_write_text(out / f"followup-index.rank{rank}.json", jsonout.dumps(rows) + "\n")
    if rank != 0:
        return 0
    parts = [out / f"followup-index.rank{r}.json" for r in range(size)]
    deadline = time.monotonic() + 6 * 3600
    while not all(p.exists() for p in parts) and time.monotonic() < deadline:
        time.sleep(0.5)
    import json

    index = {"patients": sorted((r for p in parts if p.exists() for r in json.loads(p.read_text())),
                                key=lambda r: r["patient_id"]), "ranks": size,
             "missing_ranks": [p.name for p in parts if not p.exists()]}
    atomic_write_text(out / "followup-index.json", jsonout.dumps(index, indent=1) + "\n")
    for p in parts:
        p.unlink(missing_ok=True)
    if args.json:
        print(jsonout.dumps(index, indent=1))
    else:
        print(f"{len(index['patients'])} patient(s) followed -> {out}")
    return 0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "patient"
