"""``medstation selftest``: the whole chain on the built-in demo study, offscreen, in a throw-away folder.

Writes the demo study, imports and loads it, renders slices, runs the default
detector, checks that the demo's nodules are found and sized, writes the findings
(JSON, DICOM SR + SEG); follows a generated 3-study patient (tracks, Lung-RADS,
a prediction of the follow-up model); fine-tunes one short epoch in a training
child process, loads the new version, makes it the default and rolls back
(``--quick`` leaves out these two); prints a short report. Exit 0 only if every step
passed. ``--gui`` also opens the main window and saves a screenshot of each job
(findings with the heatmap; the follow-up panel; the fine-tuning panel's live
chart, ``--screenshot PATH`` and ``PATH-followup.png``, ``PATH-finetune.png``
beside it). Runs the same from the source tree and from the packaged app.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from medstation.core import jsonout

#: the demo nodules the default detector must find above its 1-FP/scan operating point
#: (the 6 mm one is below the size a 0.97-sensitivity detector reliably finds)
REQUIRED_MIN_DIAMETER_MM = 9.0
#: the demo nodules' measured (sphere-equivalent) diameters must be this close to the drawn ones
SIZE_TOLERANCE = 0.15


def operating_threshold(manifest: dict) -> float:
    """The model's operating point: the (calibrated) score at 1 false positive per scan (0.5 if none)."""
    from medstation.ai.registry import Manifest

    return Manifest.from_dict(manifest).threshold


class _Steps:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def run(self, name: str, fn):
        t0 = time.perf_counter()
        try:
            detail = fn()
            ok = True
        except Exception as exc:  # a self-test reports every failure and goes on where it can
            detail = f"{type(exc).__name__}: {exc}"
            ok = False
            if os.environ.get("MEDSTATION_SELFTEST_TRACEBACK"):
                traceback.print_exc()
        self.rows.append({"step": name, "ok": ok, "seconds": round(time.perf_counter() - t0, 2),
                          "detail": detail if isinstance(detail, str) else ""})
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r["ok"] for r in self.rows)


def run_selftest(gui: bool = False, keep: str | None = None, screenshot: str | None = None,
                 window_step=None, follow_up: bool = True, fine_tune: bool = True) -> dict:
    """Every step on the demo study; ``window_step(series_uid, findings, threshold, path)`` is the
    GUI step (``cli.launcher.selftest_window``), run when ``gui`` is set."""
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="medstation-selftest-"))
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["MEDSTATION_DATA"] = str(tmp / "data")
    os.environ["MEDSTATION_DB"] = str(tmp / "studies.sqlite")
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    steps = _Steps()
    ctx: dict = {}

    def write():
        from medstation.synth import demo_study
        ctx["truth"] = demo_study(tmp / "demo")
        return f"{len(ctx['truth'].nodules)} nodules, {len(ctx['truth'].series)} series"

    def load():
        from medstation.core.series import SeriesRef
        from medstation.dicom import StudyDatabase, WorkerPool, import_paths, open_series
        with StudyDatabase() as db, WorkerPool(2, timeout=30) as pool:
            report = import_paths(db, [tmp / "demo"], pool)
            if report.errors:
                raise RuntimeError(f"{len(report.errors)} files could not be imported: {report.errors[0]}")
            thin = ctx["truth"].series[0]
            result = open_series(SeriesRef(ctx["truth"].study_uid, thin.series_uid), db=db, pool=pool)
        if result.errors:
            raise RuntimeError(f"{len(result.errors)} slices failed: {result.errors[0]}")
        ctx["volume"] = result.volume
        if result.volume.voxels.shape != tuple(thin.shape):
            raise RuntimeError(f"shape {result.volume.voxels.shape}, expected {tuple(thin.shape)}")
        return f"{report.files} files imported; {result.volume.voxels.shape} loaded"

    def render():
        import numpy as np

        from medstation.imaging import PRESETS
        from medstation.imaging import render as render_slice
        v = ctx["volume"].voxels
        lung = PRESETS["Lung"] if "Lung" in PRESETS else next(iter(PRESETS.values()))
        images = [render_slice(v[k], lung) for k in range(0, v.shape[0], max(1, v.shape[0] // 8))]
        if not all(im.dtype == np.uint8 and im.std() > 5 for im in images):
            raise RuntimeError("a rendered slice is blank")
        return f"{len(images)} slices rendered"

    def detect():
        from medstation.ai.registry import open_detector
        detector, model_dir = open_detector()
        run = detector.detect(ctx["volume"])
        ctx["run"], ctx["detector"] = run, detector
        return (f"{detector.name} {detector.version} on {run.device}: {len(run.findings)} candidates "
                f"in {run.seconds['total']:.1f} s")

    def check():
        import numpy as np
        threshold = operating_threshold(ctx["detector"].manifest)
        ctx["threshold"] = threshold
        missed = []
        for n in ctx["truth"].nodules:
            hit = [f for f in ctx["run"].findings if f.score >= threshold and
                   np.linalg.norm(np.subtract(f.center_mm, n["center"])) <= n["diameter_mm"] / 2]
            if n["diameter_mm"] >= REQUIRED_MIN_DIAMETER_MM and not hit:
                missed.append(n.get("label") or str(n["center"]))
        if missed:
            raise RuntimeError(f"missed {', '.join(missed)} (threshold {threshold:.2f})")
        return f"every nodule >= {REQUIRED_MIN_DIAMETER_MM:g} mm found above {threshold:.2f}"

    def sizes():
        import numpy as np
        off = []
        for n in ctx["truth"].nodules:
            if n["diameter_mm"] < REQUIRED_MIN_DIAMETER_MM:
                continue
            f = min(ctx["run"].findings, key=lambda f: np.linalg.norm(np.subtract(f.center_mm, n["center"])))
            measured = f.equivalent_diameter_mm or f.diameter_mm
            if abs(measured - n["diameter_mm"]) > SIZE_TOLERANCE * n["diameter_mm"]:
                off.append(f"{n.get('label', '')}: {measured:.1f} mm for {n['diameter_mm']:g} mm")
        if off:
            raise RuntimeError("sizes off by more than 15%: " + "; ".join(off))
        return f"nodule sizes within {SIZE_TOLERANCE:.0%} of the truth"

    def write_findings():
        from medstation.core.files import atomic_write_text
        from medstation.dicom.results import export_results
        findings = [f for f in ctx["run"].findings if f.score >= ctx["threshold"]]
        out = tmp / "findings"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "findings.json", jsonout.dumps([f.to_dict() for f in findings], indent=1))
        volume = ctx["volume"]
        res = export_results(findings, volume.sources, out, voxels=volume.voxels)
        return f"findings.json, {Path(res.sr).name}, {Path(res.seg).name if res.seg else 'no SEG'}"

    def followup():
        import datetime as _dt

        from medstation.ai.followup import add_predictions
        from medstation.ai.predictor import load_predictor
        from medstation.ai.registry import ModelRegistry
        from medstation.synth.cohort import write_cohort_patient
        from medstation.workflows.followup import follow

        truth = write_cohort_patient(tmp / "cohort", seed=5, timepoints=3, small=True)
        ctx["cohort"] = truth
        report, tracks = follow([tmp / "cohort" / tp["date"] for tp in truth.timepoints], ctx["detector"])
        full = [t for t in tracks if all(p is not None for p in t.points)]
        if len(report["timepoints"]) != 3 or not full:
            raise RuntimeError(f"{len(report['timepoints'])} timepoints, {len(full)} lesions tracked at all "
                               "three")
        if not any((t.guideline.get("lung_rads") or {}).get("category") for t in full):
            raise RuntimeError("no Lung-RADS category on a tracked lesion")
        last = _dt.date(*(int(x) for x in (report["timepoints"][-1]["study_date"][:4],
                                          report["timepoints"][-1]["study_date"][4:6],
                                          report["timepoints"][-1]["study_date"][6:])))
        predictor = load_predictor(ModelRegistry().default("followup").path)
        add_predictions(report, predictor, (last + _dt.timedelta(days=365)).isoformat())
        predicted = [t for t in report["tracks"] if t.get("prediction")]
        if not predicted:
            raise RuntimeError("no track got a prediction: " + "; ".join(
                t.get("prediction_withheld", "") for t in report["tracks"]))
        p = predicted[0]["prediction"]
        return (f"{len(tracks)} tracks ({len(full)} at all 3 studies); {predictor.name} {predictor.version}: "
                f"{p['diameter_mm']:.1f} mm in a year, p(growth) {p['p_growth']:.2f}")

    def finetune():
        import json
        import subprocess

        from medstation.ai.registry import ModelRegistry
        from medstation.dicom import StudyDatabase, WorkerPool, import_paths

        truth = ctx["cohort"]
        with StudyDatabase() as db, WorkerPool(2, timeout=30) as pool:
            import_paths(db, [tmp / "cohort"], pool)
            rows = [{"series_key": tp["series_uid"], "center_mm": r["center_patient"],
                     "diameter_mm": r["diameter_mm"], "is_nodule": True, "source": "imported"}
                    for tp in truth.timepoints for r in tp["nodules"] if r is not None]
            rows += [{"series_key": ctx["truth"].series[0].series_uid, "center_mm": list(n["center"]),
                      "diameter_mm": n["diameter_mm"], "is_nodule": True, "source": "imported"}
                     for n in ctx["truth"].nodules]
            db.annotations.add_labels(rows)
        ctx["labelled"] = True
        command = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "medstation"]
        proc = subprocess.run([*command, "train", "--epochs", "1", "--epoch-length", "2", "--batch-size", "2",
                               "--replay", "4", "--out-version", "selftest"], capture_output=True, text=True,
                              timeout=900, env=os.environ.copy())
        if proc.returncode != 0:
            raise RuntimeError(f"the training child failed ({proc.returncode}): "
                               f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        saved = [json.loads(line) for line in proc.stdout.splitlines()
                 if line.startswith('{"event": "saved"')]
        registry = ModelRegistry()
        base = registry.default("detection")
        new = registry.resolve(f"{base.name}@selftest", "detection")
        from medstation.ai.store import load_detector
        from medstation.core.volume import Volume  # noqa: F401 (the new weights load and run)

        run = load_detector(new.path).detect(ctx["volume"], heatmap=False)
        registry.use(new.id)
        if registry.default("detection").id != new.id:
            raise RuntimeError("the new version did not become the default")
        registry.use(base.id)
        if registry.default("detection").id != base.id:
            raise RuntimeError("rolling back did not restore the previous default")
        return (f"{new.id} (parent {new.manifest.parent_version}, validation CPM "
                f"{saved[0].get('cpm', float('nan')):.2f} vs "
                f"{saved[0].get('parent_cpm', float('nan')):.2f}); "
                f"it detects ({len(run.findings)} candidates on the demo); used, then rolled back")

    def window():
        if window_step is None:
            raise RuntimeError("no window step was given (run `medstation selftest --gui`)")
        path = Path(screenshot) if screenshot else tmp / "selftest-window.png"
        tour = {}
        if "cohort" in ctx:  # the follow-up and fine-tuning steps ran: their panels too
            tour = {"followup_series": ctx["cohort"].timepoints[-1]["series_uid"],
                    "fine_tune": bool(ctx.get("labelled"))}
        return window_step(ctx["truth"].series[0].series_uid, ctx["run"].findings, ctx["threshold"], path,
                           **tour)

    steps.run("write demo study", write)
    if steps.ok:
        steps.run("import and load", load)
    if steps.ok:
        steps.run("render slices", render)
        steps.run("run the detector", detect)
    if steps.ok:
        steps.run("nodules found", check)
        steps.run("nodule sizes", sizes)
        steps.run("write findings (JSON, SR, SEG)", write_findings)
    if steps.ok and follow_up:
        steps.run("follow-up: 3 studies, tracks, prediction", followup)
    if steps.ok and follow_up and fine_tune:
        steps.run("fine-tune: a new version, used, rolled back", finetune)
    if gui and steps.ok:
        steps.run("main window", window)
    from medstation import __version__
    if not keep:  # a throw-away folder goes away (the screenshot too, unless --screenshot put it elsewhere)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return {"version": __version__, "python": sys.version.split()[0],
            "frozen": bool(getattr(sys, "frozen", False)), "folder": str(tmp), "ok": steps.ok,
            "steps": steps.rows}


def cmd_selftest(args, window_step=None) -> int:
    report = run_selftest(gui=args.gui, keep=args.keep, screenshot=args.screenshot, window_step=window_step,
                          follow_up=not getattr(args, "quick", False),
                          fine_tune=not getattr(args, "quick", False))
    if args.json:
        print(jsonout.dumps(report, indent=1))
    else:
        print(f"medstation {report['version']} self-test ({'bundle' if report['frozen'] else 'source'}, "
              f"Python {report['python']}), in {report['folder']}")
        for r in report["steps"]:
            print(f"  {'ok  ' if r['ok'] else 'FAIL'} {r['step']:<32} {r['seconds']:6.1f} s  {r['detail']}")
        print("PASSED" if report["ok"] else "FAILED")
    return 0 if report["ok"] else 1
