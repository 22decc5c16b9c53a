"""``medstation pacs echo|find|retrieve|send`` and ``medstation deidentify``."""

from __future__ import annotations

import argparse
from pathlib import Path

from medstation.core import jsonout
from medstation.core.errors import PacsError


def add_node_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", help="a PACS saved in the viewer's PACS dialog (by name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=104)
    p.add_argument("--aet", default="ORTHANC", help="the PACS's AE title (called AE)")
    p.add_argument("--calling-aet", default="MEDSTATION", help="medstation's AE title")
    p.add_argument("--store-port", type=int, default=11112, help="medstation's port for C-MOVE deliveries")
    p.add_argument("--web", dest="dicomweb_url", default="", help="DICOMweb URL (QIDO/WADO/STOW)")
    p.add_argument("--user", default="",
                   help="user name for DICOMweb (password from $MEDSTATION_PACS_PASSWORD)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--json", action="store_true")


def node_from_args(args):
    import os

    from medstation.dicom.pacs import PacsNode, load_nodes, set_node_password

    if args.node:
        nodes = {n.name: n for n in load_nodes()}
        if args.node not in nodes:
            raise PacsError(f"no PACS named {args.node!r}",
                            f"saved ones: {', '.join(nodes) or 'none'}; add it in the viewer's PACS dialog")
        node = nodes[args.node]
    else:
        node = PacsNode("command line", host=args.host, port=args.port, ae_title=args.aet,
                        calling_ae=args.calling_aet, store_port=args.store_port,
                        dicomweb_url=args.dicomweb_url, username=args.user, timeout=args.timeout)
        node.validate()
    if os.environ.get("MEDSTATION_PACS_PASSWORD"):
        set_node_password(node, os.environ["MEDSTATION_PACS_PASSWORD"])
    return node


def _client(args, node):
    from medstation.dicom.pacs import open_client
    return open_client(node, web=bool(getattr(args, "via_web", False)))


def cmd_echo(args) -> int:
    node = node_from_args(args)
    seconds = _client(args, node).echo()
    print(jsonout.dumps({"node": node.name, "seconds": seconds}) if args.json
          else f"{node.name} ({node.where}) answered in {seconds * 1000:.0f} ms")
    return 0


def cmd_find(args) -> int:
    from dataclasses import asdict
    node = node_from_args(args)
    client = _client(args, node)
    if args.study:
        rows = [asdict(s) for s in client.find_series(args.study)]
    else:
        rows = [asdict(s) for s in client.find_studies(
            patient_id=args.patient_id, patient_name=args.patient_name, date_from=args.date_from,
            date_to=args.date_to, accession=args.accession, modality=args.modality)]
    if args.json:
        print(jsonout.dumps(rows, indent=1))
        return 0
    for r in rows:
        if "series_uid" in r:
            print(f"{r['series_number'] or '':>4} {r['modality']:<4} {r['n_instances'] or '?':>5} "
                  f"{r['description']}  {r['series_uid']}")
        else:
            print(f"{r['study_date']} {r['patient_id']:<14} {r['patient_name']:<24} "
                  f"{'/'.join(r['modalities']):<8} {r['n_instances'] or '?':>5} {r['description']}  "
                  f"{r['study_uid']}")
    print(f"{len(rows)} found")
    return 0


def cmd_retrieve(args) -> int:
    from medstation.cli import _open_db, _progress_bar
    from medstation.dicom import WorkerPool
    from medstation.dicom.pacs import retrieve_study

    node = node_from_args(args)
    with _open_db(args) as db, WorkerPool() as pool:
        update, close = _progress_bar("retrieve", not args.json)
        try:
            report, imported = retrieve_study(node, args.study, db, pool, method=args.method,
                                              progress=(lambda n, t: update(n, t or n)) if update else None)
        finally:
            close()
    if args.json:
        print(jsonout.dumps({"transfer": report.to_dict(), "import": imported.to_dict()}, indent=1))
    else:
        print(f"{report.transferred} instances in {report.seconds:.1f} s by {args.method or node.retrieve}; "
              f"{len(imported.series)} series in the study database")
    return 0


def cmd_send(args) -> int:
    node = node_from_args(args)
    files = [str(p) for a in args.paths
             for p in (sorted(Path(a).rglob("*.dcm")) if Path(a).is_dir() else [a])]
    if not files:
        raise PacsError(f"no DICOM files in {', '.join(args.paths)}",
                        "give .dcm files or folders holding them")
    report = _client(args, node).store(files)
    print(jsonout.dumps(report.to_dict()) if args.json
          else f"sent {report.transferred} instances to {node.name} in {report.seconds:.1f} s")
    return 0


def cmd_deidentify(args) -> int:
    from medstation.dicom import collect
    from medstation.dicom.deid import deidentify

    found = collect(args.paths)
    report = deidentify(found.files, args.out, date_shift_days=args.date_shift,
                        allow_burned_in=args.allow_burned_in)
    summary = {"out": report.out_dir, "files": len(report.files), "date_shift_days": report.date_shift_days,
               "uids_remapped": report.uids_remapped, "patients": report.patients}
    print(jsonout.dumps(summary) if args.json else
          f"{len(report.files)} files de-identified into {report.out_dir} "
          f"({report.patients} patient(s), dates moved by {report.date_shift_days} days)")
    return 0


def add_parsers(sub, wrap) -> None:
    s = sub.add_parser("pacs", help="query, retrieve from and send to a PACS (DIMSE or DICOMweb)")
    psub = s.add_subparsers(dest="pacs", metavar="ACTION", required=True)
    e = psub.add_parser("echo", help="C-ECHO (or a DICOMweb test search with --via-web)")
    add_node_arguments(e)
    e.add_argument("--via-web", action="store_true")
    e.set_defaults(func=wrap("cmd_echo"))
    f = psub.add_parser("find", help="search studies (or the series of --study)")
    add_node_arguments(f)
    f.add_argument("--via-web", action="store_true", help="QIDO-RS instead of C-FIND")
    f.add_argument("--patient-id", default="")
    f.add_argument("--patient-name", default="")
    f.add_argument("--date-from", default="")
    f.add_argument("--date-to", default="")
    f.add_argument("--accession", default="")
    f.add_argument("--modality", default="")
    f.add_argument("--study", default="", help="list the series of this Study Instance UID")
    f.set_defaults(func=wrap("cmd_find"))
    r = psub.add_parser("retrieve", help="retrieve a study into the study database")
    add_node_arguments(r)
    r.add_argument("study", help="Study Instance UID")
    r.add_argument("--method", choices=["get", "move", "wado"], default=None)
    r.set_defaults(func=wrap("cmd_retrieve"))
    t = psub.add_parser("send", help="send DICOM files (e.g. exported SR and SEG) by C-STORE or STOW-RS")
    add_node_arguments(t)
    t.add_argument("paths", nargs="+")
    t.add_argument("--via-web", action="store_true", help="STOW-RS instead of C-STORE")
    t.set_defaults(func=wrap("cmd_send"))

    d = sub.add_parser("deidentify", help="de-identified copy of studies (PS3.15 Annex E basic profile)")
    d.add_argument("paths", nargs="+")
    d.add_argument("--out", required=True)
    d.add_argument("--date-shift", type=int, default=None, help="days to move every date (default: random)")
    d.add_argument("--allow-burned-in", action="store_true",
                   help="export images marked or suspected to have burned-in annotation (check them first)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=wrap("cmd_deidentify"))
