"""detect, evaluate and bench infer, run as a user runs them (the shipped model)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from medstation.synth import ChestPhantom, Nodule, SeriesSpec, write_study
from tests.cli.test_cli import medstation

NODULE = Nodule((65.0, 10.0, -15.0), 12.0, label="test")


@pytest.fixture(scope="module")
def chest(tmp_path_factory):
    out = tmp_path_factory.mktemp("chest")
    spec = SeriesSpec(description="chest 2.5 mm", slices=40, rows=176, columns=176, pixel_spacing=2.0,
                      slice_thickness=2.5, z_center=-15.0)
    return write_study(out, ChestPhantom(seed=20001, nodules=[NODULE]), series=[spec], seed=20001)


def test_detect_writes_findings_per_series(chest, tmp_path):
    mr = pydicom.data.get_testdata_file("MR_small.dcm")
    out = tmp_path / "out"
    proc = medstation("detect", chest.folder, mr, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["not_for_clinical_use"] is True and report["model"]["version"]
    ct = next(s for s in report["series"] if s["series_uid"] == chest.series[0].series_uid)
    other = next(s for s in report["series"] if s is not ct)
    assert other["skipped"]["type"] == "ModelError"  # one MR slice: reported, not a traceback
    top = ct["findings"][0]
    assert np.linalg.norm(np.subtract(top["center_mm"], NODULE.center)) <= NODULE.diameter_mm / 2
    # sized from its voxels, not the box: the drawn 12 mm sphere measures 12 mm
    assert top["size_method"] == "segmentation", top
    assert abs(top["equivalent_diameter_mm"] - 12.0) <= 1.2 and abs(top["diameter_mm"] - 12.0) <= 1.8, top
    assert set(top) >= {"center_voxel", "center_slice", "slice_range", "score", "model_name", "model_version"}
    saved = json.loads((out / f"{chest.series[0].series_uid}.json").read_text())
    assert saved["findings"] == ct["findings"]
    assert (out / "detect-report.json").exists()


def test_detect_on_nothing_is_one_clear_line(tmp_path):
    proc = medstation("detect", str(tmp_path), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no image series found" in proc.stderr


def test_detect_with_a_tampered_model_is_one_clear_line(tmp_path):
    import shutil

    from medstation.ai.store import builtin_models_dir

    model = tmp_path / "model"
    shutil.copytree(builtin_models_dir() / "nodule-detector", model)
    with open(model / "model.safetensors", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    proc = medstation("detect", str(tmp_path), "--out", str(tmp_path / "o"), "--model", str(model))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sha256" in proc.stderr and "model.safetensors" in proc.stderr


def test_evaluate_reports_froc_on_held_out_studies(tmp_path):
    proc = medstation("evaluate", "--studies", "1", "--data", str(tmp_path / "eval"), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["scans"] == 1 and r["nodules"] >= 1 and r["seeds"] == [10000]
    assert set(r["sensitivity_at_fp_per_scan"]) == {"0.125", "0.25", "0.5", "1.0", "2.0", "4.0", "8.0"}
    assert 0.0 <= r["cpm"] <= 1.0
    proc = medstation("evaluate", "--studies", "2", "--seed0", "100", "--data", str(tmp_path / "e2"))
    assert proc.returncode != 0 and "overlap the training seeds" in proc.stderr


def test_bench_infer_json(tmp_path):
    proc = medstation("bench", "infer", "--slices", "40", "--size", "128", "--rounds", "1", "--contend", "1",
                      "--against", "nodule-detector@1.1.0", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["end_to_end_s"] > 0 and r["baseline_plain_loop_s"] > 0 and r["speedup_vs_baseline"] > 0
    # another version on the same CT and threads: its network time and the ratio of the two
    a = r["against"]
    assert a["model"] == "nodule-detector 1.1.0" and a["network_s"] > 0
    assert a["network_ratio"] == pytest.approx(r["network_s"] / a["network_s"], rel=0.2, abs=0.02)
    assert set(r["threads_with_gui_thread"]) >= {"1"}
    # beside a busy process: both teams timed against the quiet run, the threads each batch ran on
    c = r["contended"]
    assert c["busy_processes"] == 1 and c["adaptive_ratio_vs_quiet"] > 0 and c["fixed_ratio_vs_quiet"] > 0
    assert c["threads_per_batch"] and all(1 <= n <= r["cpu_threads_default"] for n in c["threads_per_batch"])
    # the network on onnxruntime and OpenVINO beside torch, outputs compared, and what that means for
    # the lane
    lane = r["lanes"]
    assert lane["onnxruntime"] and lane["max_abs_difference"] < 1e-3 and lane["onnxruntime_speedup"] > 0
    assert lane["openvino"] and lane["openvino_max_abs_difference"] < 1e-3 and lane["openvino_speedup"] > 0
    fastest = max(lane["onnxruntime_speedup"], lane["openvino_speedup"])
    assert ("torch stays" in lane["verdict"]) == (fastest < lane["switch_at"])


def test_evaluate_on_labelled_studies_from_a_luna16_csv(chest, tmp_path):
    uid = chest.series[0].series_uid
    csv = tmp_path / "annotations.csv"
    x, y, z = NODULE.center
    csv.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{uid},{x},{y},{z},{NODULE.diameter_mm}\n")
    proc = medstation("evaluate", "--studies-dir", chest.folder, "--annotations", str(csv),
                      "--min-diameter", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["family"] == "annotated" and r["scans"] == 1 and r["nodules"] == 1
    assert r["sensitivity_at_fp_per_scan"]["8.0"] == 1.0 and 0 < r["cpm"] <= 1
    assert r["studies"][0]["series"] == uid
    assert r["sizes"][0]["nodules"] == 1 and abs(r["sizes"][0]["diameter_median_error"]) < 0.1
    # every bad row is named with its line; nothing is used
    csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n"
                   f"{uid},{x},{y},{z},{NODULE.diameter_mm}\n{uid},abc,1,2,3\n{uid},1,2,3,-4\n")
    proc = medstation("evaluate", "--studies-dir", chest.folder, "--annotations", str(csv))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 bad row(s)" in proc.stderr and f"{csv}:3" in proc.stderr and f"{csv}:4" in proc.stderr
    # a nodule outside the volume, a series that is not there
    csv.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{uid},{x},{y},900,8\n")
    proc = medstation("evaluate", "--studies-dir", chest.folder, "--annotations", str(csv))
    assert proc.returncode == 2 and "outside its volume" in proc.stderr
    csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3.4,0,0,0,8\n")
    proc = medstation("evaluate", "--studies-dir", chest.folder, "--annotations", str(csv))
    assert proc.returncode == 2 and "not found" in proc.stderr and "1.2.3.4" in proc.stderr


class _Head:
    """A head-like phantom: soft tissue in a skull, no air inside the body."""

    def render_slice(self, z, x, y, thickness=1.0):
        xx, yy = np.meshgrid(x, y - 10.0)
        img = np.full(xx.shape, -1000.0, np.float32)
        img[(xx / 75) ** 2 + (yy / 90) ** 2 < 1] = 700.0
        img[(xx / 70) ** 2 + (yy / 85) ** 2 < 1] = 35.0
        return img

    def truth(self):
        return []


def test_detect_on_a_head_says_why_in_json_and_sr(tmp_path):
    from medstation.dicom.results import read_skipped

    spec = SeriesSpec(description="head", slices=24, rows=128, columns=128, pixel_spacing=1.6,
                      slice_thickness=2.5, z_center=0.0)
    study = write_study(tmp_path / "head", _Head(), series=[spec], seed=3)
    proc = medstation("detect", study.folder, "--out", str(tmp_path / "o"), "--dicom", "--json")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["series"][0]
    assert "findings" not in entry and "no lung in this series" in entry["skipped"]["reason"]
    sr = entry["dicom"]["sr"]
    reason = read_skipped(sr)
    assert "no lung in this series" in reason and "detection skipped" in reason
    assert "detection skipped" in pydicom.dcmread(sr).SeriesDescription


def test_bench_followup_json():
    proc = medstation("bench", "followup", "--slices", "40", "--timepoints", "2", "--contend", "1", "--json",
                      timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["contended"]["busy_processes"] == 1 and r["contended"]["ratio_vs_quiet"] > 0
    assert len(r["contended"]["registration_seconds"]) == 1
    assert r["timepoints"] == 2 and len(r["registration_seconds"]) == 1 and r["registration_seconds"][0] > 0
    assert r["followup_total_s"] > r["registration_seconds"][0] and r["matching_ms_per_pair"] >= 0


def test_bench_train_json():
    proc = medstation("bench", "train", "--slices", "60", "--epoch-length", "3", "--batch-size", "2",
                      "--replay", "6", "--baseline-steps", "3", "--contend", "1", "--contend-steps", "4",
                      "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    start, crops, replay, epoch = r["start"], r["crops"], r["replay_samples"], r["epoch"]
    assert start["first_line_s"] > start["baseline_python_s"] > 0  # a real child, started and read
    assert crops["crops"] > 0 and crops["with_nodules"] > 0 and crops["crops_per_s"] > 0
    assert replay["samples"] == 6 and replay["from_cache_s"] < replay["render_s"]  # rendered once
    assert epoch["checkpoint_written"] and epoch["step_lines"] >= 1 and epoch["baseline_bare_step_s"] > 0
    assert epoch["seconds"] == pytest.approx(epoch["per_step_s"] * 3, rel=0.05)
    c = r["contended"]
    assert c["busy_processes"] == 1 and c["steps"] == 4 and c["adaptive_step_s"] > 0 and c["fixed_step_s"] > 0
    text = medstation("bench", "train", "--slices", "40", "--epoch-length", "2", "--batch-size", "2",
                      "--replay", "4", "--baseline-steps", "2", timeout=600)
    assert text.returncode == 0, text.stderr
    assert "first progress line after" in text.stdout and "crops/s" in text.stdout


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    spec = SeriesSpec(description="chest", slices=24, rows=128, columns=128, pixel_spacing=2.6,
                      slice_thickness=2.5, z_center=-15.0)
    for n in range(3):
        write_study(root / f"s{n}", ChestPhantom(seed=500 + n, nodules=[NODULE]), series=[spec],
                    seed=500 + n)
    return root


def test_batch_detection_shares_series_across_workers_and_torchrun_ranks(batch, tmp_path):
    import os
    import sys

    one = medstation("detect", str(batch), "--out", str(tmp_path / "one"), "--json")
    assert one.returncode == 0, one.stderr
    want = sorted(s["series_uid"] for s in json.loads(one.stdout)["series"])
    assert len(want) == 3
    two = medstation("detect", str(batch), "--out", str(tmp_path / "two"), "--json", "--workers", "2")
    assert two.returncode == 0, two.stderr
    merged = json.loads(two.stdout)
    assert merged["ranks"] == 2 and sorted(s["series_uid"] for s in merged["series"]) == want
    assert json.loads((tmp_path / "two" / "detect-report.json").read_text())["ranks"] == 2
    assert not list((tmp_path / "two").glob("detect-report.rank*.json"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29537", "-m", "medstation", "detect", str(batch), "--out",
                           str(tmp_path / "tr"), "--json"], capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "tr" / "detect-report.json").read_text())
    assert report["ranks"] == 2 and sorted(s["series_uid"] for s in report["series"]) == want
    for uid in want:  # each series' own findings file, from whichever rank ran it
        assert (tmp_path / "tr" / f"{uid}.json").exists()


def test_detect_on_a_database_query(batch, tmp_path):
    db = tmp_path / "db.sqlite"
    assert medstation("--db", str(db), "import", str(batch)).returncode == 0
    proc = medstation("--db", str(db), "detect", "--db-query", "chest", "--out", str(tmp_path / "q"),
                      "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["series"]) == 3
    none = medstation("--db", str(db), "detect", "--db-query", "no-such-text", "--out", str(tmp_path / "n"))
    assert none.returncode == 2 and "Traceback" not in none.stderr


def test_a_luna16_subset_of_mhd_files_and_annotations_csv_evaluates_and_detects_directly(chest, tmp_path):
    """LUNA16 ships <series UID>.mhd + .raw and annotations.csv: the CT written that way evaluates as the
    DICOM does (the file name is the series UID the CSV names), and detect writes a NIfTI label map."""
    from medstation.dicom import open_series
    from medstation.dicom.volume_files import write_volume_file

    uid = chest.series[0].series_uid
    vol = open_series(chest.folder).volume
    luna = tmp_path / "subset0"
    raw = write_volume_file(vol.voxels, vol.grid, tmp_path / "tmp.mha")  # one file, then MetaImage pair
    import SimpleITK as sitk

    luna.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(raw)), str(luna / f"{uid}.mhd"))
    assert (luna / f"{uid}.raw").exists()
    x, y, z = NODULE.center
    csv = tmp_path / "annotations.csv"
    csv.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{uid},{x},{y},{z},{NODULE.diameter_mm}\n")
    proc = medstation("evaluate", "--studies-dir", str(luna), "--annotations", str(csv), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["scans"] == 1 and r["nodules"] == 1 and r["sensitivity_at_fp_per_scan"]["8.0"] == 1.0
    proc = medstation("detect", str(luna / f"{uid}.mhd"), "--out", str(tmp_path / "out"), "--masks",
                      "--dicom", "--json")
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)["series"]
    top = entry["findings"][0]
    assert np.linalg.norm(np.subtract(top["center_mm"], NODULE.center)) <= NODULE.diameter_mm / 2
    assert entry["dicom"]["skipped"]["type"] == "ExportError"  # an SR must reference DICOM: said, run goes on
    mask = sitk.GetArrayFromImage(sitk.ReadImage(entry["mask"]))
    legend = json.loads(open(entry["mask"].replace(".nii.gz", ".json")).read())
    assert legend["values"][0]["finding_id"] == top["finding_id"] and (mask == 1).sum() > 0


def test_followup_of_nifti_timepoints_dated_on_the_command_line(chest, tmp_path):
    """NIfTI files carry no date: --dates orders them and gives the interval; the nodule is tracked."""
    import shutil

    from medstation.dicom import open_series
    from medstation.dicom.volume_files import write_volume_file

    vol = open_series(chest.folder).volume
    write_volume_file(vol.voxels, vol.grid, tmp_path / "t1.nii.gz")
    shutil.copy(tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz")
    files = [str(tmp_path / "t2.nii.gz"), str(tmp_path / "t1.nii.gz")]  # later first: the dates order them
    proc = medstation("followup", *files)
    assert proc.returncode == 2 and "--dates" in proc.stderr and "Traceback" not in proc.stderr
    proc = medstation("followup", *files, "--dates", "2025-01-10,20240105", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [s["study_date"] for s in report["timepoints"]] == ["20240105", "20250110"]
    track = next(t for t in report["tracks"]
                 if np.linalg.norm(np.subtract(t["measurements"][-1]["center_patient"], NODULE.center)) < 8)
    assert len(track["measurements"]) == 2 and track["intervals"][0]["days"] == 371.0
