"""The study database by subject (issue 30, item 3): each subject's tables stand alone on a bare
connection; the database assembles them on one connection with one schema and one migration path."""

from __future__ import annotations

import sqlite3

import pytest

from medstation.core.findings import Review
from medstation.dicom import StudyDatabase
from medstation.dicom import database as dbmod
from medstation.dicom.labels import SOURCES, collect_labels
from medstation.dicom.tables.ai_cache import AiResultsCache
from medstation.dicom.tables.annotations import Annotations
from medstation.dicom.tables.followup import FollowupRecords
from medstation.dicom.tables.index import InstanceIndex

KEY = "1.2.3/4.5.6"


def _bare(*tables) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for t in tables:
        conn.executescript(t.SCHEMA)
    return conn


def test_each_subject_works_on_its_own_tables_alone():
    conn = _bare(Annotations, AiResultsCache)
    ann = Annotations(conn)
    cache = AiResultsCache(conn, annotations=ann)
    cache.save(KEY, "det", "1.0.0", "abc", [{"finding_id": "F1"}, {"finding_id": "F2"}])
    ann.review_finding(KEY, "det", "1.0.0", {"finding_id": "F2"}, Review.REJECTED)
    assert [f["status"] for f in cache.findings(KEY, "det", "1.0.0", "abc")] == ["", "rejected"]
    assert cache.findings(KEY, "det", "1.0.0", "other weights") is None
    assert cache.keys("det", "1.0.0", "abc") == [KEY]
    with pytest.raises(ValueError):
        ann.review_finding(KEY, "det", "1.0.0", {"finding_id": "F1"}, "maybe")
    # a failed write rolls back: the second row's bad centre leaves no first row behind
    with pytest.raises(ValueError):
        ann.add_labels([{"series_key": KEY, "center_mm": [1, 2, 3], "diameter_mm": 5, "is_nodule": True,
                         "source": "reader"},
                        {"series_key": KEY, "center_mm": ["x", 2, 3], "diameter_mm": 5, "is_nodule": True,
                         "source": "reader"}])
    assert ann.labels() == []

    fu = FollowupRecords(_bare(FollowupRecords))
    fu.link_patients("A", "B")
    fu.link_patients("B", "C")
    assert fu.same_patient("C") == {"A", "B", "C"}
    fu.save_registration("s1", "s2", {"ok": True})
    assert fu.registration("s1", "s2") == {"ok": True} and fu.registration("s2", "s1") is None


def test_the_database_shares_one_connection_and_one_schema(tmp_path):
    with StudyDatabase(tmp_path / "s.sqlite") as db:
        assert {t._conn for t in (db.index, db.annotations, db.ai_cache, db.followup)} == {db._conn}
        assert isinstance(db.index, InstanceIndex)
        names = {r[0] for r in db._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"meta", "instances", "labels", "ai_results", "track_edits"} <= names
        version = db._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        assert int(version) == dbmod.SCHEMA_VERSION


def _schema_7_with_labels(path):
    """A database as medstation wrote it at schema 7: reviewed findings' labels named ``*-ai``."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(dbmod.SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '7')")
    for source in ("accepted-ai", "rejected-ai", "reader"):
        conn.execute("INSERT INTO labels (series_key, x, y, z, diameter_mm, is_nodule, source, created) "
                     "VALUES (?, 0, 0, 0, 6, ?, ?, 0)", (KEY, int(source != "rejected-ai"), source))
    conn.close()


def test_a_schema_7_database_is_migrated_to_the_one_review_vocabulary(tmp_path):
    path = tmp_path / "old.sqlite"
    _schema_7_with_labels(path)
    with StudyDatabase(path) as db:
        assert [lab["source"] for lab in db.annotations.labels()] == ["accepted", "rejected", "reader"]
        assert all(lab["source"] in SOURCES for lab in db.annotations.labels())
        assert db._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "8"
    with StudyDatabase(path) as db:  # opening again changes nothing
        assert [lab["source"] for lab in db.annotations.labels()] == ["accepted", "rejected", "reader"]


def test_a_failing_migration_leaves_the_older_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    _schema_7_with_labels(path)
    monkeypatch.setitem(dbmod.MIGRATIONS, 8, (*dbmod.MIGRATIONS[8], "UPDATE no_such_table SET x=1"))
    with pytest.raises(Exception, match="no_such_table"):
        StudyDatabase(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "7"
    assert [s for (s,) in conn.execute("SELECT source FROM labels ORDER BY id")] == \
        ["accepted-ai", "rejected-ai", "reader"]
    conn.close()


def test_a_reviewed_finding_becomes_a_label_under_the_reviews_own_name(tmp_path):
    with StudyDatabase(tmp_path / "s.sqlite") as db:
        db.annotations.review_finding(KEY, "det", "1.0.0", {"finding_id": "F1", "center_mm": [0, 0, 0],
                                                            "diameter_mm": 7.0}, Review.ACCEPTED)
        labels = collect_labels(db)
        # the series is not in the index: skipped, under the review's name
        assert labels.labels == [] and labels.skipped[0].what == "accepted label"
