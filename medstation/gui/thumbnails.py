"""Series thumbnails for the study browser: the middle slice, windowed and shrunk."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from medstation.core.series import SeriesRef
from medstation.dicom.database import StudyDatabase
from medstation.imaging import default_window, render


def thumbnail_pixels(db: StudyDatabase, pool, series_uid: str, size: int = 56) -> np.ndarray:
    """The middle slice, windowed and shrunk to about ``size`` pixels (uint8, grey or RGB)."""
    from medstation.dicom.opening import open_series, resolve_series  # pydicom: off the first window

    stack = resolve_series(SeriesRef.parse(series_uid), db=db).stack
    mid = stack.slices[len(stack.slices) // 2]
    one = dataclasses.replace(stack, slices=[mid], slice_positions=None, warnings=[])
    opened = open_series(one, pool=pool)  # the one way to a Volume, a one-slice stack here
    if opened.errors:
        raise opened.errors[0]
    vol = opened.volume
    img = render(vol.voxels[0], default_window(vol, 0), vol.photometric == "MONOCHROME1")
    step = max(1, int(np.ceil(max(img.shape[:2]) / size)))
    return np.ascontiguousarray(img[::step, ::step])


def thumbnail_path(data_dir: Path, series_uid: str) -> Path:
    return data_dir / "thumbnails" / (hashlib.sha1(series_uid.encode()).hexdigest()[:20] + ".png")
