"""``medstation train``: fine-tune the detector on the labelled series of the study database.

A child-process entry (the viewer's fine-tuning panel runs it): JSON lines of
progress on stdout (data counts, the parent's validation FROC, samples, steps
with loss / lr / ETA, validation CPM per epoch, ``saved``); an atomic checkpoint
every epoch; SIGTERM or Ctrl+C stops after the current step, leaving the
checkpoint (exit 130), ``--resume`` continues from it. The new version goes to the
user model store with its parent, data summary, split and metrics against the
parent; it does not become the default (``medstation models use`` or the panel).
"""

from __future__ import annotations

import json
import os
import sys


def add_parser(sub, run) -> None:
    s = sub.add_parser("train", help="fine-tune the detector on the study database's labelled series "
                       "(JSON lines on stdout)")
    s.add_argument("--base", help="the model to start from, NAME[@VERSION] (default: the detection model "
                   "in use)")
    s.add_argument("--epochs", type=int, default=4,
                   help="epochs of --epoch-length steps; validated after each")
    s.add_argument("--epoch-length", type=int, default=100, help="optimisation steps per epoch")
    s.add_argument("--batch-size", type=int, default=8, help="crops per optimisation step")
    s.add_argument("--lr", type=float, default=5e-4,
                   help="peak learning rate (warm-up over a tenth of the steps, then cosine decay)")
    s.add_argument("--replay", type=int, default=400, help="synthetic samples mixed in against forgetting")
    s.add_argument("--seed", type=int, default=0, help="fixes the patient split and the sampling")
    s.add_argument("--out-version", help="the new version (default: the base's version + '-ftN')")
    s.add_argument("--resume", action="store_true", help="continue the interrupted run of --out-version")
    s.add_argument("--device", default="auto", help="auto (CUDA when there is one, else the CPU: where "
                   "detection runs), cpu, cuda or cuda:N")
    s.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: sized to the free cores before every step; N: fixed, so a "
                        "resumed run matches an uninterrupted one bit for bit)")
    s.add_argument("--dry-run", action="store_true",
                   help="say what would be trained and validated on (series, patients, nodules and "
                        "negatives by source, the split by patient, what is left out and why) and stop")
    s.add_argument("--json", action="store_true", help="(progress is always JSON lines)")
    s.set_defaults(func=run)


def _dry_run(args) -> int:
    """``train --dry-run``: the plan as one JSON object (``--json``) or text; exit 2 if it is refused."""
    from medstation.cli import _open_db
    from medstation.core import jsonout
    from medstation.dicom.labels import collect_labels, counts
    from medstation.training.finetune import cases_from_database, plan

    with _open_db(args) as db:
        skipped: list = []
        cases = cases_from_database(db, skipped)
        by_source = counts(collect_labels(db).labels)["by_source"]
    p = {**plan(cases, args.seed), "by_source": by_source, "skipped": [s.to_dict() for s in skipped]}
    if args.json:
        print(jsonout.dumps({"event": "plan", **p}, indent=1))
        return 2 if p["refused"] else 0
    if p["refused"]:
        print(f"refused: {p['refused']}")
    else:
        c = p["counts"]
        print(f"{c['nodules']} nodule(s) and {c['negatives']} negative(s) in {c['series']} series of "
              f"{c['patients']} patient(s); by source: "
              + (", ".join(f"{k} {v}" for k, v in sorted(by_source.items())) or "none"))
        for name in ("train", "validation"):
            side = p[name]
            print(f"  {name}: {len(side['series'])} series, {len(side['patients'])} patient(s), "
                  f"{side['nodules']} nodule(s), {side['negatives']} negative(s)  (split by patient, seed "
                  f"{p['seed']})")
    for w in p["warnings"]:
        print(f"warning: {w}")
    if skipped:
        print(f"{len(skipped)} label(s) left out:")
        for s in skipped:
            print(f"  {s.text()}")
    return 2 if p["refused"] else 0


def cmd_train(args) -> int:
    if args.dry_run:
        return _dry_run(args)
    # the first line before anything is imported or opened (torch, the database, the model store)
    print(json.dumps({"event": "stage", "stage": "starting", "done": 0, "total": 1}), flush=True)
    import signal
    import threading

    from medstation.ai.registry import ModelRegistry
    from medstation.cli import _open_db
    from medstation.core.errors import CancelledError, LabelError, MedstationError
    from medstation.core.paths import user_data_path
    from medstation.core.series import SeriesRef
    from medstation.dicom import open_series
    from medstation.training.finetune import FinetuneConfig, cases_from_database, run_finetune

    registry = ModelRegistry()
    base = registry.resolve(args.base, "detection") if args.base else registry.default("detection")
    version = args.out_version
    if version is None:
        taken = {v.version for v in registry.versions("detection") if v.name == base.name}
        n = 1
        while f"{base.version}-ft{n}" in taken:
            n += 1
        version = f"{base.version}-ft{n}"
    out_dir = registry.new_version_dir(base.name, version)  # name and version checked: inside the store
    ckpt_dir = registry.user_dir / ".training"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = ckpt_dir / f"{base.name}-{version}.ckpt"
    if args.resume and not checkpoint.exists():
        raise MedstationError(f"no interrupted run of {base.name}@{version} to resume "
                              f"({checkpoint} is missing)", "start it without --resume")
    stop = threading.Event()

    def check() -> None:
        if stop.is_set():
            raise CancelledError("fine-tuning was cancelled")

    previous = {s: signal.signal(s, lambda _sig, _f: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with _open_db(args) as db:
            skipped: list = []
            cases = cases_from_database(db, skipped)
            if os.environ.get("RANK", "0") == "0":
                for s in skipped:  # said before anything trains: what is left out and why
                    print(json.dumps({"event": "label_skipped", **s.to_dict(), "message": s.text()}),
                          flush=True)

            def load(key: str):
                return open_series(SeriesRef.parse(key), db=db).volume

            config = FinetuneConfig(name=base.name, version=version, epochs=args.epochs,
                                    epoch_length=args.epoch_length, batch_size=args.batch_size, lr=args.lr,
                                    replay=args.replay, seed=args.seed, device=_training_device(args.device),
                                    threads=args.threads, checkpoint=str(checkpoint), resume=args.resume)
            try:
                run_finetune(config, cases, load, base.path, out_dir,
                             cache_dir=user_data_path() / "cache" / "finetune", log=sys.stdout, check=check)
            except LabelError as exc:
                if skipped:
                    raise LabelError(f"{exc.reason}; {len(skipped)} label(s) were left out, first: "
                                     f"{skipped[0].text()}", exc.hint, [s.text() for s in skipped]) from None
                raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    checkpoint.unlink(missing_ok=True)
    return 0


def _training_device(preference: str) -> str:
    """``auto``: CUDA when this machine has it (as detection chooses), else the CPU; a named device
    that is not here is a ``ModelError`` (``ai.engine.choose_device``)."""
    from medstation.ai.engine import choose_device

    device = choose_device(preference)
    return "cpu" if preference in ("", "auto") and device == "mps" else device
