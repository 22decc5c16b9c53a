"""Window/level: stored values (HU for CT) -> 8-bit display grey levels.

The mapping is the DICOM linear VOI function (PS3.3 C.11.2.1.2). Signed 16-bit
slices go through a 65536-entry lookup table built once per window, which is
several times faster than arithmetic on every pixel; other types are computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medstation.core.volume import Volume


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    name: str = "custom"

    @property
    def bounds(self) -> tuple[float, float]:
        """Values at or below ``low`` are black, above ``high`` white."""
        c, w = self.center, max(self.width, 1.0)
        return c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2


#: Standard CT presets (centre, width) in HU, as radiologists know them.
PRESETS: dict[str, Window] = {w.name: w for w in (
    Window(-600, 1500, "Lung"),
    Window(40, 400, "Mediastinum"),
    Window(400, 1800, "Bone"),
    Window(40, 80, "Brain"),
    Window(50, 400, "Abdomen"),
    Window(60, 160, "Liver"),
)}

_INT16_VALUES = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.float32)


def _linear(values: np.ndarray, window: Window, invert: bool) -> np.ndarray:
    c, w = window.center, max(window.width, 1.0)
    scaled = ((values - (c - 0.5)) / max(w - 1, 1e-6) + 0.5) * 255.0
    out = np.clip(scaled, 0, 255)
    if invert:
        out = 255.0 - out
    return (out + 0.5).astype(np.uint8)


class _LutCache:
    """The last int16 lookup table, rebuilt only when the window changes."""

    key: tuple | None = None
    lut: np.ndarray | None = None


_lut_cache = _LutCache()


def int16_lut(window: Window, invert: bool = False) -> np.ndarray:
    key = (window.center, window.width, invert)
    if _lut_cache.key != key:
        _lut_cache.lut = _linear(_INT16_VALUES, window, invert)
        _lut_cache.key = key
    assert _lut_cache.lut is not None
    return _lut_cache.lut


def render(pixels: np.ndarray, window: Window, invert: bool = False,
           out: np.ndarray | None = None) -> np.ndarray:
    """Grey levels (uint8, same shape) of a 2D slice, or RGB bytes of a colour slice.

    Colour slices (..., 3) are shown as stored (uint16 scaled to 8 bits); the
    window does not apply to them.
    """
    if pixels.ndim == 3:
        if pixels.dtype == np.uint8:
            rgb = pixels
        else:
            top = max(float(pixels.max()), 1.0)
            rgb = (pixels.astype(np.float32) * (255.0 / top)).astype(np.uint8)
        return 255 - rgb if invert else np.ascontiguousarray(rgb)
    if pixels.dtype == np.int16:
        lut = int16_lut(window, invert)
        if out is None:
            out = np.empty(pixels.shape, np.uint8)
        np.take(lut, pixels.view(np.uint16), out=out)
        return out
    return _linear(pixels.astype(np.float32, copy=False), window, invert)


def default_window(volume: Volume, k: int | None = None) -> Window:
    """The first window stored in the DICOM, else one spanning the slice's values.

    The fallback uses the 1st and 99th percentiles of slice ``k`` (the middle
    one by default), so one bright pixel does not wash out an MR image.
    """
    if volume.windows:
        c, w, name = volume.windows[0]
        if w > 0:
            return Window(float(c), float(w), name or "DICOM")
    if k is None:
        k = volume.shape[0] // 2
    sl = volume.voxels[k]
    if sl.ndim == 3:
        return Window(127.5, 256.0, "full range")
    sample = sl[:: max(1, sl.shape[0] // 128), :: max(1, sl.shape[1] // 128)]
    lo, hi = (float(v) for v in np.percentile(sample, [1, 99]))
    if hi <= lo:
        lo, hi = float(sl.min()), float(sl.max())
    if hi <= lo:
        hi = lo + 1.0
    return Window((lo + hi) / 2, hi - lo, "auto")
