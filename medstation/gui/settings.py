"""The Settings dialog: mouse bindings, AI auto-run and device, default layout, cine speed.

Values live in ``settings.ini`` (the context's QSettings); ``apply_settings`` puts them into the
view model and the window at start and when the dialog is accepted.
"""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QSpinBox

from .state import DRAG_ROLES, TOOLS

ROLE_NAMES = {"window": "Window / level", "zoom": "Zoom", "pan": "Pan", "navigate": "Crosshair"}
DEVICES = ("auto", "cpu", "cuda", "mps")


def read(settings, key: str, default, kind=str):
    value = settings.value(key, default)
    try:
        if kind is bool:
            return str(value).lower() in ("1", "true", "yes")
        return kind(value)
    except (TypeError, ValueError):
        return default


class SettingsDialog(QDialog):
    def __init__(self, settings, layouts, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        form = QFormLayout(self)
        self.tool = QComboBox(self)
        for t in TOOLS:
            self.tool.addItem(ROLE_NAMES.get(t, t.capitalize()), t)
        self.right = QComboBox(self)
        self.middle = QComboBox(self)
        for box in (self.right, self.middle):
            for r in DRAG_ROLES:
                box.addItem(ROLE_NAMES[r], r)
        self.auto = QCheckBox("Run the detector when a series opens", self)
        self.device = QComboBox(self)
        self.device.addItems(DEVICES)
        self.layout_box = QComboBox(self)
        self.layout_box.addItems(list(layouts))
        self.cine = QSpinBox(self, minimum=1, maximum=60, suffix=" images/s")
        s = settings
        self.tool.setCurrentIndex(max(0, self.tool.findData(read(s, "mouse/left_tool", "window"))))
        self.right.setCurrentIndex(max(0, self.right.findData(read(s, "mouse/right", "zoom"))))
        self.middle.setCurrentIndex(max(0, self.middle.findData(read(s, "mouse/middle", "pan"))))
        self.auto.setChecked(read(s, "ai/auto_detect", True, bool))
        self.device.setCurrentText(read(s, "ai/device", "auto"))
        self.layout_box.setCurrentText(read(s, "viewer/default_layout", "1x1"))
        self.cine.setValue(read(s, "viewer/cine_fps", 15, int))
        form.addRow("Left button (default tool)", self.tool)
        form.addRow("Right-drag", self.right)
        form.addRow("Middle-drag", self.middle)
        form.addRow("AI", self.auto)
        form.addRow("AI device (next start)", self.device)
        form.addRow("Layout for a new series", self.layout_box)
        form.addRow("Cine speed", self.cine)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def accept(self) -> None:
        s = self.settings
        s.setValue("mouse/left_tool", self.tool.currentData())
        s.setValue("mouse/right", self.right.currentData())
        s.setValue("mouse/middle", self.middle.currentData())
        s.setValue("ai/auto_detect", "true" if self.auto.isChecked() else "false")
        s.setValue("ai/device", self.device.currentText())
        s.setValue("viewer/default_layout", self.layout_box.currentText())
        s.setValue("viewer/cine_fps", self.cine.value())
        s.sync()
        super().accept()


def apply_settings(settings, state) -> None:
    """Mouse bindings and the default tool from ``settings`` into the view model."""
    right, middle = read(settings, "mouse/right", "zoom"), read(settings, "mouse/middle", "pan")
    state.set_bindings(right if right in DRAG_ROLES else "zoom", middle if middle in DRAG_ROLES else "pan")
    tool = read(settings, "mouse/left_tool", "window")
    state.set_tool(tool if tool in TOOLS else "window")
