"""``import``: index folders, files, DICOMDIRs and zips into the study database.

Idempotent (unchanged files are skipped) and kill-safe: files are scanned and
committed in chunks, each chunk one transaction, so a kill loses at most the
chunk in flight and the next import picks up from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from medstation.core.errors import LoadError
from medstation.dicom._pool import WorkerPool
from medstation.dicom.database import StudyDatabase
from medstation.dicom.loader import scan
from medstation.dicom.sources import collect

CHUNK = 256


@dataclass
class ImportReport:
    files: int = 0
    added: int = 0
    unchanged: int = 0
    skipped: int = 0  # not DICOM
    errors: list[LoadError] = field(default_factory=list)
    #: series UID -> number of instances, for every series the imported files belong to
    series: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"files": self.files, "added": self.added, "unchanged": self.unchanged,
                "skipped_not_dicom": self.skipped, "errors": [e.to_dict() for e in self.errors],
                "series": dict(self.series)}


def import_paths(
    db: StudyDatabase,
    inputs: Iterable[str | Path],
    pool: WorkerPool,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ImportReport:
    inputs = [str(p) for p in inputs]
    db.index.add_roots([p for p in inputs if Path(p).exists()])
    found = collect(inputs, extract_dir=db.path.parent / "extracted")
    report = ImportReport(files=len(found.files), errors=list(found.errors))
    unchanged = db.index.unchanged(found.files)
    report.unchanged = len(unchanged)
    todo = [f for f in found.files if f not in unchanged]
    done = len(unchanged)
    if progress:
        progress(done, len(found.files))
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        result = scan(chunk, pool, cancel=cancel)
        report.added += db.index.add(result.headers, result.errors + result.skipped)
        report.skipped += len(result.skipped)
        report.errors += result.errors
        done += len(chunk)
        if progress:
            progress(done, len(found.files))
    report.series = db.index.series_of_files(found.files)
    return report


def rebuild(db: StudyDatabase, pool: WorkerPool, **kwargs) -> ImportReport:
    """Re-import every folder the database has seen (after it was found damaged)."""
    roots = [r for r in db.index.roots() if Path(r).exists()]
    return import_paths(db, roots, pool, **kwargs)
