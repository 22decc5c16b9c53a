"""The fine-tuning panel drives a real `medstation train` child: charts, cancel, resume, use, roll back."""

from __future__ import annotations

from medstation.dicom.labels import import_labels
from tests._labelled import write_labelled_studies
from tests.gui.conftest import import_and_wait


def test_fine_tuning_panel_runs_cancels_resumes_and_switches_models(qtbot, window, tmp_path):
    win = window
    folders, csv = write_labelled_studies(tmp_path, 400, "GT")
    import_and_wait(qtbot, win, folders)
    import_labels(win.ctx.db, csv)
    panel = win.finetune
    win.panels["finetune"].raise_()  # its tab in front, as a reader looking at it
    qtbot.waitUntil(panel.isVisible, timeout=5000)
    win.ai.findings_changed.emit()  # as a review does: the counts and the split follow, unasked
    qtbot.waitUntil(lambda: "6 nodule(s)" in panel.counts.text(), timeout=10000)
    assert "6 nodule(s)" in panel.counts.text() and "3 series" in panel.counts.text()
    # the split by patient is visible before Start, with the warning that one series validates nothing
    assert "Split by patient (seed 0): train 2 series of 2 patient(s), 4 nodule(s); validate 1 series" \
        in panel.counts.text()
    assert "⚠ the validation side is too small" in panel.counts.text()
    base = panel.base_box.currentData()
    assert base == win.ctx.registry.default("detection").id
    panel.epochs.setValue(2)
    panel.epoch_length.setValue(3)
    panel.replay.setValue(6)
    # start, cancel at the first training step: the checkpoint stays, Resume is offered
    stepped = []
    panel.start()
    panel.task.event.connect(lambda ev: stepped.append(ev) if ev.get("event") == "step" else None)
    qtbot.waitUntil(lambda: bool(stepped), timeout=240000)
    panel.cancel()
    qtbot.waitUntil(lambda: panel.task.result is not None, timeout=60000)
    assert panel.task.result.cancelled and panel.resume_button.isEnabled()
    assert "Resume continues" in panel.status.text()
    # resume: it runs to the end and writes the new version
    panel.resume_button.click()
    qtbot.waitUntil(lambda: panel.task.result is not None, timeout=240000)
    assert panel.task.result.ok, panel.task.result.stderr_tail
    assert panel.new_id == f"{base.split('@')[0]}@{panel.out_version}"
    # the charts: loss per step, validation CPM per epoch against the base's (dashed), FROC side by side
    assert len(panel.loss_curve.xData) >= 2 and len(panel.cpm_curve.xData) >= 1
    assert panel.parent_line.isVisible() and 0.0 <= panel.parent_line.value() <= 1.0
    assert len(panel.froc_plot.listDataItems()) == 2
    assert any(panel.out_version in panel.versions.topLevelItem(i).text(0)
               for i in range(panel.versions.topLevelItemCount()))
    # use it (the AI controller checks the weights load first), then roll back
    panel.use_button.click()
    qtbot.waitUntil(lambda: win.ctx.registry.default("detection").id == panel.new_id, timeout=60000)
    panel.rollback_button.click()
    qtbot.waitUntil(lambda: win.ctx.registry.default("detection").id == base, timeout=60000)
    # issue 28, items 5 and 6: the site report of the new version beside its base, from the panel
    new = panel.new_id
    assert panel.selected_id() == new  # nothing picked in the list: the new version
    stages = []
    panel.report_button.click()
    panel.task.event.connect(lambda ev: stages.append(ev) if ev.get("event") == "stage" else None)
    qtbot.waitUntil(lambda: panel.task.result is not None, timeout=240000)
    assert panel.task.result.ok, panel.task.result.stderr_tail
    assert {e["stage"] for e in stages} >= {f"detecting with {new.replace('@', ' ')}",
                                            f"detecting with {base.replace('@', ' ')}"}, stages
    page = open(panel.report_path, encoding="utf-8").read()
    assert f"{new.replace('@', ' ')} vs {base.replace('@', ' ')}" in page
    assert page.count("data:image/svg+xml;base64,") == 4  # FROC, reliability, two Bland-Altman
    new_version = win.ctx.registry.resolve(new, "detection")
    split = new_version.manifest.training_data["fine_tuned_on"]["split"]
    # measured on the validation series only, never on what the new version trained on
    assert all(key in page for key in split["validation"]) and not any(key in page for key in split["train"])
    manifest_before = (new_version.path / "manifest.json").read_bytes()
    assert "file://" in panel.report_link.text() and panel.report_path in panel.report_link.text()
    # calibrated for this site: a new version whose parent is the fine-tuned one, offered for use
    panel.calibrate_button.click()
    qtbot.waitUntil(lambda: panel.task.result is not None, timeout=240000)
    assert panel.task.result.ok, panel.task.result.stderr_tail
    assert panel.new_id == f"{new}-cal1" and panel.use_button.isEnabled()
    calibrated = win.ctx.registry.resolve(panel.new_id, "detection").manifest
    assert calibrated.parent_version == new.partition("@")[2]
    assert calibrated.raw["calibration"]["fitted_on_series"] == split["validation"]
    assert calibrated.raw["operating_point"] is not None
    assert (new_version.path / "manifest.json").read_bytes() == manifest_before  # a version never changes
    assert f"{new}-cal1" in [panel.versions.topLevelItem(i).data(0, 256)
                             for i in range(panel.versions.topLevelItemCount())]


def test_the_panel_names_the_labels_it_cannot_use(qtbot, window):
    """A reviewed finding and a drawn label on series the database no longer has: counted out, with
    the series and the reason, never dropped silently."""
    win = window
    db = win.ctx.db
    db.annotations.review_finding("1.2.826.0.1.3680043.8.498.999", "nodule-detector", "1.1.0",
                      {"finding_id": "F1", "center_mm": [1.0, 2.0, 3.0], "diameter_mm": 8.0}, "accepted")
    db.annotations.save_measurement("1.2.826.0.1.3680043.8.498.998", "nodule",
                        {"kind": "nodule", "axis": 0, "depth": 3, "points": [[3, 10, 10], [3, 10, 14]]})
    panel = win.finetune
    panel.refresh()
    text = panel.counts.text()
    assert "0 nodule(s)" in text and "2 label(s) cannot be used" in text, text
    tip = panel.counts.toolTip().splitlines()
    assert len(tip) == 2 and all("no longer in the study database" in line for line in tip), tip
    assert any("1.2.826.0.1.3680043.8.498.998" in line and "nodule label" in line for line in tip), tip


def test_cancel_never_promises_a_resume_it_cannot_keep(qtbot, window, tmp_path):
    """Cancelled while the crops are being prepared (before the trainer's first checkpoint): the panel
    says nothing can be resumed and Resume stays off; whenever a checkpoint exists, Resume is on."""
    win = window
    folders, csv = write_labelled_studies(tmp_path, 410, "GC")
    import_and_wait(qtbot, win, folders)
    import_labels(win.ctx.db, csv)
    panel = win.finetune
    panel.refresh()
    events = []
    panel.start()
    panel.task.event.connect(events.append)
    qtbot.waitUntil(lambda: any(e.get("event") == "data" for e in events), timeout=240000)
    panel.cancel()
    qtbot.waitUntil(lambda: panel.task.result is not None, timeout=60000)
    assert panel.task.result.cancelled
    has_checkpoint = panel.checkpoint_path().exists()
    assert panel.resume_button.isEnabled() == has_checkpoint
    if has_checkpoint:  # the trainer had started after all: its checkpoint is kept
        assert "Resume continues" in panel.status.text()
    else:
        assert "nothing to resume" in panel.status.text()


def _refreshes_after_five_changes(qtbot, win, monkeypatch) -> list:
    """The panel's label reads, counted, after five label changes and the coalescing delay."""
    panel = win.finetune
    calls: list = []
    monkeypatch.setattr(panel, "refresh", lambda: calls.append(1))
    panel._labels_timer.timeout.disconnect()
    panel._labels_timer.timeout.connect(panel.refresh)
    for _ in range(5):
        win.state.measurements_changed.emit()
    qtbot.wait(600)
    return calls


def test_a_hidden_panel_reads_the_labels_when_shown_not_on_every_change(qtbot, window, monkeypatch):
    win = window
    panel = win.finetune
    win.panels["finetune"].hide()  # the reader closed its dock
    qtbot.waitUntil(lambda: not panel.isVisible(), timeout=5000)
    calls = _refreshes_after_five_changes(qtbot, win, monkeypatch)
    assert calls == []
    win.panels["finetune"].show()
    win.panels["finetune"].raise_()
    qtbot.waitUntil(lambda: calls == [1], timeout=5000)


def test_a_panel_behind_another_tab_reads_the_labels_when_its_tab_comes_to_the_front(qtbot, window,
                                                                                       monkeypatch):
    win = window
    panel = win.finetune
    win.panels["findings"].raise_()  # the fine-tuning tab behind: off screen, yet "visible" to Qt
    qtbot.waitUntil(lambda: panel.visibleRegion().isEmpty(), timeout=5000)
    calls = _refreshes_after_five_changes(qtbot, win, monkeypatch)
    assert calls == []  # no database reads for a panel nobody sees
    win.panels["finetune"].raise_()
    qtbot.waitUntil(lambda: calls == [1], timeout=5000)  # painted: read once
