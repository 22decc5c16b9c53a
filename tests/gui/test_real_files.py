"""Every real DICOM file pydicom ships, imported through the window and opened series by series."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import PYDICOM_TEST_FILES
from tests.gui.conftest import import_and_wait, open_and_wait, wheel


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("pydicom_files")
    for f in PYDICOM_TEST_FILES.glob("*.dcm"):
        shutil.copy(f, out / f.name)
    return out


def _open_by_file(qtbot, win, name):
    uid = next(u for u, in win.db._conn.execute(
        "SELECT se.series_uid FROM instances i JOIN series se ON i.series_ref=se.id WHERE i.path LIKE ?",
        (f"%{name}",)))
    open_and_wait(qtbot, win, uid)
    return win.state.volume


def test_every_series_opens_or_reports_a_problem(qtbot, window, real_files):
    win = window
    report = import_and_wait(qtbot, win, [real_files], timeout=120000)
    assert report.series
    # every file is accounted for: a series, not DICOM, or a listed problem
    assert report.added + report.skipped + len(report.errors) == report.files
    opened, failed = 0, []
    for uid in list(win.browser.series_items()):
        errors_before = len(win.problems.errors)
        outcome: list = []
        win.series_loaded.connect(lambda u, out=outcome: out.append("loaded"))
        win.open_failed.connect(lambda u, e, out=outcome: out.append(e))
        win.open_series(uid)
        qtbot.waitUntil(lambda out=outcome: bool(out), timeout=60000)
        qtbot.waitUntil(lambda: not win._tasks, timeout=60000)
        win.series_loaded.disconnect()
        win.open_failed.disconnect()
        if outcome[0] == "loaded":
            opened += 1
            view = win.viewer.active
            view.repaint()
            assert win.state.volume is not None
        else:  # a series with no image (SR, RT plan...) or undecodable pixels: a listed problem
            assert len(win.problems.errors) > errors_before or "failed" in win.message.text(), uid
            failed.append(uid)
    assert opened >= 20 and len(failed) >= 5  # images open; SR, RT plan, ECG... are reported
    assert win.isVisible()


def test_colour_2d_and_multiframe_images(qtbot, window, real_files):
    win = window
    import_and_wait(qtbot, win, [real_files], timeout=120000)
    # colour: shown in colour, the window does not grey it out
    vol = _open_by_file(qtbot, win, "SC_rgb_rle.dcm")
    assert vol.is_color
    shot = win.viewer.active.grab().toImage()
    pixels = (shot.pixelColor(x, y) for x in range(0, shot.width(), 17) for y in range(0, shot.height(), 17))
    colours = {(c.red(), c.green(), c.blue()) for c in pixels}
    assert any(len({r, g, b}) > 1 for r, g, b in colours)
    # a 2D image: one slice, the 1x1 layout, no MPR
    win.set_layout("2x2")
    vol = _open_by_file(qtbot, win, "CT_small.dcm")
    assert vol.shape[0] == 1
    assert win.viewer.layout_name == "1x1"
    # a multi-frame series scrolls like a volume
    vol = _open_by_file(qtbot, win, "examples_ybr_color.dcm")
    assert vol.shape[0] == 30
    view = win.viewer.active
    start = win.state.depth(view.plane)
    wheel(view, view.rect().center(), -2)
    assert win.state.depth(view.plane) == start + 2
    frames = [np.asarray(view.plane.image(vol.voxels, k)) for k in (0, 15)]
    assert not np.array_equal(*frames)


def test_tag_inspector_shows_the_current_file(qtbot, window, real_files):
    win = window
    import_and_wait(qtbot, win, [real_files], timeout=120000)
    _open_by_file(qtbot, win, "CT_small.dcm")
    win.panels["tags"].show()
    win.panels["tags"].raise_()
    win.tags.refresh()
    assert win.tags.source.text().endswith("CT_small.dcm")
    names = [win.tags.tree.topLevelItem(i).text(1) for i in range(win.tags.tree.topLevelItemCount())]
    assert "Patient's Name" in names and "Rescale Intercept" in names
    win.tags.filter.setText("0010,0020")
    shown = [win.tags.tree.topLevelItem(i) for i in range(win.tags.tree.topLevelItemCount())]
    assert [i.text(1) for i in shown] == ["Patient ID"]


def test_monochrome1_displays_inverted(qtbot, window, tmp_path):
    src = PYDICOM_TEST_FILES / "dicomdirtests" / "77654033" / "CR1" / "6154"
    shutil.copy(src, tmp_path / "cr.dcm")
    report = import_and_wait(qtbot, window, [tmp_path])
    open_and_wait(qtbot, window, next(iter(report.series)))
    st = window.state
    assert st.volume.photometric == "MONOCHROME1" and st.display_inverted and not st.invert
    view = window.viewer.active
    img = view.plane.image(st.volume.voxels, 0)
    low = np.unravel_index(np.argmin(img), img.shape)  # the lowest stored value shows white
    window.overlay_action.trigger()  # no corner text over the pixel probed
    shot = view.grab().toImage()
    window.overlay_action.trigger()
    at = view.to_widget(*low)
    assert shot.pixelColor(int(at.x()), int(at.y())).lightness() > 128
    assert "inverted" not in view._hover_text
    window.invert_action.trigger()  # the user's invert shows it as stored
    assert st.invert and not st.display_inverted
