"""The ``medstation`` command: the composition root.

With no command it opens the viewer (``--demo``: on the built-in demo study).
Subcommands: ``open``, ``import``, ``info``, ``demo``, ``detect``, ``evaluate``,
``calibrate``, ``train-detector``, ``train-fpr``, ``models list|show|use|remove``,
``labels import|export|list``, ``train``, ``followup``, ``evaluate-followup``, ``train-followup``,
``pacs echo|find|retrieve|send``, ``deidentify``, ``bench load|render|infer|followup|train``.

A new command: a module ``cli/<name>.py`` with its ``cmd_*`` functions (imported
lazily, so ``medstation --help`` stays fast) and its parser added in
``build_parser``. Only ``cli/launcher.py`` may import ``gui``. Errors a user can
cause come out as one line (``medstation: error: ...``) and exit code 2, never
a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from medstation import __version__
from medstation.core import jsonout
from medstation.core.errors import CancelledError, MedstationError


def _progress_bar(desc: str, enabled: bool):
    """A tqdm bar on a terminal (stderr); a no-op callback otherwise."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="file", file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def _open_db(args, rebuild: bool = True):
    """The study database; one found damaged is set aside (what readers made copied from it) and,
    for every command, rebuilt from the folders it knew before the command goes on."""
    from medstation.dicom.database import StudyDatabase

    db = StudyDatabase(args.db)
    if db.needs_rebuild:
        print(f"medstation: {db.recovery_text()}", file=sys.stderr)
        if rebuild:
            from medstation.dicom import WorkerPool
            from medstation.dicom import rebuild as rebuild_from_roots

            with WorkerPool(timeout=getattr(args, "timeout", None) or 30) as pool:
                report = rebuild_from_roots(db, pool)
            db.recovered_from = None  # rebuilt: the next user of this handle needs nothing more
            print(f"medstation: rebuilt: {report.files} files, {report.added} added, "
                  f"{len(report.errors)} with problems", file=sys.stderr)
    return db


def cmd_import(args) -> int:
    from medstation.dicom import WorkerPool, import_paths, rebuild

    with _open_db(args, rebuild=False) as db, WorkerPool(timeout=args.timeout) as pool:
        update, close = _progress_bar("import", not args.json)
        try:
            if db.needs_rebuild:
                rebuild(db, pool, progress=update)
            report = import_paths(db, args.paths, pool, progress=update)
        finally:
            close()
        missing = db.index.check_files()
        counts = db.index.counts()
    if args.json:
        print(jsonout.dumps({"report": report.to_dict(), "database": str(db.path), "counts": counts},
                         indent=1))
        return 0
    print(f"{report.files} files: {report.added} added, {report.unchanged} unchanged, "
          f"{report.skipped} not DICOM, {len(report.errors)} with problems")
    for e in report.errors:
        print(f"  problem: {e}")
    print(f"database {db.path}: {counts['patients']} patients, {counts['studies']} studies, "
          f"{counts['series']} series, {counts['instances']} instances"
          + (f", {missing} files missing" if missing else ""))
    return 0


def cmd_info(args) -> int:
    from medstation.cli.info import run_info

    return run_info(args)


def cmd_demo(args) -> int:
    from medstation.cli.info import run_info
    from medstation.dicom import WorkerPool, import_paths
    from medstation.synth import demo_study

    folder = Path(args.folder) if args.folder else _data_dir() / "demo"
    if not (folder / "truth.json").exists():
        print(f"writing the demo study to {folder} ...", file=sys.stderr)
        demo_study(folder)
    with _open_db(args) as db, WorkerPool() as pool:
        import_paths(db, [folder], pool)
    print("medstation demo study (synthetic chest CT; not for clinical use)\n")
    args.paths = [str(folder)]
    return run_info(args)


def cmd_gui(args) -> int:
    from medstation.cli.launcher import cmd_gui as run_gui

    return run_gui(args)


def cmd_bench(args) -> int:
    if args.bench == "render":
        from medstation.cli.launcher import cmd_bench_render

        return cmd_bench_render(args)
    from medstation.cli.bench import run_bench

    return run_bench(args)


def _data_dir() -> Path:
    from medstation.core.paths import user_data_path

    return user_data_path()


#: what the options shared by many commands mean (an option's own help, where given, wins)
_STANDARD_HELP = {
    "json": "print a machine-readable JSON report instead of text",
    "paths": "folders, DICOM files, DICOMDIRs or .zip archives",
    "file": "the label file: a LUNA16 CSV (.csv) or a DICOM SR",
    "host": "the PACS's host name or IP address",
    "port": "the PACS's DICOM port",
    "timeout": "seconds a peer or a file may take before it is given up",
    "via_web": "echo over DICOMweb (QIDO-RS) instead of a DICOM C-ECHO",
    "patient_id": "match this Patient ID", "patient_name": "match this patient name (DICOM wildcards)",
    "date_from": "studies on or after this date (YYYYMMDD)",
    "date_to": "studies on or before this date (YYYYMMDD)",
    "accession": "match this accession number", "modality": "match this modality (CT, MR, ...)",
    "method": "how to retrieve: get (C-GET), move (C-MOVE) or wado (WADO-RS); default: the node's",
    "out": "the output folder", "format": "luna16 (CSV) or sr (DICOM TID 1500)",
    "headers_only": "read headers only, no pixel data", "verbose": "say more about each file",
    "slices": "slices of the generated CT", "size": "rows and columns of each generated slice",
    "rounds": "times each measurement is repeated (the median is reported)",
    "frames": "frames drawn", "timepoints": "studies per patient",
    "device": "where the network runs: auto (CUDA, then MPS, then CPU), cpu or cuda",
    "threads": "torch CPU threads (0: torch's default)",
    "epochs": "passes over the training data", "batch_size": "samples per optimisation step",
    "lr": "the learning rate (0: the recipe's default)", "steps": "optimisation steps",
    "seed": "random seed (the same seed gives the same split and sampling)",
    "version": "the version the new model is saved as",
    "resume": "continue an interrupted run from its checkpoint",
    "studies": "generated studies evaluated", "cohorts": "generated patients followed",
    "tracks": "synthetic lesion courses generated for training", "samples": "training crops generated",
    "min_diameter": "count only nodules of at least this diameter (mm)",
}


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (where it has one)."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "%(default)" in text or "default" in text.lower() or d is None or d is False or d == "" \
                or d is argparse.SUPPRESS:
            return text
        if isinstance(action, argparse._SubParsersAction) or action.nargs == 0:
            return text
        return f"{text} (default: %(default)s)"


def _complete_help(parser: argparse.ArgumentParser) -> None:
    """Give every option of every command a meaning (:data:`_STANDARD_HELP`) and its default."""
    parser.formatter_class = _DefaultsFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _complete_help(sub)
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            action.help = _STANDARD_HELP.get(action.dest, "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medstation", description="medstation: a desktop radiology assistant (DICOM viewer, local AI "
        "lesion detection). With no command it opens the viewer. Not for clinical use.")
    p.add_argument("--version", action="version", version=f"medstation {__version__}")
    p.add_argument("--db", help="study database file (default: $MEDSTATION_DB or the user data folder)")
    p.add_argument("--demo", action="store_true", help="open the viewer on the built-in demo study")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("open", help="open folders, files, DICOMDIRs or .zip archives in the viewer")
    s.add_argument("paths", nargs="+")
    s.set_defaults(func=cmd_gui)

    s = sub.add_parser("import", help="index folders, files, DICOMDIRs and .zip archives")
    s.add_argument("paths", nargs="+")
    s.add_argument("--json", action="store_true", help="machine-readable report")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds allowed per file")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("info", help="patients, studies, series and problems in files or folders")
    s.add_argument("paths", nargs="+")
    s.add_argument("--json", action="store_true")
    s.add_argument("--headers-only", action="store_true", help="do not decode pixels")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds allowed per file")
    s.add_argument("--verbose", "-v", action="store_true", help="also list files that are not DICOM")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("demo", help="write, import and describe the built-in demo study")
    s.add_argument("--folder", help="where to write the demo study")
    s.add_argument("--json", action="store_true")
    s.add_argument("--headers-only", action="store_true")
    s.add_argument("--timeout", type=float, default=30.0)
    s.add_argument("--verbose", "-v", action="store_true")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("bench", help="benchmarks")
    bsub = s.add_subparsers(dest="bench", metavar="BENCH", required=True)
    b = bsub.add_parser("load", help="load a 300-slice CT: medstation vs SimpleITK")
    b.add_argument("--json", action="store_true")
    b.add_argument("--slices", type=int, default=300)
    b.add_argument("--size", type=int, default=512)
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--keep", help="keep the generated series in this folder")
    b.set_defaults(func=cmd_bench)
    b = bsub.add_parser("render", help="time per scroll frame of the viewer (W/L + draw), offscreen")
    b.add_argument("--json", action="store_true")
    b.add_argument("--size", type=int, default=512)
    b.add_argument("--frames", type=int, default=200)
    b.add_argument("--contend", type=int, default=None, metavar="N",
                   help="also time the frames while a detection runs on a worker thread and N busy "
                        "processes spin beside it (0: the detection alone)")
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser("detect", help="find lesions in CT series; findings as JSON per series (a batch: "
                       "under torchrun each rank takes its share, or --workers N)")
    s.add_argument("paths", nargs="*", help="folders, files, DICOMDIRs, .zip archives, NIfTI / MetaImage / "
                   "NRRD volumes")
    s.add_argument("--db-query", help="also the CT series of the study database matching this text")
    s.add_argument("--workers", type=int, default=0, help="N local processes, each a share of the series")
    s.add_argument("--out", required=True, help="folder for <series UID>.json and detect-report.json")
    s.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    _model_args(s)
    s.add_argument("--show", type=int, default=10, help="findings listed per series on stderr")
    s.add_argument("--dicom", action="store_true",
                   help="also write each series' findings above the model's 1-FP/scan operating point "
                   "as DICOM SR (TID 1500) and SEG into OUT/dicom")
    s.add_argument("--masks", action="store_true",
                   help="also write the same findings as a NIfTI label map per series (value n = the n-th "
                   "finding, a JSON legend beside it) into OUT/masks")
    s.set_defaults(func=_lazy("detect", "cmd_detect"))

    s = sub.add_parser("selftest",
                       help="the whole chain on the demo study, offscreen: exit 0 if it all works")
    s.add_argument("--gui", action="store_true", help="also open the main window and save a screenshot")
    s.add_argument("--screenshot", help="where --gui saves its screenshot")
    s.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    s.add_argument("--quick", action="store_true", help="the demo's detection only (no follow-up, no "
                   "fine-tuning)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_selftest)

    from medstation.cli.labels import add_parsers as add_labels_parsers
    from medstation.cli.models import add_parsers as add_models_parsers
    from medstation.cli.pacs import add_parsers as add_pacs_parsers

    add_pacs_parsers(sub, _pacs)
    add_models_parsers(sub, _models)
    add_labels_parsers(sub, _labels)
    from medstation.cli.train import add_parser as add_train_parser

    add_train_parser(sub, _train)
    from medstation.cli.followup import add_parser as add_followup_parser

    add_followup_parser(sub, _followup)

    s = sub.add_parser("evaluate", help="FROC and CPM of a detector on generated studies with known nodules")
    s.add_argument("--studies", type=int, default=20)
    s.add_argument("--family", choices=("own", "held-out", "held-out-masses"), default="own",
                   help="generator: 'own' (the training generator's unseen seeds), 'held-out' "
                        "(an independent generator training never sees) or 'held-out-masses' (it, with a "
                        "35-90 mm mass on the mediastinum or chest wall and 1.25-5 mm slices)")
    s.add_argument("--seed0", type=int, default=None,
                   help="first phantom seed (own: 10000; training uses 0..399; held-out: 50000; "
                        "held-out-masses: 60000)")
    s.add_argument("--sizes-out", help="write each matched nodule's measured and true size (JSON)")
    s.add_argument("--studies-dir", help="evaluate on these labelled studies instead (with --annotations)")
    s.add_argument("--annotations", help="LUNA16 CSV (seriesuid,coordX,coordY,coordZ,diameter_mm; "
                   "patient mm) naming the nodules of --studies-dir")
    s.add_argument("--data", help="folder for the generated studies (default: user data folder/eval)")
    s.add_argument("--min-diameter", type=float, default=0.0,
                   help="count only nodules of at least this diameter (mm; default: every annotation). "
                        "Others are ignored as LUNA16 ignores its excluded annotations: neither hits nor "
                        "false positives")
    s.add_argument("--max-diameter", type=float, default=float("inf"),
                   help="count only nodules of at most this diameter (mm; default: no limit)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--write-metrics", action="store_true", help="store the figures in the model's manifest")
    s.add_argument("--site", action="store_true",
                   help="evaluate on the study database's labelled series that the model (and --against) "
                        "were not fine-tuned on")
    s.add_argument("--report", metavar="FILE.html",
                   help="write a self-contained HTML validation report: this version beside --against "
                        "(default: its parent, when the store has it) on the same series: FROC, CPM with a "
                        "bootstrap interval, the operating point, sizes against the labels, calibration")
    s.add_argument("--against", metavar="NAME@VERSION",
                   help="the version the report compares with (default: the model's parent)")
    s.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap draws of the scans for the report's intervals")
    s.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    s.add_argument("--progress", choices=("text", "jsonl"), default="text",
                   help="text lines on stderr, or typed JSON stage lines on stdout (the viewer's panel)")
    _model_args(s)
    s.set_defaults(func=_ai("cmd_evaluate"))

    s = sub.add_parser("evaluate-followup", help="lesion tracking on generated longitudinal cohorts "
                       "with known courses")
    s.add_argument("--cohorts", type=int, default=5)
    s.add_argument("--seed0", type=int, default=70000, help="first cohort seed (70000: the figures in "
                   "the README; another range is a fresh sample)")
    s.add_argument("--timepoints", type=int, default=3)
    s.add_argument("--data", help="folder for the generated cohorts (default: the user data folder's "
                   "eval-followup)")
    s.add_argument("--small", action="store_true", help="coarse, short series (a quick check)")
    s.add_argument("--json", action="store_true")
    _model_args(s)
    s.set_defaults(func=_ai("cmd_evaluate_followup"))

    s = sub.add_parser("train-followup", help="train the follow-up predictor (a GRU over lesion tracks) on "
                       "synthetic courses (JSON lines)")
    s.add_argument("--out", required=True, help="model directory to write")
    s.add_argument("--tracks", type=int, default=20000)
    s.add_argument("--steps", type=int, default=3000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--version", default="1.0.0")
    s.add_argument("--base", help="fine-tune this follow-up model (NAME[@VERSION] or a directory)")
    s.add_argument("--local-tracks", nargs="*", metavar="REPORT",
                   help="`medstation followup --json` reports whose tracks are mixed in (half of each batch)")
    s.add_argument("--lr", type=float, default=0.0)
    s.add_argument("--checkpoint", default="", help="resumable checkpoint file")
    s.add_argument("--resume", action="store_true")
    s.set_defaults(func=_ai("cmd_train_followup"))

    s = sub.add_parser("calibrate", help="fit the detector's score calibration on validation studies "
                       "and store it with the operating point")
    s.add_argument("--studies", type=int, default=12)
    s.add_argument("--seed0", type=int, default=20000, help="first validation seed (evaluation uses 10000+)")
    s.add_argument("--data", help="folder for the generated studies (default: user data folder/eval)")
    s.add_argument("--min-diameter", type=float, default=6.0,
                   help="nodules smaller than this (mm) are ignored when the operating point is read")
    s.add_argument("--site", action="store_true",
                   help="fit on the study database's labelled series the model was not fine-tuned on (the "
                        "site's own data) instead of generated studies")
    s.add_argument("--progress", choices=("text", "jsonl"), default="text",
                   help="text lines on stderr, or typed JSON stage lines on stdout (the viewer's panel)")
    s.add_argument("--json", action="store_true")
    _model_args(s)
    s.set_defaults(func=_ai("cmd_calibrate"))

    s = sub.add_parser("train-fpr", help="train the false-positive reduction stage (a 3D patch "
                       "classifier) on a detector's candidates; writes a new model version")
    s.add_argument("--out", required=True, help="model directory to write")
    s.add_argument("--version", required=True, help="the new version, e.g. 1.2.0")
    s.add_argument("--volumes", type=int, default=40, help="generated CT volumes to collect candidates on")
    s.add_argument("--seed0", type=int, default=0, help="offset into the classifier's phantom seeds (1000+)")
    s.add_argument("--steps", type=int, default=1500)
    _model_args(s)
    s.set_defaults(func=_ai("cmd_train_fpr"))

    s = sub.add_parser("train-detector", help="train the nodule detector on synthetic chest CT "
                       "(JSON lines on stdout)")
    s.add_argument("--out", required=True, help="model directory to write "
                   "(model.safetensors + manifest.json)")
    s.add_argument("--samples", type=int, default=TRAIN_DEFAULTS["samples"])
    s.add_argument("--steps", type=int, default=TRAIN_DEFAULTS["steps"])
    s.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS["batch_size"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--version", default="1.0.0")
    s.add_argument("--epoch-length", type=int, default=250, help="steps per epoch (validation and "
                   "checkpoints happen per epoch)")
    s.add_argument("--checkpoint", default="", help="resumable checkpoint file, written every epoch, "
                   "at the end and when cancelled (SIGTERM / Ctrl+C)")
    s.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    s.add_argument("--base", help="fine-tune from this model (NAME[@VERSION] or a directory) instead of "
                   "random weights")
    s.add_argument("--lr", type=float, default=0.0, help="peak learning rate (default 0.002)")
    s.add_argument("--validate-every", type=int, default=0, help="epochs between FROC validations on "
                   "held-out generated studies (0: none)")
    s.add_argument("--val-studies", type=int, default=4, help="held-out studies per validation")
    s.add_argument("--early-stop", type=int, default=0, help="stop after this many validations "
                   "without a better CPM (0: never)")
    s.add_argument("--generator", choices=("1", "2"), default="1", help="sample generator: 1 as "
                   "nodule-detector 1.x, 2 with masses to 10 cm and the measured kernel model")
    s.add_argument("--network", choices=("default", "lite"), default="default",
                   help="backbone and head widths (lite: nodule-detector 2.x)")
    s.add_argument("--name", default="nodule-detector", help="the model's name")
    s.add_argument("--adapt-threads", action="store_true", help="size torch's team to the free cores "
                   "before every step (a busy machine; a resume is then not bit-exact: --threads N is)")
    s.set_defaults(func=_ai("cmd_train_detector"))

    b = bsub.add_parser("followup", help="registration and matching per pair, a whole 3-timepoint follow-up")
    b.add_argument("--json", action="store_true")
    b.add_argument("--slices", type=int, default=300)
    b.add_argument("--timepoints", type=int, default=3)
    b.add_argument("--contend", type=int, default=0, metavar="N",
                   help="also follow up beside N busy processes")
    _model_args(b)
    b.set_defaults(func=_ai("cmd_bench_followup"))

    b = bsub.add_parser("train", help="fine-tuning on CPU: the first progress line, crops per second, one "
                        "epoch, against baselines of the same run")
    b.add_argument("--json", action="store_true")
    b.add_argument("--slices", type=int, default=200)
    b.add_argument("--epoch-length", type=int, default=100, help="steps in the epoch (the panel's default)")
    b.add_argument("--batch-size", type=int, default=8)
    b.add_argument("--replay", type=int, default=400, help="synthetic replay samples (the panel's default)")
    b.add_argument("--baseline-steps", type=int, default=10, help="bare steps timed for the baseline")
    b.add_argument("--contend", type=int, default=0, metavar="N",
                   help="also train beside N busy processes (adaptive and fixed torch threads)")
    b.add_argument("--contend-steps", type=int, default=20, help="steps per contended run")
    b.add_argument("--model", help="NAME or NAME@VERSION (default: the detection model in use)")
    b.set_defaults(func=_ai("cmd_bench_train"))

    b = bsub.add_parser("infer", help="detector end to end on a 300-slice CT vs a plain slice loop")
    b.add_argument("--json", action="store_true")
    b.add_argument("--slices", type=int, default=300)
    b.add_argument("--size", type=int, default=512)
    b.add_argument("--rounds", type=int, default=2)
    b.add_argument("--contend", type=int, default=0, metavar="N",
                   help="also detect beside N busy processes (adaptive and fixed torch threads)")
    b.add_argument("--no-lanes", action="store_true", help="skip torch vs onnxruntime on the network")
    b.add_argument("--against", metavar="MODEL", help="also run this model (NAME@VERSION or a directory) "
                   "on the same CT and threads, interleaved, and print the network-time ratio")
    _model_args(b)
    b.set_defaults(func=_ai("cmd_bench_infer"))
    _complete_help(p)
    return p


def _model_args(s) -> None:
    s.add_argument("--model", help="NAME, NAME@VERSION or a model directory (default: the detection "
                   "model in use: see `medstation models list`)")
    s.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cuda:1, "
                   "mps or cpu")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: medstation's choice)")


def _lazy(module: str, name: str):
    """A subcommand's function ``medstation.cli.<module>.<name>``, imported only when it runs (torch,
    Qt and pydicom stay unloaded for ``--help`` and for the commands that do not need them)."""
    def run(args):
        import importlib

        return getattr(importlib.import_module(f"medstation.cli.{module}"), name)(args)

    run.__qualname__ = f"{module}.{name}"
    return run


#: the subcommand modules' dispatchers: ``_ai("cmd_evaluate")`` runs ``medstation.cli.ai.cmd_evaluate``
_ai, _labels, _models, _pacs = (functools.partial(_lazy, m) for m in ("ai", "labels", "models", "pacs"))


def _selftest(args) -> int:
    from medstation.cli.selftest import cmd_selftest

    window_step = None
    if args.gui:
        from medstation.cli.launcher import selftest_window

        window_step = selftest_window
    return cmd_selftest(args, window_step=window_step)


def _followup(args):
    from medstation.cli.followup import cmd_followup

    return cmd_followup(args)


def _train(args):
    from medstation.cli.train import cmd_train

    return cmd_train(args)


TRAIN_DEFAULTS = {"samples": 12000, "steps": 3500, "batch_size": 16}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` and ``with`` runs (worker
    processes stopped, temporary folders removed, the database closed), as on a normal exit."""


def _terminate_like_an_interrupt() -> None:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def raise_terminated(_sig, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)  # commands that cancel on SIGTERM set their own


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args.func = cmd_gui
    _terminate_like_an_interrupt()
    try:
        return int(args.func(args) or 0)
    except Terminated:
        print("medstation: terminated (SIGTERM); cleaned up", file=sys.stderr)
        return 143
    except CancelledError as exc:
        print(f"medstation: {exc}", file=sys.stderr)
        return 130
    except MedstationError as exc:
        print(f"medstation: error: {exc}", file=sys.stderr)
        for row in getattr(exc, "rows", [])[1:]:  # a label file's further bad rows, one per line
            print(f"medstation:   {row}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medstation: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `medstation info --json | head`: the reader went away; end quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit must not raise again
        return 141
