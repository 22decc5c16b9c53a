"""Reference annotations for evaluation on any labelled studies: LUNA16's CSV (``core.luna16``)."""

from __future__ import annotations

from pathlib import Path

from medstation.core.luna16 import COLUMNS, read_luna16_rows
from medstation.training.metrics import Reference

__all__ = ["COLUMNS", "read_luna16_csv"]


def read_luna16_csv(path: str | Path) -> dict[str, list[Reference]]:
    """Per series UID, its nodules; ``LabelError`` (every bad row named) if any row is bad."""
    out: dict[str, list[Reference]] = {}
    for _line, uid, centre, diameter in read_luna16_rows(path):
        out.setdefault(uid, []).append(Reference(centre, diameter))
    return out
