"""``SeriesRef``: the one way a series is named across the database, GUI, CLI, PACS and results.

A DICOM series can hold several image stacks (sizes or orientations differ); the
loader splits it into parts numbered from 1. A ``SeriesRef`` names the study, the
series and the part. ``key`` is the string measurements, AI results and reviews
are stored under in the study database (``"<series UID>#<part>"``, or the bare
series UID when no part is named); ``SeriesRef.parse`` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SeriesRef:
    """Study UID, series UID and part (0: the series as a whole, or its largest part)."""

    study_uid: str
    series_uid: str
    part: int = 0

    def __post_init__(self) -> None:
        if self.part < 0:
            raise ValueError(f"part must be 0 or more, not {self.part}")

    @property
    def key(self) -> str:
        """The database key: ``"<series UID>#<part>"``, or the series UID alone for part 0."""
        return f"{self.series_uid}#{self.part}" if self.part else self.series_uid

    @classmethod
    def parse(cls, key: str, study_uid: str = "") -> SeriesRef:
        """The reference a ``key`` names (``"1.2.3#2"`` or ``"1.2.3"``).

        DICOM UIDs hold only digits and dots; the stand-in the database gives files without
        a Series Instance UID holds their path, which may hold a ``#``: only a trailing
        ``#<digits>`` is a part number.
        """
        key = str(key)
        uid, sep, part = key.rpartition("#")
        if sep and part.isdigit():
            return cls(study_uid, uid, int(part))
        return cls(study_uid, key, 0)

    def whole(self) -> SeriesRef:
        """The same series without a part."""
        return SeriesRef(self.study_uid, self.series_uid, 0)

    def with_part(self, part: int) -> SeriesRef:
        return SeriesRef(self.study_uid, self.series_uid, int(part))

    def to_dict(self) -> dict:
        return {"study_uid": self.study_uid, "series_uid": self.series_uid, "part": self.part}

    @classmethod
    def from_dict(cls, d: dict) -> SeriesRef:
        return cls(str(d.get("study_uid", "")), str(d["series_uid"]), int(d.get("part", 0)))

    def __str__(self) -> str:
        return self.key


def series_key(ref: SeriesRef | str) -> str:
    """The database key of ``ref`` (a ``SeriesRef`` or an already-made key)."""
    return ref.key if isinstance(ref, SeriesRef) else str(ref)
