"""The follow-up panel: a real FollowupJob on the engine for the open patient's studies."""

from __future__ import annotations

import json

import numpy as np

from medstation.synth.cohort import write_cohort_patient
from tests.gui.conftest import import_and_wait, open_and_wait


def test_follow_up_panel_tracks_the_open_patient_and_charts_a_track(qtbot, window, tmp_path):
    win = window
    truth = write_cohort_patient(tmp_path / "p5", seed=5, timepoints=3, small=True)
    import_and_wait(qtbot, win, [tmp_path / "p5"])
    # the browser shows the patient's studies as a timeline: date order, the interval from each prior
    win.browser.refresh()
    top = win.browser.tree.topLevelItem(0)
    assert top.text(0).endswith("· 3 studies")
    rows = [top.child(i).text(0) for i in range(top.childCount())]
    dates = [tp["date"] for tp in truth.timepoints]
    assert [r.split()[0] for r in rows] == [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in dates]
    from medstation.core.tracks import days_between
    gap = days_between(dates[0], dates[1])
    want = f"+{gap:.0f} d" if gap < 365 else f"+{gap / 365.25:.1f} y"
    assert "+" not in rows[0] and rows[1].split(maxsplit=1)[1] == want
    last = truth.timepoints[-1]
    open_and_wait(qtbot, win, last["series_uid"])
    panel = win.followup
    patient, paths = panel.patient_paths()
    assert patient == truth.patient_id and len(paths) == sum(
        len(list((tmp_path / "p5" / tp["date"]).rglob("*.dcm"))) for tp in truth.timepoints)
    assert win.ai.version is not None
    stages, shown = [], []
    with qtbot.waitSignal(panel.finished, timeout=300000) as sig:
        panel.run()
        qtbot.waitUntil(lambda: panel.handle is not None, timeout=60000)
        panel.handle.subscribe(lambda kind, payload: stages.append(payload) if kind == "stage" else None)
        qtbot.waitUntil(lambda: shown.append(panel.status.text()) or "detecting study 3 of 3" in shown[-1],
                        timeout=300000)
    report = sig.args[0]
    assert report is not None, panel.status.text()  # the failure, as the reader sees it
    # progress in stages that move: each study's slices, each pair, then matching; never backwards
    said = [s["stage"] for s in stages]
    assert any("slice" in s for s in said) and "registering study 2 onto study 3 (pair 2 of 2)" in said
    assert said[-1] == "matching the lesions across 3 studies"
    assert [s["done"] for s in stages] == sorted(s["done"] for s in stages) and stages[-1]["total"] == 1000
    assert shown[-1].startswith("Following up: detecting study 3 of 3")
    assert report["patient_id"] == truth.patient_id
    assert [tp["study_date"] for tp in report["timepoints"]] == [tp["date"] for tp in truth.timepoints]
    assert panel.table.rowCount() == len(report["tracks"]) >= 1
    growing = next(r for r in range(panel.table.rowCount()) if panel.table.item(r, 2).text() == "growing")
    # the doubling time of a growing lesion in days; Lung-RADS and Fleischner side by side, with the rules
    assert panel.table.item(growing, 5).text().endswith(" d")
    assert panel.table.item(growing, 9).text() and "Fleischner 2017" in panel.table.item(growing, 9).toolTip()
    assert "Lung-RADS v2022" in panel.table.item(growing, 6).toolTip()
    sizes_tip = panel.table.item(growing, 3).toolTip()  # every visit's sizes, named, with units
    assert sizes_tip.count("long x short axis") == 3 and "mean diameter" in sizes_tip and "mm³" in sizes_tip
    for r in range(panel.table.rowCount()):  # never a negative doubling time
        assert not panel.table.item(r, 5).text().startswith("-")
    panel.table.selectRow(growing)
    xs, ys = panel.curve.getData()
    assert len(xs) == 3 and xs[0] == 0 and ys[-1] > ys[0]
    json.dumps(report)  # the report is plain JSON
    # the prior beside the current one, in step through the registration: a click on the growing
    # track centres the current view on it and the prior's on the same lesion
    assert panel.compare_button.isEnabled()
    with qtbot.waitSignal(win.compare_loader.series_loaded, timeout=60000):
        panel.compare_button.click()
    assert win.viewer.registration is not None and win.ctx.compare.volume is not None
    panel.table.clearSelection()
    panel.table.selectRow(growing)
    track = report["tracks"][growing]
    prior_m = track["measurements"][-2]
    want = win.ctx.compare.volume.patient_to_index(prior_m["center_patient"])
    assert np.abs(win.ctx.compare.position - want).max() <= 2.5, (win.ctx.compare.position, want)
    # predictions at a date: a column and a band on the growth chart
    assert panel.predict_button.isEnabled()
    with qtbot.waitSignal(panel.predicted_report, timeout=60000) as sig:
        panel.predict_button.click()
    predicted = sig.args[0]
    assert predicted is not None and any(t.get("prediction") for t in predicted["tracks"])
    row = next(r for r, t in enumerate(predicted["tracks"]) if t.get("prediction"))
    panel.table.clearSelection()
    panel.table.selectRow(row)
    assert panel.table.item(row, 7).text().endswith("mm") and panel.table.item(row, 8).text()
    assert len(panel.band_high.getData()[0]) == 2
    # a reader's corrections: rename, split off the last measurement; kept for the next run
    panel.table.selectRow(growing)
    panel.rename("RLL nodule")
    assert panel.table.item(growing, 1).text() == "RLL nodule"
    n_before = panel.table.rowCount()
    panel.table.selectRow(growing)
    panel.unlink_selected()
    assert panel.table.rowCount() == n_before + 1 and panel.table.item(growing, 2).text() == "resolved"
    assert [e["kind"] for e in win.db.followup.track_edits(truth.patient_id)] == ["rename", "unlink"]
    # the transforms are kept in the database: a second run reuses them
    first = report["registrations"][0]
    assert win.db.followup.registration(first["from_series_uid"], first["to_series_uid"]) is not None
    with qtbot.waitSignal(panel.finished, timeout=300000) as sig:
        panel.run()
    again = sig.args[0]
    assert all("(cached)" in r["message"] for r in again["registrations"])
    assert len(again["tracks"]) == n_before + 1  # the edits apply to the new run
    assert any(t.get("name") == "RLL nodule" for t in again["tracks"])
