"""AI commands: ``evaluate``, ``calibrate``, ``train-detector``, ``train-fpr``, ``train-followup``,
``evaluate-followup`` and ``bench infer|followup`` (``detect`` is ``cli/detect.py``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from medstation.core import jsonout
from medstation.core.errors import MedstationError


def _detector(args):
    from medstation.ai.registry import open_detector

    return open_detector(args.model, args.device, args.threads, say=lambda t: print(t, file=sys.stderr))


def _say(args, text: str) -> None:
    if not getattr(args, "json", False) or sys.stderr.isatty():
        print(text, file=sys.stderr)


def _stage(args, stage: str):
    """``--progress jsonl``: ``(done, total)`` callbacks that print typed stage events on stdout (what the
    fine-tuning panel's child process reads: ``core.progress.stage_event``); else None."""
    if getattr(args, "progress", "text") != "jsonl":
        return None
    import json

    from medstation.core.progress import stage_event

    t0 = time.perf_counter()

    def on(done: int, total: int) -> None:
        print(json.dumps(stage_event(stage, done, total, t0)), flush=True)

    return on


def _site_cases(args, models: list) -> tuple[list, str, object]:
    """The study database's labelled series that none of ``models`` was fine-tuned on (the site's held-out
    series), a description of them, and a loader; a typed error when none is left."""
    from medstation.cli import _open_db
    from medstation.core.errors import LabelError
    from medstation.core.series import SeriesRef
    from medstation.dicom import open_series
    from medstation.training.finetune import cases_from_database

    with _open_db(args) as db:
        cases = [c for c in cases_from_database(db) if c.nodules]
    trained_on: set[str] = set()
    for m in models:
        split = ((m.manifest.get("training_data") or {}).get("fine_tuned_on") or {}).get("split") or {}
        trained_on |= set(split.get("train") or [])
    held = [c for c in cases if c.key not in trained_on]
    if not held:
        raise LabelError(f"no labelled series of the study database is held out from "
                         f"{', '.join(f'{m.name}@{m.version}' for m in models)}: {len(cases)} labelled "
                         f"series, "
                         f"{len(cases) - len(held)} of them trained on",
                         "label series of patients the model was not fine-tuned on (accept or draw nodules, "
                         "or `medstation labels import`)")
    left = len(cases) - len(held)
    description = ("held-out labelled series of the study database"
                   + (f" ({left} trained on left out)" if left else ""))

    def load(key: str):
        from medstation.dicom.database import StudyDatabase

        with StudyDatabase(getattr(args, "db", None)) as db2:
            return open_series(SeriesRef.parse(key), db=db2).volume

    return held, description, load


def _evaluate_on(detector, args, site=None):
    """``(result, extra, description)`` of ``detector`` on the data ``args`` name."""
    from medstation.training.evaluate import ensure_eval_set, evaluate, evaluate_cases

    size = {"min_diameter": args.min_diameter, "max_diameter": args.max_diameter}
    if site is not None:
        cases, description, load = site
        result, extra = evaluate_cases(detector, cases, load, **size, progress=lambda s: _say(args, s),
                                       on_scan=_stage(args, f"detecting with {detector.name} "
                                                            f"{detector.version}"))
        return result, extra, description
    if args.studies_dir:
        from medstation.training.evaluate import evaluate_annotated

        result, extra = evaluate_annotated(detector, args.studies_dir, args.annotations, **size,
                                           progress=lambda s: _say(args, s))
        return result, extra, f"labelled series of {args.studies_dir} ({Path(args.annotations).name})"
    folder = Path(args.data) if args.data else _data_dir() / "eval"
    studies = ensure_eval_set(folder, args.studies, args.seed0, progress=lambda s: _say(args, s),
                              family=args.family)
    result, extra = evaluate(detector, studies, **size, progress=lambda s: _say(args, s))
    seeds = extra["seeds"]
    return result, extra, (f"generated studies of the {args.family} family"
                           + (f" (seeds {seeds[0]}..{seeds[-1]})" if seeds else ""))


def _comparison(args, detector, model_dir):
    """The version the report sets beside ``detector``: ``--against``, else its parent when the store has
    it (None when neither)."""
    from medstation.ai.registry import ModelRegistry
    from medstation.ai.store import load_detector

    registry = ModelRegistry()
    if args.against:
        other = registry.resolve(args.against, "detection")
    else:
        parent = detector.manifest.get("parent_version")
        other = next((v for v in registry.versions("detection")
                      if parent and v.name == detector.name and v.version == str(parent)), None)
        if other is None:
            return None
    return load_detector(other.path, detector.device.type), other.path


def _write_report(args, first: tuple, against, site, description: str) -> dict:
    """Evaluate the ``against`` version on the same data, write the HTML report atomically; the report."""
    from medstation.ai.calibration import reliability
    from medstation.core.files import atomic_write_text
    from medstation.training.report import (
        bootstrap_draws,
        build_report,
        describe_data,
        render_html,
        version_figures,
    )

    detector, model_dir, result, extra, rel = first
    draws = bootstrap_draws(result.scans, args.bootstrap, args.seed)
    columns = [version_figures(detector, model_dir, result, extra, rel, draws)]
    if against is not None:
        other, other_dir = against
        _say(args, f"the same series with {other.name} {other.version}, for the report")
        r2, e2, _d = _evaluate_on(other, args, site)
        columns.append(version_figures(other, other_dir, r2, e2,
                                       reliability(e2["scored"], other.manifest.get("calibration")), draws))
    title = ("Site validation: " if site is not None else "Validation: ") + " vs ".join(
        f"{c['name']} {c['version']}" for c, _v in columns)
    report = build_report(columns, describe_data(description, result, extra), title=title, draws=draws,
                          seed=args.seed)
    atomic_write_text(Path(args.report), render_html(report))
    _say(args, f"report written to {args.report}")
    if getattr(args, "progress", "text") == "jsonl":
        import json

        print(json.dumps({"event": "report", "path": str(args.report)}), flush=True)
    return report


def cmd_evaluate(args) -> int:
    started = _stage(args, "opening the model")
    if started:
        started(0, 1)
    from medstation.ai.registry import ModelRegistry

    detector, model_dir = _detector(args)
    if args.write_metrics and ModelRegistry().holds(model_dir):
        raise MedstationError(f"{detector.name}@{detector.version} is a registered version: it never "
                              "changes, so its manifest is not rewritten",
                              "keep the figures with --json; --write-metrics is for a model folder that is "
                              "not registered yet (a train-detector --out)")
    if bool(args.studies_dir) != bool(args.annotations):
        raise MedstationError("--studies-dir and --annotations go together",
                              "name the folder of labelled studies and its LUNA16 CSV")
    if args.site and args.studies_dir:
        raise MedstationError("--site and --studies-dir name two different sets of series",
                              "give one of them")
    if args.report and not str(args.report).lower().endswith((".html", ".htm")):
        raise MedstationError(f"{args.report}: the report is an HTML page", "name it FILE.html")
    against = _comparison(args, detector, model_dir) if args.report else None
    site = None
    if args.site:
        args.family = "site"
        site = _site_cases(args, [detector] + ([against[0]] if against else []))
    elif args.studies_dir:
        args.family = "annotated"
    result, extra, description = _evaluate_on(detector, args, site)
    from medstation.ai.calibration import reliability
    from medstation.core.files import atomic_write_text

    rel = reliability(extra["scored"], detector.manifest.get("calibration"))
    report = _write_report(args, (detector, model_dir, result, extra, rel), against, site, description) \
        if args.report else None
    extra.pop("scored")
    pairs = extra.pop("size_pairs")
    extra.pop("per_scan")
    out = {"model": {"name": detector.name, "version": detector.version, "path": str(model_dir)},
           "family": args.family, **result.to_dict(), **extra, "reliability": rel}
    if report is not None:
        keys = ("name", "version", "sha256", "cpm_interval_95", "operating_point", "sizes")
        out["report"] = {"path": str(args.report), "difference": report.get("difference"), "versions": [
            {**{k: v[k] for k in keys}, "cpm": v["froc"]["cpm"]} for v in report["versions"]]}
        for v in out["report"]["versions"]:
            v["sizes"] = {k: x for k, x in v["sizes"].items() if k != "points"}
    if args.sizes_out:
        atomic_write_text(Path(args.sizes_out), jsonout.dumps(pairs, indent=1) + "\n")
    if args.json:
        print(jsonout.dumps(out, indent=1))
    else:
        where = description
        lo, hi = result.size_range
        counted = ("every annotation" if lo <= 0 and hi == float("inf") else
                   f"those of {lo:g}-{hi:g} mm" if hi != float("inf") else f"those of {lo:g} mm or more")
        print(f"{detector.name} {detector.version} on {result.scans} {where}, {result.nodules} nodules "
              f"({counted}" + (f"; {result.ignored_nodules} others ignored, neither hits nor false positives"
                               if result.ignored_nodules else "") + ")")
        for rate, sens in result.sensitivity_at.items():
            print(f"  sensitivity at {rate:g} FP/scan: {sens:.3f}")
        print(f"  CPM: {result.cpm:.3f} (LUNA16: the interpolated FROC)   "
              f"(score threshold at 1 FP/scan: {result.threshold_at_1fp:.3f})")
        for scan_no, ref in result.missed:
            where = tuple(round(c, 1) for c in ref.center_mm)
            print(f"  missed: study {scan_no + 1}, {ref.diameter_mm:.1f} mm at {where}")
        for row in extra["sizes"]:
            lo, hi = row["bin_mm"]
            print(f"  size {lo:g}-{hi:g} mm ({row['nodules']}): "
                  f"diameter {row['diameter_median_error']:+.1%}, "
                  f"volume {row['volume_median_error']:+.1%} (median signed error)")
        rel = out["reliability"]
        print(f"  calibration: ECE {rel['ece']:.3f} over {rel['findings']} findings "
              f"({'calibrated' if rel.get('calibrated') else 'raw'} scores)")
    if args.write_metrics:
        from medstation.ai.store import save_metrics

        keys = ("scans", "nodules", "sensitivity_at_fp_per_scan", "cpm", "threshold_at_1fp")
        figures = {"froc": {k: out[k] for k in keys}, "eval_seeds": extra["seeds"],
                   "min_diameter_mm": args.min_diameter, "sizes": extra["sizes"],
                   "reliability": out["reliability"], "breakdown": extra.get("breakdown")}
        key = {"own": None, "held-out": "held_out", "held-out-masses": "held_out_masses",
               "annotated": "annotated", "site": "site"}[args.family]
        if args.min_diameter <= 0:  # every annotation: beside the figures over those of 6 mm or more
            key = f"{key or 'own'}_all"
        save_metrics(model_dir, figures if key is None else {key: figures})
        from medstation.training.card import write_card

        _say(args, f"metrics and model card written to {model_dir}: {write_card(model_dir)}")
    return 0


def cmd_evaluate_followup(args) -> int:
    from medstation.training.followup_eval import evaluate_followup

    detector, _model_dir = _detector(args)
    folder = Path(args.data) if args.data else _data_dir() / "eval-followup"
    r = evaluate_followup(detector, folder, args.cohorts, seed0=args.seed0, timepoints=args.timepoints,
                          small=args.small,
                          progress=lambda s: _say(args, s))
    if args.json:
        print(jsonout.dumps(r, indent=1))
    else:
        print(f"{r['cohorts']} cohort patient(s), {r['timepoints']} timepoints each, "
              f"{r['nodules']} nodules >= 6 mm")
        print(f"  tracked correctly at every timepoint: {r['tracked_correctly']} (target >= 0.95)")
        print(f"  new / resolved status right: {r['new_resolved_status_right']} (target >= 0.90)")
        print(f"  volume error, median: {r['volume_error_median']} (target <= 0.15)")
        print(f"  VDT within 25% (growing solid): {r['vdt_within_25pct']} "
              f"(median error {r['vdt_error_median']})")
        print(f"  false tracks (near no true nodule): {r['false_tracks_per_patient']} per patient")
        print(f"  registration: {r['registration_seconds_per_pair']} s per pair")
        rnn = r.get("predictor")
        if rnn:
            print(f"follow-up predictor {rnn['model']} on {rnn['tracks']} held-out synthetic tracks "
                  "(predicting each track's last measurement):")
            for name, row in rnn["rows"].items():
                cov = f", 80% coverage {row['coverage_80']:.3f}" if "coverage_80" in row else ""
                print(f"  {name:24s} MAE log volume {row['mae_log_volume']:.3f}{cov}, AUC growth "
                      f"{row['auc_growth']:.3f}")
            print(f"  MAE ratio to the best baseline ({rnn['best_baseline']}): "
                  f"{rnn['mae_ratio_to_best']:.2f} (target 0.8)")
    return 0


def cmd_train_followup(args) -> int:
    from medstation.training.followup_rnn import tracks_from_reports, train_followup

    base = ""
    if args.base:
        from medstation.ai.registry import ModelRegistry

        base = str(ModelRegistry().resolve(args.base, "followup").path)
    local = tracks_from_reports(args.local_tracks) if args.local_tracks else []
    if args.base and not local:
        raise MedstationError("fine-tuning the follow-up model needs local tracks",
                              "give --local-tracks REPORT.json (from `medstation followup --json`)")
    train_followup(args.out, tracks=args.tracks, steps=args.steps, seed=args.seed, version=args.version,
                   base=base, local=local, checkpoint=args.checkpoint, resume=args.resume,
                   lr=args.lr or (1e-3 if base else 3e-3))
    return 0


def cmd_calibrate(args) -> int:
    """Fit the score calibration on validation studies of the training family (seeds of their own,
    apart from the evaluation seeds), store it with the operating point in the manifest."""
    started = _stage(args, "opening the model")
    if started:
        started(0, 1)
    from medstation.ai.calibration import fit_platt, reliability
    from medstation.ai.detector import Detector
    from medstation.ai.store import save_calibration
    from medstation.training.card import write_card
    from medstation.training.evaluate import ensure_eval_set, evaluate

    detector, model_dir = _detector(args)
    raw = Detector(detector.model, {k: v for k, v in detector.manifest.items()
                                    if k not in ("calibration", "operating_point")}, str(detector.device))
    if args.site:  # the site's own labelled series that the model was not fine-tuned on
        from medstation.training.evaluate import evaluate_cases

        cases, description, load = _site_cases(args, [detector])
        result, extra = evaluate_cases(raw, cases, load, min_diameter=args.min_diameter,
                                       progress=lambda s: _say(args, s),
                                       on_scan=_stage(args, f"detecting with {detector.name} "
                                                            f"{detector.version}"))
        fitted_on = (f"{len(cases)} {description} ({result.nodules} nodules of {args.min_diameter:g} mm or "
                     "more), never trained on")
    else:
        folder = Path(args.data) if args.data else _data_dir() / "eval"
        studies = ensure_eval_set(folder, args.studies, args.seed0, progress=lambda s: _say(args, s))
        result, extra = evaluate(raw, studies, min_diameter=args.min_diameter,
                                 progress=lambda s: _say(args, s))
        fitted_on = (f"{len(studies)} training-family validation studies (seeds {extra['seeds'][0]}-"
                     f"{extra['seeds'][-1]}), never trained on")
    try:
        cal = fit_platt(extra["scored"])
    except ValueError as exc:  # too few findings of one kind: a typed line, not a traceback
        raise MedstationError(f"cannot calibrate {detector.name}@{detector.version}: {exc}",
                              "label more series (or, without --site, generate more with --studies)") \
            from None
    cal["fitted_on_data"] = fitted_on
    if args.site:
        cal["fitted_on_series"] = [c.key for c in cases]
    from medstation.ai.calibration import apply
    from medstation.ai.registry import ModelRegistry

    op = float(apply(result.threshold_at_1fp, cal))
    before = reliability(extra["scored"])
    after = reliability([(float(apply(s, cal)), y) for s, y in extra["scored"]], cal)
    registry = ModelRegistry()
    if registry.holds(model_dir):  # a registered version never changes: the calibration is a new one
        model_dir = registry.derive(model_dir, "cal", {"calibration": cal, "operating_point": round(op, 4)})
    else:  # a model folder not registered yet (a train-detector --out): completed in place
        save_calibration(model_dir, cal, op)
    write_card(model_dir)
    saved = ModelRegistry().resolve(str(model_dir)).manifest
    out = {"model": {"name": saved.name, "version": saved.version, "parent_version": saved.parent_version,
                     "path": str(model_dir)},
           "calibration": cal, "operating_point": round(op, 4),
           "raw_threshold_at_1fp": result.threshold_at_1fp,
           "ece_before": before["ece"], "ece_after_on_the_fitting_data": after["ece"]}
    if getattr(args, "progress", "text") == "jsonl":  # one line the panel reads: the new version
        import json

        print(json.dumps({"event": "saved", "path": str(model_dir), "version": saved.version,
                          "parent": saved.parent_version, "operating_point": round(op, 4),
                          "ece_before": before["ece"], "ece_after": after["ece"]}), flush=True)
    elif args.json:
        print(jsonout.dumps(out, indent=1))
    else:
        print(f"{saved.name} {saved.version} (from {detector.version}): "
              f"Platt a={cal['a']:.3f} b={cal['b']:.3f} on "
              f"{cal['fitted_on']} findings ({cal['positives']} nodules); operating point "
              f"{result.threshold_at_1fp:.3f} raw -> {op:.3f}; ECE {before['ece']:.3f} -> {after['ece']:.3f} "
              "(fitting data; judge it with "
              + ("`medstation evaluate --site --report FILE.html`)" if args.site else
                 "`medstation evaluate --family held-out`)"))
    return 0


def cmd_train_fpr(args) -> int:
    """Train the false-positive reduction stage on a detector's candidates; a new model version."""
    import copy
    import datetime as _dt

    from medstation.ai import fpr
    from medstation.ai.detector import Detector
    from medstation.ai.store import save_model
    from medstation.training.card import write_card
    from medstation.training.fpr import FPR_SEEDS, collect, train_fpr

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    base, model_dir = _detector(args)
    manifest = {k: v for k, v in base.manifest.items()
                if k not in ("fp_reduction", "calibration", "operating_point", "metrics", "sha256")}
    detector = Detector(base.model, manifest, "cpu")  # the detector alone: its own candidates
    spec = dict(fpr.DEFAULT_SPEC)
    seeds = list(range(FPR_SEEDS[0] + args.seed0, FPR_SEEDS[0] + args.seed0 + args.volumes))
    if seeds[-1] >= FPR_SEEDS[1]:
        raise MedstationError(f"at most {FPR_SEEDS[1] - FPR_SEEDS[0]} volumes", "lower --volumes or --seed0")
    data = collect(detector, seeds, spec, log=sys.stdout)
    net, summary = train_fpr(data, spec, steps=args.steps, log=sys.stdout)
    state = {**base.model.state_dict(), **{f"fpr.{k}": v for k, v in net.state_dict().items()}}
    out = copy.deepcopy(manifest)
    # a stage added to the same version keeps that version's parent; a new version's parent is the base
    parent = base.manifest.get("parent_version") if args.version == base.version else base.version
    out.update({"version": args.version, "parent_version": parent,
                "fp_reduction": {**spec, "phantom_seeds": [seeds[0], seeds[-1] + 1], "volumes": len(seeds),
                                 **summary},
                "metrics": {}, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    save_model(args.out, state, out)
    write_card(args.out)
    print(json.dumps({"event": "saved", "path": str(args.out), "parent": f"{base.name}@{base.version}"}),
          flush=True)
    return 0


def cmd_train_detector(args) -> int:
    import signal
    import threading

    from medstation.ai.network import NETWORKS
    from medstation.core.errors import CancelledError
    from medstation.training.detector import TrainConfig, train

    if args.resume and not args.checkpoint:
        raise MedstationError("--resume needs --checkpoint FILE", "name the checkpoint to continue from")
    config = TrainConfig(samples=args.samples, steps=args.steps, batch_size=args.batch_size,
                         seed=args.seed, threads=args.threads, device=args.device, version=args.version,
                         epoch_length=args.epoch_length, checkpoint=args.checkpoint, resume=args.resume,
                         validate_every=args.validate_every, val_studies=args.val_studies,
                         early_stop=args.early_stop, lr=args.lr or TrainConfig.lr,
                         base=_base_dir(args.base) if args.base else "", generator=args.generator,
                         network=dict(NETWORKS[args.network]), name=args.name,
                         adapt_threads=args.adapt_threads)
    stop = threading.Event()

    def on_signal(_sig, _frame) -> None:  # the GUI's Cancel (SIGTERM) or Ctrl+C: stop after this step
        stop.set()

    def check() -> None:
        if stop.is_set():
            raise CancelledError("training was cancelled")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        train(config, args.out, log=sys.stdout, check=check)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


def _base_dir(spec: str) -> str:
    """A model directory for ``--base``: a path, or NAME[@VERSION] from the registry."""
    from medstation.ai.registry import ModelRegistry

    return str(ModelRegistry().resolve(spec, "detection").path)


def cmd_bench_followup(args) -> int:
    from medstation.workflows.bench import run_followup

    r = run_followup(args)
    if args.json:
        print(jsonout.dumps(r, indent=1))
    else:
        print(f"follow-up of {r['timepoints']} generated {r['slices']}-slice CTs with {r['model']}:")
        print(f"  registration per pair: {', '.join(f'{s:.1f} s' for s in r['registration_seconds'])} "
              f"(target 5 s)")
        print(f"  matching per pair: {r['matching_ms_per_pair']:.2f} ms")
        print(f"  follow-up predictor, 50 tracks: {r['predict_ms_50_tracks']:.1f} ms (target 50 ms)")
        print(f"  whole follow-up (load, detect, register, match): {r['followup_total_s']:.1f} s "
              f"(target 30 s), {r['tracks']} tracks")
        c = r.get("contended")
        if c:
            print(f"  beside {c['busy_processes']} busy processes: {c['followup_total_s']:.1f} s "
                  f"({c['ratio_vs_quiet']:.2f}x quiet; registration "
                  f"{', '.join(f'{s:.1f} s' for s in c['registration_seconds'])})")
    return 0


def cmd_bench_train(args) -> int:
    from medstation.training.bench import run_train

    r = run_train(args)
    if args.json:
        print(jsonout.dumps(r, indent=1))
    else:
        print_train(r)
    return 0


def print_train(r: dict) -> None:
    s, c, p, e = r["start"], r["crops"], r["replay_samples"], r["epoch"]
    print(f"fine-tuning {r['model']} on CPU ({r['cpu_threads']} threads), a {r['slices']}-slice CT")
    print(f"  start: first progress line after {s['first_line_s']:.2f} s (target {s['target_s']:.0f} s; "
          f"the bare interpreter starts in {s['baseline_python_s']:.2f} s)")
    print(f"  crops: {c['crops']} from the series in {c['seconds']:.2f} s = {c['crops_per_s']:.1f} crops/s "
          f"({c['with_nodules']} with nodules; opening the series took {c['baseline_open_series_s']:.2f} s, "
          f"ratio {c['ratio_vs_open']:.2f})")
    print(f"  replay: {p['samples']} synthetic samples rendered in {p['render_s']:.2f} s "
          f"({p['samples_per_s']:.1f}/s), from the cache in {p['from_cache_s']:.3f} s")
    print(f"  epoch: {r['epoch_steps']} steps of {r['batch_size']} crops in {e['seconds']:.2f} s "
          f"(target {e['target_s']:.0f} s): {e['per_step_s']:.3f} s a step, {e['crops_per_s']:.1f} crops/s; "
          f"a bare step {e['baseline_bare_step_s']:.3f} s (ratio {e['ratio_vs_bare']:.2f})")
    k = r.get("contended")
    if k:
        print(f"  beside {k['busy_processes']} busy processes ({k['steps']} steps): adaptive threads "
              f"{k['adaptive_step_s']:.3f} s a step ({k['adaptive_ratio_vs_quiet']:.2f}x quiet, target "
              f"{k['target_ratio']:.1f}x), fixed {k['fixed_step_s']:.3f} s "
              f"({k['fixed_ratio_vs_quiet']:.2f}x)")
    print("all targets met" if r["pass"] else "some targets missed")


def cmd_bench_infer(args) -> int:
    from medstation.workflows.bench import run_infer

    r = run_infer(args)
    if args.json:
        print(jsonout.dumps(r, indent=1))
    else:
        print_infer(r)
    return 0


def print_infer(r: dict) -> None:
    print(f"detector {r['model']} on {r['device']}: {r['slices']}x{r['size']}x{r['size']} CT, "
          f"median of {r['rounds']} interleaved rounds")
    print(f"  end to end (load + detect): {r['end_to_end_s']:.2f} s (target {r['target_s']:.0f} s, "
          f"ratio {r['ratio_vs_target']:.2f}); load {r['load_s']:.2f} s, detect {r['detect_s']:.2f} s "
          f"({r['model_slices_run']} of {r['model_slices']} model slices hold lung)")
    print(f"  baseline (same network, every slice, full field of view, one call per slice): "
          f"{r['baseline_plain_loop_s']:.2f} s -> speedup {r['speedup_vs_baseline']:.2f}x "
          f"(target {r['speedup_target']:.0f}x)")
    a = r.get("against")
    if a:
        print(f"  against {a['model']} (same CT and threads, interleaved): network {r['network_s']:.2f} s "
              f"vs {a['network_s']:.2f} s = {a['network_ratio']:.2f}x; detect {r['detect_s']:.2f} s vs "
              f"{a['detect_s']:.2f} s = {a['detect_ratio']:.2f}x")
    for n, t in r["threads_with_gui_thread"].items():
        print(f"  {n} torch thread(s) with a GUI thread ticking: detect {t['detect_s']:.2f} s, "
              f"GUI tick late p95 {t['gui_tick_late_p95_ms']:.1f} ms, max {t['gui_tick_late_max_ms']:.1f} ms")
    c = r.get("contended")
    if c:
        print(f"  beside {c['busy_processes']} busy processes: adaptive threads "
              f"{c['adaptive_detect_s']:.2f} s "
              f"({c['adaptive_ratio_vs_quiet']:.2f}x quiet {c['quiet_detect_s']:.2f} s, target "
              f"{c['target_ratio']:.1f}x), fixed threads {c['fixed_threads_detect_s']:.2f} s "
              f"({c['fixed_ratio_vs_quiet']:.2f}x); GUI tick late p95 {c['gui_tick_late_p95_ms']} ms")
    lane = r.get("lanes")
    if lane and lane.get("onnxruntime"):
        print(f"  network on {lane['slices']} slices, {lane['threads']} threads: "
              f"torch {lane['torch_network_s']:.2f} s, "
              f"onnxruntime {lane['onnxruntime_network_s']:.2f} s ({lane['onnxruntime_speedup']:.2f}x; "
              f"largest difference {lane['max_abs_difference']:.2g}), "
              + (f"OpenVINO {lane['openvino_network_s']:.2f} s ({lane['openvino_speedup']:.2f}x; largest "
                 f"difference {lane['openvino_max_abs_difference']:.2g})" if lane.get("openvino")
                 else lane.get("openvino_note", "")) + f": {lane['verdict']}")
    elif lane:
        print(f"  lanes: {lane['note']}")


def _data_dir() -> Path:
    from medstation.core.paths import user_data_path

    return user_data_path()
