"""Work the window hands to background tasks: preparing a series, thumbnails, the demo study."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from medstation.core.errors import LoadError
from medstation.dicom.database import StudyDatabase
from medstation.dicom.loader import load_stack
from medstation.dicom.series import SeriesStack, assemble
from medstation.imaging import default_window, render


def series_key(stack: SeriesStack) -> str:
    """The key measurements are kept under: the series UID, plus the part of a split series."""
    return stack.series_uid + (f"#{stack.part}" if stack.part else "")


def prepare_series(db: StudyDatabase, series_uid: str) -> tuple[SeriesStack, list[SeriesStack], dict]:
    """The stack to show (the largest part of the series), all parts, and the corner-text info."""
    headers = db.series_headers(series_uid)
    if not headers:
        raise LoadError(None, f"series {series_uid} has no readable files in the study database",
                        "the files may have moved: import their folder again")
    stacks = assemble(headers)
    if not stacks:
        raise LoadError(headers[0].path, "no image slices in this series",
                        "it may hold only non-image objects (SR, presentation states)")
    stack = max(stacks, key=lambda s: len(s.slices))
    h = stack.first
    date = h.study_date
    info = {
        "patient": h.patient_name.replace("^", " ").strip(),
        "patient_id": h.patient_id,
        "study": (f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else date)
        + (f"  {h.study_description}" if h.study_description else ""),
        "series": f"{h.modality} #{h.series_number if h.series_number is not None else '-'} "
                  f"{h.series_description}".strip(),
    }
    return stack, stacks, info


def thumbnail_pixels(db: StudyDatabase, pool, series_uid: str, size: int = 56) -> np.ndarray:
    """The middle slice, windowed and shrunk to about ``size`` pixels (uint8, grey or RGB)."""
    stack, _parts, _info = prepare_series(db, series_uid)
    mid = stack.slices[len(stack.slices) // 2]
    one = dataclasses.replace(stack, slices=[mid], slice_positions=None, warnings=[])
    result = load_stack(one, pool)
    if result.errors:
        raise result.errors[0]
    vol = result.volume
    img = render(vol.voxels[0], default_window(vol, 0), vol.photometric == "MONOCHROME1")
    step = max(1, int(np.ceil(max(img.shape[:2]) / size)))
    return np.ascontiguousarray(img[::step, ::step])


def thumbnail_path(data_dir: Path, series_uid: str) -> Path:
    return data_dir / "thumbnails" / (hashlib.sha1(series_uid.encode()).hexdigest()[:20] + ".png")
