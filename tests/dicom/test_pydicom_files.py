"""Every file in pydicom's bundled test files: loaded with geometry or listed with a reason,
and identical pixels wherever pydicom itself can decode them."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, apply_rescale

from medstation.dicom import assemble, load_stack, scan
from tests.conftest import PYDICOM_TEST_FILES

FILES = sorted(p for p in PYDICOM_TEST_FILES.rglob("*") if p.is_file())


def pydicom_pixels(path):
    """What pydicom decodes, with the modality rescale applied; None if it cannot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            arr = ds.pixel_array
        except Exception:
            return None
        if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
            return apply_color_lut(arr, ds)
        if ds.get("SamplesPerPixel", 1) == 1:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            if "RescaleSlope" in ds or "RescaleIntercept" in ds:
                arr = apply_rescale(arr, ds)
            elif frames > 1 or "SharedFunctionalGroupsSequence" in ds:
                arr = apply_rescale(arr, ds)  # pydicom reads the functional groups
        return arr


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PYDICOM_TEST_FILES)) for p in FILES])
def test_file_alone(path, pool):
    result = scan([str(path)], pool)
    problems = result.errors + result.skipped
    for e in problems:
        assert e.reason and e.hint and e.file == str(path)
    stacks = assemble(result.headers)
    loaded = {}
    for stack in stacks:
        res = load_stack(stack, pool)
        problems += res.errors
        for k, (_src, frame) in enumerate(res.volume.sources):
            loaded[frame] = res.volume.voxels[k]
    non_image = [h for h in result.headers if not h.has_pixels or h.rows <= 0]
    # each file: loaded, a listed problem, or a non-image object (SR, RT plan, ...)
    assert loaded or problems or non_image, f"{path.name} vanished without a reason"
    expected = pydicom_pixels(path)
    if expected is None:
        return
    assert loaded, f"pydicom decodes {path.name} but medstation did not: {problems}"
    n = len(loaded)
    if n == 1 and expected.ndim in (2, 3) and expected.shape == loaded[0].shape:
        frames = [expected]
    else:
        frames = [expected[f] for f in range(n)]
    for f, exp in enumerate(frames):
        ours = loaded[f]
        assert ours.shape == exp.shape, path.name
        # the volume holds int16 where values allow, float32 otherwise: compare in its type
        np.testing.assert_array_equal(ours, exp.astype(ours.dtype), err_msg=f"{path.name} frame {f}")
        assert np.array_equal(ours.astype(np.float64), exp) or ours.dtype == np.float32


def test_whole_folder_with_the_cli():
    proc = subprocess.run([sys.executable, "-m", "medstation", "info", "--json", str(PYDICOM_TEST_FILES)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rep = json.loads(proc.stdout)
    accounted = {e["file"] for e in rep["problems"]} | {e["file"] for e in rep["not_dicom"]}
    series = [se for p in rep["patients"] for s in p["studies"] for se in s["series"]]
    assert series and all("loaded" in se for se in series)
    for p in rep["patients"]:
        for s in p["studies"]:
            accounted |= {ni["path"] for ni in s["non_image_instances"]}
    for p in rep["patients"]:
        for s in p["studies"]:
            for se in s["series"]:
                accounted |= set(se["paths"]) | set(se["duplicates"])  # copies kept once
    missing = [str(p) for p in FILES if str(p) not in accounted]
    assert not missing, f"files neither loaded nor listed with a reason: {missing}"
    truncated = [e for e in rep["problems"] if e["file"].endswith("MR_truncated.dcm")]
    assert truncated and "truncated" in truncated[0]["hint"]
