"""De-identified export: sentinels planted in every PS3.15 Annex E attribute must not come out."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID_dictionary

from medstation.dicom.deid import BurnedInAnnotationError, deidentify
from medstation.dicom.results import export_results
from tests.conftest import nodule_finding

# the Annex E table (2026c edition) from an independent project (dicom-anonymizer, a test dependency)
annex_e = pytest.importorskip("dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c")
ANNEX_E_TAGS = sorted(set(annex_e.ALL_TAGS))
SHIFT = -400
STRING_VRS = {"AE", "CS", "LO", "LT", "SH", "ST", "UT", "UC", "UR", "PN"}


class Sentinels:
    def __init__(self) -> None:
        self.values: list[str] = []
        self.n = 0

    def next(self, vr: str) -> str | None:
        self.n += 1
        n = self.n
        if vr in STRING_VRS:
            value = f"SENTINEL^{n:05d}" if vr == "PN" else f"SENTX{n:05d}"
        elif vr == "DA":
            value = (dt.date(1917, 1, 1) + dt.timedelta(days=n % 380)).strftime("%Y%m%d")
        elif vr == "DT":
            value = (dt.date(1917, 1, 1) + dt.timedelta(days=n % 380)).strftime("%Y%m%d") + "101112"
        elif vr == "UI":
            value = f"1.2.826.0.1.3680043.10.4242.{n}"
        elif vr == "AS":
            value = "077Y"
        else:
            return None  # numbers, binary and times: no searchable sentinel
        self.values.append(value)
        return value


def nested_item(sent: Sentinels) -> Dataset:
    item = Dataset()
    item.PatientName = sent.next("PN")
    item.ReferencedSOPInstanceUID = sent.next("UI")
    item.TextValue = sent.next("UT")
    block = item.private_block(0x0099, "SENTINEL CREATOR", create=True)
    block.add_new(0x01, "LO", sent.next("LO"))
    return item


def plant(ds: Dataset, sent: Sentinels) -> int:
    planted = 0
    for entry in ANNEX_E_TAGS:
        group, elem = entry[:2]  # (group, element[, group mask, element mask]) for repeating groups
        tag = (group << 16) | elem
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        vr = vr.split(" or ")[0]
        if group < 0x0008:
            continue  # command and file meta groups: not part of a stored dataset
        if tag in (0x00080016, 0x00080018, 0x0020000D, 0x0020000E):
            continue  # the identity of the instance itself: planted below as UIDs the file keeps
        if vr == "SQ":
            ds.add_new(tag, "SQ", [nested_item(sent)])
            planted += 1
            continue
        value = sent.next(vr)
        if value is not None:
            ds.add_new(tag, vr, value)
            planted += 1
    block = ds.private_block(0x0011, "SENTINEL CREATOR", create=True)
    block.add_new(0x10, "LO", sent.next("LO"))
    ds.PatientSex = "O"  # an enumerated value highdicom checks when it copies it into the SR and SEG
    return planted


@pytest.fixture
def planted_study(tmp_path, small_study, small_volume):
    """The small study's thin series with sentinels in every Annex E attribute, plus its SR and SEG."""
    volume, _ = small_volume
    src = tmp_path / "SENTX-folder-Doe^John"
    src.mkdir()
    sent = Sentinels()
    files = []
    for n, (path, _frame) in enumerate(volume.sources):
        ds = dcmread(path)
        sent.n = 0  # the same sentinel per attribute in every file (a series shares its frame of reference)
        plant(ds, sent)
        # the instance UIDs are sentinels too (they were planted before the SR/SEG were made)
        out = src / f"SENTX-name-{n:03d}-Doe^John.dcm"
        ds.save_as(out, enforce_file_format=True)
        files.append(str(out))
    from medstation.core.volume import Volume
    planted_volume = Volume(volume.voxels, volume.spacing, volume.origin, volume.direction,
                            sources=[(f, 0) for f in files])
    results = export_results([nodule_finding(volume)], planted_volume.sources, tmp_path / "results",
                             voxels=volume.voxels)
    input_uids = set()
    for f in files + [results.sr, results.seg]:
        for elem in dcmread(f).iterall():
            if elem.VR == "UI" and elem.value:
                values = elem.value if isinstance(elem.value, (list, tuple)) or elem.VM > 1 else [elem.value]
                input_uids |= {str(v) for v in values if str(v) not in UID_dictionary}
    return files + [results.sr, results.seg], sent, input_uids


def test_no_sentinel_survives(planted_study, tmp_path, caplog, capsys):
    files, sent, input_uids = planted_study
    sent.values = sorted(set(sent.values))
    assert len(sent.values) > 300  # the table has several hundred attributes
    out = tmp_path / "export"
    caplog.set_level(logging.DEBUG)
    report = deidentify(files, out, date_shift_days=SHIFT)
    assert len(report.files) == len(files)
    blobs = [Path(f).read_bytes() for f in report.files]
    names = " ".join(str(Path(f).relative_to(out)) for f in report.files)
    logs = caplog.text + "".join(capsys.readouterr())
    leaked = [v for v in sent.values if any(v.encode() in b for b in blobs) or v in names or v in logs]
    assert leaked == []
    assert "SENTX" not in names and "Doe" not in names
    for needle in ("Synthetic", "MS-0001", "19580312"):  # the study's own patient details
        assert not any(needle.encode() in b for b in blobs), needle

    out_uids = set()
    outputs = [dcmread(f) for f in report.files]
    for ds in outputs:
        assert ds.PatientIdentityRemoved == "YES"
        assert "Annex E" in "; ".join(ds.DeidentificationMethod)
        assert ds.PatientName == ds.PatientID == "ANON0001"
        for elem in ds.iterall():
            if elem.VR == "UI" and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                out_uids |= {str(v) for v in values if str(v) not in UID_dictionary}
        assert not [e for e in ds.iterall() if e.tag.is_private]
    assert out_uids and not (out_uids & input_uids)

    # references between the exported objects still resolve
    ct = [d for d in outputs if d.Modality == "CT"]
    sr = next(d for d in outputs if d.Modality == "SR")
    seg = next(d for d in outputs if d.Modality == "SEG")
    ct_uids = {str(d.SOPInstanceUID) for d in ct}
    sr_refs = {str(e.value) for e in sr.iterall() if e.keyword == "ReferencedSOPInstanceUID"}
    seg_refs = {str(e.value) for e in seg.iterall() if e.keyword == "ReferencedSOPInstanceUID"}
    assert sr_refs and sr_refs <= ct_uids
    assert seg_refs and seg_refs <= ct_uids
    assert seg.FrameOfReferenceUID == ct[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == ct[0].StudyInstanceUID
    assert seg.SegmentSequence[0].TrackingUID in {str(e.value) for e in sr.iterall() if e.keyword == "UID"}
    # dates moved by the same number of days
    original = dcmread(files[0])
    assert ct[0].StudyDate == (dt.datetime.strptime(original.StudyDate, "%Y%m%d")
                               + dt.timedelta(days=SHIFT)).strftime("%Y%m%d")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_deidentified_objects_stay_valid(planted_study, tmp_path):
    files, _, _ = planted_study
    report = deidentify(files, tmp_path / "export", date_shift_days=SHIFT)
    by_modality = {dcmread(f, stop_before_pixels=True).Modality: f for f in report.files}
    for modality in ("SR", "SEG"):
        run = subprocess.run(["dciodvfy", "-new", by_modality[modality]], capture_output=True, text=True)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (modality, errors)


def test_burned_in_annotation_is_refused_unless_confirmed(tmp_path, small_study):
    src = sorted(Path(small_study.folder).rglob("*.dcm"))[:2]
    flagged = tmp_path / "flagged.dcm"
    ds = dcmread(src[0])
    ds.BurnedInAnnotation = "YES"
    ds.save_as(flagged)
    us = tmp_path / "us.dcm"
    ds = dcmread(src[1])
    ds.Modality = "US"
    ds.pop("BurnedInAnnotation", None)
    ds.save_as(us)
    with pytest.raises(BurnedInAnnotationError) as exc:
        deidentify([flagged, us], tmp_path / "out")
    assert exc.value.files == [str(flagged), str(us)]
    assert not (tmp_path / "out").exists()
    report = deidentify([flagged, us], tmp_path / "out", allow_burned_in=True)
    assert len(report.files) == 2


def test_random_shift_is_consistent_and_uids_differ_between_exports(tmp_path, small_study):
    files = sorted(str(p) for p in Path(small_study.folder).rglob("*.dcm"))[:4]
    a = deidentify(files, tmp_path / "a")
    b = deidentify(files, tmp_path / "b")
    assert a.date_shift_days < 0
    da = [dcmread(f) for f in a.files]
    assert len({d.StudyDate for d in da}) == 1 and len({d.StudyInstanceUID for d in da}) == 1
    db_ = [dcmread(f) for f in b.files]
    assert da[0].StudyInstanceUID != db_[0].StudyInstanceUID  # a fresh secret per export
    assert isinstance(FileMetaDataset(), Dataset)
