"""Synthetic chest CT studies with lung nodules at known positions, as DICOM."""

from medstation.synth.phantom import GROUND_GLASS_HU, SOLID_HU, ChestPhantom, Nodule, random_nodules
from medstation.synth.writer import (
    COMPRESSIONS,
    PatientSpec,
    SeriesSpec,
    StudyTruth,
    demo_study,
    write_patient,
    write_study,
)

__all__ = [
    "COMPRESSIONS",
    "GROUND_GLASS_HU",
    "SOLID_HU",
    "ChestPhantom",
    "Nodule",
    "PatientSpec",
    "SeriesSpec",
    "StudyTruth",
    "demo_study",
    "random_nodules",
    "write_patient",
    "write_study",
]
