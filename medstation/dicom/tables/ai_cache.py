"""The AI results cache: findings per series and model version (name, version and the weights'
sha256, so retrained weights never reuse an old result). Reading merges in the readers' reviews."""

from __future__ import annotations

import json
import time

from medstation.core.series import SeriesRef, series_key
from medstation.dicom.tables.annotations import Annotations
from medstation.dicom.tables.base import Tables


class AiResultsCache(Tables):
    SCHEMA = """
CREATE TABLE IF NOT EXISTS ai_results (
    series_key TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    findings TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (series_key, model_name, model_version, model_sha256)
);
"""

    def __init__(self, conn, tx=None, *, annotations: Annotations) -> None:
        super().__init__(conn, tx)
        self._annotations = annotations

    def save(self, series: SeriesRef | str, model_name: str, model_version: str, model_sha256: str,
             findings: list[dict]) -> None:
        with self._tx():
            self._conn.execute("INSERT OR REPLACE INTO ai_results VALUES (?, ?, ?, ?, ?, ?)",
                               (series_key(series), model_name, model_version, model_sha256,
                                json.dumps(findings), time.time()))

    def findings(self, series: SeriesRef | str, model_name: str, model_version: str,
                 model_sha256: str) -> list[dict] | None:
        """Cached findings (with the reader's review status merged in), or None."""
        row = self._conn.execute(
            "SELECT findings FROM ai_results WHERE series_key=? AND model_name=? AND model_version=? "
            "AND model_sha256=?", (series_key(series), model_name, model_version, model_sha256)).fetchone()
        if row is None:
            return None
        findings = json.loads(row[0])
        reviews = self._annotations.finding_reviews(series_key(series), model_name, model_version)
        for f in findings:
            f["status"] = reviews.get(f.get("finding_id"), "")
        return findings

    def of_model(self, model_name: str, model_version: str, model_sha256: str) -> list[tuple[str, list]]:
        """Every series' cached findings of one model version (review status merged in): what the
        review queue ranks. Series keys in key order."""
        return [(k, self.findings(k, model_name, model_version, model_sha256) or [])
                for k in self.keys(model_name, model_version, model_sha256)]

    def keys(self, model_name: str, model_version: str, model_sha256: str) -> list[str]:
        """The series keys holding cached findings of one model version, in key order."""
        return [k for (k,) in self._conn.execute(
            "SELECT series_key FROM ai_results WHERE model_name=? AND model_version=? AND model_sha256=? "
            "ORDER BY series_key", (model_name, model_version, model_sha256))]

