"""Label import under hostile and broken files (issue 26, item 6): an SR gets every check a CSV gets,
each failure is one typed line naming the file, nothing is stored then, and importing twice stores
nothing twice."""

from __future__ import annotations

import copy

import pytest
from pydicom import dcmread

from medstation.core.errors import LabelError
from medstation.dicom import StudyDatabase, import_paths
from medstation.dicom.labels import all_labels, export_sr, import_labels
from tests.conftest import NODULE

HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"


@pytest.fixture
def exported(small_study, tmp_path, pool):
    """A database holding the small study and an SR of one nodule label on it."""
    db = StudyDatabase(tmp_path / "db.sqlite")
    import_paths(db, [small_study.folder], pool)
    uid = small_study.series[0].series_uid
    csv = tmp_path / "in.csv"
    csv.write_text(HEADER + f"{uid},{','.join(str(v) for v in NODULE.center)},{NODULE.diameter_mm}\n")
    import_labels(db, csv)
    (sr,) = export_sr(db, all_labels(db), tmp_path / "sr")
    fresh = StudyDatabase(tmp_path / "fresh.sqlite")
    import_paths(fresh, [small_study.folder], pool)
    yield fresh, dcmread(sr), csv
    db.close()
    fresh.close()


def _items(items, value_type=None, code=None):
    for item in items:
        if (value_type is None or item.get("ValueType") == value_type) and (
                code is None or (item.get("ConceptNameCodeSequence")
                                 and item.ConceptNameCodeSequence[0].CodeValue == code)):
            yield item
        yield from _items(item.get("ContentSequence", []), value_type, code)


def _num(ds, code):
    return next(_items(ds.ContentSequence, "NUM", code)).MeasuredValueSequence[0]


def _nest(ds, depth):
    group = next(_items(ds.ContentSequence, "CONTAINER", "125007"))
    inner = copy.deepcopy(group)
    for _ in range(depth):
        wrapper = copy.deepcopy(group)
        wrapper.ContentSequence = [inner]
        inner = wrapper
    group.ContentSequence.append(inner)


MUTATIONS = {
    "negative long axis": (lambda ds: setattr(_num(ds, "103339001"), "NumericValue", -5),
                           "long axis of -5 mm"),
    "infinite long axis": (lambda ds: setattr(_num(ds, "103339001"), "NumericValue", "Infinity"),
                           "is not a finite number"),
    "huge long axis": (lambda ds: setattr(_num(ds, "103339001"), "NumericValue", 1e308),
                       "long axis of 1e+308"),
    "centre far outside": (lambda ds: setattr(next(_items(ds.ContentSequence, "SCOORD3D")), "GraphicData",
                                              [9000.0, 0.0, 0.0]), "lies outside series"),
    "centre of two numbers": (lambda ds: setattr(next(_items(ds.ContentSequence, "SCOORD3D")), "GraphicData",
                                                 [1.0, 2.0]), "coordinates, not 3"),
    "outline without image UID": (lambda ds: delattr(next(_items(ds.ContentSequence, "IMAGE"))
                                                     .ReferencedSOPSequence[0], "ReferencedSOPInstanceUID"),
                                  "malformed"),
    "value without a number": (lambda ds: delattr(_num(ds, "103339001"), "NumericValue"), "malformed"),
    "deep nesting": (lambda ds: _nest(ds, 60), "nested deeper than"),
}


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_broken_sr_is_one_line_and_imports_nothing(exported, tmp_path, name):
    db, ds, _csv = exported
    mutate, says = MUTATIONS[name]
    mutate(ds)
    path = tmp_path / "bad.dcm"
    ds.save_as(path)
    with pytest.raises(LabelError) as err:
        import_labels(db, path)
    assert str(path) in str(err.value) and says in str(err.value), str(err.value)
    assert db.annotations.labels() == []


def test_importing_the_same_file_twice_stores_it_once(exported, tmp_path):
    db, ds, csv = exported
    assert len(import_labels(db, csv)) == 1
    already: list = []
    assert import_labels(db, csv, already=already) == [] and len(already) == 1
    path = tmp_path / "same.dcm"
    ds.save_as(path)
    first = import_labels(db, path)  # the SR's label: its own size name, stored once
    assert import_labels(db, path) == [] and len(db.annotations.labels()) == 1 + len(first)


def test_sr_export_checks_every_label_before_writing_any(exported, tmp_path):
    db, _ds, csv = exported
    import_labels(db, csv)
    key = db.annotations.labels()[0]["series_key"]
    # as an older medstation might have stored it
    db.annotations.add_labels([{"series_key": key, "center_mm": [9000.0, 0.0, 0.0], "diameter_mm": 6.0,
                                "is_nodule": True, "source": "imported"}])
    with pytest.raises(LabelError, match="1 label.* cannot be written as SR; nothing was written: label 2"):
        export_sr(db, all_labels(db), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.dcm"))
