"""The local study database: SQLite in WAL mode, one file, one connection, its tables by subject.

- ``db.index`` (``tables.index.InstanceIndex``): patients -> studies -> series -> instances, the files
  that could not be read, the folders imported. An index, rebuildable from the files.
- ``db.annotations`` (``tables.annotations.Annotations``): measurements, reviews of AI findings, labels.
- ``db.ai_cache`` (``tables.ai_cache.AiResultsCache``): findings per series and model version.
- ``db.followup`` (``tables.followup.FollowupRecords``): registrations, patient links, track edits.

One schema (each subject's ``SCHEMA``), one version (``SCHEMA_VERSION``) and one migration path
(``MIGRATIONS``: what an older file needs beyond the tables ``CREATE ... IF NOT EXISTS`` adds).
Opening (``db_file``): a busy database is waited for, then refused naming who holds it; a newer
schema is refused untouched; one that fails ``PRAGMA quick_check`` is moved aside, what readers made
is copied from it, and it is rebuilt by re-importing the folders recorded in ``roots.json``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from medstation.core.errors import DatabaseError
from medstation.core.paths import ENV_DB, default_db_path, user_data_path  # noqa: F401 (re-exported)
from medstation.dicom import db_file
from medstation.dicom.tables.ai_cache import AiResultsCache
from medstation.dicom.tables.annotations import Annotations
from medstation.dicom.tables.base import transaction
from medstation.dicom.tables.followup import FollowupRecords
from medstation.dicom.tables.index import InstanceIndex, SeriesRow  # noqa: F401 (re-exported)

#: 2: measurements; 3: AI results, reviews; 4: labels; 5: registrations; 6: track edits; 7: patient
#: links; 8: a reviewed finding's label has the review's own name as its source (``Review``)
SCHEMA_VERSION = 8

SCHEMA = ("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
          + "".join(t.SCHEMA for t in (InstanceIndex, Annotations, AiResultsCache, FollowupRecords)))

#: version -> statements that bring a database of the version before it up to it (run in order, in
#: the transaction that writes the new version; tables a version added need none: ``SCHEMA`` adds them)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    8: ("UPDATE labels SET source='accepted' WHERE source='accepted-ai'",
        "UPDATE labels SET source='rejected' WHERE source='rejected-ai'"),
}


class StudyDatabase:
    """Open (creating, checking, migrating and repairing as needed) the study database at ``path``."""

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            opened = db_file.open_checked(self.path, SCHEMA, SCHEMA_VERSION, busy_timeout, MIGRATIONS)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the study database {self.path}: {exc}",
                                "check the disk and permissions, or pass --db elsewhere") from None
        self._conn = opened.conn
        self.recovered_from: Path | None = opened.recovered_from  # where a damaged database was moved
        #: rows of the readers' tables copied from the damaged file (``db_file.RECOVERED_TABLES``)
        self.recovered: dict[str, int] = opened.recovered
        tx = self._tx
        roots_file = self.path.with_name(self.path.stem + ".roots.json")
        self.index = InstanceIndex(self._conn, tx, roots_file=roots_file)
        self.annotations = Annotations(self._conn, tx)
        self.ai_cache = AiResultsCache(self._conn, tx, annotations=self.annotations)
        self.followup = FollowupRecords(self._conn, tx)

    def recovery_text(self) -> str:
        """What happened to a damaged database, for the reader (empty when nothing did)."""
        if self.recovered_from is None:
            return ""
        kept = ", ".join(f"{n} {t.replace('_', ' ')}" for t, n in self.recovered.items() if t != "ai_results")
        return (f"the study database was damaged: moved to {self.recovered_from}; "
                + (f"recovered from it: {kept}; " if kept else "nothing could be recovered from it; ")
                + "re-importing the folders it knew")

    @property
    def needs_rebuild(self) -> bool:
        """True after a damaged database was replaced: re-import ``index.roots()``."""
        return self.recovered_from is not None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def __enter__(self) -> StudyDatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def integrity_check(self) -> str:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]

    def _tx(self):
        return transaction(self._conn)
