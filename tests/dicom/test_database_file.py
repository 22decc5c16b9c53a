"""Opening the study database (issue 26, items 3 and 4): busy is never damaged; a damaged file is set
aside, what readers made is recovered and the rebuild runs for every command; a future or foreign
schema is refused before a byte is written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medstation.core.errors import DatabaseError
from medstation.dicom import StudyDatabase, import_paths
from tests.cli.test_cli import medstation

LABEL = {"series_key": "1.2.3/4.5.6", "center_mm": [1.0, 2.0, 3.0], "diameter_mm": 8.0, "is_nodule": True,
         "source": "drawn"}

HOLD = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("BEGIN EXCLUSIVE")
c.execute("INSERT INTO meta VALUES ('held', '1')")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def held(tmp_path):
    """A database another process holds locked (exclusive) for a minute."""
    path = tmp_path / "studies.sqlite"
    with StudyDatabase(path) as db:
        db.annotations.add_labels([LABEL])
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "60"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield path, proc
    proc.kill()
    proc.wait()


def test_a_busy_database_is_refused_naming_the_holder_and_never_set_aside(held):
    path, proc = held
    t0 = time.monotonic()
    with pytest.raises(DatabaseError) as err:
        StudyDatabase(path, busy_timeout=1)
    assert time.monotonic() - t0 < 20
    text = str(err.value)
    assert "is busy" in text and f"pid {proc.pid}" in text and "not damaged" in text
    assert not list(path.parent.glob("*.damaged-*"))
    proc.kill()
    proc.wait()
    with StudyDatabase(path) as db:  # free again: the label is still there
        assert len(db.annotations.labels()) == 1


def test_labels_list_on_a_busy_database_says_busy_not_zero_labels(held):
    path, _proc = held
    proc = medstation("--db", str(path), "labels", "list", env={**os.environ, "MEDSTATION_DB_TIMEOUT": "1"})
    assert proc.returncode != 0 and "is busy" in proc.stderr and "Traceback" not in proc.stderr
    assert "0 label" not in proc.stdout and not list(path.parent.glob("*.damaged-*"))


def _damage_instances(path: Path) -> None:
    """Trash the pages of the instances table only (the index part), as a bad disk block would."""
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = [r[0] for r in c.execute("SELECT pageno FROM dbstat WHERE name='instances'")]
        size = c.execute("PRAGMA page_size").fetchone()[0]
    assert pages
    data = bytearray(path.read_bytes())
    for p in pages:
        data[(p - 1) * size:p * size] = os.urandom(size)
    path.write_bytes(bytes(data))


def test_a_damaged_database_keeps_labels_and_reviews_and_rebuilds_on_any_command(small_study, tmp_path, pool):
    path = tmp_path / "studies.sqlite"
    with StudyDatabase(path) as db:
        import_paths(db, [small_study.folder], pool)
        db.annotations.add_labels([LABEL, {**LABEL, "diameter_mm": 12.0, "source": "accepted"}])
        db.annotations.review_finding("1.2.3/4.5.6", "nodule-detector", "1.1.0", {"finding_id": "F1"},
                                      "rejected")
    _damage_instances(path)
    proc = medstation("--db", str(path), "labels", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "the study database was damaged" in proc.stderr and "recovered from it: 1 roots, 2 labels, " \
        "1 finding reviews" in proc.stderr and "rebuilt: " in proc.stderr
    listed = json.loads(proc.stdout)  # (the labels' series is not in the database: listed as skipped)
    assert len(listed["labels"]) + len(listed["skipped"]) == 3  # the two labels and the review
    with StudyDatabase(path) as db:  # rebuilt from the known folder, not left empty
        assert not db.needs_rebuild and db.index.counts()["instances"] == 32 and db.integrity_check() == "ok"
        assert [r["status"] for r in db.annotations.reviewed_findings()] == ["rejected"]
    aside = [p for p in tmp_path.glob("studies.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1


@pytest.mark.parametrize("version, says", [("99", "newer than this medstation"), ("7b", "not a number"),
                                           ("", "not a number")])
def test_a_future_or_foreign_schema_is_refused_before_anything_is_written(tmp_path, version, says):
    path = tmp_path / "studies.sqlite"
    with sqlite3.connect(path) as c:  # a database of another schema: only a meta table
        c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (version,))
    before = _files(tmp_path)
    with pytest.raises(DatabaseError, match=says):
        StudyDatabase(path)
    assert _files(tmp_path) == before  # the same files, byte for byte (no tables added, no WAL switch)
    proc = medstation("--db", str(path), "labels", "list")
    assert proc.returncode != 0 and says in proc.stderr and "Traceback" not in proc.stderr
    assert _files(tmp_path) == before
