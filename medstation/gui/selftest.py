"""The self-test's window step: the three jobs in the main window, a screenshot of each.

1. the demo series with the detector's findings (the window's own run, on the engine) and
   its heatmap (``path``);
2. the follow-up panel on a generated patient's last study: tracks, the growth chart and the
   prediction band (``<stem>-followup.png``), when ``followup_series`` is given;
3. the fine-tuning panel during a short run of a real training child: its live loss chart
   (``<stem>-finetune.png``), cancelled after a few steps, when ``fine_tune`` is set.

Each stage names itself when it does not finish in time.
"""

from __future__ import annotations

import os
from pathlib import Path

#: seconds each stage may take (the fine-tuning child decodes its series first)
STAGE_SECONDS = {"open the demo": 60, "follow-up": 180, "fine-tuning": 240}


def window_check(series_uid: str, findings: list, threshold: float, path: Path, *,
                 followup_series: str = "", fine_tune: bool = False) -> str:
    """Open the main window on ``series_uid`` with ``findings`` drawn; save what it shows to ``path``
    (and the follow-up and fine-tuning stages, see the module)."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer

    from medstation.gui.app import build_window, create_app

    path = Path(path)
    app = create_app()
    win = build_window()
    win.ai.set_auto_detect(False)
    win.resize(1500, 940)
    win.show()
    saved: list[str] = []
    state = {"stage": "open the demo", "error": ""}
    safety = QTimer(singleShot=True)

    def arm(stage: str) -> None:
        state["stage"] = stage
        safety.start(STAGE_SECONDS[stage] * 1000)

    def shot(name: Path) -> None:
        if win.grab().save(str(name)):
            saved.append(name.name)

    def done() -> None:
        state["stage"] = ""
        safety.stop()
        app.quit()

    # -- 1: the demo's findings with the heatmap ------------------------------------------------
    def opened(_uid):
        win.series_loaded.disconnect(opened)
        win.panels["findings"].raise_()
        # the window's own detection (on the engine), for its heatmap; the self-test's findings
        # are drawn if that fails
        win.ai.detection_finished.connect(detected)
        win.ai.detection_failed.connect(failed)
        if win.ai.version is None:
            win.ai.model_changed.connect(detect_once)
        else:
            win.ai.detect(force=True)

    def detect_once():
        win.ai.model_changed.disconnect(detect_once)
        win.ai.detect(force=True)

    def failed(_key, _exc):
        show(findings)

    def detected(_key, run):
        show(run.findings if run is not None else findings)

    def show(items):
        win.ai.detection_finished.disconnect(detected)
        win.ai.detection_failed.disconnect(failed)
        layer = win.state.findings
        layer.set_threshold(threshold)
        layer.set_items(items)
        visible = layer.visible()
        if visible:
            layer.select(visible[0], jump=True)  # the screenshot shows the top finding
        win.state.heatmap.set_show(True)
        QTimer.singleShot(1500, after_findings)

    def after_findings():
        shot(path)
        win.state.heatmap.set_show(False)
        if followup_series:
            arm("follow-up")
            win.series_loaded.connect(followup_opened)
            win.open_series(followup_series)
        else:
            start_fine_tune()

    # -- 2: the follow-up panel -----------------------------------------------------------------
    def followup_opened(_uid):
        win.series_loaded.disconnect(followup_opened)
        win.panels["followup"].raise_()
        panel = win.followup
        panel.finished.connect(followed)
        panel.run()

    def followed(report):
        panel = win.followup
        panel.finished.disconnect(followed)
        if report is None:
            state["error"] = f"the follow-up failed: {panel.status.text()}"
            done()
            return
        panel.predicted_report.connect(predicted)
        panel.predict_button.click()

    def predicted(report):
        panel = win.followup
        panel.predicted_report.disconnect(predicted)
        rows = [r for r, t in enumerate((report or {}).get("tracks", [])) if t.get("prediction")]
        growing = [r for r in rows if report["tracks"][r]["status"] == "growing"]
        if rows:
            panel.table.selectRow((growing or rows)[0])
        QTimer.singleShot(1200, lambda: (shot(path.with_name(f"{path.stem}-followup.png")),
                                         start_fine_tune()))

    # -- 3: the fine-tuning panel's live chart --------------------------------------------------
    def start_fine_tune():
        if not fine_tune:
            done()
            return
        arm("fine-tuning")
        panel = win.finetune
        win.panels["finetune"].raise_()
        panel.refresh()
        panel.epochs.setValue(2)
        panel.epoch_length.setValue(12)
        panel.replay.setValue(8)
        panel.start()
        if panel.task is None or not panel.task.running:
            state["error"] = f"fine-tuning did not start: {panel.status.text()}"
            done()
            return
        panel.task.event.connect(stepped)

    def stepped(ev: dict):
        if ev.get("event") == "step" and len(win.finetune.steps) >= 6 and not state.get("charted"):
            state["charted"] = True
            QTimer.singleShot(300, lambda: (shot(path.with_name(f"{path.stem}-finetune.png")), stop()))

    def stop():
        panel = win.finetune
        panel.task.finished.connect(lambda _r: done())
        panel.cancel()

    def timed_out():
        state["error"] = f"the {state['stage']} stage did not finish in {STAGE_SECONDS[state['stage']]} s"
        app.quit()

    safety.timeout.connect(timed_out)
    win.series_loaded.connect(opened)
    arm("open the demo")
    QTimer.singleShot(0, lambda: win.open_series(series_uid))
    app.exec()
    safety.stop()  # a timer left armed would quit whatever event loop runs a minute later
    win.shutdown()
    win.close()
    if not saved:
        raise RuntimeError(state["error"] or "the window did not open the demo series")
    if state["error"]:
        raise RuntimeError(f"{state['error']} (saved: {', '.join(saved)})")
    return "screenshots " + ", ".join(saved)
