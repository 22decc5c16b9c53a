"""Every action of the menu bar and the toolbar, triggered as a reader triggers it (QAction.trigger()).

Dialogs are answered by the test (file dialogs return a folder or file under tmp_path, message
boxes say No, modal dialogs close at once). An exception in any slot fails the test (pytest-qt
captures them); each action's effect is checked where it has one to see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox

from medstation.dicom.pacs import save_nodes
from tests.conftest import make_node, nodule_finding
from tests.gui.conftest import import_and_wait, open_and_wait
from tests.gui.test_stub_engine import StubEngine


def _all_actions(win):
    """Every action reachable from the menu bar (submenus included) and the toolbar, in order."""
    seen, out = set(), []

    def walk(menu):
        for act in menu.actions():
            if act.menu() is not None:
                walk(act.menu())
            elif not act.isSeparator() and id(act) not in seen:
                seen.add(id(act))
                out.append(act)

    for top in win.menuBar().actions():
        walk(top.menu())
    for act in win.toolbar.actions():
        if not act.isSeparator() and act.text() and id(act) not in seen and act.menu() is None:
            seen.add(id(act))
            out.append(act)
    return out


@pytest.fixture
def orthanc_of_its_own(tmp_path):
    """A PACS of this test's own: what it sends must not show up in other tests' searches."""
    from tests._orthanc import Orthanc

    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


@pytest.fixture
def reader(qtbot, small_study, orthanc_of_its_own, tmp_path, monkeypatch):
    from medstation.gui.app import build_window

    engines = []

    def factory(_device):
        engines.append(StubEngine())
        for _ in range(30):
            engines[-1].gate.release()
        return engines[-1]

    answers = {"folder": str(tmp_path / "out"), "save": str(tmp_path / "view.png")}
    (tmp_path / "out").mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: answers["folder"])
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([], ""))

    def save_as(_parent, caption, *a, **k):
        if "NIfTI" in caption:
            return str(tmp_path / "findings.nii.gz"), ""
        return answers["save"], "PNG (*.png)"

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_as)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tmp_path / "mask.nii.gz"), ""))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.No)
    monkeypatch.setattr(QDialog, "exec", lambda self: (self.accept(), QDialog.Accepted)[1])
    save_nodes([make_node(orthanc_of_its_own)])
    win = build_window(engine_factory=factory)
    win.ai.set_auto_detect(False)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    qtbot.waitExposed(win)
    import_and_wait(qtbot, win, [small_study.folder])
    open_and_wait(qtbot, win, small_study.series[0].series_uid)
    win.state.findings.set_threshold(0.5)
    win.state.findings.set_items([nodule_finding(win.state.volume),
                                  nodule_finding(win.state.volume, finding_id="F2", score=0.7)])
    win.state.findings.select(win.state.findings.items[0])
    from medstation.dicom.volume_files import write_volume_file

    mask = np.zeros(win.state.volume.shape, np.uint8)
    mask[2:5, 20:30, 20:30] = 1
    write_volume_file(mask, win.state.volume.grid, tmp_path / "mask.nii.gz")
    yield win, tmp_path
    win.shutdown()
    win.close()


def test_every_action(qtbot, reader):
    win, tmp = reader
    st = win.state
    actions = _all_actions(win)
    texts = [a.text() for a in actions]
    assert len(actions) >= 60 and "Quit" in texts
    quit_action = next(a for a in actions if a.text() == "Quit")
    effects = {
        "Export findings as DICOM SR + SEG…": lambda: list((tmp / "out").glob("SR_*.dcm")),
        "Export this study de-identified…": lambda: len(list((tmp / "out").rglob("*.dcm"))) > 2,
        "Send findings to PACS (SR + SEG)": lambda: "sent to test-orthanc" in win.message.text(),
        "Save view as image…": lambda: Path(tmp / "view.png").stat().st_size > 5000,
        "Invert": lambda: st.invert in (True, False),
        "Find a study": lambda: win.browser.search.hasFocus() or not win.isActiveWindow(),
        "Full screen": lambda: win.fullscreen_action.isChecked() == win.isFullScreen(),
        "Hide panels": lambda: not win.panels["browser"].isVisible() and not win.toolbar.isVisible(),
        "Detect lesions in this series": lambda: win.ai.last_run is not None,
        "Cine (play slices)": lambda: win._cine.isActive(),
        "PACS: search and retrieve…": lambda: win.pacs_dialog is not None and win.pacs_dialog.isVisible(),
        "Keyboard and mouse…": lambda: True,
        "Open a label mask over this series (NIfTI, NRRD)…": lambda: win.state.mask.array is not None,
        "Export findings as a NIfTI label map…": lambda: (tmp / "findings.json").exists(),
    }
    done = []
    for act in actions:
        if act is quit_action or not act.isEnabled():
            continue
        text = act.text()
        act.trigger()
        qtbot.waitUntil(lambda: not win._tasks, timeout=60000)
        if text in effects:
            qtbot.waitUntil(lambda t=text: bool(effects[t]()), timeout=30000)
        if text.startswith("Layout ") or text.startswith("Side by side"):
            assert win.viewer.layout_name == next(n for n, a in win.layout_actions.items() if a is act)
        for tool, tact in win.tool_actions.items():
            if tact is act:
                assert st.tool == tool
        if act is win.fullscreen_action and act.isChecked():
            act.trigger()  # back to normal for the rest
        if act is win.panels_action and act.isChecked():
            act.trigger()
            assert win.panels["browser"].isVisible()
        if act is win.cine_action and act.isChecked():
            act.trigger()
        done.append(text)
    # not a folder named "False" anywhere: the export went where the dialog said
    assert not list(Path.cwd().glob("False")) and not (tmp / "False").exists()
    assert {"Export findings as DICOM SR + SEG…", "Send findings to PACS (SR + SEG)",
            "Export this study de-identified…"} <= set(done)
    quit_action.trigger()
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=10000)
