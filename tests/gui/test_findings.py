"""AI in the viewer: the demo study opens, findings appear, a click jumps, reviews persist."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt

from tests.gui.conftest import click, open_and_wait


def _hits(findings, nodule, threshold):
    return [f for f in findings if f.score >= threshold
            and np.linalg.norm(np.subtract(f.center_mm, nodule["center"])) <= nodule["diameter_mm"] / 2]


@pytest.fixture
def demo_window(qtbot, window):
    window.ai.set_auto_detect(True)
    with qtbot.waitSignal(window.ai.detection_finished, timeout=240000) as sig:
        window.open_demo()
    assert sig.args[1] is not None  # a real run, not the cache
    truth = json.loads((window.data_dir / "demo" / "truth.json").read_text())
    return window, truth


def test_demo_findings_appear_and_a_click_jumps_to_the_lesion(qtbot, demo_window):
    win, truth = demo_window
    st = win.state
    panel = win.findings
    threshold = win.ai.operating_threshold()
    assert st.findings.threshold == pytest.approx(threshold, abs=0.01)
    # the demo's nodules are found above the operating point (the 6 mm one may fall below it:
    # 96% sensitivity at 1 false positive per scan is not 100%)
    found = [n["label"] for n in truth["nodules"] if _hits(st.findings.items, n, threshold)]
    assert len(found) >= 3 and "RUL solid 15 mm" in found and "LUL ground-glass 11 mm" in found, found
    # the panel lists what is above the threshold, by score
    rows = panel.tree.topLevelItemCount()
    assert rows == len(st.findings.visible()) >= 4
    scores = [float(panel.tree.topLevelItem(r).text(1)) for r in range(rows)]
    assert scores == sorted(scores, reverse=True)
    # move away, then click the ground-glass nodule's row: the slice and cursor jump to it
    lul = next(n for n in truth["nodules"] if n["label"].startswith("LUL"))
    target = _hits(st.findings.items, lul, threshold)[0]
    st.set_position((0, 0, 0))
    row = st.findings.visible().index(target)
    rect = panel.tree.visualItemRect(panel.tree.topLevelItem(row))
    click(panel.tree.viewport(), rect.center())
    assert st.findings.selected is target
    assert int(round(st.position[0])) == target.center_slice
    axial = win.viewer.views["axial"]
    assert st.depth(axial.plane) == target.center_slice
    # drawn on the axial view at that slice, on screen; the view did not pan (it was visible)
    rects = axial.finding_rects(axial.plane, target.center_slice)
    drawn = dict((id(f), r) for f, r in rects)
    assert id(target) in drawn
    centre = drawn[id(target)].center()
    assert QRectF(axial.rect()).contains(centre) and axial._pan == QPointF(0, 0)
    # zoomed in far, a jump to a lesion off-screen pans to it and keeps the zoom
    axial.zoom_by(4.0, QPointF(5, 5))
    zoom = axial.zoom_factor()
    st.findings.select(None)
    st.set_position((0, 0, 0))
    click(panel.tree.viewport(), rect.center())
    rects = dict((id(f), r) for f, r in axial.finding_rects(axial.plane, target.center_slice))
    centre = rects[id(target)].center()
    assert abs(centre.x() - axial.width() / 2) < 3 and abs(centre.y() - axial.height() / 2) < 3
    assert axial.zoom_factor() == pytest.approx(zoom)
    axial.fit()
    # the overlay colours pixels around the lesion; hiding it removes them
    img_on = axial.grab().toImage()
    st.findings.set_show(False)
    img_off = axial.grab().toImage()
    r = drawn[id(target)].toRect().adjusted(-6, -6, 6, 6)
    changed = sum(img_on.pixel(x, y) != img_off.pixel(x, y)
                  for x in range(r.left(), r.right()) for y in range(r.top(), r.bottom()))
    assert changed > 20
    assert not win.findings_action.isChecked()
    # the probability heatmap: off by default, its panel box enabled by the run; shown, it turns
    # the lesion red and leaves the lung far from it as it was
    assert st.heatmap.heatmap is not None and not st.heatmap.show and panel.heat_box.isEnabled()
    panel.heat_box.setChecked(True)
    assert st.heatmap.show and win.heatmap_action.isChecked()
    img_heat = axial.grab().toImage()
    c = drawn[id(target)].center().toPoint()
    from PySide6.QtGui import QColor

    on, off = QColor(img_heat.pixel(c)), QColor(img_off.pixel(c))
    assert on.red() - on.blue() > off.red() - off.blue() + 30, (on.getRgb(), off.getRgb())
    corner = QPointF(axial.image_rect().left() + 4, axial.image_rect().top() + 4).toPoint()
    assert img_heat.pixel(corner) == img_off.pixel(corner)
    win.heatmap_action.trigger()
    assert not st.heatmap.show and not panel.heat_box.isChecked()
    win.state.set_volume(None)
    assert st.heatmap.heatmap is None


def test_threshold_review_and_cache(qtbot, demo_window):
    win, truth = demo_window
    st, panel = win.state, win.findings
    n_all = len(st.findings.items)
    panel.threshold.setValue(99)
    assert len(st.findings.visible()) < n_all
    assert panel.tree.topLevelItemCount() == len(st.findings.visible())
    panel.threshold.setValue(0)
    assert panel.tree.topLevelItemCount() == n_all
    panel.threshold.setValue(int(win.ai.operating_threshold() * 100))
    # accept the top finding, reject the second (keyboard: Y and X on the selected finding)
    first, second = st.findings.visible()[:2]
    st.findings.select(first)
    win.viewer.views["axial"].setFocus()
    qtbot.keyClick(win.viewer.views["axial"], Qt.Key_Y)
    st.findings.select(second)
    panel.reject_button.click()
    assert (first.status, second.status) == ("accepted", "rejected")
    reviews = win.db.annotations.reviewed_findings()
    assert {(r["finding"]["finding_id"], r["status"]) for r in reviews} == {(first.finding_id, "accepted"),
                                                                            (second.finding_id, "rejected")}
    assert all(r["model_version"] == win.ai.manifest["version"] for r in reviews)
    # reopening the series: findings come from the cache, reviews included, no second run
    uid = win.current_uid
    with qtbot.waitSignal(win.ai.detection_finished, timeout=60000) as sig:
        open_and_wait(qtbot, win, uid)
    assert sig.args[1] is None
    again = {f.finding_id: f.status for f in st.findings.items}
    assert again[first.finding_id] == "accepted" and again[second.finding_id] == "rejected"
    # correct a finding's extent: accepted, a nodule label on it to drag; the label stands for it
    from medstation.dicom.labels import all_labels

    third = next(f for f in st.findings.visible()
                 if f.finding_id not in (first.finding_id, second.finding_id))
    st.findings.select(third)
    win.ai.correct_extent()
    (m,) = [m for m in st.measurements if m.kind == "nodule"]
    assert third.status == "accepted" and m.points[0] == pytest.approx(third.center_voxel)
    labels = [lab for lab in all_labels(win.db) if lab.series_key == st.series_key]
    assert [lab.source for lab in labels].count("reader") == 1
    reader = next(lab for lab in labels if lab.source == "reader")
    assert np.allclose(reader.center_mm, third.center_mm, atol=0.6)
    assert not [lab for lab in labels if lab.source == "accepted"
                and np.allclose(lab.center_mm, third.center_mm, atol=0.6)]
    # "Detect" runs again on demand
    with qtbot.waitSignal(win.ai.detection_finished, timeout=240000) as sig:
        panel.run_button.click()
    assert sig.args[1] is not None


def test_the_review_queue_steps_to_the_least_sure_finding_and_a_review_shrinks_it(qtbot, demo_window):
    """Issue 28, item 7: U selects the unreviewed finding nearest the operating point (on the logit, within
    the queue's band),
    centred; Y accepts it (a label), and the next U goes to the next one; the fine-tuning panel says how
    big the queue is and where it lies against the split."""
    import math

    win, _truth = demo_window
    st = win.state
    op = win.ai.operating_threshold()

    def margin(f):
        lg = lambda p: math.log(min(max(p, 1e-4), 1 - 1e-4) / (1 - min(max(p, 1e-4), 1 - 1e-4)))  # noqa: E731
        return abs(lg(f.score) - lg(op))

    from medstation.core.review_queue import MAX_MARGIN

    expected = sorted((f for f in st.findings.items if margin(f) <= MAX_MARGIN),
                      key=lambda f: (margin(f), f.finding_id))
    assert len(expected) >= 3 and len(expected) < len(st.findings.items)  # the band, not every candidate
    win.viewer.views["axial"].setFocus()
    st.set_position((0, 0, 0))
    qtbot.keyClick(win.viewer.views["axial"], Qt.Key_U)
    first = st.findings.selected
    assert first is expected[0]
    assert int(round(st.position[0])) == first.center_slice  # jumped to it
    assert first.score >= st.findings.threshold  # drawn, even when it lies just below the operating point
    assert "Review queue" in win.statusBar().currentMessage()
    win.finetune.refresh()
    text = win.finetune.queue_label.text()
    assert f"{len(expected)} unreviewed finding(s) in 1 series" in text, text
    assert f"{len(expected)} would change the split" in text  # no labels yet: every review would
    # accept it: it leaves the queue, becomes a label, and U moves to the next least sure
    qtbot.keyClick(win.viewer.views["axial"], Qt.Key_Y)
    assert first.status == "accepted"
    qtbot.keyClick(win.viewer.views["axial"], Qt.Key_U)
    assert st.findings.selected is expected[1]
    assert [i.finding_id for i in win.review_queue.items()] == [f.finding_id for f in expected[1:]]
    # U again without reviewing: the key moves on rather than staying on the one on screen
    qtbot.keyClick(win.viewer.views["axial"], Qt.Key_U)
    assert st.findings.selected is expected[2]
    # X on it (the auto-advance selects some other finding): U goes to the least sure one left
    qtbot.keyClick(win.viewer.views["axial"], Qt.Key_X)
    qtbot.keyClick(win.viewer.views["axial"], Qt.Key_U)
    assert st.findings.selected is expected[1]


def test_a_tampered_model_is_refused_and_the_previous_one_stays(qtbot, window, tmp_path):
    import shutil

    from medstation.ai.store import user_models_dir

    before = window.ai.model_dir
    bad = user_models_dir() / "nodule-detector-9.9.9"
    shutil.copytree(before, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "version": "9.9.9"}))
    with open(bad / "model.safetensors", "r+b") as f:
        f.seek(500)
        f.write(b"tampered")
    with qtbot.waitSignal(window.ai.model_changed, timeout=60000):
        window.ai.set_model(bad)
    assert window.ai.model_dir == before
    assert "sha256" in window.message.text()
