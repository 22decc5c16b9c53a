"""What follow-up keeps between runs: registrations (prior -> current transforms, cached), patient
IDs linked as one person, and the readers' edits of lesion tracks."""

from __future__ import annotations

import json
import time

from medstation.dicom.tables.base import Tables


class FollowupRecords(Tables):
    SCHEMA = """
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

