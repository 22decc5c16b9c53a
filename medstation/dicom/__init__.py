"""DICOM: header scan, study database, safe loader, series assembly."""

from medstation.dicom._pool import WorkerPool
from medstation.dicom.database import StudyDatabase, default_db_path
from medstation.dicom.header import InstanceHeader, NotDicomError, scan_file
from medstation.dicom.importer import ImportReport, import_paths, rebuild
from medstation.dicom.loader import LoadJob, LoadResult, ScanResult, load_stack, middle_out, scan
from medstation.dicom.series import SeriesStack, SliceRef, assemble
from medstation.dicom.sources import collect

__all__ = [
    "ImportReport",
    "InstanceHeader",
    "LoadJob",
    "LoadResult",
    "NotDicomError",
    "ScanResult",
    "SeriesStack",
    "SliceRef",
    "StudyDatabase",
    "WorkerPool",
    "assemble",
    "collect",
    "default_db_path",
    "import_paths",
    "load_stack",
    "middle_out",
    "rebuild",
    "scan",
    "scan_file",
]
