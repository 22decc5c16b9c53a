"""Help (shortcuts), About (versions, disclaimer) and the non-modal problems list."""

from __future__ import annotations

import platform
from importlib import metadata

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from medstation import __version__
from medstation.core.errors import LoadError
from medstation.imaging import Window

DISCLAIMER = ("medstation is research software. Its built-in AI models are trained on synthetic "
              "data only and are NOT FOR CLINICAL USE: do not base a diagnosis on them.")

#: mouse conventions shown in the Help dialog next to the keyboard shortcuts of the actions
MOUSE_HELP = [
    ("Mouse wheel", "Previous / next slice"),
    ("Ctrl + wheel", "Zoom at the cursor"),
    ("Left-drag", "Current tool: window (horizontal) and level (vertical) by default; zoom, pan, "
                  "crosshair or a measurement"),
    ("Right-drag", "Zoom (drag up: in); changeable in Settings"),
    ("Middle-drag, Shift + left-drag", "Pan; changeable in Settings"),
    ("Click (MPR layouts)", "Move the crosshair there"),
    ("Click a measurement", "Select it; drag a handle to reshape it, the line to move it"),
    ("Drag a series from Studies", "Open it there (the right half in 1×2: side by side)"),
    ("Up / Down, PgUp / PgDn, Home / End", "Slice by 1, by 10, first / last"),
    ("Delete", "Delete the selected measurement"),
    ("Esc", "Stop drawing an angle; clear the selection"),
]


def _table(rows: list[tuple[str, ...]], headers: list[str], parent) -> QTableWidget:
    t = QTableWidget(len(rows), len(headers), parent)
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().hide()
    t.setEditTriggers(QTableWidget.NoEditTriggers)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            t.setItem(r, c, QTableWidgetItem(text))
    t.horizontalHeader().setSectionResizeMode(len(headers) - 1, QHeaderView.Stretch)
    t.resizeColumnsToContents()
    t.resizeRowsToContents()
    return t


class HelpDialog(QDialog):
    """Keyboard shortcuts (read from the window's actions, so they cannot drift) and mouse use."""

    def __init__(self, shortcuts: list[tuple[str, str]], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("medstation — keyboard and mouse")
        self.resize(620, 640)
        lay = QVBoxLayout(self)
        self.shortcuts = _table(sorted(shortcuts, key=lambda r: r[1]), ["Action", "Shortcut"], self)
        lay.addWidget(QLabel("<b>Keyboard</b>"))
        lay.addWidget(self.shortcuts, 2)
        lay.addWidget(QLabel("<b>Mouse and view keys</b>"))
        lay.addWidget(_table([(b, a) for b, a in MOUSE_HELP], ["Input", "Does"], self), 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)


def versions() -> dict[str, str]:
    out = {"medstation": __version__, "Python": platform.python_version(),
           "Qt": qVersion(), "PySide6": pyside_version}
    for dist in ("numpy", "pydicom", "SimpleITK", "torch", "torchvision"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


class AboutDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About medstation")
        lay = QVBoxLayout(self)
        rows = "".join(f"<tr><td>{k}</td><td>&nbsp;{v}</td></tr>" for k, v in versions().items())
        text = QLabel(f"<h2>medstation {__version__}</h2><p>A desktop radiology assistant: DICOM "
                      f"viewer with local AI.</p><p><b>{DISCLAIMER}</b></p><table>{rows}</table>"
                      "<p>Apache-2.0 licence.</p>", self)
        text.setWordWrap(True)
        text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(text)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)


class ProblemsDialog(QDialog):
    """Files that could not be read, each with its reason and what to do. Non-modal."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("medstation — files with problems")
        self.setModal(False)
        self.resize(900, 360)
        self.errors: list[LoadError] = []
        lay = QVBoxLayout(self)
        self.label = QLabel(self)
        lay.addWidget(self.label)
        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(["File", "Problem", "What to do"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        lay.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        copy = QPushButton("Copy all", self)
        copy.clicked.connect(self.copy)
        buttons.addButton(copy, QDialogButtonBox.ActionRole)
        buttons.rejected.connect(self.hide)
        lay.addWidget(buttons)

    def add(self, errors: list[LoadError], context: str) -> None:
        self.errors.extend(errors)
        for e in errors:
            r = self.table.rowCount()
            self.table.insertRow(r)
            for c, text in enumerate((e.file or "", e.reason, e.hint)):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeRowsToContents()
        self.label.setText(f"{context}: {len(errors)} file(s) could not be used "
                           f"({len(self.errors)} in this session). The rest was imported.")

    def copy(self) -> None:
        QApplication.clipboard().setText("\n".join(str(e) for e in self.errors))


class WindowDialog(QDialog):
    """A custom window/level preset: name, centre, width."""

    def __init__(self, window: Window, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Custom window")
        form = QFormLayout(self)
        self.name = QLineEdit("Custom", self)
        self.center = QDoubleSpinBox(self, minimum=-32768, maximum=65535, decimals=1, value=window.center)
        self.width = QDoubleSpinBox(self, minimum=1, maximum=65535, decimals=1, value=window.width)
        form.addRow("Name", self.name)
        form.addRow("Level (centre)", self.center)
        form.addRow("Window (width)", self.width)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def window(self) -> Window:
        return Window(self.center.value(), self.width.value(), self.name.text().strip() or "Custom")
