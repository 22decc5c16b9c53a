"""Window/level, MPR planes and measurements on real DICOM series (no Qt)."""

import numpy as np
import pytest

from medstation.core.volume import AXIAL, Volume
from medstation.dicom import load_stack, scan
from medstation.dicom.series import assemble
from medstation.imaging import (
    PRESETS,
    Measurement,
    Window,
    default_window,
    length_mm,
    orientation_label,
    planes_for,
    render,
    roi_stats,
)
from tests._marker import MARKER_HU, write_marker_series


def _load(folder, pool):
    files = sorted(str(p) for p in folder.iterdir())
    stacks = assemble(scan(files, pool).headers)
    assert len(stacks) == 1
    return load_stack(stacks[0], pool).volume


def test_window_matches_the_dicom_linear_function():
    values = np.arange(-1100, 1200, 7, dtype=np.int16).reshape(1, -1)
    for w in [*PRESETS.values(), Window(0.5, 1.0), Window(100.2, 3.7)]:
        c, width = w.center, w.width
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.where(values <= c - 0.5 - (width - 1) / 2, 0,
                                np.where(values > c - 0.5 + (width - 1) / 2, 255,
                                         ((values - (c - 0.5)) / (width - 1) + 0.5) * 255))
        got = render(values, w)
        assert np.abs(got.astype(int) - np.clip(expected, 0, 255)).max() <= 1
        assert np.array_equal(render(values.astype(np.float32), w), got)  # LUT and arithmetic agree
        assert np.array_equal(render(values, w, invert=True), 255 - got)


def test_default_window_uses_the_dicom_window_else_the_values():
    vol = Volume(np.linspace(0, 1000, 4 * 30 * 30).reshape(4, 30, 30).astype(np.float32))
    auto = default_window(vol)
    middle = vol.voxels[2]  # the middle slice's 1st..99th percentile
    lo, hi = np.percentile(middle, [1, 99])
    assert auto.name == "auto"
    assert auto.center == pytest.approx((lo + hi) / 2, rel=0.01)
    assert auto.width == pytest.approx(hi - lo, rel=0.03)
    vol.windows = [(40.0, 400.0, "MEDIASTINUM")]
    assert default_window(vol) == Window(40.0, 400.0, "MEDIASTINUM")


def test_colour_slices_are_shown_as_stored():
    rgb = np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8)
    assert np.array_equal(render(rgb, Window(0, 1)), rgb)
    rgb16 = rgb.astype(np.uint16) * 257
    assert np.abs(render(rgb16, Window(0, 1)).astype(int) - rgb).max() <= 1


def test_orientation_letters():
    assert orientation_label((1, 0, 0)) == "L"
    assert orientation_label((0, -1, 0)) == "A"
    assert orientation_label((0, 0, -1)) == "I"
    assert orientation_label((0.9, -0.43, 0)) == "LA"


@pytest.mark.parametrize("row_cos,col_cos,expect", [
    ((1, 0, 0), (0, 1, 0), {"axial": ("L", "P"), "coronal": ("L", "I"), "sagittal": ("P", "I")}),
    ((-1, 0, 0), (0, -1, 0), {"axial": ("L", "P"), "coronal": ("L", "I"), "sagittal": ("P", "I")}),
    ((1, 0, 0), (0, 0, -1), {"axial": ("L", "P"), "coronal": ("L", "I"), "sagittal": ("P", "I")}),
    ((0, 1, 0), (0, 0, -1), {"axial": ("L", "P"), "coronal": ("L", "I"), "sagittal": ("P", "I")}),
])
def test_marker_lands_at_its_patient_position_in_every_plane(tmp_path, pool, row_cos, col_cos, expect):
    """Axial, flipped axial, coronal and sagittal acquisitions: each plane shows the marker where
    the DICOM geometry puts it, and every plane is oriented the radiological way."""
    marker = write_marker_series(tmp_path / "s", row_cos=row_cos, col_cos=col_cos)
    vol = _load(tmp_path / "s", pool)
    idx = np.round(vol.patient_to_index(marker)).astype(int)
    assert vol.voxels[tuple(idx)] == MARKER_HU
    assert np.abs(vol.index_to_patient(idx) - marker).max() < 1e-3
    planes = planes_for(vol)
    for name, plane in planes.items():
        r, c, depth = plane.to_plane(idx)
        img = plane.image(vol.voxels, int(depth))
        assert img[int(r), int(c)] == MARKER_HU, name
        assert np.argwhere(img == MARKER_HU).tolist() == [[int(r), int(c)]]
        assert np.allclose(plane.to_index(r, c, depth), idx)
        labels = plane.edge_labels()
        assert (labels["right"], labels["bottom"]) == expect[name]
        # one screen step right / down moves the patient point along the labelled direction
        step_right = vol.index_to_patient(plane.to_index(r, c + 1, depth)) - vol.index_to_patient(idx)
        assert orientation_label(step_right) == labels["right"]
        step_down = vol.index_to_patient(plane.to_index(r + 1, c, depth)) - vol.index_to_patient(idx)
        assert orientation_label(step_down) == labels["bottom"]
    # the spacing of each plane is the real one (anisotropic voxels)
    assert sorted(np.prod(p.spacing) for p in planes.values()) == pytest.approx(
        sorted([0.8 * 0.6, 2.5 * 0.8, 2.5 * 0.6]))


def test_length_is_the_patient_space_distance():
    vol = Volume(np.zeros((10, 50, 60), np.int16), spacing=(2.5, 0.8, 0.6), direction=AXIAL.copy())
    assert length_mm(vol, (3, 10, 10), (3, 10, 40)) == pytest.approx(30 * 0.6)
    assert length_mm(vol, (3, 10, 10), (3, 40, 10)) == pytest.approx(30 * 0.8)
    assert length_mm(vol, (1, 10, 10), (5, 10, 10)) == pytest.approx(4 * 2.5)
    assert length_mm(vol, (3, 0, 0), (3, 30, 40)) == pytest.approx(np.hypot(24, 24))


@pytest.mark.parametrize("kind", ["rect", "ellipse"])
def test_roi_statistics_equal_numpy_on_the_same_pixels(kind):
    img = np.random.default_rng(1).normal(40, 25, (64, 80)).astype(np.float32)
    p0, p1 = (10.3, 12.6), (40.2, 61.9)
    stats = roi_stats(img, p0, p1, kind, (0.7, 0.5))
    rr, cc = np.mgrid[0:64, 0:80]
    if kind == "rect":
        mask = (rr >= 10.3) & (rr <= 40.2) & (cc >= 12.6) & (cc <= 61.9)
        area = (40.2 - 10.3) * 0.7 * (61.9 - 12.6) * 0.5
    else:
        mask = ((rr - 25.25) / 14.95) ** 2 + ((cc - 37.25) / 24.65) ** 2 <= 1
        area = np.pi * (40.2 - 10.3) * 0.7 * (61.9 - 12.6) * 0.5 / 4
    values = img[mask].astype(np.float64)
    assert stats.pixels == mask.sum()
    assert stats.mean == pytest.approx(values.mean())
    assert stats.sd == pytest.approx(values.std())
    assert (stats.min, stats.max) == (values.min(), values.max())
    assert stats.area_mm2 == pytest.approx(area)
    assert roi_stats(img, (200, 200), (300, 300), kind, (1, 1)) is None


def test_measurement_round_trip_and_values():
    vol = Volume(np.arange(10 * 20 * 30, dtype=np.int16).reshape(10, 20, 30), spacing=(2.0, 0.5, 0.5),
                 direction=AXIAL.copy())
    plane = planes_for(vol)["axial"]
    m = Measurement("length", 0, 4, [(4, 2, 2), (4, 2, 22)])
    again = Measurement.from_dict(m.to_dict(), 7)
    assert again.points == m.points and again.id == 7
    assert m.values(vol, plane)["length_mm"] == pytest.approx(10.0)
    assert m.summary(vol, plane) == "10.0 mm"
    roi = Measurement("rect", 0, 4, [(4, 2, 2), (4, 5, 6)])
    v = roi.values(vol, plane)
    assert v["mean"] == pytest.approx(vol.voxels[4, 2:6, 2:7].mean())
    with pytest.raises(ValueError):
        Measurement.from_dict({"kind": "polygon", "axis": 0, "depth": 0, "points": []})
