"""Loader round two: every class of hostile file from the outside corpora and the structural
fuzzing gets a typed problem (reason + hint), strict JSON, and never costs the healthy series.

Each case is made from a real file by changing one attribute (seeded, deterministic) and goes
through the real pipeline (`medstation info` / `detect`, worker processes). Runs in well under
two minutes.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from medstation.cli.info import describe
from tests.cli.test_cli import medstation
from tests.conftest import PYDICOM_TEST_FILES


def _variant(small_study, out: Path, name: str, change) -> Path:
    """A copy of the small study's thin series as a new series whose every file got ``change``."""
    folder = out / name
    folder.mkdir(parents=True)
    uid = generate_uid(entropy_srcs=[name])
    for n, f in enumerate(sorted(small_study.series[0].files)):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[name, str(n)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        change(ds, n)
        ds.save_as(folder / f"{n:03d}.dcm", enforce_file_format=True)
    return folder


GEOMETRY = {
    "spacing-huge": (lambda ds, n: setattr(ds, "PixelSpacing", [1e308, 1e308]), "Pixel Spacing"),
    "spacing-zero": (lambda ds, n: setattr(ds, "PixelSpacing", [0, 0]), "Pixel Spacing"),
    "spacing-negative": (lambda ds, n: setattr(ds, "PixelSpacing", [-1, -1]), "Pixel Spacing"),
    "positions-inf": (lambda ds, n: setattr(ds, "ImagePositionPatient",
                                            [0, 0, [0, 1e308, -1e308][n % 3]]), "slice position"),
    "orientation-zero": (lambda ds, n: setattr(ds, "ImageOrientationPatient", [0] * 6), "zero direction"),
    "orientation-parallel": (lambda ds, n: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
                             "not perpendicular"),
}


@pytest.fixture(scope="module")
def hostile(small_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile")
    shutil.copytree(Path(small_study.series[0].files[0]).parent, out / "healthy")
    for name, (change, _) in GEOMETRY.items():
        _variant(small_study, out, name, change)
    _variant(small_study, out, "thickness-negative", lambda ds, n: setattr(ds, "SliceThickness", -5))
    # the same instances again in another transfer syntax: duplicates, not a taller volume
    dup = out / "duplicates"
    dup.mkdir()
    for f in sorted(small_study.series[0].files)[:6]:
        ds = pydicom.dcmread(f)
        ds.compress(pydicom.uid.RLELossless, generate_instance_uid=False)
        ds.save_as(dup / Path(f).name, enforce_file_format=True)
    # pixel-module values a decoder must never see
    bad = out / "pixel-module"
    bad.mkdir()
    for name, (kw, value) in {"spp0": ("SamplesPerPixel", 0), "pixrep5": ("PixelRepresentation", 5),
                              "garbage": ("PhotometricInterpretation", "GARBAGE")}.items():
        ds = pydicom.dcmread(small_study.series[0].files[0])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[name])
        setattr(ds, kw, value)
        ds.save_as(bad / f"{name}.dcm", enforce_file_format=True)
    # truncated compressed pixel data, a retired JPEG syntax, a file without File Meta
    cut = out / "damaged"
    cut.mkdir()
    for f in ("SC_rgb_jpeg.dcm", "MR_small_RLE.dcm"):
        data = (PYDICOM_TEST_FILES / f).read_bytes()
        (cut / f"cut_{f}").write_bytes(data[: len(data) * 7 // 10])
    data = (PYDICOM_TEST_FILES / "SC_rgb_jpeg.dcm").read_bytes()  # baseline JPEG, relabelled retired
    retired = data.replace(b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.53", 1)
    (cut / "retired_jpeg.dcm").write_bytes(retired)
    # undefined-length sequences 400 deep, and a private element declaring 2 GiB before the pixels
    data = Path(small_study.series[0].files[0]).read_bytes()
    at = data.rfind(b"\xe0\x7f\x10\x00")
    nest = (struct.pack("<HH", 0x0040, 0xA730) + b"SQ\x00\x00\xff\xff\xff\xff"
            + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)) * 400
    close = (struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)) * 400
    (cut / "deep.dcm").write_bytes(data[:at] + nest + close + data[at:])
    private = (struct.pack("<HH", 0x0009, 0x0010) + b"LO" + struct.pack("<H", 4) + b"ACME"
               + struct.pack("<HH", 0x0009, 0x1001) + b"OB\x00\x00" + struct.pack("<I", 0x7FFFFFF0)
               + b"\0" * 4)
    (cut / "swallow.dcm").write_bytes(data[:at] + private + data[at:])
    # no preamble, no File Meta, implicit VR little endian (as old files and OT-PAL-8-face.dcm are)
    ds = pydicom.dcmread(small_study.series[1].files[0])
    ds.decompress()
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["no-meta"])
    del ds.file_meta
    ds.preamble = None
    pydicom.dcmwrite(cut / "no_meta.dcm", ds, implicit_vr=True, little_endian=True)
    assert (cut / "no_meta.dcm").read_bytes()[128:132] != b"DICM"
    return out


def test_every_class_gets_a_typed_problem_and_the_healthy_series_loads(hostile, small_study):
    rep = describe([hostile])
    text = json.dumps(rep, allow_nan=False)  # strict JSON: no NaN or Infinity anywhere
    assert "Traceback" not in text
    series = {se["description"] + "|" + se["series_uid"][-6:]: se for p in rep["patients"]
              for s in p["studies"] for se in s["series"]}
    problems = {Path(e["file"]).name: e for e in rep["problems"]}
    assert all(e["reason"] and e["hint"] for e in rep["problems"])
    healthy = [se for se in series.values() if se["series_uid"] == small_study.series[0].series_uid]
    assert healthy[0]["loaded"] and healthy[0]["shape"][0] == small_study.series[0].shape[0], healthy
    # the duplicates are the healthy series' own instances: used once, listed, no taller volume
    assert len(healthy[0]["duplicates"]) == 6 and "repeat an instance" in " ".join(healthy[0]["warnings"])
    # impossible geometry: an error on the series, shown without patient geometry
    by_uid = {se["series_uid"]: se for se in series.values()}
    for name, (_change, words) in GEOMETRY.items():
        uid = generate_uid(entropy_srcs=[name])
        se = by_uid[uid]
        errors = " ".join(se["geometry_errors"])
        assert words in errors, (name, errors)
        assert not se["has_geometry"] and se["loaded"], name
    thick = by_uid[generate_uid(entropy_srcs=["thickness-negative"])]
    assert "Slice Thickness -5 mm is impossible" in " ".join(thick["warnings"]) and thick["has_geometry"]
    assert thick["spacing_mm"][0] > 0
    # attributes named as pydicom names them, with their tag
    for name, words in (("spp0.dcm", "Samples per Pixel (0028,0002)"),
                        ("pixrep5.dcm", "Pixel Representation (0028,0103)"),
                        ("garbage.dcm", "Photometric Interpretation (0028,0004)"),
                        ("cut_SC_rgb_jpeg.dcm", "ends inside its pixel data"),
                        ("cut_MR_small_RLE.dcm", "ends inside its pixel data"),
                        ("retired_jpeg.dcm", "unsupported transfer syntax 1.2.840.10008.1.2.4.53"),
                        ("deep.dcm", "nested too deeply"), ("swallow.dcm", "declares 2147483632 bytes")):
        assert name in problems and words in problems[name]["reason"], (name, problems.get(name))
    # no File Meta: read as implicit VR little endian, as the header scan does
    assert "no_meta.dcm" not in problems
    face = [se for se in series.values() if any(p.endswith("no_meta.dcm") for p in se["paths"])]
    assert face and face[0]["loaded"]


def test_detect_skips_impossible_geometry_and_reports_the_healthy_series(hostile, small_study, tmp_path):
    out = tmp_path / "out"
    inputs = [hostile / name for name in ("healthy", "spacing-huge", "positions-inf", "spacing-zero")]
    proc = medstation("detect", *map(str, inputs), "--out", str(out), "--json", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Overflow" not in proc.stderr
    report = json.loads(proc.stdout)
    entries = {e["series_uid"]: e for e in report["series"]}
    assert "findings" in entries[small_study.series[0].series_uid]
    for name in ("spacing-huge", "positions-inf", "spacing-zero"):
        skipped = entries[generate_uid(entropy_srcs=[name])]["skipped"]
        assert skipped["type"] == "ModelError" and "no valid patient geometry" in skipped["reason"]
    json.loads((out / "detect-report.json").read_text())  # strict JSON on disk too


def test_a_deflate_bomb_is_refused_before_it_inflates(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    ds.PatientID, ds.Modality = "BOMB", "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 1024
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.SamplesPerPixel, ds.PixelRepresentation = 7, 1, 0
    ds.PhotometricInterpretation, ds.NumberOfFrames = "MONOCHROME2", 300
    ds.PixelData = bytes(1024 * 1024 * 300)  # 300 MiB of zeros deflates to about 300 KB
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = \
        ds.SOPClassUID, ds.SOPInstanceUID
    path = tmp_path / "bomb.dcm"
    ds.save_as(path, enforce_file_format=True)
    del ds
    assert path.stat().st_size < 2 * 1024**2
    rep = describe([tmp_path])
    (problem,) = rep["problems"]
    assert "decompression bomb" in problem["reason"] and problem["hint"]


def test_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "medstation", "info", "--json", "--headers-only",
                             str(PYDICOM_TEST_FILES)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    _out, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_info_and_import_count_the_same(tmp_path, pool):
    from medstation.dicom import StudyDatabase, import_paths

    rep = describe([PYDICOM_TEST_FILES], pixels=False)
    with StudyDatabase(tmp_path / "db.sqlite") as db:
        import_paths(db, [PYDICOM_TEST_FILES], pool)
        counts = db.index.counts()
    for key in ("patients", "studies", "series", "instances"):
        assert rep["counts"][key] == counts[key], key


def test_a_large_deflate_bomb_is_decided_in_its_first_megabytes(tmp_path):
    """A 20 MB file that would inflate to 20 GB: refused after inflating a few tens of MB, not 4 GB."""
    import re
    import zlib

    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    from medstation.core.errors import LoadError
    from medstation.dicom.header import INFLATE_FREE_BYTES, check_deflate

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "big-bomb.dcm"
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = c.compress(bytes(64 << 20)) + c.flush(zlib.Z_FULL_FLUSH)  # 64 MiB of zeros in ~64 KB
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(f, meta, enforce_standard=True)
        for _ in range(300):  # the same independent block: 300 x 64 MiB
            f.write(block)
        f.write(c.flush())
    with pytest.raises(LoadError, match="decompression bomb") as err:
        check_deflate(str(path), path.stat().st_size)
    inflated_mib = float(re.search(r"inflates to more than (\d+) MiB", str(err.value)).group(1))
    assert inflated_mib <= 2 * INFLATE_FREE_BYTES / 1024**2, str(err.value)
