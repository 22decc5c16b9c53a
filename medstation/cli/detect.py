"""``medstation detect``: the detector on every series of the paths (or of the study database's
matching CT series), findings as JSON per series, with SR/SEG (``--dicom``) or NIfTI label maps
(``--masks``); a batch under ``torchrun`` or with ``--workers N``, each rank its share."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from medstation.cli.ai import _detector, _say
from medstation.core import jsonout
from medstation.core.errors import LoadError, MedstationError


def _shard() -> tuple[int, int]:
    """This process's share of a batch: ``RANK`` of ``WORLD_SIZE`` (set by ``torchrun`` or by
    ``--workers``), else the whole."""
    import os

    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return (int(os.environ.get("RANK", "0") or 0), size) if size > 1 else (0, 1)


def _detect_workers(args) -> int:
    """``--workers N``: N local ``medstation detect`` processes, each a rank of its share; this one
    merges their reports."""
    import os
    import subprocess

    argv = [a for a in sys.argv[1:]]
    if "--workers" in argv:
        i = argv.index("--workers")
        del argv[i:i + 2]
    argv = [a for a in argv if not a.startswith("--workers=")]
    command = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "medstation"]
    children = []
    for rank in range(args.workers):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(args.workers), "LOCAL_RANK": str(rank),
               "MEDSTATION_DETECT_NO_MERGE": "1"}
        children.append(subprocess.Popen([*command, *argv], env=env, stdout=subprocess.DEVNULL))
    codes = [c.wait() for c in children]
    if any(codes):
        raise MedstationError(f"{sum(1 for c in codes if c)} of {args.workers} detect workers failed "
                              f"(exit codes {codes})", "run without --workers to see the error")
    report = _merge_reports(Path(args.out), args.workers, wait_s=0)
    if args.json:
        print(jsonout.dumps(report, indent=1))
    return 0


def _merge_reports(out: Path, size: int, wait_s: float = 3600) -> dict:
    """Rank 0's merge: the ranks' ``detect-report.rank<i>.json`` (waiting up to ``wait_s`` for the others)
    into ``detect-report.json``, series in UID order."""
    import json as _json

    from medstation.core.files import atomic_write_text

    parts = [out / f"detect-report.rank{r}.json" for r in range(size)]
    deadline = time.monotonic() + wait_s
    while not all(p.exists() for p in parts):
        if time.monotonic() > deadline:
            missing = [p.name for p in parts if not p.exists()]
            raise MedstationError(f"the reports of {', '.join(missing)} did not arrive",
                                  "check that every rank ran, then merge again")
        time.sleep(0.5)
    reports = [_json.loads(p.read_text()) for p in parts]
    merged = {**reports[0], "series": sorted((s for r in reports for s in r["series"]),
                                             key=lambda s: (s.get("series_uid", ""), s.get("part", 0))),
              "problems": [p for r in reports for p in r["problems"]], "ranks": size}
    atomic_write_text(out / "detect-report.json", jsonout.dumps(merged, indent=1) + "\n")
    for p in parts:
        p.unlink()
    return merged


def cmd_detect(args) -> int:
    import os

    from medstation.cli.selftest import operating_threshold
    from medstation.core.files import atomic_write_text
    from medstation.dicom import WorkerPool, list_series, open_series, stack_ref

    if getattr(args, "workers", 0) and args.workers > 1 and _shard()[1] == 1:
        return _detect_workers(args)
    rank, size = _shard()
    if getattr(args, "db_query", None) is not None:
        args.paths = list(args.paths or []) + _query_paths(args)
    if not args.paths:
        raise MedstationError("no studies to run on", "give paths, or --db-query TEXT for the study database")
    detector, model_dir = _detector(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"model": {"name": detector.name, "version": detector.version, "path": str(model_dir),
                              "sha256": detector.manifest.get("sha256", "")},
                    "not_for_clinical_use": True, "series": [], "problems": []}
    with tempfile.TemporaryDirectory(prefix="medstation-detect-") as tmp, WorkerPool() as pool:
        listing = list_series(args.paths, pool, extract_dir=tmp)
        report["problems"] += [e.to_dict() for e in listing.problems]
        stacks = sorted(listing.stacks, key=lambda s: (s.series_uid, s.part))
        if not stacks:
            raise LoadError(", ".join(args.paths), "no image series found",
                            "point detect at a folder of CT files")
        stacks = stacks[rank::size]  # this rank's share (all of them without torchrun or --workers)
        for stack in stacks:
            h = stack.first
            ref = stack_ref(stack)
            entry = {**ref.to_dict(), "series_description": h.series_description,
                     "patient_id": h.patient_id, "modality": h.modality,
                     "slices": len(stack.slices)}
            loaded = open_series(stack, pool=pool)
            report["problems"] += [e.to_dict() for e in loaded.errors]
            try:
                run = detector.detect(loaded.volume)
            except MedstationError as exc:  # e.g. a non-axial or non-CT series: report, go on
                entry["skipped"] = exc.to_dict()
                if getattr(args, "dicom", False) and "no lung in this series" in exc.reason:
                    from medstation.dicom.results import export_skipped

                    entry["dicom"] = {"sr": export_skipped(exc.reason, loaded.volume.sources, out / "dicom",
                                                           model_name=detector.name,
                                                           model_version=detector.version)}
                report["series"].append(entry)
                _say(args, f"{h.series_description or stack.series_uid}: skipped ({exc})")
                continue
            entry.update({"findings": [f.to_dict() for f in run.findings], "seconds": run.seconds,
                          "slices_run": run.slices_run, "device": run.device,
                          "geometry_warnings": list(loaded.volume.warnings)})
            name = f"{stack.series_uid}-{stack.part}.json" if stack.part > 1 else f"{stack.series_uid}.json"
            path = out / name
            atomic_write_text(path, jsonout.dumps({**entry, "model": report["model"],
                                                "not_for_clinical_use": True}, indent=1) + "\n")
            entry["file"] = str(path)
            shown = [f for f in run.findings if f.score >= operating_threshold(detector.manifest)]
            if getattr(args, "dicom", False) and shown:
                from medstation.dicom.results import ExportError, export_results
                try:
                    exported = export_results(shown, loaded.volume.sources, out / "dicom",
                                              voxels=loaded.volume.voxels)
                    entry["dicom"] = {"sr": exported.sr, "seg": exported.seg}
                except ExportError as exc:  # e.g. a NIfTI series: said in the report, the run goes on
                    entry["dicom"] = {"skipped": exc.to_dict()}
                    _say(args, f"{h.series_description or stack.series_uid}: no SR/SEG ({exc})")
            if getattr(args, "masks", False):
                from medstation.dicom.masks import export_findings_mask

                entry["mask"] = str(export_findings_mask(loaded.volume, shown, stack.series_uid,
                                                         out / "masks" / f"{path.stem}-findings.nii.gz"))
            report["series"].append(entry)
            _say(args, f"{h.series_description or stack.series_uid}: {len(run.findings)} findings "
                       f"in {run.seconds['total']:.1f} s -> {path}")
            for f in run.findings[: args.show]:
                _say(args, f"  {f.finding_id}: score {f.score:.2f}, {f.diameter_mm:.1f} mm at "
                           f"({f.center_mm[0]:.1f}, {f.center_mm[1]:.1f}, {f.center_mm[2]:.1f}) mm, "
                           f"slice {f.center_slice + 1}")
    if size > 1:  # a rank of a batch: its part, then rank 0 merges (unless a --workers parent does)
        atomic_write_text(out / f"detect-report.rank{rank}.json", jsonout.dumps(report, indent=1) + "\n")
        if rank != 0 or os.environ.get("MEDSTATION_DETECT_NO_MERGE"):
            return 0
        report = _merge_reports(out, size)
    else:
        atomic_write_text(out / "detect-report.json", jsonout.dumps(report, indent=1) + "\n")
    if args.json:
        print(jsonout.dumps(report, indent=1))
    return 0


def _query_paths(args) -> list[str]:
    """The files of the study database's series matching ``--db-query`` (name, ID, date, modality,
    description), CT only."""
    from medstation.dicom.database import StudyDatabase

    with StudyDatabase(getattr(args, "db", None)) as db:
        rows = [r for r in db.index.series(args.db_query) if r.modality == "CT"]
        return [h.path for r in rows for h in db.index.series_headers(r.ref)]
