"""``train-followup --local-tracks``: reports are read all or nothing, every value finite and bounded
(issue 26, item 5); a NaN can never reach the weights."""

from __future__ import annotations

import json

import pytest

from medstation.core.errors import LabelError
from medstation.training.followup_rnn import tracks_from_reports
from tests.cli.test_cli import medstation


def _point(date: str, volume: float, diameter: float = 8.0) -> dict:
    return {"study_date": date, "volume_mm3": volume, "diameter_mm": diameter, "mean_hu": 20.0,
            "type": "solid"}


def _report(tmp_path, tracks, name="r.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"patient": {}, "tracks": tracks}))
    return str(path)


GOOD = {"status": "growing", "confirmed": True,
        "measurements": [_point("20200101", 200.0), None, _point("20210101", 300.0, 8.5)]}


def test_a_good_report_gives_its_tracks_in_days(tmp_path):
    unconfirmed = {**GOOD, "confirmed": False}
    box_sized = {"measurements": [_point("20200101", 100.0), {**_point("20210101", 0), "volume_mm3": None}]}
    tracks = tracks_from_reports([_report(tmp_path, [GOOD, unconfirmed, box_sized])])
    assert len(tracks) == 1 and [p["days"] for p in tracks[0]["points"]] == [0.0, 366.0]


@pytest.mark.parametrize("field, value, says", [
    ("volume_mm3", float("nan"), "volume_mm3 nan is not a number in (0, 4.2e+06]"),
    ("volume_mm3", float("inf"), "volume_mm3 inf"),
    ("volume_mm3", -5.0, "volume_mm3 -5.0"),
    ("diameter_mm", 1e308, "diameter_mm 1e+308"),
    ("diameter_mm", "8", "diameter_mm 8 is not a number"),
    ("mean_hu", float("nan"), "mean_hu nan"),
    ("days", float("nan"), "days nan"),
    ("study_date", "2021-13-45", "is not a date"),
    ("study_date", None, "is not a date"),
])
def test_a_bad_value_is_one_line_naming_file_track_and_field(tmp_path, field, value, says):
    bad = json.loads(json.dumps(GOOD))
    bad["measurements"][2][field] = value
    path = _report(tmp_path, [GOOD, bad])
    with pytest.raises(LabelError) as err:
        tracks_from_reports([path])
    assert f"{path}: track 2, measurement 3: " in str(err.value) and says in str(err.value)


@pytest.mark.parametrize("text, says", [
    ("{", "not a readable follow-up report"), ("[" * 100_000, "not a readable follow-up report"),
    ('{"tracks": 5}', "no 'tracks' list"), ('[1, 2]', "no 'tracks' list"),
    ('{"tracks": [1]}', "track 1: not a track"), ('{"tracks": [{"measurements": [5]}]}', "not an object"),
])
def test_a_malformed_report_is_a_label_error(tmp_path, text, says):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(LabelError, match=says):
        tracks_from_reports([str(path)])


def test_dates_that_go_back_are_refused(tmp_path):
    back = {"measurements": [_point("20210101", 200.0), _point("20200101", 300.0)]}
    with pytest.raises(LabelError, match="go back in time"):
        tracks_from_reports([_report(tmp_path, [back])])


def test_the_cli_refuses_a_nan_report_and_saves_nothing(tmp_path):
    bad = json.loads(json.dumps(GOOD))
    bad["measurements"][0]["volume_mm3"] = float("nan")
    out = tmp_path / "ft"
    proc = medstation("train-followup", "--base", "followup-rnn", "--local-tracks", _report(tmp_path, [bad]),
                      "--steps", "5", "--tracks", "50", "--out", str(out))
    assert proc.returncode == 2 and "volume_mm3 nan" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
