"""The local study database: SQLite in WAL mode, patients -> studies -> series -> instances.

It is an index, rebuildable from the files: every instance row keeps its full
``InstanceHeader`` (JSON) and the file's size and mtime, so an unchanged file
is never scanned twice. Opening (``db_file``): a busy database is waited for, then
refused naming who holds it; a newer schema is refused untouched; one that fails
``PRAGMA quick_check`` is moved aside, what readers made is copied from it, and it is
rebuilt by re-importing the folders recorded in ``roots.json`` (kept beside the
database, written atomically).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from medstation.core.errors import DatabaseError, LoadError
from medstation.core.files import atomic_write_text
from medstation.core.paths import ENV_DB, default_db_path, user_data_path  # noqa: F401 (re-exported)
from medstation.core.series import SeriesRef, series_key
from medstation.dicom import db_file
from medstation.dicom.header import InstanceHeader, series_key_of, study_key

SCHEMA_VERSION = 7  # 2: measurements; 3: AI results, reviews; 4: labels; 5: registrations; 6: track edits;
#                     7: patient links

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    series_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    modified REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_series ON measurements(series_key);
CREATE TABLE IF NOT EXISTS ai_results (
    series_key TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    findings TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (series_key, model_name, model_version, model_sha256)
);
CREATE TABLE IF NOT EXISTS finding_reviews (
    series_key TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    status TEXT NOT NULL,
    finding TEXT NOT NULL,
    reviewed REAL NOT NULL,
    PRIMARY KEY (series_key, model_name, model_version, finding_id)
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    series_key TEXT NOT NULL,
    x REAL NOT NULL,
    y REAL NOT NULL,
    z REAL NOT NULL,
    diameter_mm REAL NOT NULL,
    is_nodule INTEGER NOT NULL,
    source TEXT NOT NULL,
    created REAL NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS labels_series ON labels(series_key);
CREATE TABLE IF NOT EXISTS registrations (
    from_series TEXT NOT NULL,
    to_series TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (from_series, to_series)
);
CREATE TABLE IF NOT EXISTS patient_links (
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    PRIMARY KEY (a, b)
);
CREATE TABLE IF NOT EXISTS track_edits (
    id INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL
);
"""


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


class StudyDatabase:
    """Open (creating, checking and repairing as needed) the study database at ``path``."""

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            opened = db_file.open_checked(self.path, _SCHEMA, SCHEMA_VERSION, busy_timeout)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the study database {self.path}: {exc}",
                                "check the disk and permissions, or pass --db elsewhere") from None
        self._conn = opened.conn
        self.recovered_from: Path | None = opened.recovered_from  # where a damaged database was moved
        #: rows of the readers' tables copied from the damaged file (``db_file.RECOVERED_TABLES``)
        self.recovered: dict[str, int] = opened.recovered

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
        """True after a damaged database was replaced: re-import ``roots()``."""
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

    # -- roots (for rebuilds) -----------------------------------------------
    @property
    def roots_file(self) -> Path:
        return self.path.with_name(self.path.stem + ".roots.json")

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

    # -- writing ------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self):
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

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

    # -- reading --------------------------------------------------------------
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
        paths = list(paths)
        for start in range(0, len(paths), 500):
            chunk = paths[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for uid, n in self._conn.execute(
                    f"SELECT se.series_uid, COUNT(*) FROM instances i JOIN series se ON i.series_ref=se.id "
                    f"WHERE i.path IN ({marks}) GROUP BY se.series_uid", chunk):
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

    # -- measurements (reader annotations, kept per series) -------------------
    def save_measurement(self, series: SeriesRef | str, kind: str, data: dict, mid: int | None = None) -> int:
        """Insert (``mid`` None) or update a measurement; returns its id."""
        text = json.dumps(data)
        with self._tx():
            if mid is None:
                cur = self._conn.execute(
                    "INSERT INTO measurements (series_key, kind, data, modified) VALUES (?, ?, ?, ?)",
                    (series_key(series), kind, text, time.time()))
                return int(cur.lastrowid)
            self._conn.execute("UPDATE measurements SET kind=?, data=?, modified=? WHERE id=?",
                               (kind, text, time.time(), mid))
            return mid

    def delete_measurement(self, mid: int) -> None:
        with self._tx():
            self._conn.execute("DELETE FROM measurements WHERE id=?", (mid,))

    # -- AI results (cached per series and model version) and the reader's reviews ----------
    def save_ai_result(self, series: SeriesRef | str, model_name: str, model_version: str, model_sha256: str,
                       findings: list[dict]) -> None:
        with self._tx():
            self._conn.execute("INSERT OR REPLACE INTO ai_results VALUES (?, ?, ?, ?, ?, ?)",
                               (series_key(series), model_name, model_version, model_sha256,
                                json.dumps(findings), time.time()))

    def ai_result(self, series: SeriesRef | str, model_name: str, model_version: str,
                  model_sha256: str) -> list[dict] | None:
        """Cached findings (with the reader's review status merged in), or None."""
        row = self._conn.execute(
            "SELECT findings FROM ai_results WHERE series_key=? AND model_name=? AND model_version=? "
            "AND model_sha256=?", (series_key(series), model_name, model_version, model_sha256)).fetchone()
        if row is None:
            return None
        findings = json.loads(row[0])
        reviews = self.finding_reviews(series_key(series), model_name, model_version)
        for f in findings:
            f["status"] = reviews.get(f.get("finding_id"), "")
        return findings

    def ai_results_of(self, model_name: str, model_version: str, model_sha256: str) -> list[tuple[str, list]]:
        """Every series' cached findings of one model version (review status merged in): what the
        review queue ranks. Series keys in key order."""
        return [(k, self.ai_result(k, model_name, model_version, model_sha256) or [])
                for k in self.ai_result_keys(model_name, model_version, model_sha256)]

    def ai_result_keys(self, model_name: str, model_version: str, model_sha256: str) -> list[str]:
        """The series keys holding cached findings of one model version, in key order."""
        return [k for (k,) in self._conn.execute(
            "SELECT series_key FROM ai_results WHERE model_name=? AND model_version=? AND model_sha256=? "
            "ORDER BY series_key", (model_name, model_version, model_sha256))]

    def review_finding(self, series: SeriesRef | str, model_name: str, model_version: str, finding: dict,
                       status: str) -> None:
        """Store a reader's accept / reject (``""`` clears it); the finding is kept as a label."""
        if status not in ("", "accepted", "rejected"):
            raise ValueError(f"unknown review status {status!r}")
        with self._tx():
            if status:
                self._conn.execute("INSERT OR REPLACE INTO finding_reviews VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (series_key(series), model_name, model_version, finding["finding_id"],
                                    status, json.dumps(finding), time.time()))
            else:
                self._conn.execute("DELETE FROM finding_reviews WHERE series_key=? AND model_name=? AND "
                                   "model_version=? AND finding_id=?",
                                   (series_key(series), model_name, model_version, finding["finding_id"]))

    def finding_reviews(self, series: SeriesRef | str, model_name: str, model_version: str) -> dict[str, str]:
        return dict(self._conn.execute(
            "SELECT finding_id, status FROM finding_reviews WHERE series_key=? AND model_name=? "
            "AND model_version=?", (series_key(series), model_name, model_version)))

    def reviewed_findings(self) -> list[dict]:
        """Every accept / reject, for fine-tuning: series, model version, status, the finding."""
        return [{"series_key": k, "model_name": n, "model_version": v, "status": s,
                 "finding": json.loads(f), "reviewed": r}
                for k, n, v, s, f, r in self._conn.execute(
                    "SELECT series_key, model_name, model_version, status, finding, reviewed "
                    "FROM finding_reviews ORDER BY reviewed")]

    # -- labels (nodules for training and evaluation) --------------------------------------------
    def add_labels(self, rows: Iterable[dict]) -> list[int]:
        """Insert labels in one transaction (all or none); each row: ``series_key``, ``center_mm``
        (patient mm), ``diameter_mm``, ``is_nodule``, ``source``, optional ``model``, ``origin``
        (the file it came from), ``extra`` (box, mask, note). Returns their ids."""
        ids = []
        with self._tx():
            for r in rows:
                x, y, z = (float(v) for v in r["center_mm"])
                cur = self._conn.execute(
                    "INSERT INTO labels (series_key, x, y, z, diameter_mm, is_nodule, source, created, "
                    "model, origin, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (series_key(r["series_key"]), x, y, z, float(r["diameter_mm"]), int(bool(r["is_nodule"])),
                     str(r["source"]), float(r.get("created") or time.time()), str(r.get("model", "")),
                     str(r.get("origin", "")), json.dumps(r.get("extra") or {})))
                ids.append(int(cur.lastrowid))
        return ids

    def labels(self, series: SeriesRef | str | None = None) -> list[dict]:
        """Stored labels (one series, or all), oldest first."""
        sql = ("SELECT id, series_key, x, y, z, diameter_mm, is_nodule, source, created, model, origin, "
               "extra FROM labels")
        args: tuple = ()
        if series is not None:
            sql += " WHERE series_key=?"
            args = (series_key(series),)
        return [{"id": i, "series_key": k, "center_mm": [x, y, z], "diameter_mm": d, "is_nodule": bool(n),
                 "source": src, "created": c, "model": m, "origin": o, "extra": json.loads(e)}
                for i, k, x, y, z, d, n, src, c, m, o, e in self._conn.execute(sql + " ORDER BY id", args)]

    def delete_labels(self, ids: Iterable[int]) -> int:
        ids = [int(i) for i in ids]
        with self._tx():
            return sum(self._conn.execute("DELETE FROM labels WHERE id=?", (i,)).rowcount for i in ids)

    # -- registrations (prior -> current transforms, cached) ---------------------------------------
    def save_registration(self, from_series: str, to_series: str, data: dict) -> None:
        with self._tx():
            self._conn.execute("INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?)",
                               (from_series, to_series, json.dumps(data), time.time()))

    def registration(self, from_series: str, to_series: str) -> dict | None:
        row = self._conn.execute("SELECT data FROM registrations WHERE from_series=? AND to_series=?",
                                 (from_series, to_series)).fetchone()
        return None if row is None else json.loads(row[0])

    def link_patients(self, a: str, b: str) -> None:
        """Two patient IDs of one person (another site's numbering): their studies are followed together."""
        if a and b and a != b:
            with self._tx():
                self._conn.execute("INSERT OR IGNORE INTO patient_links VALUES (?, ?)", tuple(sorted((a, b))))

    def same_patient(self, patient_id: str) -> set[str]:
        """``patient_id`` and every ID linked to it, directly or through others."""
        links = self._conn.execute("SELECT a, b FROM patient_links").fetchall()
        found, todo = {patient_id}, [patient_id]
        while todo:
            p = todo.pop()
            for a, b in links:
                for x, y in ((a, b), (b, a)):
                    if x == p and y not in found:
                        found.add(y)
                        todo.append(y)
        return found

    def add_track_edit(self, patient_id: str, edit: dict) -> None:
        """A reader's rename, link or unlink of lesion tracks (``core.tracks.apply_edits``)."""
        with self._tx():
            self._conn.execute("INSERT INTO track_edits (patient_id, data, created) VALUES (?, ?, ?)",
                               (patient_id, json.dumps(edit), time.time()))

    def track_edits(self, patient_id: str) -> list[dict]:
        return [json.loads(d) for (d,) in self._conn.execute(
            "SELECT data FROM track_edits WHERE patient_id=? ORDER BY id", (patient_id,))]

    def measurements_of_kind(self, kind: str) -> list[tuple[int, str, dict, float]]:
        """``(id, series key, data, modified)`` of every measurement of ``kind``, in every series."""
        return [(i, k, json.loads(d), t) for i, k, d, t in self._conn.execute(
            "SELECT id, series_key, data, modified FROM measurements WHERE kind=? ORDER BY id", (kind,))]

    def series_of_instances(self, sop_uids: Iterable[str]) -> dict[str, str]:
        """SOP Instance UID -> the series UID holding it (for the ones the database knows)."""
        out: dict[str, str] = {}
        uids = list(sop_uids)
        for start in range(0, len(uids), 500):
            chunk = uids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(self._conn.execute(
                f"SELECT i.sop_instance_uid, se.series_uid FROM instances i JOIN series se "
                f"ON i.series_ref=se.id WHERE i.sop_instance_uid IN ({marks})", chunk).fetchall())
        return out

    def measurements(self, series: SeriesRef | str) -> list[tuple[int, str, dict]]:
        """``(id, kind, data)`` of the measurements of one series, oldest first."""
        return [(i, k, json.loads(d)) for i, k, d in self._conn.execute(
            "SELECT id, kind, data FROM measurements WHERE series_key=? ORDER BY id", (series_key(series),))]
