"""The instance index: what the files hold (patients -> studies -> series -> instances, the files that
could not be read, the folders imported). Rebuildable from the files: every instance row keeps its full
``InstanceHeader`` (JSON) and the file's size and mtime, so an unchanged file is never scanned twice.
The imported folders are also kept in ``roots.json`` beside the database (written atomically), so a
damaged database can be rebuilt from them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from medstation.core.errors import LoadError
from medstation.core.files import atomic_write_text
from medstation.core.series import SeriesRef
from medstation.dicom.header import InstanceHeader, series_key_of, study_key
from medstation.dicom.tables.base import Tables


@dataclass
class SeriesRow:
    series_uid: str
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    modality: str
    series_number: int | None
    description: str
    instances: int
    missing: int
    #: images (frames) in the series: a multi-frame instance or a NIfTI file holds many
    images: int = 0

    @property
    def ref(self) -> SeriesRef:
        return SeriesRef(self.study_uid, self.series_uid)


class InstanceIndex(Tables):
    SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    id INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL,
    name TEXT NOT NULL,
    birth_date TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    UNIQUE (patient_id, name)
);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY,
    study_uid TEXT NOT NULL UNIQUE,
    patient_ref INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    accession TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    series_uid TEXT NOT NULL UNIQUE,
    study_ref INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    modality TEXT NOT NULL DEFAULT '',
    series_number INTEGER,
    description TEXT NOT NULL DEFAULT '',
    frame_of_reference_uid TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY,
    series_ref INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    sop_instance_uid TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    file_size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    instance_number INTEGER,
    missing INTEGER NOT NULL DEFAULT 0,
    header TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_ref);
CREATE TABLE IF NOT EXISTS problems (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    hint TEXT NOT NULL,
    file_size INTEGER NOT NULL DEFAULT -1,
    mtime_ns INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, added REAL NOT NULL);
"""

    def __init__(self, conn, tx=None, *, roots_file: Path) -> None:
        super().__init__(conn, tx)
        #: the imported folders, kept beside the database for rebuilding a damaged one
        self.roots_file = roots_file

    # -- imported folders (for rebuilds) -------------------------------------------------------

    def add_roots(self, paths: Iterable[str]) -> None:
        now = time.time()
        paths = [str(Path(p).resolve()) for p in paths]
        with self._tx():
            self._conn.executemany("INSERT OR IGNORE INTO roots VALUES (?, ?)", [(p, now) for p in paths])
        known = set(self.roots()) | set(self._roots_from_file())
        atomic_write_text(self.roots_file, json.dumps(sorted(known), indent=1))

    def roots(self) -> list[str]:
        db = [r[0] for r in self._conn.execute("SELECT path FROM roots ORDER BY path")]
        return sorted(set(db) | set(self._roots_from_file()))

    def _roots_from_file(self) -> list[str]:
        try:
            data = json.loads(self.roots_file.read_text())
            return [str(p) for p in data if isinstance(p, str)]
        except (OSError, ValueError):
            return []


    # -- instances ------------------------------------------------------------------------------
    def unchanged(self, paths: Iterable[str]) -> set[str]:
        """The paths already indexed (as instance or known problem) with the same size and mtime."""
        out = set()
        cur = self._conn.cursor()
        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                continue
            row = cur.execute("SELECT file_size, mtime_ns FROM instances WHERE path=? AND missing=0 "
                              "UNION ALL SELECT file_size, mtime_ns FROM problems WHERE path=?",
                              (p, p)).fetchone()
            if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
                out.add(p)
        return out

    def add(self, headers: Iterable[InstanceHeader], problems: Iterable[LoadError] = ()) -> int:
        """Insert or update instances and problems in one transaction; returns instances added."""
        n = 0
        with self._tx():
            c = self._conn
            for h in headers:
                c.execute("INSERT OR IGNORE INTO patients (patient_id, name, birth_date, sex) "
                          "VALUES (?, ?, ?, ?)", (h.patient_id, h.patient_name, h.birth_date, h.sex))
                pid = c.execute("SELECT id FROM patients WHERE patient_id=? AND name=?",
                                (h.patient_id, h.patient_name)).fetchone()[0]
                study_uid = study_key(h)
                c.execute("INSERT OR IGNORE INTO studies (study_uid, patient_ref, study_date, study_time, "
                          "description, accession) VALUES (?, ?, ?, ?, ?, ?)",
                          (study_uid, pid, h.study_date, h.study_time, h.study_description, h.accession))
                sid = c.execute("SELECT id FROM studies WHERE study_uid=?", (study_uid,)).fetchone()[0]
                series_uid = series_key_of(h)
                c.execute("INSERT OR IGNORE INTO series (series_uid, study_ref, modality, series_number, "
                          "description, frame_of_reference_uid) VALUES (?, ?, ?, ?, ?, ?)",
                          (series_uid, sid, h.modality, h.series_number, h.series_description,
                           h.frame_of_reference_uid))
                ser = c.execute("SELECT id FROM series WHERE series_uid=?", (series_uid,)).fetchone()[0]
                c.execute("INSERT INTO instances (series_ref, sop_instance_uid, path, file_size, mtime_ns, "
                          "instance_number, missing, header) VALUES (?, ?, ?, ?, ?, ?, 0, ?) "
                          "ON CONFLICT(path) DO UPDATE SET series_ref=excluded.series_ref, "
                          "sop_instance_uid=excluded.sop_instance_uid, file_size=excluded.file_size, "
                          "mtime_ns=excluded.mtime_ns, instance_number=excluded.instance_number, "
                          "missing=0, header=excluded.header",
                          (ser, h.sop_instance_uid, h.path, h.file_size, h.mtime_ns, h.instance_number,
                           json.dumps(h.to_dict(), separators=(",", ":"))))
                c.execute("DELETE FROM problems WHERE path=?", (h.path,))
                n += 1
            for e in problems:
                try:
                    st = os.stat(e.file)
                    size, mtime = st.st_size, st.st_mtime_ns
                except OSError:
                    size, mtime = -1, -1
                c.execute("INSERT OR REPLACE INTO problems VALUES (?, ?, ?, ?, ?, ?)",
                          (e.file, type(e).__name__, e.reason, e.hint, size, mtime))
        return n

    def check_files(self) -> int:
        """Mark instances whose file vanished (or reappeared); returns how many are missing."""
        rows = self._conn.execute("SELECT id, path, missing FROM instances").fetchall()
        changes = [(0 if os.path.exists(p) else 1, i) for i, p, m in rows
                   if (0 if os.path.exists(p) else 1) != m]
        if changes:
            with self._tx():
                self._conn.executemany("UPDATE instances SET missing=? WHERE id=?", changes)
        return self._conn.execute("SELECT COUNT(*) FROM instances WHERE missing=1").fetchone()[0]

    def counts(self) -> dict[str, int]:
        q = self._conn.execute
        return {
            "patients": q("SELECT COUNT(*) FROM patients").fetchone()[0],
            "studies": q("SELECT COUNT(*) FROM studies").fetchone()[0],
            "series": q("SELECT COUNT(*) FROM series").fetchone()[0],
            "instances": q("SELECT COUNT(*) FROM instances").fetchone()[0],
            "missing": q("SELECT COUNT(*) FROM instances WHERE missing=1").fetchone()[0],
            "problems": q("SELECT COUNT(*) FROM problems WHERE kind != 'NotDicomError'").fetchone()[0],
        }

    def changed_elsewhere(self) -> bool:
        """Another connection (``medstation import`` in a terminal, a PACS retrieve on a thread)
        committed since the last call: SQLite's ``data_version`` moves only for other connections."""
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        changed = getattr(self, "_seen_version", version) != version
        self._seen_version = version
        return changed

    def series(self, search: str = "") -> list[SeriesRow]:
        like = f"%{search}%"
        rows = self._conn.execute(
            "SELECT se.series_uid, st.study_uid, p.patient_id, p.name, st.study_date, se.modality, "
            "se.series_number, se.description, COUNT(i.id), SUM(i.missing), "
            # the header is compact JSON: a single-frame one says so without being parsed
            "SUM(CASE WHEN instr(i.header, '\"frames\":1,') > 0 THEN 1 "
            "ELSE COALESCE(json_extract(i.header, '$.frames'), 1) END) "
            "FROM series se JOIN studies st ON se.study_ref=st.id JOIN patients p ON st.patient_ref=p.id "
            "LEFT JOIN instances i ON i.series_ref=se.id "
            "WHERE p.name LIKE ? OR p.patient_id LIKE ? OR st.study_date LIKE ? OR se.modality LIKE ? "
            "OR se.description LIKE ? "
            "GROUP BY se.id ORDER BY p.patient_id, st.study_date, se.series_number",
            (like, like, like, like, like)).fetchall()
        return [SeriesRow(*r[:9], int(r[9] or 0), int(r[10] or 0)) for r in rows]

    def series_of_files(self, paths: Iterable[str]) -> dict[str, int]:
        """Series UID -> instance count, for the series that hold any of ``paths``."""
        out: dict[str, int] = {}
        sql = ("SELECT se.series_uid, COUNT(*) FROM instances i JOIN series se ON i.series_ref=se.id "
               "WHERE i.path IN ({}) GROUP BY se.series_uid")
        for uid, n in self._in_chunks(sql, paths):
            out[uid] = out.get(uid, 0) + n
        return out

    def series_headers(self, series: SeriesRef | str, include_missing: bool = False) -> list[InstanceHeader]:
        """Headers of every instance of a series (a ``SeriesRef``'s part is ignored: parts are
        made by assembling these)."""
        series_uid = series.series_uid if isinstance(series, SeriesRef) else str(series).split("#")[0]
        sql = ("SELECT i.header FROM instances i JOIN series se ON i.series_ref=se.id "
               "WHERE se.series_uid=?" + ("" if include_missing else " AND i.missing=0"))
        return [InstanceHeader.from_dict(json.loads(r[0]))
                for r in self._conn.execute(sql, (series_uid,))]

    def problems(self) -> list[LoadError]:
        return [LoadError(p, r, h) for p, r, h in self._conn.execute(
            "SELECT path, reason, hint FROM problems WHERE kind != 'NotDicomError' ORDER BY path")]

    def series_of_instances(self, sop_uids: Iterable[str]) -> dict[str, str]:
        """SOP Instance UID -> the series UID holding it (for the ones the database knows)."""
        sql = ("SELECT i.sop_instance_uid, se.series_uid FROM instances i "
               "JOIN series se ON i.series_ref=se.id WHERE i.sop_instance_uid IN ({})")
        return dict(self._in_chunks(sql, sop_uids))

    def _in_chunks(self, sql: str, values: Iterable[str], size: int = 500) -> list[tuple]:
        """The rows of ``sql`` (one ``IN ({})``) over ``values``, 500 at a time (SQLite's limit)."""
        values = list(values)
        rows: list[tuple] = []
        for start in range(0, len(values), size):
            chunk = values[start:start + size]
            rows += self._conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

