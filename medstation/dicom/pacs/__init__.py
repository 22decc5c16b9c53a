"""PACS: query and retrieve over DIMSE (pynetdicom) and DICOMweb (dicomweb-client).

Two clients with the same surface, ``DimseClient`` and ``DicomWebClient``:
``echo()``, ``find_patients()``, ``find_studies()``, ``find_series()``,
``retrieve(study_uid, dest)`` and ``store(files)``. ``open_client(node)``
picks one from the node's settings. Every failure is a ``PacsError`` that
says which peer, what happened and what to check; no call waits longer than
the node's timeout for the peer to answer.

``retrieve_study()`` is what the viewer and the CLI use: it retrieves into a
staging folder, checks that every instance the PACS announced has arrived,
and only then moves the files into the user's PACS folder and imports them
into the study database. A transfer that stops part way leaves nothing behind
in the database.

Modules: ``nodes`` (where a PACS is; saved nodes and keyring passwords),
``query`` (what a search finds, transfer reports), ``dimse`` and ``dicomweb``
(the two clients), ``retrieve`` (``open_client`` and ``retrieve_study``).
"""

from medstation.dicom.pacs.dicomweb import DicomWebClient
from medstation.dicom.pacs.dimse import GET_STORAGE_CLASSES, RECEIVE_SYNTAXES, DimseClient
from medstation.dicom.pacs.nodes import (
    KEYRING_SERVICE,
    RETRIEVE_METHODS,
    PacsNode,
    load_nodes,
    node_password,
    nodes_path,
    save_nodes,
    set_node_password,
)
from medstation.dicom.pacs.query import PatientMatch, Progress, SeriesMatch, StudyMatch, TransferReport
from medstation.dicom.pacs.retrieve import open_client, pacs_folder, retrieve_study

__all__ = [
    "GET_STORAGE_CLASSES",
    "KEYRING_SERVICE",
    "RECEIVE_SYNTAXES",
    "RETRIEVE_METHODS",
    "DicomWebClient",
    "DimseClient",
    "PacsNode",
    "PatientMatch",
    "Progress",
    "SeriesMatch",
    "StudyMatch",
    "TransferReport",
    "load_nodes",
    "node_password",
    "nodes_path",
    "open_client",
    "pacs_folder",
    "retrieve_study",
    "save_nodes",
    "set_node_password",
]
