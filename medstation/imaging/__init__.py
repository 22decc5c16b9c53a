"""Display-side image maths with no Qt: window/level, MPR planes, measurements."""

from medstation.imaging.measure import KINDS, Measurement, RoiStats, angle_deg, length_mm, roi_stats
from medstation.imaging.mpr import Plane, orientation_label, planes_for
from medstation.imaging.slab import SLAB_MODES, Slab, slab_image, slab_range
from medstation.imaging.window import PRESETS, Window, default_window, render

__all__ = ["KINDS", "Measurement", "PRESETS", "Plane", "RoiStats", "SLAB_MODES", "Slab", "Window",
           "angle_deg", "default_window", "length_mm", "orientation_label", "planes_for", "render",
           "roi_stats", "slab_image", "slab_range"]
