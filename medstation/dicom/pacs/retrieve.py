"""The client for a node, and a whole study retrieved into the study database (staged, checked
complete, then imported)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from medstation.core.errors import PacsError
from medstation.core.paths import user_data_path
from medstation.dicom.pacs.dicomweb import DicomWebClient
from medstation.dicom.pacs.dimse import DimseClient
from medstation.dicom.pacs.nodes import PacsNode
from medstation.dicom.pacs.query import (
    Progress,
    _check_cancel,
)

log = logging.getLogger(__name__)


def open_client(node: PacsNode, *, web: bool | None = None, password: str | None = None):
    """The client for ``node``: DICOMweb when ``web`` (or the node retrieves by WADO), else DIMSE."""
    use_web = web if web is not None else node.retrieve == "wado"
    return DicomWebClient(node, password) if use_web else DimseClient(node)


def pacs_folder() -> Path:
    return user_data_path() / "pacs"


def retrieve_study(node: PacsNode, study_uid: str, db, pool, *, method: str | None = None,
                   series_uid: str = "", progress: Progress | None = None,
                   cancel: threading.Event | None = None, password: str | None = None):
    """Retrieve a study into the user's PACS folder and import it into the study database.

    The study is staged first; only when every instance the PACS announced has
    arrived (and none failed) are the files moved into place and imported.
    Returns ``(TransferReport, ImportReport)``. Raises ``PacsError`` (or
    ``CancelledError``) with nothing added to the database.
    """
    from medstation.dicom.importer import import_paths
    method = method or node.retrieve
    client = open_client(node, web=(method == "wado"), password=password)
    match = client.find_studies(study_uid=study_uid)
    match = [m for m in match if m.study_uid == study_uid]
    if not match:
        raise PacsError(f"{node.name} has no study {study_uid}", "search again: it may have been deleted")
    announced = match[0].n_instances
    if series_uid:
        announced = next((s.n_instances for s in client.find_series(study_uid)
                          if s.series_uid == series_uid), None)
    root = pacs_folder()
    staging = root / "incoming" / uuid.uuid4().hex
    try:
        report = client.retrieve(study_uid, staging, series_uid=series_uid, method=method,
                                 sop_classes=match[0].sop_classes, progress=progress, cancel=cancel)
        _check_cancel(cancel, "the retrieve")
        expected = announced if announced is not None else report.expected
        received = len(set(report.files))
        if report.failed or (expected is not None and received < expected):
            raise PacsError(
                f"{node.name} sent {received} of {expected if expected is not None else '?'} instances "
                f"of the study ({report.failed} failed); nothing was imported",
                "try again; if it keeps failing, check the PACS log")
        final = root / "studies" / study_uid[:64]
        final.mkdir(parents=True, exist_ok=True)
        moved = []
        for f in report.files:
            target = final / Path(f).name
            os.replace(f, target)
            moved.append(str(target))
        report.files = moved
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    imported = import_paths(db, [str(final)], pool)
    log.info("retrieved %d instances from %s in %.1f s", len(report.files), node.name, report.seconds)
    return report, imported
