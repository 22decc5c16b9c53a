"""Writing a pydicom dataset as a DICOM file, atomically."""

from __future__ import annotations

import io
from pathlib import Path

from pydicom import Dataset

from medstation.core.files import atomic_write_bytes


def write_dataset(ds: Dataset, path: str | Path) -> None:
    """Encode ``ds`` as a DICOM Part 10 file and put it at ``path`` in one atomic step."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue())
