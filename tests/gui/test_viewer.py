"""The real main window, driven offscreen: import, browse, open, scroll, window/level, MPR, measure."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from medstation.imaging import PRESETS, planes_for
from tests._marker import MARKER_HU
from tests.gui.conftest import click, drag, import_and_wait, open_and_wait, wheel


def _series_uid(win, description):
    return next(r.series_uid for r in win.browser.rows if r.description == description)


def test_import_browse_open_scroll_window_and_layouts(qtbot, window, small_study):
    win = window
    report = import_and_wait(qtbot, win, [small_study.folder])
    assert report.added == sum(len(s.files) for s in small_study.series)
    items = win.browser.series_items()
    assert set(items) == {s.series_uid for s in small_study.series}
    # search by patient ID and date (typed the way people type dates), and by modality filter
    win.browser.search.setText(small_study.patient_id)
    assert len(win.browser.series_items()) == 2
    win.browser.search.setText("1999-01-01")
    assert win.browser.series_items() == {}
    d = small_study.study_date
    win.browser.search.setText(f"{d[:4]}-{d[4:6]}-{d[6:]}")
    assert len(win.browser.series_items()) == 2
    win.browser.search.setText("")
    # series thumbnails arrive from a background task, and are cached on disk
    qtbot.waitUntil(lambda: all(not i.icon(0).isNull() for i in win.browser.series_items().values()),
                    timeout=30000)

    truth = small_study.series[0]
    item = win.browser.series_items()[truth.series_uid]
    with qtbot.waitSignal(win.series_loaded, timeout=60000):
        win.browser.tree.itemActivated.emit(item, 0)  # what a double click / Enter does
    vol = win.state.volume
    assert vol.shape == truth.shape
    assert win.load_job.ready.all()
    view = win.viewer.active
    plane = view.plane
    center = QPointF(view.rect().center())

    # scroll: wheel, keys, scroll bar
    start = win.state.depth(plane)
    wheel(view, center, -3)
    assert win.state.depth(plane) == start + 3
    qtbot.keyClick(view, Qt.Key_Up)
    assert win.state.depth(plane) == start + 2
    qtbot.keyClick(view, Qt.Key_End)
    assert win.state.depth(plane) == plane.depth - 1
    qtbot.keyClick(view, Qt.Key_Home)
    assert win.state.depth(plane) == 0
    win.viewer.panes["axial"].bar.setValue(5)
    assert win.state.depth(plane) == 5

    # window/level: a preset, then a left-drag with the default tool (horizontal = width,
    # vertical = level), as in RadiAnt, Horos and OHIF
    lung = next(a for a in win.actions() if a.text().startswith("Lung"))
    lung.trigger()
    assert win.state.window == PRESETS["Lung"] and win.state.tool == "window"
    drag(view, center, center + QPointF(100, 50))
    assert win.state.window.width > PRESETS["Lung"].width
    assert win.state.window.center > PRESETS["Lung"].center
    before = view.grab().toImage()
    next(a for a in win.actions() if a.text().startswith("Bone")).trigger()
    assert view.grab().toImage() != before  # the image really changed

    # layouts
    for name in ("1x3", "2x2", "1x1"):
        win.layout_actions[name].trigger()
        visible = [n for n, p in win.viewer.panes.items() if p.isVisible()]
        assert len(visible) == (1 if name == "1x1" else 3), name
    win.show_plane("coronal")
    assert win.viewer.active.plane_name == "coronal"
    assert [n for n, p in win.viewer.panes.items() if p.isVisible()] == ["coronal"]


def test_marker_and_crosshair_agree_in_all_three_planes(qtbot, window, marker_study):
    folder, marker = marker_study
    win = window
    report = import_and_wait(qtbot, win, [folder])
    open_and_wait(qtbot, win, next(iter(report.series)))
    win.set_layout("2x2")
    qtbot.wait(10)
    vol = win.state.volume
    idx = np.round(vol.patient_to_index(marker))
    axial = win.viewer.views["axial"]
    # go to the marker's slice, then click on the marker in the axial view
    pos = win.state.position.copy()
    pos[0] = idx[0]
    win.state.set_position(pos)
    r, c, _ = axial.plane.to_plane(idx)
    click(axial, axial.to_widget(r, c))
    assert np.allclose(win.state.position, idx, atol=0.01)
    for name, view in win.viewer.views.items():
        p = view.plane
        r, c, depth = p.to_plane(win.state.position)
        assert view.isVisible()
        assert win.state.depth(p) == int(round(depth))
        img = p.image(vol.voxels, win.state.depth(p))
        assert img[int(round(r)), int(round(c))] == MARKER_HU, name
        # the crosshair is drawn where the marker is: check the pixels on screen
        view.show_crosshair = False
        view.show_overlays = False
        view._scale = 8 / min(p.spacing)  # zoom so the marker voxel covers several screen pixels
        view._pan = QPointF(0, 0)
        view.repaint()
        shot = view.grab().toImage()
        at = view.to_widget(r, c)
        assert shot.pixelColor(int(at.x()), int(at.y())).lightness() > 200, name
        off = view.to_widget(r + 3, c + 3)
        assert shot.pixelColor(int(off.x()), int(off.y())).lightness() < 200, name
        # and the marker's patient position, computed from the DICOM tags, is where the view says
        assert np.allclose(vol.index_to_patient(p.to_index(r, c, depth)), marker, atol=1e-3)


def test_length_measurement_is_within_one_pixel_and_kept_in_the_database(qtbot, window, marker_study):
    folder, _marker = marker_study
    win = window
    report = import_and_wait(qtbot, win, [folder])
    uid = next(iter(report.series))
    open_and_wait(qtbot, win, uid)
    view = win.viewer.active
    plane = view.plane
    vol = win.state.volume
    win.tool_actions["length"].trigger()
    a, b = view.to_widget(8, 6), view.to_widget(30, 41)  # plane pixel centres
    drag(view, a, b)
    assert len(win.state.measurements) == 1
    m = win.state.measurements[0]
    true_mm = np.hypot(22 * plane.spacing[0], 35 * plane.spacing[1])
    got = m.values(vol, plane)["length_mm"]
    assert abs(got - true_mm) <= max(plane.spacing)
    assert f"{got:.1f} mm" in win.measurements.table.item(0, 2).text()
    # kept per series in the database: reopen and it is back
    stored = win.db.annotations.measurements(win.state.series_key)
    assert len(stored) == 1 and stored[0][1] == "length"
    open_and_wait(qtbot, win, uid)
    assert len(win.state.measurements) == 1
    assert np.allclose(win.state.measurements[0].points, m.points)
    # edit by dragging a handle, then delete with the Delete key
    m2 = win.state.measurements[0]
    old_end = m2.points[1]
    end = view.to_widget(*plane.to_plane(old_end)[:2])
    drag(view, end, end + QPointF(-40, 0))
    assert m2.points[1] != old_end
    assert np.allclose(win.db.annotations.measurements(win.state.series_key)[0][2]["points"][1], m2.points[1])
    win.state.select(m2)
    qtbot.keyClick(view, Qt.Key_Delete)
    assert win.state.measurements == []
    assert win.db.annotations.measurements(win.state.series_key) == []
    assert win.measurements.table.rowCount() == 0


@pytest.mark.parametrize("tool", ["rect", "ellipse"])
def test_roi_statistics_match_numpy_on_the_same_region(qtbot, window, small_study, tool):
    win = window
    import_and_wait(qtbot, win, [small_study.folder])
    open_and_wait(qtbot, win, small_study.series[0].series_uid)
    view = win.viewer.active
    plane, vol = view.plane, win.state.volume
    win.tool_actions[tool].trigger()
    r0, c0, r1, c1 = 20.0, 14.0, 40.0, 44.0
    drag(view, view.to_widget(r0, c0), view.to_widget(r1, c1))
    m = win.state.measurements[0]
    values = m.values(vol, plane)
    img = plane.image(vol.voxels, win.state.depth(plane)).astype(np.float64)
    (pr0, pc0), (pr1, pc1) = (plane.to_plane(p)[:2] for p in m.points)
    assert (pr0, pc0, pr1, pc1) == pytest.approx((r0, c0, r1, c1), abs=1e-6)
    rr, cc = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    r0, c0, r1, c1 = (round(v, 6) for v in (pr0, pc0, pr1, pc1))  # the region as stored
    if tool == "rect":
        mask = (rr >= r0) & (rr <= r1) & (cc >= c0) & (cc <= c1)
    else:
        a, b = (r1 - r0) / 2, (c1 - c0) / 2
        mask = ((rr - (r0 + r1) / 2) / a) ** 2 + ((cc - (c0 + c1) / 2) / b) ** 2 <= 1
    region = img[mask]
    assert values["pixels"] == region.size
    assert values["mean"] == pytest.approx(region.mean())
    assert values["sd"] == pytest.approx(region.std())
    assert (values["min"], values["max"]) == (region.min(), region.max())
    text = win.measurements.table.item(0, 2).text()
    assert f"mean {region.mean():.1f} HU" in text and "mm²" in text


def test_angle_tool(qtbot, window, marker_study):
    win = window
    report = import_and_wait(qtbot, win, [marker_study[0]])
    open_and_wait(qtbot, win, next(iter(report.series)))
    view, plane = win.viewer.active, win.viewer.active.plane
    win.tool_actions["angle"].trigger()
    a, vertex, b = view.to_widget(10, 10), view.to_widget(20, 10), view.to_widget(20, 30)
    drag(view, a, vertex)
    click(view, b)
    m = win.state.measurements[0]
    va = np.array([-10 * plane.spacing[0], 0.0])
    vb = np.array([0.0, 20 * plane.spacing[1]])
    expect = np.degrees(np.arccos(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb)))
    assert m.values(win.state.volume, plane)["angle_deg"] == pytest.approx(expect, abs=1.0)


def test_orientation_of_each_view_follows_the_direction_cosines(qtbot, window, tmp_path):
    from tests._marker import write_marker_series

    write_marker_series(tmp_path / "cor", row_cos=(1, 0, 0), col_cos=(0, 0, -1))  # a coronal acquisition
    win = window
    report = import_and_wait(qtbot, win, [tmp_path / "cor"])
    open_and_wait(qtbot, win, next(iter(report.series)))
    vol = win.state.volume
    assert planes_for(vol)["axial"].edge_labels() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # the axial view of a coronal acquisition scrolls through what were image rows
    assert win.viewer.views["axial"].plane.axis == 1


def test_a_drawn_nodule_label_is_a_label_with_its_centre_in_mm_undoable(qtbot, window, marker_study):
    from medstation.dicom.labels import all_labels

    folder, _marker = marker_study
    win = window
    report = import_and_wait(qtbot, win, [folder])
    open_and_wait(qtbot, win, next(iter(report.series)))
    view = win.viewer.active
    plane, vol = view.plane, win.state.volume
    win.tool_actions["nodule"].trigger()
    centre, edge = (20.0, 20.0), (20.0, 30.0)  # a 10-pixel radius
    drag(view, view.to_widget(*centre), view.to_widget(*edge))
    (m,) = win.state.measurements
    assert m.kind == "nodule"
    diameter = 2 * 10 * plane.spacing[1]
    assert m.values(vol, plane)["diameter_mm"] == pytest.approx(diameter, abs=max(plane.spacing))
    assert "nodule" in win.measurements.table.item(0, 2).text()
    (lab,) = [x for x in all_labels(win.db) if x.source == "reader"]
    k = win.state.depth(plane)
    expected = vol.index_to_patient((k, *centre)) if plane.axis == 0 else None
    assert lab.is_nodule and lab.diameter_mm == pytest.approx(diameter, abs=max(plane.spacing))
    if expected is not None:
        assert np.allclose(lab.center_mm, expected, atol=max(plane.spacing))
    # undo removes the label, redo brings it back
    win.state.history.undo()
    assert not [x for x in all_labels(win.db) if x.source == "reader"]
    win.state.history.redo()
    assert len([x for x in all_labels(win.db) if x.source == "reader"]) == 1


def test_thick_slab_mip_shows_a_marker_off_the_plane_on_every_view_with_its_overlays(qtbot, window,
                                                                                    marker_study):
    """M turns a MIP on (RadiAnt-like); the marker two slices away shows on the axial slab and in the
    coronal and sagittal slabs, the corner text says it is a projection, a measurement drawn on the
    marker's slice is drawn in the slab, and the toolbar and Ctrl+] change the thickness."""
    from medstation.imaging import Measurement

    folder, marker = marker_study
    win = window
    report = import_and_wait(qtbot, win, [folder])
    open_and_wait(qtbot, win, next(iter(report.series)))
    win.set_layout("2x2")
    qtbot.wait(10)
    vol, st = win.state.volume, win.state
    idx = np.round(vol.patient_to_index(marker)).astype(int)
    st.set_position(idx + np.array([-2, -3, -4]))  # two slices, three rows, four columns away
    ruler = Measurement("length", 0, int(idx[0]), [tuple(idx), tuple(idx + np.array([0, 5, 5]))])
    st.add_measurement(ruler)

    def bright_at_marker(view) -> bool:
        p = view.plane
        r, c, _ = p.to_plane(idx)
        view.show_overlays = False
        view._scale, view._pan = 8 / min(p.spacing), QPointF(0, 0)
        view.centre_on(idx)
        view.repaint()
        at = view.to_widget(r, c)
        lit = view.grab().toImage().pixelColor(int(at.x()), int(at.y())).lightness() > 200
        view.show_overlays = True
        return lit

    views = win.viewer.views
    assert not any(bright_at_marker(v) for v in views.values())
    axial = views["axial"]
    assert ruler not in axial.visible_measurements(axial.plane, st.depth(axial.plane))
    qtbot.keyClick(win.viewer.active, Qt.Key_M)
    assert st.slab.mode == "mip" and st.slab.thickness_mm == 10.0
    assert win.slab_mode_box.currentText() == "MIP" and win.slab_actions["mip"].isChecked()
    for name, view in views.items():
        assert bright_at_marker(view), name
        assert "MIP 10.0 mm" in "\n".join(view.corner_text(view.plane, st.depth(view.plane))["tr"])
    assert ruler in axial.visible_measurements(axial.plane, st.depth(axial.plane))
    # the readout is the projected value, and says so
    r, c, _ = axial.plane.to_plane(idx)
    axial._update_hover(axial.to_widget(r, c))
    assert f"{MARKER_HU} HU (MIP" in axial._hover_text
    # a MinIP of the same slab hides the marker again; thinner than the gap loses it from the MIP
    win.slab_mode_box.setCurrentIndex(2)
    win.slab_mode_box.activated.emit(2)
    assert st.slab.mode == "minip" and not bright_at_marker(axial)
    st.set_slab("mip", 2.5)
    assert not bright_at_marker(axial) and win.slab_mm_box.value() == 2.5
    qtbot.keyClick(axial, Qt.Key_BracketRight, Qt.ControlModifier)
    assert st.slab.thickness_mm == 3.8
    win.slab_mm_box.setValue(12.5)
    assert st.slab.thickness_mm == 12.5 and bright_at_marker(axial)
    win.slab_actions["off"].trigger()
    assert not st.slab.active and not bright_at_marker(axial)


def test_a_nifti_volume_opens_in_the_window_and_a_label_mask_draws_over_every_plane(qtbot, window, tmp_path):
    """Issue 29: a NIfTI file imports beside DICOM and opens; File > Open a label mask draws its
    structure on the axial and coronal planes (resampled in mm, on a background task); the heatmap has
    a colour legend; the scale bar is outlined so it reads over bright pixels."""
    import SimpleITK as sitk

    from medstation.ai.detector import Heatmap
    from medstation.dicom.volume_files import write_volume_file
    from medstation.gui.masks import open_mask_task
    from medstation.imaging import Window

    win, st = window, window.state
    arr = np.full((30, 40, 50), -1000, np.int16)
    arr[8:22, 5:35, 5:45] = 40
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    sitk.WriteImage(img, str(tmp_path / "chest.nii.gz"))
    report = import_and_wait(qtbot, win, [tmp_path / "chest.nii.gz"])
    assert len(report.series) == 1
    open_and_wait(qtbot, win, next(iter(report.series)))
    assert st.volume.shape == (30, 40, 50) and np.array_equal(st.volume.voxels, arr)
    row = win.browser.series_items()[st.ref.series_uid]
    assert row.text(2) == "30" and "in 1 file(s)" in row.toolTip(2)  # images, not files
    mask = np.zeros(arr.shape, np.uint8)
    mask[12:18, 15:25, 20:30] = 1
    write_volume_file(mask, st.volume.grid, tmp_path / "mask.nii.gz")
    open_mask_task(win.ctx, tmp_path / "mask.nii.gz")
    qtbot.waitUntil(lambda: st.mask.array is not None, timeout=20000)
    assert np.array_equal(st.mask.array, mask) and win.mask_action.isEnabled()
    # the tags panel shows the NIfTI header's own fields
    from medstation.dicom.tags import read_tags

    fields = {r.name: r.value for r in read_tags(str(tmp_path / "chest.nii.gz"))}
    assert fields["format"] == "NIfTI" and fields["size"] == "50 x 40 x 30"

    def colour_at(view, index):
        view.show_crosshair = False  # its lines pass through the cursor
        view.repaint()
        r, c, _ = view.plane.to_plane(index)
        at = view.to_widget(r, c)
        return view.grab().toImage().pixelColor(int(at.x()), int(at.y()))

    st.set_position((15, 20, 25))
    win.set_layout("2x2")
    qtbot.wait(10)
    for name, away in (("axial", (15, 30, 40)), ("coronal", (24, 20, 40))):  # off the crosshair lines
        view = win.viewer.views[name]
        inside, outside = colour_at(view, (15, 20, 25)), colour_at(view, away)
        assert inside.green() > inside.red() + 30 and abs(outside.green() - outside.red()) < 10, name
    win.mask_action.trigger()  # hide it again
    assert not st.mask.show
    view = win.viewer.views["axial"]
    inside = colour_at(view, (15, 20, 25))
    assert abs(inside.green() - inside.red()) < 10
    # the heatmap's legend: a bar from red (low) to yellow (high) at the right edge
    win.set_layout("1x1")
    qtbot.wait(10)
    view = win.viewer.active
    st.heatmap.set_heatmap(Heatmap(np.full((30, 4, 5), 200, np.uint8), 1.0, (10.0, 10.0)))
    st.heatmap.set_show(True)
    view.repaint()
    shot = view.grab().toImage()
    top = shot.pixelColor(view.width() - 24, int(view.height() / 2 + 44))
    assert top.red() > 200 and top.green() > 200 and top.blue() < 80  # 100%: yellow
    st.heatmap.set_show(False)
    # the scale bar's outline shows over an all-white image
    st.set_window(Window(-3000, 1, "white"))
    view.repaint()
    shot = view.grab().toImage()
    x, y = view.width() - 45, view.height() - 40
    assert shot.pixelColor(x, y).lightness() > 200 and shot.pixelColor(x, y - 2).lightness() < 100
