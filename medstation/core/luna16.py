"""LUNA16's annotation CSV: ``seriesuid,coordX,coordY,coordZ,diameter_mm``, patient mm (LPS).

The whole file is checked before anything is used: every bad row is reported
(``LabelError.rows``) with its line.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from medstation.core.errors import LabelError

COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


def read_luna16_rows(path: str | Path) -> list[tuple[int, str, tuple[float, float, float], float]]:
    """``(line, series UID, centre mm, diameter mm)`` per row; ``LabelError`` naming every bad row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the annotations ({exc.strerror})",
                         "check the path and its permissions") from None
    except UnicodeDecodeError:
        raise LabelError(f"{path}: not a text file", "use a LUNA16 CSV (UTF-8 text)") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise LabelError(f"{path}: empty annotation file", f"the first line must name {','.join(COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise LabelError(f"{path}: the header lacks {', '.join(missing)} (it has {', '.join(header)})",
                         f"use LUNA16's columns: {','.join(COLUMNS)}")
    at = {c: header.index(c) for c in COLUMNS}
    out = []
    problems: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(v.strip() for v in row):
            continue
        try:
            uid = row[at["seriesuid"]].strip()
            values = [float(row[at[c]]) for c in COLUMNS[1:]]
        except (IndexError, ValueError):
            problems.append(f"{path}:{line}: expected a series UID and four numbers, got {','.join(row)}")
            continue
        if not uid:
            problems.append(f"{path}:{line}: no series UID")
            continue
        if not all(math.isfinite(v) for v in values) or values[3] <= 0:
            problems.append(f"{path}:{line}: coordinates must be finite and the diameter above 0 mm")
            continue
        out.append((line, uid, (values[0], values[1], values[2]), values[3]))
    if problems:
        raise LabelError(f"{path}: {len(problems)} bad row(s); nothing was used: {problems[0]}",
                         "fix or remove the rows listed", problems)
    return out
