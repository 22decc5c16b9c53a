"""DICOM: header scan, study database, safe loader, series assembly.

Open a series with :func:`open_series` (a path or a ``SeriesRef`` in, a
``Volume`` out) and list what a path holds with :func:`list_series`; nothing
else in medstation chains scan -> assemble -> load by hand.
"""

from medstation.dicom._pool import WorkerPool
from medstation.dicom.database import StudyDatabase, default_db_path
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
from medstation.dicom.scan import scan_file
from medstation.dicom.series import SeriesStack, SliceRef, assemble
from medstation.dicom.sources import collect

__all__ = [
    "ImportReport",
    "InstanceHeader",
    "LoadJob",
    "LoadResult",
    "NotDicomError",
    "OpenedSeries",
    "ResolvedSeries",
    "SeriesListing",
    "ScanResult",
    "SeriesStack",
    "SliceRef",
    "StudyDatabase",
    "WorkerPool",
    "assemble",
    "collect",
    "default_db_path",
    "import_paths",
    "list_series",
    "load_stack",
    "middle_out",
    "open_series",
    "rebuild",
    "resolve_series",
    "scan",
    "scan_file",
    "stack_ref",
]
