"""open_series and list_series: the one way from a path or a SeriesRef to a Volume."""

from __future__ import annotations

import threading
import zipfile

import numpy as np
import pytest

from medstation.core.errors import CancelledError, LoadError
from medstation.core.series import SeriesRef
from medstation.dicom import StudyDatabase, import_paths, list_series, open_series, resolve_series


def test_list_series_names_every_stack_with_its_ref(small_study, pool, tmp_path):
    (tmp_path / "junk.txt").write_text("not DICOM")
    listing = list_series([small_study.folder, tmp_path], pool)
    uids = {s.series_uid for s in small_study.series}
    assert {r.series_uid for r in listing.refs} == uids
    assert all(r.study_uid == small_study.study_uid and r.part == 1 for r in listing.refs)
    assert len(listing.headers) == sum(len(s.files) for s in small_study.series)
    assert any("junk.txt" in e.file for e in listing.skipped)


def test_a_path_and_a_ref_open_the_same_volume(small_study, pool, tmp_path):
    thin = small_study.series[0]
    by_path = open_series(small_study.folder, pool=pool, series=thin.series_uid)
    with StudyDatabase(tmp_path / "db.sqlite") as db:
        import_paths(db, [small_study.folder], pool)
        ref = SeriesRef(small_study.study_uid, thin.series_uid)
        by_ref = open_series(ref, db=db, pool=pool)
        with pytest.raises(LoadError, match="no readable files"):
            open_series(SeriesRef(small_study.study_uid, "9.9.9"), db=db, pool=pool)
        with pytest.raises(LoadError, match="has no part 7"):
            resolve_series(ref.with_part(7), db=db)
    assert by_path.volume.shape == by_ref.volume.shape == tuple(thin.shape)
    assert np.array_equal(by_path.volume.voxels, by_ref.volume.voxels)
    assert by_ref.ref == ref.with_part(1) and by_ref.ref.key == f"{thin.series_uid}#1"
    assert by_ref.info["series"].startswith("CT") and not by_ref.errors


def test_files_and_zip_archives_open_with_progress(small_study, pool, tmp_path):
    thick = small_study.series[1]
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in thick.files:
            z.write(f, arcname=f"s/{len(z.namelist())}.dcm")
    seen: list[tuple[int, int]] = []
    opened = open_series(archive, pool=pool, progress=lambda d, t: seen.append((d, t)))
    assert opened.volume.shape == tuple(thick.shape)
    assert seen[-1] == (thick.shape[0], thick.shape[0]) and len(seen) == thick.shape[0]
    by_files = open_series(thick.files, pool=pool)
    assert np.array_equal(by_files.volume.voxels, opened.volume.voxels)


def test_cancel_and_nothing_found_are_typed_errors(small_study, pool, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        open_series(small_study.series[0].files, pool=pool, cancel=cancel)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="no image series found"):
        open_series(tmp_path / "empty", pool=pool)
