"""A label mask drawn over the views (a NIfTI / NRRD / MetaImage label map resampled onto the shown
series): one colour per structure value, its own opacity, cleared with the series."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

#: structure colours (value 1, 2, ...; repeating), as Slicer's and ITK-SNAP's first label colours
PALETTE = np.array([(80, 200, 120), (230, 90, 90), (90, 140, 240), (240, 200, 60), (200, 110, 220),
                    (70, 210, 210), (240, 150, 70), (160, 200, 80)], np.uint8)


class MaskLayer(QObject):
    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.array: np.ndarray | None = None  # (k, i, j) on the shown volume's grid
        self.name = ""
        self.values: list[int] = []
        self.show = True
        self.opacity = 0.45

    def set_mask(self, array: np.ndarray, name: str) -> None:
        self.array = array
        self.name = name
        self.values = [int(v) for v in np.unique(array) if v]
        self.show = True
        self.changed.emit()

    def clear(self) -> None:
        if self.array is not None:
            self.array, self.name, self.values = None, "", []
            self.changed.emit()

    def set_show(self, show: bool) -> None:
        if bool(show) != self.show:
            self.show = bool(show)
            self.changed.emit()

    @staticmethod
    def rgba(values: np.ndarray) -> np.ndarray:
        """A plane of structure values as RGBA: each value its palette colour, background clear."""
        out = np.zeros(values.shape + (4,), np.uint8)
        inside = values > 0
        out[inside, :3] = PALETTE[(values[inside].astype(np.int64) - 1) % len(PALETTE)]
        out[inside, 3] = 255
        return out
