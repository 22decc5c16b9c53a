"""The viewer model: what the three plane views show, with one signal per field.

The state has no widgets; views and panels subscribe to the signals of the fields they
draw and never own the state. Unlike napari's evented ``ViewerModel``, assigning an
attribute emits nothing: fields change through the methods (``set_position``,
``set_window``, ``set_slab``, ``set_measurements``, ...), and each emits its signal:

=========================  =====================================================
signal                     emitted when
=========================  =====================================================
``volume_changed``         a new series is shown (volume, planes, info, ``ref``)
``data_changed``           more slices of the shown series arrived
``position_changed``       the cursor moved (``position``, a fractional index)
``centre_requested``       the views should centre on the cursor
``window_changed``         window/level or invert changed
``slab_changed``           the thick slab changed (MIP / MinIP / average, its mm)
``tool_changed``           the mouse tool changed
``measurements_changed``   measurements added, edited, removed or selected
``layers_changed``         an overlay layer changed (AI findings: items, threshold,
                           selection, visibility, opacity)
=========================  =====================================================

Overlay layers live in ``layers`` by name; the AI findings are ``findings``
(a :class:`~medstation.gui.findings_model.FindingsModel`), the probability map ``heatmap`` and
an opened label mask ``mask``. A new overlay (a
follow-up track, a segmentation) is one more layer whose changes are forwarded
to ``layers_changed``.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from medstation.core.series import SeriesRef
from medstation.core.volume import Volume
from medstation.imaging import SLAB_MODES, Measurement, Slab, Window, default_window, planes_for
from medstation.imaging.mpr import Plane
from medstation.imaging.slab import MAX_MM, MIN_MM

from .findings_model import FindingsModel, HeatmapLayer
from .history import History
from .mask_layer import MaskLayer

#: left-button tools: window/level, zoom, pan, crosshair, and the measurements
TOOLS = ("window", "zoom", "pan", "navigate", "length", "rect", "ellipse", "angle", "nodule")
#: what the right and middle buttons do (the left button does the current tool), as in
#: RadiAnt, Horos and OHIF: left W/L, right zoom, middle pan; changed in Settings
DEFAULT_BINDINGS = {"right": "zoom", "middle": "pan"}
DRAG_ROLES = ("window", "zoom", "pan", "navigate")


class ViewState(QObject):
    """The viewer model (see the module docstring for its signals)."""

    volume_changed = Signal()
    data_changed = Signal()
    position_changed = Signal()
    centre_requested = Signal()
    window_changed = Signal()
    slab_changed = Signal()
    tool_changed = Signal()
    measurements_changed = Signal()
    layers_changed = Signal()
    #: a measurement was added or edited (the window saves it) / deleted
    measurement_edited = Signal(object)
    measurement_deleted = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.volume: Volume | None = None
        self.planes: dict[str, Plane] = {}
        self.ready: np.ndarray | None = None  # per slice (index axis 0): arrived yet
        self.info: dict[str, str] = {}  # patient, study, series text for the corners
        self.ref: SeriesRef | None = None
        self.position = np.zeros(3)  # cursor, fractional volume index (k, i, j)
        self.window = Window(40, 400, "Mediastinum")
        self.invert = False
        self.slab = Slab()  # kept across series, as RadiAnt keeps it; the corner text says it
        self.measurements: list[Measurement] = []
        self.selected: Measurement | None = None
        self.tool = "window"
        self.bindings = dict(DEFAULT_BINDINGS)
        self.data_version = 0  # bumped when voxels change (slices arriving)
        #: what an empty view says (the window says which: open a folder, or pick a listed series)
        self.empty_hint = "Open a study: File ▸ Open folder, or drop a folder here"
        self.history = History(self)
        self.findings = FindingsModel(self)
        self.layers: dict[str, QObject] = {}
        self.add_layer("findings", self.findings)
        self.heatmap = HeatmapLayer(self)
        self.add_layer("heatmap", self.heatmap)
        self.mask = MaskLayer(self)  # a label mask (NIfTI / NRRD) over the views
        self.add_layer("mask", self.mask)

    def add_layer(self, name: str, layer: QObject) -> None:
        """Register an overlay layer; its ``changed`` signal repaints the views."""
        self.layers[name] = layer
        layer.changed.connect(self.layers_changed)

    @property
    def series_key(self) -> str:
        """The database key of the shown series (``""`` when none)."""
        return self.ref.key if self.ref is not None else ""

    # -- volume ---------------------------------------------------------------
    def set_volume(self, volume: Volume | None, ready: np.ndarray | None = None,
                   info: dict | None = None, ref: SeriesRef | None = None) -> None:
        self.volume = volume
        self.planes = planes_for(volume) if volume is not None else {}
        self.ready = ready
        self.info = dict(info or {})
        self.ref = ref
        self.measurements = []
        self.selected = None
        self.data_version += 1
        if volume is not None:
            self.position = (np.asarray(volume.shape[:3], float) - 1) / 2
            self.position[0] = (volume.shape[0] - 1) // 2
        self.findings.clear()
        self.heatmap.clear()
        self.mask.clear()
        self.history.clear()
        self.volume_changed.emit()

    def reset_window(self) -> None:
        if self.volume is not None:
            self.window = default_window(self.volume, int(round(self.position[0])))
            self.invert = False
        self.window_changed.emit()

    @property
    def monochrome1(self) -> bool:
        return self.volume is not None and self.volume.photometric == "MONOCHROME1"

    @property
    def display_inverted(self) -> bool:
        """MONOCHROME1 is stored inverted: its display is inverted unless the user inverts back."""
        return self.invert != self.monochrome1

    def data_arrived(self) -> None:
        self.data_version += 1
        self.data_changed.emit()

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
            self.position_changed.emit()

    def depth(self, plane: Plane) -> int:
        return int(round(self.position[plane.axis]))

    def step(self, plane: Plane, delta: int) -> None:
        pos = self.position.copy()
        pos[plane.axis] = min(max(round(pos[plane.axis]) + delta, 0), plane.depth - 1)
        self.set_position(pos)

    # -- window ---------------------------------------------------------------
    def set_window(self, window: Window) -> None:
        self.window = Window(float(window.center), max(1.0, float(window.width)), window.name)
        self.window_changed.emit()

    def set_invert(self, invert: bool) -> None:
        self.invert = bool(invert)
        self.window_changed.emit()

    # -- thick slab -------------------------------------------------------------
    def set_slab(self, mode: str | None = None, thickness_mm: float | None = None) -> None:
        """Project every view over a slab (``mode`` one of ``SLAB_MODES``; ``None`` keeps it)."""
        mode = self.slab.mode if mode is None else mode
        mm = self.slab.thickness_mm if thickness_mm is None else float(thickness_mm)
        slab = Slab(mode, min(max(mm, MIN_MM), MAX_MM))
        if slab != self.slab:
            self.slab = slab
            self.slab_changed.emit()

    def cycle_slab(self) -> None:
        """Off -> MIP -> MinIP -> average -> off (the M key)."""
        self.set_slab(SLAB_MODES[(SLAB_MODES.index(self.slab.mode) + 1) % len(SLAB_MODES)])

    def slab_thicker(self, factor: float) -> None:
        """Thicken (``factor`` > 1) or thin the slab; with no slab, a MIP of the current thickness."""
        if not self.slab.active:
            self.set_slab("mip")
        else:
            self.set_slab(None, round(self.slab.thickness_mm * factor, 1))

    # -- tools and measurements ---------------------------------------------------
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool
        self.tool_changed.emit()

    def set_bindings(self, right: str, middle: str) -> None:
        """What right-drag and middle-drag do: one of ``DRAG_ROLES``."""
        for b in (right, middle):
            if b not in DRAG_ROLES:
                raise ValueError(f"unknown mouse binding {b!r}; one of {', '.join(DRAG_ROLES)}")
        self.bindings = {"right": right, "middle": middle}

    def set_measurements(self, items: list[Measurement]) -> None:
        self.measurements = list(items)
        self.selected = None
        self.measurements_changed.emit()

    def add_measurement(self, m: Measurement) -> None:
        self.measurements.append(m)
        self.selected = m
        self.measurement_edited.emit(m)
        self.measurements_changed.emit()
        self.history.record(f"draw {m.kind}", lambda: self.delete_measurement(m),
                            lambda: self.add_measurement(m))

    def centre_on(self, index) -> None:
        """Move the cursor to ``index``; views where it is off-screen pan to show it (zoom kept)."""
        self.set_position(index)
        self.centre_requested.emit()

    def edited(self, m: Measurement, before: list | None = None) -> None:
        """``m`` was changed (its points were ``before``: recorded for undo)."""
        self.measurement_edited.emit(m)
        self.measurements_changed.emit()
        if before is not None and list(before) != list(m.points):
            after = list(m.points)

            def put(points):
                def apply():
                    m.points[:] = points
                    self.edited(m)
                return apply

            self.history.record(f"edit {m.kind}", put(list(before)), put(after))

    def delete_measurement(self, m: Measurement | None = None) -> None:
        m = m or self.selected
        if m is None or m not in self.measurements:
            return
        self.measurements.remove(m)
        if self.selected is m:
            self.selected = None
        self.measurement_deleted.emit(m)
        self.measurements_changed.emit()
        self.history.record(f"delete {m.kind}", lambda: self.add_measurement(m),
                            lambda: self.delete_measurement(m))

    def select(self, m: Measurement | None) -> None:
        self.selected = m
        self.measurements_changed.emit()

    def plane_of_axis(self, axis: int) -> Plane | None:
        return next((p for p in self.planes.values() if p.axis == axis), None)
