"""Series assembly and loading on generated studies with known geometry."""

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medstation.dicom import assemble, load_stack, scan
from medstation.synth import ChestPhantom, write_study
from tests.conftest import NODULE, small_spec


def load_folder(folder, pool):
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file())
    result = scan(files, pool)
    stacks = assemble(result.headers)
    return result, stacks, [load_stack(s, pool) for s in stacks]


def test_slices_sorted_by_position_not_file_name(small_study, pool):
    folder = Path(small_study.series[0].files[0]).parent
    _, stacks, loads = load_folder(folder, pool)
    assert len(stacks) == 1
    vol = loads[0].volume
    z = [pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2] for p, _ in vol.sources]
    assert np.all(np.diff(z) > 0), "slices must ascend along the normal"
    names = [Path(p).name for p, _ in vol.sources]
    assert names != sorted(names), "the generator shuffles file names; order must not follow them"
    assert vol.voxels.dtype == np.int16
    assert vol.spacing == pytest.approx((2.5, 5.0, 5.0))
    assert not vol.warnings


def test_nodule_at_its_patient_position(small_study, pool):
    folder = Path(small_study.series[0].files[0]).parent
    _, _, loads = load_folder(folder, pool)
    vol = loads[0].volume
    k, i, j = np.rint(vol.patient_to_index(NODULE.center)).astype(int)
    centre = vol.voxels[k, i, j]
    assert centre > -150, f"nodule centre should be soft tissue, got {centre} HU"
    np.testing.assert_allclose(vol.index_to_patient((k, i, j)), NODULE.center, atol=5.0)
    # lung around it is air-like
    assert vol.voxels[k, i, j + 5] < -500


def test_compressed_series_equal_uncompressed(tmp_path, pool):
    ph = ChestPhantom(seed=5)
    ref = None
    for comp in ("none", "rle", "jpeg2000", "jpegls", "deflate"):
        write_study(tmp_path / comp, ph, series=[small_spec(slices=6, compression=comp)], seed=5)
        _, stacks, loads = load_folder(tmp_path / comp / "S01", pool)
        assert len(stacks) == 1 and not loads[0].errors, comp
        if ref is None:
            ref = loads[0].volume.voxels
        else:
            np.testing.assert_array_equal(loads[0].volume.voxels, ref, err_msg=comp)


def test_multiframe_enhanced_ct_matches_single_frame(tmp_path, pool):
    ph = ChestPhantom(seed=6)
    write_study(tmp_path / "single", ph, series=[small_spec(slices=10)], seed=6)
    write_study(tmp_path / "multi", ph, series=[small_spec(slices=10, multiframe=True)], seed=6)
    _, _, single = load_folder(tmp_path / "single" / "S01", pool)
    _, stacks, multi = load_folder(tmp_path / "multi" / "S01", pool)
    assert len(stacks) == 1 and len(stacks[0].files) == 1
    np.testing.assert_array_equal(multi[0].volume.voxels, single[0].volume.voxels)
    np.testing.assert_allclose(multi[0].volume.affine(), single[0].volume.affine())


def test_missing_slice_reports_uneven_spacing(small_study, tmp_path, pool):
    src = Path(small_study.series[0].files[0]).parent
    dst = tmp_path / "gap"
    shutil.copytree(src, dst)
    files = sorted(dst.iterdir(), key=lambda p: pydicom.dcmread(p, stop_before_pixels=True)
                   .ImagePositionPatient[2])
    files[10].unlink()
    _, stacks, _ = load_folder(dst, pool)
    assert any("uneven slice spacing" in w for w in stacks[0].warnings)


def test_gantry_tilt_reported_and_positions_kept(small_study, tmp_path, pool):
    src = Path(small_study.series[0].files[0]).parent
    dst = tmp_path / "tilt"
    dst.mkdir()
    for p in src.iterdir():
        ds = pydicom.dcmread(p)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.3 * z, z]  # ~17 degree shear along y
        ds.save_as(dst / p.name)
    _, stacks, loads = load_folder(dst, pool)
    assert any("gantry tilt" in w for w in stacks[0].warnings)
    vol = loads[0].volume
    last_path, _ = vol.sources[-1]
    ipp = [float(v) for v in pydicom.dcmread(last_path, stop_before_pixels=True).ImagePositionPatient]
    np.testing.assert_allclose(vol.index_to_patient((len(vol.sources) - 1, 0, 0)), ipp, atol=1e-3)


def test_mixed_orientations_in_one_series_are_split(small_study, tmp_path, pool):
    src = Path(small_study.series[0].files[0]).parent
    dst = tmp_path / "mixed"
    dst.mkdir()
    for n, p in enumerate(sorted(src.iterdir())):
        ds = pydicom.dcmread(p)
        if n < 3:
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
        ds.save_as(dst / p.name)
    _, stacks, _ = load_folder(dst, pool)
    assert sorted(len(s.slices) for s in stacks) == [3, 21]
    assert all("split into parts" in s.warnings[0] for s in stacks)


@pytest.mark.filterwarnings("ignore::UserWarning")  # NaN is invalid DS on purpose
def test_non_finite_rescale_rejected(small_study, tmp_path, pool):
    p = Path(small_study.series[0].files[0])
    ds = pydicom.dcmread(p)
    ds.RescaleSlope = "NaN"
    ds.save_as(tmp_path / "nan.dcm")
    result = scan([str(tmp_path / "nan.dcm")], pool)
    assert not result.headers
    assert "rescale" in result.errors[0].reason and result.errors[0].file.endswith("nan.dcm")
