"""Typed errors. Every failure a user can meet is one of these.

Each error carries what went wrong (``reason``) and what to do about it
(``hint``) as separate fields, so the GUI can show one sentence with a
Details button and the CLI can print both on one line.
"""

from __future__ import annotations

from pathlib import Path


class MedstationError(Exception):
    """Base of all errors medstation raises on purpose."""

    def __init__(self, reason: str, hint: str = "") -> None:
        self.reason = reason
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        return f"{self.reason} ({self.hint})" if self.hint else self.reason

    def to_dict(self) -> dict[str, str]:
        return {"type": type(self).__name__, "reason": self.reason, "hint": self.hint}


class LoadError(MedstationError):
    """A file or series that could not be read or decoded.

    Parameters
    ----------
    file
        The file at fault (or the folder / archive for whole-input problems).
    reason
        One sentence: what was wrong, with the values seen.
    hint
        One sentence: what the user can do.
    """

    def __init__(self, file: str | Path | None, reason: str, hint: str = "") -> None:
        self.file = str(file) if file is not None else ""
        super().__init__(reason, hint)

    def _message(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return where + super()._message()

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, **super().to_dict()}

    def __reduce__(self):  # survive pickling across worker processes
        return (type(self), (self.file, self.reason, self.hint))


class DatabaseError(MedstationError):
    """The study database could not be opened, repaired or written."""


class ModelError(MedstationError):
    """A model could not be loaded or verified."""


class PacsError(MedstationError):
    """A PACS peer could not be reached or refused a request."""


class CancelledError(MedstationError):
    """Work was cancelled by the user."""

    def __init__(self, reason: str = "cancelled", hint: str = "") -> None:
        super().__init__(reason, hint)


class LabelError(MedstationError):
    """A label file (LUNA16 CSV, DICOM SR) with rows that cannot be used; ``rows`` lists each
    problem as ``"FILE:LINE: what"`` so nothing is half-imported."""

    def __init__(self, reason: str, hint: str = "", rows: list[str] | None = None) -> None:
        self.rows = list(rows or [])
        super().__init__(reason, hint)
