"""labels import / export / list against a real study database: LUNA16 CSV and SR, both ways."""

from __future__ import annotations

import json

import pytest

from medstation.dicom import StudyDatabase
from tests.cli.test_cli import medstation
from tests.conftest import NODULE

HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"


@pytest.fixture
def db_with_study(small_study, tmp_path):
    db = tmp_path / "studies.sqlite"
    proc = medstation("--db", str(db), "import", small_study.folder, "--json")
    assert proc.returncode == 0, proc.stderr
    return db, small_study


def labels(db) -> dict:
    proc = medstation("--db", str(db), "labels", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_luna16_csv_round_trip_and_sr_round_trip(db_with_study, tmp_path):
    db, study = db_with_study
    uid = study.series[0].series_uid
    x, y, z = NODULE.center
    csv = tmp_path / "in.csv"
    csv.write_text(HEADER + f"{uid},{x},{y},{z},{NODULE.diameter_mm}\n")
    proc = medstation("--db", str(db), "labels", "import", str(csv), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["imported"] == 1
    listed = labels(db)
    assert listed["totals"]["nodules"] == 1 and listed["totals"]["by_source"] == {"imported": 1}
    lab = listed["labels"][0]
    assert lab["series_uid"] == uid and lab["center_mm"] == pytest.approx([x, y, z])
    # LUNA16 out: the same row
    out = tmp_path / "out.csv"
    proc = medstation("--db", str(db), "labels", "export", "--format", "luna16", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    row = out.read_text().splitlines()[1].split(",")
    assert row[0] == uid
    assert [float(v) for v in row[1:]] == pytest.approx([x, y, z, NODULE.diameter_mm], abs=1e-2)
    # SR out, then into a fresh database holding the same study: the same nodule back
    proc = medstation("--db", str(db), "labels", "export", "--format", "sr", "--out", str(tmp_path / "sr"),
                      "--json")
    assert proc.returncode == 0, proc.stderr
    (sr,) = json.loads(proc.stdout)["files"]
    db2 = tmp_path / "other.sqlite"
    assert medstation("--db", str(db2), "import", study.folder).returncode == 0
    proc = medstation("--db", str(db2), "labels", "import", sr, "--json")
    assert proc.returncode == 0, proc.stderr
    back = labels(db2)["labels"]
    assert len(back) == 1 and back[0]["series_uid"] == uid
    assert back[0]["center_mm"] == pytest.approx([x, y, z], abs=0.5)
    assert back[0]["diameter_mm"] == pytest.approx(NODULE.diameter_mm, abs=0.01)


def test_bad_rows_are_each_named_and_nothing_is_imported(db_with_study, tmp_path):
    db, study = db_with_study
    uid = study.series[0].series_uid
    x, y, z = NODULE.center
    csv = tmp_path / "bad.csv"
    csv.write_text(HEADER + f"{uid},{x},{y},{z},8\n1.2.3.999,{x},{y},{z},8\n{uid},{x},{y},900,8\n")
    proc = medstation("--db", str(db), "labels", "import", str(csv))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 row(s) cannot be used; nothing was imported" in proc.stderr
    assert f"{csv}:3: series 1.2.3.999 is not in the study database" in proc.stderr
    assert f"{csv}:4:" in proc.stderr and "lies outside series" in proc.stderr
    assert labels(db)["totals"]["labels"] == 0
    csv.write_text(HEADER + f"{uid},x,{y},{z},8\n")
    proc = medstation("--db", str(db), "labels", "import", str(csv))
    assert proc.returncode == 2 and f"{csv}:2: expected a series UID and four numbers" in proc.stderr
    proc = medstation("--db", str(db), "labels", "import", study.series[0].files[0])
    assert proc.returncode == 2 and "not a structured report" in proc.stderr


def test_reader_reviews_of_ai_findings_are_labels(db_with_study):
    db, study = db_with_study
    key = study.series[0].series_uid
    finding = {"finding_id": "F1", "center_mm": list(NODULE.center), "diameter_mm": 9.0,
               "equivalent_diameter_mm": 8.4, "mean_diameter_mm": 8.1, "short_axis_mm": 7.2,
               "size_method": "segmentation"}
    other = {"finding_id": "F2", "center_mm": [0.0, 0.0, 0.0], "diameter_mm": 6.0}
    with StudyDatabase(db) as d:
        d.annotations.review_finding(key, "nodule-detector", "1.1.0", finding, "accepted")
        d.annotations.review_finding(key, "nodule-detector", "1.1.0", other, "rejected")
    listed = labels(db)
    assert listed["totals"]["nodules"] == 1 and listed["totals"]["negatives"] == 1
    assert listed["totals"]["by_source"] == {"accepted": 1, "rejected": 1}
    acc = next(lab for lab in listed["labels"] if lab["source"] == "accepted")
    # the label holds the size the findings list showed (the mean diameter), named, not the sphere's
    assert acc["diameter_mm"] == 8.1 and acc["size_name"] == "mean diameter"
    assert acc["model"] == "nodule-detector@1.1.0"
    rej = next(lab for lab in listed["labels"] if lab["source"] == "rejected")
    assert rej["diameter_mm"] == 6.0 and rej["size_name"] == "long axis" and rej["size_method"] == "box"
