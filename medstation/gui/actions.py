"""The main window's menus and toolbar: every action, its shortcut and what it calls.

An action's slot gets no arguments (a checkable one gets its new state): Qt passes
``checked`` to ``triggered``, and slots with an optional argument must never see it
(a folder named "False" was written once that way). After an action the keyboard
focus goes back to the active view unless a text field has it, so single-key
shortcuts keep working.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QDoubleSpinBox, QLabel, QLineEdit

from medstation.imaging import PRESETS, SLAB_MODES
from medstation.imaging.slab import MAX_MM, MIN_MM, SLAB_NAMES

from .dialogs import DISCLAIMER, AboutDialog
from .masks import export_findings_mask_task, open_mask_task
from .viewer import LAYOUTS

LAYOUT_KEYS = {"1x1": "Ctrl+1", "1x2": "Ctrl+2", "1x3": "Ctrl+3", "2x2": "Ctrl+4"}
TOOLS = (("window", "Window / level", "W"), ("zoom", "Zoom", "Z"), ("pan", "Pan", "P"),
         ("navigate", "Crosshair", "N"), ("length", "Length", "L"), ("rect", "Rectangle ROI", "Shift+R"),
         ("ellipse", "Ellipse ROI", "O"), ("angle", "Angle", "G"),
         ("nodule", "Nodule label", "Shift+N"))


def refocus(win) -> None:
    """Give the keyboard back to the active view, unless the reader is typing in a text field."""
    focus = QApplication.focusWidget()
    if isinstance(focus, (QLineEdit, QAbstractSpinBox)) and focus.isVisible():
        return
    if win.isActiveWindow() or QApplication.activeModalWidget() is None:
        win.viewer.active.setFocus(Qt.OtherFocusReason)


def action(win, menu, text: str, slot, shortcut: str | list[str] | None = None, checkable: bool = False,
           group: QActionGroup | None = None, keep_focus: bool = False) -> QAction:
    act = QAction(text, win)
    if shortcut:
        keys = [shortcut] if isinstance(shortcut, str) else shortcut
        act.setShortcuts([QKeySequence(k) for k in keys])
        act.setShortcutContext(Qt.ApplicationShortcut)
    act.setCheckable(checkable)

    def run(checked: bool = False) -> None:
        slot(checked) if checkable else slot()
        if not keep_focus:
            QTimer.singleShot(0, lambda: refocus(win))

    act.triggered.connect(run)
    if group is not None:
        group.addAction(act)
    if menu is not None:
        menu.addAction(act)
    win.addAction(act)
    return act


def build_menus(win) -> None:
    st, findings = win.state, win.state.findings
    mb = win.menuBar()
    f = mb.addMenu("&File")
    action(win, f, "Open folder…", win.choose_folder, "Ctrl+O")
    action(win, f, "Open files…", win.choose_files, "Ctrl+Shift+O")
    win.recent_menu = f.addMenu("Recent series")
    action(win, f, "Open a label mask over this series (NIfTI, NRRD)…",
           lambda: open_mask_task(win.ctx, parent=win), "Ctrl+Shift+M")
    win.mask_action = action(win, f, "Show the label mask", lambda on: st.mask.set_show(on), checkable=True)
    st.mask.changed.connect(lambda: (win.mask_action.setChecked(st.mask.show),
                                     win.mask_action.setEnabled(st.mask.array is not None)))
    win.mask_action.setEnabled(False)
    action(win, f, "Show problems", win.problems.show, keep_focus=True)
    f.addSeparator()
    action(win, f, "PACS: search and retrieve…", win.show_pacs, "Ctrl+Shift+P", keep_focus=True)
    action(win, f, "Export this study de-identified…", win.export_deidentified)
    action(win, f, "Save view as image…", win.save_view_image, "Ctrl+Shift+S")
    f.addSeparator()
    action(win, f, "Settings…", win.show_settings, "Ctrl+,")
    f.addSeparator()
    action(win, f, "Quit", win.close, "Ctrl+Q")

    e = mb.addMenu("&Edit")
    win.undo_action = action(win, e, "Undo", win.undo, "Ctrl+Z")
    win.redo_action = action(win, e, "Redo", win.redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
    e.addSeparator()
    action(win, e, "Find a study", win.find_study, "Ctrl+F", keep_focus=True)
    action(win, e, "Delete the selected measurement", lambda: st.delete_measurement(), "Del")

    v = mb.addMenu("&View")
    win.layout_actions = {}
    group = QActionGroup(win)
    for name in LAYOUTS:
        text = "Side by side 1×2 (drag a series to the right half)" if name == "1x2" else \
            f"Layout {name.replace('x', '×')}"
        win.layout_actions[name] = action(win, v, text, lambda _=False, n=name: win.set_layout(n),
                                          LAYOUT_KEYS[name], checkable=True, group=group)
        win.layout_actions[name].setIconText(name.replace("x", "×"))  # short on the toolbar
    win.sync_action = action(win, v, "Scroll side by side together (by patient position)", win.set_sync,
                             "Ctrl+L", checkable=True)
    win.sync_action.setIconText("Sync")
    win.reference_action = action(win, v, "Reference lines in 1×1 (where the other planes cut)",
                                  lambda on: win.viewer.set_reference_lines(on), "Shift+L", checkable=True)
    v.addSeparator()
    for name, key in (("axial", "A"), ("coronal", "C"), ("sagittal", "S")):
        action(win, v, f"{name.capitalize()} (1×1)", lambda _=False, n=name: win.show_plane(n), key)
    v.addSeparator()
    action(win, v, "Zoom to fit", lambda: win.viewer.active.fit(), "F")
    action(win, v, "Zoom 1:1 (one image pixel per screen pixel)", lambda: win.viewer.active.one_to_one(), "=")
    action(win, v, "Zoom in", lambda: win.viewer.active.zoom_by(1.25), "+")
    action(win, v, "Zoom out", lambda: win.viewer.active.zoom_by(0.8), "-")
    action(win, v, "Reset view (window, zoom, pan, invert)", win.reset_view, ["R", "Ctrl+R"])
    win.overlay_action = action(win, v, "Show text and measurements", win.toggle_overlays, "T",
                                checkable=True)
    win.overlay_action.setChecked(True)
    win.cine_action = action(win, v, "Cine (play slices)", win.toggle_cine, "Space", checkable=True)
    action(win, v, "Cine faster", lambda: win.cine_speed(1.25), "]")
    action(win, v, "Cine slower", lambda: win.cine_speed(0.8), "[")
    slab = v.addMenu("Thick slab (MIP / MinIP / average)")
    win.slab_actions = {}
    group = QActionGroup(win)
    for mode in SLAB_MODES:
        text = "Off (single plane)" if mode == "off" else f"{SLAB_NAMES[mode]} over the slab"
        win.slab_actions[mode] = action(win, slab, text, lambda _=False, m=mode: st.set_slab(m),
                                        checkable=True, group=group)
    action(win, slab, "Next slab mode (off, MIP, MinIP, average)", st.cycle_slab, "M")
    action(win, slab, "Thicker slab", lambda: st.slab_thicker(1.5), "Ctrl+]")
    action(win, slab, "Thinner slab", lambda: st.slab_thicker(1 / 1.5), "Ctrl+[")
    v.addSeparator()
    win.fullscreen_action = action(win, v, "Full screen", win.toggle_fullscreen, "F11", checkable=True)
    win.panels_action = action(win, v, "Hide panels", win.toggle_panels, "Tab", checkable=True)
    win.panels_menu = v.addMenu("Panels")
    for dock in win.panels.values():
        win.panels_menu.addAction(dock.toggleViewAction())

    w = mb.addMenu("&Window")
    for n, (name, preset) in enumerate(PRESETS.items(), start=1):
        action(win, w, f"{name}  (W {preset.width:.0f} / L {preset.center:.0f})",
               lambda _=False, p=preset: st.set_window(p), str(n))
    win.dicom_windows_menu = w.addMenu("Stored in the DICOM")
    action(win, w, "Default for this series", st.reset_window, "0")
    w.addSeparator()
    win.custom_menu = w.addMenu("Custom presets")
    action(win, w, "New custom preset…", win.new_custom_preset)
    w.addSeparator()
    win.invert_action = action(win, w, "Invert", lambda c: st.set_invert(c), "I", checkable=True)

    t = mb.addMenu("&Tools")
    win.tool_actions = {}
    group = QActionGroup(win)
    for tool, text, key in TOOLS:
        win.tool_actions[tool] = action(win, t, text, lambda _=False, x=tool: st.set_tool(x), key,
                                        checkable=True, group=group)
    win.tool_actions[st.tool].setChecked(True)

    a = mb.addMenu("&AI")
    action(win, a, "Detect lesions in this series", lambda: win.ai.detect(force=True), "D")
    action(win, a, "Cancel detection", win.ai.cancel)
    win.findings_action = action(win, a, "Show AI findings on the images", lambda on: findings.set_show(on),
                                 "Shift+F", checkable=True)
    win.findings_action.setChecked(True)
    win.heatmap_action = action(win, a, "Show the probability heatmap", lambda on: st.heatmap.set_show(on),
                                "Shift+H", checkable=True)
    st.heatmap.changed.connect(lambda: win.heatmap_action.setChecked(st.heatmap.show))
    a.addSeparator()
    action(win, a, "Next finding", lambda: findings.step(1), ".")
    action(win, a, "Previous finding", lambda: findings.step(-1), ",")
    for status, key in (("accepted", "Y"), ("rejected", "X")):
        action(win, a, f"{'Accept' if key == 'Y' else 'Reject'} the selected finding, go to the next",
               lambda _=False, s=status: findings.review_and_next(s), key)
    action(win, a, "Next in the review queue (the unreviewed finding the model is least sure of)",
           win.review_queue.step, "U")
    action(win, a, "Correct the selected finding's extent (a nodule label to drag)", win.ai.correct_extent,
           "Shift+E")
    action(win, a, "Confidence back to the model's operating point", win.findings.reset_threshold, "Ctrl+0")
    a.addSeparator()
    action(win, a, "Export findings as DICOM SR + SEG…", win.export_results)
    action(win, a, "Export findings as a NIfTI label map…",
           lambda: export_findings_mask_task(win.ctx, parent=win))
    action(win, a, "Send findings to PACS (SR + SEG)", win.send_results, keep_focus=True)

    h = mb.addMenu("&Help")
    action(win, h, "Keyboard and mouse…", win.show_help, "F1", keep_focus=True)
    action(win, h, "About medstation…", lambda: AboutDialog(win).exec())

    tb = win.addToolBar("Tools")
    tb.setObjectName("toolbar-main")
    for act in win.tool_actions.values():
        tb.addAction(act)
    tb.addSeparator()
    for act in win.layout_actions.values():
        tb.addAction(act)
    tb.addAction(win.sync_action)
    tb.addSeparator()
    build_slab_controls(win, tb)
    tb.addSeparator()
    tb.addAction(win.invert_action)
    for act, short in ((win.undo_action, "↶"), (win.redo_action, "↷")):
        act.setIconText(short)
        tb.addAction(act)
    disclaimer = QLabel("  Research software — not for clinical use  ", win)
    disclaimer.setStyleSheet("color: #e0a040;")
    disclaimer.setToolTip(DISCLAIMER)
    tb.addWidget(disclaimer)
    win.toolbar = tb


def build_slab_controls(win, tb) -> None:
    """The toolbar's slab mode and thickness, kept in step with the menu and the keys."""
    st = win.state
    win.slab_mode_box = box = QComboBox(win)
    for mode in SLAB_MODES:
        box.addItem("Slab off" if mode == "off" else SLAB_NAMES[mode], mode)
    box.setToolTip("Thick slab: MIP tells nodules from vessels, MinIP shows airways (M cycles)")
    win.slab_mm_box = mm = QDoubleSpinBox(win)
    mm.setRange(MIN_MM, MAX_MM)
    mm.setDecimals(1)
    mm.setSingleStep(1.0)
    mm.setSuffix(" mm")
    mm.setToolTip("Slab thickness (Ctrl+] thicker, Ctrl+[ thinner)")
    box.activated.connect(lambda i: st.set_slab(box.itemData(i)))
    mm.valueChanged.connect(lambda v: st.set_slab(None, v))

    def sync() -> None:
        for w in (box, mm):
            w.blockSignals(True)
        box.setCurrentIndex(SLAB_MODES.index(st.slab.mode))
        mm.setValue(st.slab.thickness_mm)
        for w in (box, mm):
            w.blockSignals(False)
        win.slab_actions[st.slab.mode].setChecked(True)

    st.slab_changed.connect(sync)
    sync()
    tb.addWidget(box)
    tb.addWidget(mm)
