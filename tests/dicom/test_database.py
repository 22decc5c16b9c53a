"""Study database and import: idempotent, kill-safe, self-repairing."""

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pydicom
import pytest

from medstation.dicom import StudyDatabase, import_paths, rebuild
from tests.conftest import PYDICOM_TEST_FILES, small_spec


def test_import_is_idempotent(small_study, tmp_path, pool):
    db = StudyDatabase(tmp_path / "db.sqlite")
    first = import_paths(db, [small_study.folder], pool)
    assert first.added == 24 + 8 and first.skipped == 1  # truth.json is not DICOM
    second = import_paths(db, [small_study.folder], pool)
    assert second.added == 0 and second.unchanged == first.files
    c = db.index.counts()
    assert (c["patients"], c["studies"], c["series"], c["instances"]) == (1, 1, 2, 32)
    uid = small_study.series[0].series_uid
    assert len(db.index.series_headers(uid)) == 24
    assert db.index.series("Synthetic")[0].patient_id == "MS-0001"
    assert db.integrity_check() == "ok"
    assert db.path.with_name(db.path.name + "-wal").exists()  # WAL mode


def test_vanished_files_are_detected(small_study, tmp_path, pool):
    folder = tmp_path / "copy"
    shutil.copytree(small_study.folder, folder)
    db = StudyDatabase(tmp_path / "db.sqlite")
    import_paths(db, [folder], pool)
    victims = sorted((folder / "S01").iterdir())[:3]
    for v in victims:
        v.unlink()
    assert db.index.check_files() == 3
    uid = small_study.series[0].series_uid
    assert len(db.index.series_headers(uid)) == 21


def test_damaged_database_is_moved_aside_and_rebuilt(small_study, tmp_path, pool):
    path = tmp_path / "db.sqlite"
    db = StudyDatabase(path)
    import_paths(db, [small_study.folder], pool)
    db.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    data[100:4096 * 3] = os.urandom(4096 * 3 - 100)  # trash the header and first pages
    path.write_bytes(bytes(data))
    db = StudyDatabase(path)
    assert db.needs_rebuild and db.recovered_from.exists()
    rebuild(db, pool)
    assert db.index.counts()["instances"] == 32 and db.integrity_check() == "ok"


def test_zip_import_and_zip_slip_refused(small_study, tmp_path, pool):
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in Path(small_study.folder).rglob("*.dcm"):
            zf.write(p, p.relative_to(small_study.folder))
        zf.writestr("../../escape.dcm", Path(small_study.series[0].files[0]).read_bytes())
    db = StudyDatabase(tmp_path / "db" / "db.sqlite")
    report = import_paths(db, [archive], pool)
    assert report.added == 32
    assert any("outside the archive" in e.reason for e in report.errors)
    assert not (tmp_path / "escape.dcm").exists() and not (tmp_path / "db" / "escape.dcm").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")  # the test writes invalid CS values on purpose
def test_dicomdir_import_and_traversal_refused(tmp_path, pool):
    src = PYDICOM_TEST_FILES / "dicomdirtests"
    media = tmp_path / "media"
    shutil.copytree(src, media)
    db = StudyDatabase(tmp_path / "db.sqlite")
    report = import_paths(db, [media / "DICOMDIR"], pool)
    assert report.files > 10 and not [e for e in report.errors if "outside" in e.reason]
    ds = pydicom.dcmread(media / "DICOMDIR")
    for rec in ds.DirectoryRecordSequence:
        if "ReferencedFileID" in rec:
            rec.ReferencedFileID = ["..", "..", "etc", "passwd"]
            break
    ds.save_as(media / "DICOMDIR")
    report = import_paths(db, [media / "DICOMDIR"], pool)
    assert any("outside its folder" in e.reason for e in report.errors)


@pytest.mark.slow
def test_kill_9_during_import_never_corrupts(tmp_path):
    from medstation.synth import ChestPhantom, write_study

    folder = tmp_path / "many"
    write_study(folder, ChestPhantom(seed=9), series=[small_spec(slices=400, rows=32, columns=32)],
                seed=9)
    db_path = tmp_path / "db.sqlite"
    env = dict(os.environ, MEDSTATION_DB=str(db_path))
    cmd = [sys.executable, "-m", "medstation", "import", str(folder)]
    rng = random.Random(7)
    for _ in range(5):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0.3, 2.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    db = StudyDatabase(db_path)
    assert db.index.counts()["instances"] == 400 and db.integrity_check() == "ok"


def test_linked_folders_are_followed_once_and_loops_named(small_study, tmp_path, pool):
    """A folder linked into the imported tree is imported; a link back up (a loop) or a second link to
    the same folder is named as skipped and walked no further; a dangling link is named too."""
    top = tmp_path / "top"
    top.mkdir()
    (top / "study").symlink_to(small_study.folder, target_is_directory=True)
    (top / "again").symlink_to(small_study.folder, target_is_directory=True)
    (top / "loop").symlink_to(top, target_is_directory=True)
    (top / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    with StudyDatabase(tmp_path / "db.sqlite") as db:
        report = import_paths(db, [top], pool)
        assert report.added == 32 and db.index.counts()["instances"] == 32
    reasons = {Path(e.file).name: e.reason for e in report.errors}
    assert "already imported" in reasons["loop"]
    assert ["already imported" in reasons.get(n, "") for n in ("again", "study")] == [False, True]
    assert "target is missing" in reasons["gone"] and len(reasons) == 3


def test_files_without_study_or_series_uids_form_one_series_per_stack_with_a_warning(small_study, tmp_path,
                                                                                      pool):
    from medstation.dicom import open_series

    folder = tmp_path / "anonymised"
    folder.mkdir()
    for n, f in enumerate(sorted(Path(small_study.folder).rglob("*.dcm"))):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ""  # blanked by a careless anonymiser
        ds.save_as(folder / f"{n:03d}.dcm")
    with StudyDatabase(tmp_path / "db.sqlite") as db:
        import_paths(db, [folder], pool)
        counts = db.index.counts()
        assert (counts["studies"], counts["series"], counts["instances"]) == (1, 2, 32)
    volume = open_series(folder, pool=pool).volume  # the folder's longest stack, whole
    assert volume.shape[0] == 24
    assert any("no Series Instance UID: grouped" in w for w in volume.warnings)
