"""Domain types shared by every layer: no torch, no Qt, only numpy."""

from medstation.core.errors import (
    CancelledError,
    DatabaseError,
    LoadError,
    MedstationError,
    ModelError,
    PacsError,
)
from medstation.core.series import SeriesRef
from medstation.core.volume import Volume

__all__ = [
    "CancelledError",
    "DatabaseError",
    "LoadError",
    "MedstationError",
    "ModelError",
    "PacsError",
    "SeriesRef",
    "Volume",
]
