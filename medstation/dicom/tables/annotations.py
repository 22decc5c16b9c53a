"""What readers made on a series: measurements, their accepts and rejects of AI findings, and labels
(nodules and known non-nodules for training and evaluation). None of it can be re-imported from the
files, so a damaged database's copies are recovered row by row (``db_file.RECOVERED_TABLES``).

A review's status and the label an accept or reject becomes share one vocabulary,
``core.findings.Review`` (see there)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from medstation.core.findings import Review
from medstation.core.series import SeriesRef, series_key
from medstation.dicom.tables.base import Tables


class Annotations(Tables):
    SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    series_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    modified REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_series ON measurements(series_key);
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
"""

    # -- measurements (kept per series) -----------------------------------------------------
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

    def measurements(self, series: SeriesRef | str) -> list[tuple[int, str, dict]]:
        """``(id, kind, data)`` of the measurements of one series, oldest first."""
        return [(i, k, json.loads(d)) for i, k, d in self._conn.execute(
            "SELECT id, kind, data FROM measurements WHERE series_key=? ORDER BY id", (series_key(series),))]

    def measurements_of_kind(self, kind: str) -> list[tuple[int, str, dict, float]]:
        """``(id, series key, data, modified)`` of every measurement of ``kind``, in every series."""
        return [(i, k, json.loads(d), t) for i, k, d, t in self._conn.execute(
            "SELECT id, series_key, data, modified FROM measurements WHERE kind=? ORDER BY id", (kind,))]

    def review_finding(self, series: SeriesRef | str, model_name: str, model_version: str, finding: dict,
                       status: str) -> None:
        """Store a reader's accept / reject (``""`` clears it); the finding is kept as a label."""
        Review(status)  # "" clears; anything else not in the vocabulary is a programming error
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

