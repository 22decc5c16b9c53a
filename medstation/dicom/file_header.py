"""One file's header, whatever it holds: a DICOM instance (``header``) or a NIfTI / MetaImage / NRRD
volume (``volume_files``). Kept apart from both so neither imports the other."""

from __future__ import annotations

from medstation.dicom.header import InstanceHeader, scan_dicom_file
from medstation.dicom.volume_files import is_volume_file, scan_volume_file


def scan_file(path: str) -> InstanceHeader:
    """Read one file's header. Raises ``LoadError`` (or ``NotDicomError`` for a file that is neither)."""
    if is_volume_file(path):
        return scan_volume_file(path)
    return scan_dicom_file(path)
