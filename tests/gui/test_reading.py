"""The reading workflow: focus, mouse bindings, the cursor readout, undo/redo, side by side, corner text."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from medstation.imaging import PRESETS
from tests.conftest import nodule_finding
from tests.gui.conftest import drag, import_and_wait, open_and_wait, wheel


@pytest.fixture
def opened(qtbot, window, small_study):
    import_and_wait(qtbot, window, [small_study.folder])
    open_and_wait(qtbot, window, small_study.series[0].series_uid)
    return window


def test_focus_stays_in_the_views(qtbot, opened):
    win = opened
    win.activateWindow()
    win.browser.search.setFocus()  # as after a click into the search box
    assert QApplication.focusWidget() is win.browser.search
    for name in ("1x3", "2x2", "1x1"):
        win.layout_actions[name].trigger()
        qtbot.wait(5)
        assert QApplication.focusWidget() is win.viewer.active, name
    for plane in ("coronal", "axial"):
        next(a for a in win.actions() if a.text().startswith(plane.capitalize())).trigger()
        qtbot.wait(5)
        assert QApplication.focusWidget() is win.viewer.active
    dialog = win.show_help()
    dialog.close()
    qtbot.wait(5)
    assert QApplication.focusWidget() is win.viewer.active
    # a single-key shortcut now reaches the window, not the search box
    qtbot.keyClick(win.viewer.active, Qt.Key_2)
    assert win.state.window == list(PRESETS.values())[1] and win.browser.search.text() == ""
    # Ctrl+F is how the search box gets the keyboard
    next(a for a in win.actions() if a.text() == "Find a study").trigger()
    assert QApplication.focusWidget() is win.browser.search


def test_mouse_bindings_and_their_settings(qtbot, opened):
    win = opened
    st, view = win.state, win.viewer.active
    c = QPointF(view.width() / 2, view.height() / 2)
    st.set_window(PRESETS["Lung"])
    drag(view, c, c + QPointF(80, -40))  # left: window/level
    assert st.window.width > PRESETS["Lung"].width and st.window.center < PRESETS["Lung"].center
    zoom = view.zoom_factor()
    drag(view, c, c + QPointF(0, -60), Qt.RightButton)  # right: zoom (up = in)
    assert view.zoom_factor() > zoom * 1.5
    pan = QPointF(view._pan)
    drag(view, c, c + QPointF(30, 20), Qt.MiddleButton)  # middle: pan
    assert view._pan - pan == QPointF(30, 20)
    window = st.window
    wheel(view, c, -2)  # the wheel scrolls
    zoomed = view.zoom_factor()
    wheel(view, c, 1, Qt.ControlModifier)  # Ctrl+wheel zooms
    assert view.zoom_factor() > zoomed and st.window == window
    # the Settings swap them: right-drag now does window/level
    win.settings.setValue("mouse/right", "window")
    from medstation.gui.settings import apply_settings

    apply_settings(win.settings, st)
    before = st.window
    drag(view, c, c + QPointF(50, 0), Qt.RightButton)
    assert st.window.width > before.width
    # toolbar tools
    win.tool_actions["zoom"].trigger()
    zoom = view.zoom_factor()
    drag(view, c, c + QPointF(0, 50))
    assert view.zoom_factor() < zoom


def test_the_readout_follows_scrolling_and_clears_on_a_new_series(qtbot, opened, small_study):
    win = opened
    view, st = win.viewer.active, win.state
    seen = []
    view.hover.connect(seen.append)
    c = QPointF(view.width() / 2, view.height() / 2)
    from tests.gui.conftest import mouse

    mouse(view, "move", c, Qt.NoButton)
    first = seen[-1]
    assert f"Im {st.depth(view.plane) + 1}:" in first and "HU" in first
    wheel(view, c, -3)
    assert seen[-1] != first and f"Im {st.depth(view.plane) + 1}:" in seen[-1]
    open_and_wait(qtbot, win, small_study.series[1].series_uid)
    # the new series' value under the cursor, never the old series' one
    assert "" in seen[seen.index(first):]
    assert view._hover_text == "" or f"/{st.volume.shape[0]}" not in view._hover_text and \
        f"Im {st.depth(view.plane) + 1}:" in view._hover_text


def test_undo_redo_measurements_and_reviews(qtbot, opened):
    win = opened
    st, view = win.state, win.viewer.active
    win.tool_actions["length"].trigger()
    drag(view, view.to_widget(10, 10), view.to_widget(30, 40))
    assert len(st.measurements) == 1
    m = st.measurements[0]
    key = st.series_key
    assert len(win.db.annotations.measurements(key)) == 1
    # clicking the line (not a handle) selects it; dragging it moves it
    win.tool_actions["window"].trigger()
    st.select(None)
    mid = (view.to_widget(10, 10) + view.to_widget(30, 40)) / 2
    before = list(m.points)
    drag(view, mid, mid + QPointF(20, 0))
    assert st.selected is m and m.points != before
    moved = list(m.points)
    undo, redo = win.undo_action, win.redo_action
    undo.trigger()
    assert m.points == before
    redo.trigger()
    assert m.points == moved
    undo.trigger()
    undo.trigger()  # the drawing itself
    assert st.measurements == [] and win.db.annotations.measurements(key) == []
    redo.trigger()
    assert st.measurements == [m] and len(win.db.annotations.measurements(key)) == 1
    # delete from the Measurements panel, then undo
    win.measurements.table.selectRow(0)
    win.measurements.delete_button.click()
    assert st.measurements == []
    undo.trigger()
    assert st.measurements == [m] and len(win.db.annotations.measurements(key)) == 1
    # reviews: Y accepts and moves on to the next finding; undo restores
    layer = st.findings
    layer.set_threshold(0.5)
    layer.set_items([nodule_finding(st.volume), nodule_finding(st.volume, finding_id="F2", score=0.6)])
    first, second = layer.items
    layer.select(first)
    next(a for a in win.actions() if a.text().startswith("Accept the selected")).trigger()
    assert first.status == "accepted" and layer.selected is second
    undo.trigger()
    assert first.status == ""
    redo.trigger()
    assert first.status == "accepted"


def test_side_by_side_with_synchronized_scrolling(qtbot, opened, small_study):
    win = opened
    thin, thick = small_study.series
    with qtbot.waitSignal(win.compare_loader.series_loaded, timeout=60000):
        win.open_beside(thick.series_uid)
    assert win.viewer.layout_name == "1x2" and win.viewer.compare.isVisible()
    left, right = win.state, win.ctx.compare
    assert left.volume.shape[0] == thin.shape[0] and right.volume.shape[0] == thick.shape[0]
    win.sync_action.trigger()
    left_plane = win.viewer.views["axial"].plane
    for k in (6, 12, 17):  # slices the thick series covers too
        pos = left.position.copy()
        pos[0] = k
        left.set_position(pos)
        z_left = left.volume.index_to_patient(left.position)[2]
        z_right = right.volume.index_to_patient(right.position)[2]
        assert abs(z_left - z_right) <= thick.spacing[0] / 2 + 1e-6, k
    # scrolling the right half moves the left one too
    right.step(win.viewer.compare.view.plane, 1)
    z_right = right.volume.index_to_patient(right.position)[2]
    assert abs(left.volume.index_to_patient(left.position)[2] - z_right) <= thin.spacing[0] / 2 + 1e-6
    assert left.depth(left_plane) >= 0
    # each layout keeps its own zoom: zooming in 1x2 does not carry into 1x1 or 2x2
    win.viewer.views["axial"].zoom_by(3.0)
    win.set_layout("2x2")
    assert win.viewer.views["axial"].zoom_factor() < win.viewer.views["axial"].scale() * 100  # fits
    fit_2x2 = win.viewer.views["axial"]._scale
    win.set_layout("1x2")
    assert win.viewer.views["axial"]._scale is not None and fit_2x2 is None


@pytest.mark.parametrize("size", [(1280, 720), (700, 500)])
def test_corner_texts_do_not_overlap(qtbot, opened, size):
    win = opened
    win.resize(*size)
    for name in ("1x3", "2x2"):
        win.set_layout(name)
        qtbot.wait(20)
        for view in win.viewer.views.values():
            if not view.isVisible():
                continue
            fm = view.fontMetrics()
            corners = view.corner_text(view.plane, win.state.depth(view.plane))
            half = (view.width() - 12) / 2
            for corner in ("tl", "tr", "bl"):
                lines = [t for t in corners[corner] if t]
                elided = [fm.elidedText(t, Qt.ElideRight, int(half - 20)) for t in lines]
                assert all(fm.horizontalAdvance(t) <= half for t in elided), (name, corner)
            if view.width() < 420:
                assert len([t for t in corners["tr"] if t]) == 1  # abbreviated in a small view


def test_reference_lines_title_presets_and_help(qtbot, opened):
    win = opened
    view = win.viewer.active
    assert not view.show_crosshair
    win.reference_action.trigger()
    assert view.show_crosshair and win.viewer.layout_name == "1x1"
    before = view.grab().toImage()
    win.reference_action.trigger()
    assert not view.show_crosshair and view.grab().toImage() != before
    # the title names the series once; Qt adds the application name
    assert "medstation" not in win.windowTitle() and win.state.info["series"] in win.windowTitle()
    # a window stored in the DICOM that repeats a built-in preset is not listed twice
    names = [a.text().split("  (")[0].lower() for a in win.dicom_windows_menu.actions()]
    assert not set(names) & {n.lower() for n in PRESETS}


def test_help_text_names_the_program_not_its_structure():
    from medstation.cli import build_parser

    text = build_parser().format_help()
    assert "composition root" not in text and "radiology assistant" in text


def test_settings_dialog_changes_bindings_and_the_layout_for_a_new_series(qtbot, opened, small_study):
    from medstation.gui.settings import SettingsDialog

    win = opened
    dialog = SettingsDialog(win.settings, ("1x1", "1x2", "1x3", "2x2"), win)
    qtbot.addWidget(dialog)
    dialog.tool.setCurrentIndex(dialog.tool.findData("navigate"))
    dialog.right.setCurrentIndex(dialog.right.findData("pan"))
    dialog.middle.setCurrentIndex(dialog.middle.findData("window"))
    dialog.layout_box.setCurrentText("2x2")
    dialog.cine.setValue(25)
    dialog.accept()
    from medstation.gui.settings import apply_settings

    apply_settings(win.settings, win.state)
    assert win.state.tool == "navigate" and win.state.bindings == {"right": "pan", "middle": "window"}
    open_and_wait(qtbot, win, small_study.series[1].series_uid)
    assert win.viewer.layout_name == "2x2"
    win.toggle_cine(True)
    assert win._cine.interval() == 40
    win.toggle_cine(False)


def test_the_series_beside_opens_at_the_same_scale_with_its_own_findings(qtbot, opened, small_study):
    """Compare-with-prior: the right half opens at the left view's mm scale (zoomed in on the same
    place when the reader had zoomed) and draws the findings the detector found on it."""
    win = opened
    _thin, thick = small_study.series
    left = win.viewer.views["axial"]
    right = win.viewer.compare.view
    with qtbot.waitSignal(win.compare_loader.first_image, timeout=60000):
        win.open_beside(thick.series_uid)
    qtbot.wait(10)
    assert right.scale() == pytest.approx(left.scale())
    # the prior's cached findings (what a detection on it stored), then zoomed in on the left
    key = win.ctx.compare.series_key
    finding = nodule_finding(win.ctx.compare.volume)
    win.db.ai_cache.save(key, *win.ai._cache_key(), [finding.to_dict()])
    left.zoom_by(3.0)
    win.ctx.compare.set_position(finding.center_voxel)
    with qtbot.waitSignal(win.compare_loader.first_image, timeout=60000):
        win.open_beside(thick.series_uid)
    qtbot.wait(10)
    assert right.scale() == pytest.approx(left.scale()) and right.zoom_factor() > 1.5
    cmp = win.ctx.compare
    assert [f.finding_id for f in cmp.findings.items] == [finding.finding_id]
    k = int(round(finding.center_voxel[0]))
    cmp.set_position((k, *finding.center_voxel[1:]))
    assert right.finding_rects(right.plane, k)  # drawn on the prior's side


def test_a_patient_folder_opens_its_newest_study_and_a_terminal_import_appears_in_the_window(
        qtbot, window, tmp_path):
    """Opening a folder of a patient's three studies opens the newest, not the oldest; a study
    imported by `medstation import` in a terminal while the window runs shows up in Studies, with
    its modality and image count in view at the window's default size."""
    from medstation.synth import ChestPhantom, PatientSpec, write_study
    from tests.cli.test_cli import medstation
    from tests.conftest import small_spec

    win = window
    patient = PatientSpec(patient_id="MS-3", name="Three^Studies")
    truths = [write_study(tmp_path / "patient" / date, ChestPhantom(seed=4), patient=patient, study_date=date,
                          series=[small_spec(slices=6 + n)], seed=n)
              for n, date in enumerate(("20240105", "20250110", "20230301"))]
    with qtbot.waitSignal(win.series_loaded, timeout=60000):
        win.import_paths([str(tmp_path / "patient")], open_after=True)
    newest = max(truths, key=lambda t: t.study_date)
    assert win.state.ref.series_uid == newest.series[0].series_uid  # not the largest (the oldest)
    # another process imports a study: the browser shows it without a restart
    other = write_study(tmp_path / "other", ChestPhantom(seed=5), patient=PatientSpec(patient_id="MS-9"),
                        series=[small_spec(description="a long series description that a narrow dock cuts")],
                        seed=9)
    proc = medstation("--db", str(win.db.path), "import", other.folder)
    assert proc.returncode == 0, proc.stderr
    uid = other.series[0].series_uid
    qtbot.waitUntil(lambda: uid in win.browser.series_items(), timeout=15000)
    item = win.browser.series_items()[uid]
    assert item.text(1) == "CT" and item.text(2) == str(other.series[0].shape[0])
    assert "a long series description" in item.toolTip(0)
    tree = win.browser.tree
    header = tree.header()
    right = header.sectionViewportPosition(2) + header.sectionSize(2)
    assert right <= tree.viewport().width() and header.sectionSize(1) > 10  # in view, not scrolled off
