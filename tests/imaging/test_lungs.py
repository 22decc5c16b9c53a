"""The lung mask and the lung gate: nodules are inside, the mediastinum and the outside are
not, and a series without lung is refused before detection."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medstation.core.errors import ModelError
from medstation.dicom import open_series
from medstation.imaging.lungs import has_lung, lung_mask
from medstation.synth import ChestPhantom, Nodule, SeriesSpec, write_study

NODULES = [Nodule((-80.0, -10.0, -120.0), 10.0), Nodule((75.0, 20.0, -130.0), 8.0)]


@pytest.fixture(scope="module")
def chest(tmp_path_factory):
    ph = ChestPhantom(seed=7, nodules=NODULES)
    spec = SeriesSpec(description="lungs", slices=60, rows=256, columns=256, pixel_spacing=1.4,
                      slice_thickness=2.5, z_center=-150.0)  # down past the lung bases
    truth = write_study(tmp_path_factory.mktemp("lungs"), ph, series=[spec], seed=7)
    return open_series(truth.series[0].files).volume, ph


def test_nodules_in_the_lung_soft_tissue_out(chest):
    volume, ph = chest
    mask = lung_mask(volume)
    assert has_lung(mask) and 1000 < mask.volume_ml < 9000
    for n in NODULES:
        assert mask.contains(volume.patient_to_index(n.center)), n
    # a point on the midline in front of the spine (mediastinum / heart) and one in the body wall
    k = volume.shape[0] // 2
    assert not mask.mask[k, volume.shape[1] // 2, volume.shape[2] // 2]
    assert not mask.mask[k, 2, 2]  # outside the body
    # slices below the lung bases (the phantom's abdomen) hold no lung
    z = [volume.index_to_patient((kk, 0, 0))[2] for kk in range(volume.shape[0])]
    assert min(z) < ph.z_bottom - 10
    assert not mask.slices_with_lung[int(np.argmin(z))] and mask.slices_with_lung[int(np.argmax(z))]


def test_a_series_without_lung_is_refused(chest, tiny_detector):
    volume, _ = chest
    head = volume.voxels.copy()
    head[:] = -1000
    yy, xx = np.mgrid[:head.shape[1], :head.shape[2]]
    head[:, ((yy - 128) / 90) ** 2 + ((xx - 128) / 75) ** 2 < 1] = 35  # brain-like: no air inside
    no_lung = dataclasses.replace(volume, voxels=head)
    assert not has_lung(lung_mask(no_lung))
    with pytest.raises(ModelError, match="no lung in this series"):
        tiny_detector.detect(no_lung)


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    import torch

    from medstation.ai.detector import ARCHITECTURE, DEFAULT_INPUT, build_model
    from medstation.ai.store import load_detector, save_model
    from tests.ai.test_store import TINY_NET, _manifest

    torch.manual_seed(0)
    model = build_model(ARCHITECTURE, DEFAULT_INPUT, TINY_NET)
    path = save_model(tmp_path_factory.mktemp("tiny") / "m", model.state_dict(), _manifest())
    return load_detector(path)


def test_the_diaphragm_dome_ringed_by_lung_is_not_lung_but_a_basal_nodule_is():
    """On the lowest slices the lung is a ring around the liver's dome; filled slice by slice the
    dome would count as lung and the detector would call it a 40 mm 'nodule'."""
    from medstation.synth.heldout import HeldOutPhantom, Lesion

    ph = HeldOutPhantom(1, lesions=0)
    side = -1
    cx, cy, hw, hd = ph._lung_box(side, ph.base + 5)
    nodule = Lesion((cx + side * 0.75 * hw, cy, ph.base + ph.dome + 8.0), 5.0, "solid", 40.0)
    ph.lesions = [nodule]
    px, dz = 2.0, 2.5
    n = int(2 * (ph.a + 15) / px)
    xs = (np.arange(n) - (n - 1) / 2) * px
    ys = xs + 10.0
    zs = np.arange(ph.base - 40, ph.base + 160, dz)
    vox = np.stack([ph.render_slice(float(z), xs, ys, dz) for z in zs]).astype(np.float32)
    from medstation.core.volume import Volume

    vol = Volume(vox, spacing=(dz, px, px), origin=(xs[0], ys[0], zs[0]), modality="CT")
    mask = lung_mask(vol)
    dome_top = ph.base + ph.dome
    centre = vol.patient_to_index((cx, cy, ph.base + 0.4 * ph.dome))  # inside the dome, ringed by lung
    k, i, j = (int(round(v)) for v in centre)
    assert vox[k, i, j] > 0 and not mask.contains(centre)
    ring = vol.patient_to_index((cx + side * 0.97 * hw, cy, ph.base + 0.4 * ph.dome))
    assert mask.contains(ring, margin_vox=1)  # the lung around it stays
    assert mask.contains(vol.patient_to_index(nodule.center))  # a nodule above the dome stays
    assert mask.contains(vol.patient_to_index((cx, cy, dome_top + 30)))


def _shapes_with_holes(rng, n=12, r=40, c=46):
    yy, xx = np.mgrid[:r, :c]
    m = np.zeros((n, r, c), bool)
    for k in range(n):
        cy, cx = rng.integers(5, r - 5), rng.integers(5, c - 5)
        d = np.hypot(yy - cy, xx - cx)
        m[k] = (d < rng.integers(6, 25)) & (d > rng.integers(1, 8))  # rings cut by the edges too
        m[k] |= rng.random((r, c)) < 0.15
    m[0] = True  # a full slice, an empty one, a ring touching a corner
    m[1] = False
    return m


def _fill_one(plane: np.ndarray) -> np.ndarray:
    import SimpleITK as sitk

    filled = sitk.BinaryFillhole(sitk.GetImageFromArray(plane.astype(np.uint8)))
    return sitk.GetArrayFromImage(filled).astype(bool)


def test_the_slice_fill_on_one_mosaic_equals_filling_each_slice_alone():
    from medstation.imaging.lungs import _fill_slices

    rng = np.random.default_rng(3)
    for _ in range(5):
        m = _shapes_with_holes(rng)
        alone = np.stack([_fill_one(s) for s in m])
        assert np.array_equal(_fill_slices(m), alone)
    assert _fill_slices(np.zeros((0, 4, 4), bool)).shape == (0, 4, 4)


def test_closing_on_the_masks_box_equals_closing_the_whole_image():
    import SimpleITK as sitk

    from medstation.imaging.lungs import _close

    rng = np.random.default_rng(4)
    for radius in ([3, 3, 1], [2, 4, 2]):
        for _ in range(4):
            m = np.zeros((30, 50, 60), bool)
            k, i, j = rng.integers(0, 30), rng.integers(0, 50), rng.integers(0, 60)  # near an edge or not
            m[max(0, k - 6):k + 6, max(0, i - 9):i + 9, max(0, j - 12):j + 12] = True
            m &= rng.random(m.shape) < 0.7
            whole = sitk.GetArrayFromImage(sitk.BinaryMorphologicalClosing(
                sitk.GetImageFromArray(m.astype(np.uint8)), radius)).astype(bool)
            assert np.array_equal(_close(m, radius), whole)


def test_the_mask_comes_back_to_the_volume_grid_as_repeat_cut_and_edge_pad_would_give_it():
    from medstation.imaging.lungs import _upsample

    rng = np.random.default_rng(5)
    for small_shape, kstep, step, shape in [((5, 4, 6), 2, 3, (10, 12, 18)), ((5, 4, 6), 2, 3, (9, 11, 17)),
                                            ((5, 4, 6), 2, 3, (12, 14, 20)), ((3, 7, 7), 1, 1, (3, 7, 7))]:
        small = rng.random(small_shape) < 0.4
        small[1] = False
        full = np.repeat(np.repeat(np.repeat(small, kstep, axis=0), step, axis=1), step, axis=2)
        full = full[:shape[0], :shape[1], :shape[2]]
        full = np.pad(full, [(0, shape[a] - full.shape[a]) for a in range(3)], mode="edge")
        got, with_lung = _upsample(small, kstep, step, shape)
        assert np.array_equal(got, full) and np.array_equal(with_lung, full.any(axis=(1, 2)))


@pytest.fixture(scope="module")
def hilar_mass():
    """A generated chest (the training family's phantom, with its neck) and an 8 cm solid mass on
    the left lung's medial border at the hilum, reaching 10 mm into the mediastinum."""
    from medstation.core.volume import Volume
    from medstation.synth.varied import Shape, VariedChestPhantom

    ph = VariedChestPhantom(seed=3)
    ph.neck = True
    cx, cy, hw, _hd = ph.lung_ellipses(-10.0)[1]
    centre = (cx - hw + 0.75 * 40.0, cy, -10.0)  # 30 mm into the lung from its medial border
    ph.nodules = [Nodule(centre, 80.0, 35.0, "M1")]
    ph.shapes["M1"] = Shape("solid")
    px, dz = 2.0, 5.0
    n = int(2 * (ph.body_half_width + 15) / px)
    xs = (np.arange(n) - (n - 1) / 2) * px
    m = int(2 * (ph.body_half_depth + 30) / px)
    ys = (np.arange(m) - (m - 1) / 2) * px
    zs = np.arange(ph.z_bottom - 30, ph.z_top + 60, dz)
    vox = np.stack([ph.render_slice(float(z), xs, ys, dz) for z in zs]).astype(np.float32)
    vol = Volume(vox, spacing=(dz, px, px), origin=(xs[0], ys[0], zs[0]), modality="CT")
    return vol, ph, centre


def test_the_search_region_holds_a_hilar_mass_that_the_lung_mask_leaves_out(hilar_mass):
    vol, _ph, centre = hilar_mass
    lungs = lung_mask(vol)
    c = vol.patient_to_index(centre)
    k, i, j = (int(round(v)) for v in c)
    assert vol.voxels[k, i, j] > 0  # soft tissue: the air-based mask cannot hold it all
    assert lungs.in_region(c)
    # the mass's central cross-section: most of it in the region, much less in the mask
    rr = int(round(40.0 / vol.spacing[1]))
    yy, xx = np.mgrid[-rr:rr + 1, -rr:rr + 1]
    disc = (yy ** 2 + xx ** 2) <= rr * rr
    region = lungs.region_at(k)[i - rr:i + rr + 1, j - rr:j + rr + 1]
    mask = lungs.mask[k, i - rr:i + rr + 1, j - rr:j + rr + 1]
    assert region[disc].mean() >= 0.8, region[disc].mean()  # all but its mediastinal edge
    assert mask[disc].mean() < region[disc].mean() - 0.2


def test_the_search_region_leaves_out_the_neck_and_the_abdomen(hilar_mass):
    vol, ph, _centre = hilar_mass
    lungs = lung_mask(vol)
    right = np.array([vol.index_to_patient((0, 0, j))[0] < 0 for j in range(vol.shape[2])])
    for k in range(vol.shape[0]):
        z = float(vol.index_to_patient((k, 0, 0))[2])
        if z > ph.z_top + 5:  # the neck above the apices
            assert not lungs.region_at(k).any(), z
        if z < ph.z_bottom - 5:  # the liver below the right base (the phantom's gastric air under
            # the left base touches the lung in 3D: no diaphragm is drawn between them)
            assert not lungs.region_at(k)[:, right].any(), z
    # outside the body, and the spine behind the mediastinum, are never in it
    mid = vol.shape[0] // 2
    assert not lungs.region_at(mid)[0, 0]
    z_mid = float(vol.index_to_patient((mid, 0, 0))[2])
    spine = vol.patient_to_index((0.0, ph.body_half_depth - 45.0, z_mid))
    assert not lungs.in_region(spine)
