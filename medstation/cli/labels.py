"""``medstation labels import|export|list``: nodule labels in the study database.

``import FILE``: a LUNA16 CSV (``seriesuid,coordX,coordY,coordZ,diameter_mm``, patient
mm), a label mask (``.nii.gz``, ``.nrrd``, ``.mha``: one label per connected structure, on the
series whose grid it lies on, or ``--series UID``) or a DICOM SR (TID 1500; ours or another
tool's), all rows checked first and nothing stored when any is bad. ``export --format
luna16|sr|nifti --out PATH`` (nifti: one label map per series, with a JSON legend). ``list``:
every label, the readers' accepted and rejected AI findings included, with counts.
"""

from __future__ import annotations

from medstation.core import jsonout


def add_parsers(sub, run) -> None:
    s = sub.add_parser("labels", help="nodule labels for fine-tuning and evaluation: import, export, list")
    lsub = s.add_subparsers(dest="labels_command", metavar="ACTION", required=True)
    m = lsub.add_parser("import", help="import a LUNA16 CSV, a label mask (NIfTI / NRRD) or a DICOM SR "
                                       "(TID 1500); all rows or none")
    m.add_argument("file")
    m.add_argument("--series", metavar="UID", help="the series a mask was drawn on (default: the database "
                                                   "series whose voxel grid it lies on)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run("cmd_import"))
    m = lsub.add_parser("export", help="write the nodule labels as a LUNA16 CSV, or a DICOM SR or NIfTI "
                                       "label map per series")
    m.add_argument("--format", choices=("luna16", "sr", "nifti"), required=True)
    m.add_argument("--out", required=True, help="the CSV file (luna16) or a folder (sr, nifti)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run("cmd_export"))
    m = lsub.add_parser("list", help="every label (readers' accepts and rejects included), with counts")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run("cmd_list"))


def _db(args):
    from medstation.cli import _open_db

    return _open_db(args)


def cmd_import(args) -> int:
    from medstation.dicom.labels import all_labels, counts, import_labels

    with _db(args) as db:
        already: list = []
        ids = import_labels(db, args.file, already=already, series=args.series)
        summary = counts(all_labels(db))
    if args.json:
        print(jsonout.dumps({"imported": len(ids), "ids": ids, "already_held": len(already),
                             "totals": summary}, indent=1))
    else:
        print(f"imported {len(ids)} label(s) from {args.file}"
              + (f" ({len(already)} already in the database, not added again)" if already else "")
              + f"; the database now holds {summary['nodules']} "
              f"nodule(s) and {summary['negatives']} negative(s) in {summary['series']} series")
    return 0


def cmd_export(args) -> int:
    from medstation.dicom.labels import all_labels, export_luna16, export_sr
    from medstation.dicom.masks import export_label_masks

    with _db(args) as db:
        labels = all_labels(db)
        if args.format == "luna16":
            written = [str(export_luna16(labels, args.out))]
        elif args.format == "sr":
            written = export_sr(db, labels, args.out)
        else:
            written = export_label_masks(db, labels, args.out)
    nodules = sum(lab.is_nodule for lab in labels)
    if args.json:
        print(jsonout.dumps({"format": args.format, "nodules": nodules, "files": written}, indent=1))
    else:
        print(f"{nodules} nodule label(s) -> {', '.join(written) or 'nothing written'}")
    return 0


def cmd_list(args) -> int:
    from medstation.dicom.labels import collect_labels, counts

    with _db(args) as db:
        found = collect_labels(db)
    labels = found.labels
    if args.json:
        print(jsonout.dumps({"labels": [lab.to_dict() for lab in labels], "totals": counts(labels),
                             "skipped": [s.to_dict() for s in found.skipped]}, indent=1))
        return 0
    c = counts(labels)
    print(f"{c['labels']} label(s): {c['nodules']} nodule(s), {c['negatives']} negative(s), "
          f"{c['series']} series ("
          + (", ".join(f"{k} {v}" for k, v in sorted(c["by_source"].items())) or "none") + ")")
    for lab in labels:
        x, y, z = lab.center_mm
        print(f"  {lab.series_uid}  ({x:.1f}, {y:.1f}, {z:.1f}) mm  "
              f"{lab.diameter_mm:.1f} mm {lab.size_name}  "
              f"{'nodule' if lab.is_nodule else 'not a nodule'}  [{lab.source}]")
    if found.skipped:
        print(f"{len(found.skipped)} label(s) cannot be used:")
        for s in found.skipped:
            print(f"  {s.text()}")
    return 0
