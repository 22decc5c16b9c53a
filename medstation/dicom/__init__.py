"""DICOM: header scan, study database, safe loader, series assembly.

Open a series with :func:`open_series` (a path or a ``SeriesRef`` in, a
``Volume`` out) and list what a path holds with :func:`list_series`; nothing
else in medstation chains scan -> assemble -> load by hand.

The names below load on first use (PEP 562, as SciPy and scikit-image do): the first window
reads the study database without importing pydicom and its decoders (about 0.16 s); the first
series opened pulls them in. No submodule may be named like a name here (importing a submodule
binds its name on the package, over the lazy one): ``tests/dicom/test_lazy_package.py`` checks.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports below are for type checkers only)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOME = {
    "WorkerPool": "_pool",
    "StudyDatabase": "database", "default_db_path": "database",
    "InstanceHeader": "header", "NotDicomError": "header",
    "ImportReport": "importer", "import_paths": "importer", "rebuild": "importer",
    "LoadJob": "loader", "LoadResult": "loader", "ScanResult": "loader", "load_stack": "loader",
    "middle_out": "loader", "scan": "loader",
    "OpenedSeries": "opening", "ResolvedSeries": "opening", "SeriesListing": "opening",
    "list_series": "opening", "open_series": "opening", "resolve_series": "opening", "stack_ref": "opening",
    "scan_file": "file_header",
    "SeriesStack": "series", "SliceRef": "series", "assemble": "series",
    "collect": "sources",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


if TYPE_CHECKING:  # for type checkers and editors: the names as plain imports
    from medstation.dicom._pool import WorkerPool
    from medstation.dicom.database import StudyDatabase, default_db_path
    from medstation.dicom.file_header import scan_file
    from medstation.dicom.header import InstanceHeader, NotDicomError
    from medstation.dicom.importer import ImportReport, import_paths, rebuild
    from medstation.dicom.loader import LoadJob, LoadResult, ScanResult, load_stack, middle_out, scan
    from medstation.dicom.opening import (
        OpenedSeries,
        ResolvedSeries,
        SeriesListing,
        list_series,
        open_series,
        resolve_series,
        stack_ref,
    )
    from medstation.dicom.series import SeriesStack, SliceRef, assemble
    from medstation.dicom.sources import collect
