"""What the viewer shows, shared by the three plane views: volume, cursor, window, measurements.

The views subscribe to ``changed(what)`` and never own this state (napari's
split of a viewer model from its Qt views).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from medstation.core.findings import Finding
from medstation.core.volume import Volume
from medstation.imaging import Measurement, Window, default_window, planes_for
from medstation.imaging.mpr import Plane

TOOLS = ("navigate", "length", "rect", "ellipse", "angle")


class ViewState(QObject):
    """The viewer model. ``changed`` carries what changed: volume, position, window,
    data (more slices arrived), measurements, tool, selection, findings, overlay (drawing only)."""

    changed = Signal(str)
    #: a measurement was added or edited (the window saves it) / deleted
    measurement_edited = Signal(object)
    measurement_deleted = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.volume: Volume | None = None
        self.planes: dict[str, Plane] = {}
        self.ready: np.ndarray | None = None  # per slice (index axis 0): arrived yet
        self.info: dict[str, str] = {}  # patient, study, series text for the corners
        self.series_key = ""
        self.position = np.zeros(3)  # cursor, fractional volume index (k, i, j)
        self.window = Window(40, 400, "Mediastinum")
        self.invert = False
        self.measurements: list[Measurement] = []
        self.selected: Measurement | None = None
        self.tool = "navigate"
        self.data_version = 0  # bumped when voxels change (slices arriving)
        # AI findings of the open series
        self.findings: list[Finding] = []
        self.finding_threshold = 0.5
        self.show_findings = True
        self.findings_opacity = 0.9
        self.selected_finding: Finding | None = None

    # -- volume ---------------------------------------------------------------
    def set_volume(self, volume: Volume | None, ready: np.ndarray | None = None,
                   info: dict | None = None, series_key: str = "") -> None:
        self.volume = volume
        self.planes = planes_for(volume) if volume is not None else {}
        self.ready = ready
        self.info = dict(info or {})
        self.series_key = series_key
        self.measurements = []
        self.selected = None
        self.findings = []
        self.selected_finding = None
        self.data_version += 1
        if volume is not None:
            self.position = (np.asarray(volume.shape[:3], float) - 1) / 2
            self.position[0] = (volume.shape[0] - 1) // 2
        self.changed.emit("volume")

    def reset_window(self) -> None:
        if self.volume is not None:
            self.window = default_window(self.volume, int(round(self.position[0])))
            self.invert = False
        self.changed.emit("window")

    @property
    def monochrome1(self) -> bool:
        return self.volume is not None and self.volume.photometric == "MONOCHROME1"

    @property
    def display_inverted(self) -> bool:
        """MONOCHROME1 is stored inverted: its display is inverted unless the user inverts back."""
        return self.invert != self.monochrome1

    def data_arrived(self) -> None:
        self.data_version += 1
        self.changed.emit("data")

    def slice_ready(self, plane: Plane, depth: int) -> bool:
        if self.ready is None:
            return True
        if plane.axis == 0:
            return bool(self.ready[int(depth)])
        return bool(self.ready.any())

    # -- cursor ---------------------------------------------------------------
    def set_position(self, index) -> None:
        if self.volume is None:
            return
        top = np.asarray(self.volume.shape[:3], float) - 1
        pos = np.clip(np.asarray(index, float), 0, top)
        if not np.allclose(pos, self.position):
            self.position = pos
            self.changed.emit("position")

    def depth(self, plane: Plane) -> int:
        return int(round(self.position[plane.axis]))

    def step(self, plane: Plane, delta: int) -> None:
        pos = self.position.copy()
        pos[plane.axis] = min(max(round(pos[plane.axis]) + delta, 0), plane.depth - 1)
        self.set_position(pos)

    # -- window ---------------------------------------------------------------
    def set_window(self, window: Window) -> None:
        self.window = Window(float(window.center), max(1.0, float(window.width)), window.name)
        self.changed.emit("window")

    def set_invert(self, invert: bool) -> None:
        self.invert = bool(invert)
        self.changed.emit("window")

    # -- tools and measurements ---------------------------------------------------
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool
        self.changed.emit("tool")

    def set_measurements(self, items: list[Measurement]) -> None:
        self.measurements = list(items)
        self.selected = None
        self.changed.emit("measurements")

    def add_measurement(self, m: Measurement) -> None:
        self.measurements.append(m)
        self.selected = m
        self.measurement_edited.emit(m)
        self.changed.emit("measurements")

    def edited(self, m: Measurement) -> None:
        self.measurement_edited.emit(m)
        self.changed.emit("measurements")

    def delete_measurement(self, m: Measurement | None = None) -> None:
        m = m or self.selected
        if m is None or m not in self.measurements:
            return
        self.measurements.remove(m)
        if self.selected is m:
            self.selected = None
        self.measurement_deleted.emit(m)
        self.changed.emit("measurements")

    def select(self, m: Measurement | None) -> None:
        self.selected = m
        self.changed.emit("selection")

    def plane_of_axis(self, axis: int) -> Plane | None:
        return next((p for p in self.planes.values() if p.axis == axis), None)

    # -- AI findings ----------------------------------------------------------------
    def set_findings(self, items: list[Finding]) -> None:
        self.findings = sorted(items, key=lambda f: -f.score)
        if self.selected_finding not in self.findings:
            self.selected_finding = None
        self.changed.emit("findings")

    def visible_findings(self) -> list[Finding]:
        """Findings at or above the confidence threshold (rejected ones included: drawn dimmed)."""
        return [f for f in self.findings if f.score >= self.finding_threshold]

    def set_finding_threshold(self, value: float) -> None:
        self.finding_threshold = float(min(max(value, 0.0), 1.0))
        self.changed.emit("findings")

    def set_show_findings(self, on: bool) -> None:
        self.show_findings = bool(on)
        self.changed.emit("findings")

    def set_findings_opacity(self, value: float) -> None:
        self.findings_opacity = float(min(max(value, 0.05), 1.0))
        self.changed.emit("overlay")  # views repaint; the findings list stays as it is

    def select_finding(self, f: Finding | None, jump: bool = True) -> None:
        """Select ``f``; ``jump`` moves the cursor to its centre (the views centre on it)."""
        self.selected_finding = f
        if f is not None and jump:
            self.set_position(f.center_voxel)
            self.changed.emit("centre")
        self.changed.emit("findings")
