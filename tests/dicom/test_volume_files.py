"""NIfTI, MetaImage and NRRD volumes beside DICOM (issue 29, item 2): the same voxels and LPS geometry
from each format, NIfTI's RAS converted (checked on a NIfTI-1 file written byte by byte here), the
database and labels from masks, and one typed line for a bad or huge header."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from medstation.core.errors import LabelError, LoadError
from medstation.core.geometry import Grid
from medstation.dicom import StudyDatabase, import_paths, list_series, open_series
from medstation.dicom.labels import all_labels, import_labels
from medstation.dicom.masks import export_label_masks, read_mask
from medstation.dicom.volume_files import write_volume_file

SPACING_XYZ = (0.7, 0.8, 2.5)
ORIGIN = (-10.0, -20.0, -30.0)
MARK = (15, 20, 25)  # (k, i, j)


def _volume() -> np.ndarray:
    arr = np.full((30, 40, 50), -1000, np.int16)
    arr[8:22, 5:35, 5:45] = 40  # a body with air around it
    arr[MARK] = 2000
    return arr


def _image(arr):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING_XYZ)
    img.SetOrigin(ORIGIN)
    return img


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("volumes")
    for ext in ("nii.gz", "mhd", "nrrd"):
        sitk.WriteImage(_image(_volume()), str(d / f"vol.{ext}"))
    return d


@pytest.mark.parametrize("ext", ["nii.gz", "mhd", "nrrd"])
def test_each_format_opens_with_its_voxels_and_patient_lps_geometry(files, pool, ext):
    opened = open_series(files / f"vol.{ext}", pool=pool)
    vol = opened.volume
    assert vol.shape == (30, 40, 50) and vol.voxels.dtype == np.int16 and not opened.errors
    assert np.array_equal(vol.voxels, _volume())
    assert np.allclose(vol.spacing, SPACING_XYZ[::-1], atol=1e-5)
    # the marker's patient position from the geometry the test wrote: origin + index * spacing
    want = np.asarray(ORIGIN) + np.asarray(MARK[::-1]) * np.asarray(SPACING_XYZ)
    assert np.allclose(vol.index_to_patient(MARK), want, atol=1e-4)
    assert vol.modality == "CT" and vol.has_geometry
    assert any("no modality in the file: taken as CT" in w for w in vol.warnings)


def test_a_mhd_with_its_raw_is_one_series_and_the_raw_is_not_reported(files, pool):
    listing = list_series([files], pool)
    assert len(listing.stacks) == 3 and not listing.problems
    assert not any(str(e.file).endswith(".raw") for e in listing.skipped)


def _nifti1_ras(path, arr: np.ndarray, srow: np.ndarray) -> None:
    """A NIfTI-1 file from its published header layout (348 bytes), sform in RAS+ mm."""
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    nz, ny, nx = arr.shape
    struct.pack_into("<8h", hdr, 40, 3, nx, ny, nz, 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, 4, 16)  # datatype int16, bitpix
    struct.pack_into("<8f", hdr, 76, 1, *np.linalg.norm(srow[:, :3], axis=0), 0, 0, 0, 0)
    struct.pack_into("<f", hdr, 108, 352.0)  # vox_offset
    struct.pack_into("<ff", hdr, 112, 1.0, 0.0)  # scl_slope, scl_inter
    struct.pack_into("<hh", hdr, 252, 0, 2)  # qform_code 0, sform_code 2 (aligned)
    for row in range(3):
        struct.pack_into("<4f", hdr, 280 + 16 * row, *srow[row])
    hdr[344:348] = b"n+1\x00"
    data = bytes(hdr) + b"\x00" * 4 + arr.astype("<i2").tobytes()  # x fastest: C order of (z, y, x)
    with gzip.open(path, "wb") as f:
        f.write(data)


def test_nifti_ras_is_converted_to_lps_and_said(tmp_path, pool):
    arr = _volume()
    # RAS+: +x is the patient's right (LPS -x), +y anterior (LPS -y), +z superior (both)
    srow = np.array([[0.7, 0, 0, 12.0], [0, 0.8, 0, 34.0], [0, 0, 2.5, -56.0]])
    _nifti1_ras(tmp_path / "ras.nii.gz", arr, srow)
    vol = open_series(tmp_path / "ras.nii.gz", pool=pool).volume
    ras = srow[:, :3] @ np.asarray(MARK[::-1], float) + srow[:, 3]
    lps = ras * np.array([-1, -1, 1])
    assert np.array_equal(vol.voxels, arr)
    assert np.allclose(vol.index_to_patient(MARK), lps, atol=1e-3)
    assert any("NIfTI stores RAS+" in w for w in vol.warnings)


def test_bad_and_huge_headers_are_one_typed_line_each(tmp_path, pool):
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(b"\x5c\x01\x00\x00" + b"\x00" * 100))
    (tmp_path / "noraw.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 10 10 10\n"
                                        "ElementType = MET_SHORT\nElementDataFile = gone.raw\n")
    (tmp_path / "huge.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\n"
                                       "ElementType = MET_SHORT\nElementDataFile = huge.raw\n")
    (tmp_path / "huge.raw").write_bytes(b"\x00" * 16)
    four = sitk.JoinSeries([_image(_volume()), _image(_volume())])
    sitk.WriteImage(four, str(tmp_path / "fourd.nii.gz"))
    listing = list_series([tmp_path], pool)
    assert not listing.stacks
    problems = {e.file.rsplit("/", 1)[-1]: e for e in listing.problems}
    assert set(problems) == {"cut.nii.gz", "huge.mhd", "fourd.nii.gz", "noraw.mhd"}, problems
    assert "voxels" in problems["huge.mhd"].reason and "4-D" in problems["fourd.nii.gz"].reason
    assert "pixels do not" in problems["noraw.mhd"].reason and "ElementDataFile" in problems["noraw.mhd"].hint
    for e in listing.problems:
        assert isinstance(e, LoadError) and e.hint and "Traceback" not in str(e)


def test_a_mask_imports_as_labels_on_the_series_it_lies_on_and_exports_back(files, tmp_path, pool):
    db = StudyDatabase(tmp_path / "db.sqlite")
    try:
        import_paths(db, [files / "vol.nii.gz"], pool)
        (row,) = db.index.series()
        vol = open_series(files / "vol.nii.gz", pool=pool).volume
        grid = vol.grid
        # two spheres on the volume's grid, written flipped along z as converters do
        centres = [vol.index_to_patient((15, 20, 25)), vol.index_to_patient((12, 10, 12))]
        diameters = [12.0, 8.0]
        zz, yy, xx = np.meshgrid(*(np.arange(n) for n in vol.shape), indexing="ij")
        pts = grid.index_to_patient(np.stack([zz, yy, xx], -1).reshape(-1, 3)).reshape(*vol.shape, 3)
        truth = np.zeros(vol.shape, np.uint8)
        for n, (c, d) in enumerate(zip(centres, diameters), start=1):
            truth[np.sum((pts - c) ** 2, -1) <= (d / 2) ** 2] = n
        flipped = Grid.of(vol.shape, vol.spacing, vol.index_to_patient((vol.shape[0] - 1, 0, 0)),
                          np.vstack([-grid.direction[0], grid.direction[1:]]))
        write_volume_file(truth[::-1].copy(), flipped, tmp_path / "mask.nii.gz")
        ids = import_labels(db, tmp_path / "mask.nii.gz")
        labels = sorted(all_labels(db), key=lambda lab: -lab.diameter_mm)
        assert len(ids) == 2 and all(lab.series_uid == row.series_uid for lab in labels)
        for lab, c, d in zip(labels, centres, diameters):
            assert np.linalg.norm(np.subtract(lab.center_mm, c)) < 0.5
            voxels = int(np.sum(truth == (1 if d == 12.0 else 2)))
            want = (6 * voxels * np.prod(vol.spacing) / np.pi) ** (1 / 3)
            assert abs(lab.diameter_mm - want) < 0.01 and lab.size_name == "equivalent diameter"
        assert import_labels(db, tmp_path / "mask.nii.gz", already=[]) == []  # twice: nothing twice
        # exported as a label map on the series grid, then read back: the same two structures
        (out,) = export_label_masks(db, all_labels(db), tmp_path / "out")
        back = read_mask(out)
        assert back.array.shape == vol.shape and set(np.unique(back.array)) == {0, 1, 2}
        for n, lab in enumerate(all_labels(db), start=1):
            got = back.grid.index_to_patient(np.argwhere(back.array == n).mean(axis=0))
            assert np.linalg.norm(got - np.asarray(lab.center_mm)) < 0.6
        # not a label map, and a mask on no series: typed, nothing stored
        write_volume_file(vol.voxels, grid, tmp_path / "image.nii.gz")
        with pytest.raises(LabelError, match="negative voxel values"):
            import_labels(db, tmp_path / "image.nii.gz")
        elsewhere = Grid.of(vol.shape, vol.spacing, (500.0, 500.0, 500.0), grid.direction)
        write_volume_file(truth, elsewhere, tmp_path / "other.nii.gz")
        with pytest.raises(LabelError, match="no series in the study database lies on"):
            import_labels(db, tmp_path / "other.nii.gz")
        assert len(all_labels(db)) == 2
    finally:
        db.close()
