"""Thick slabs: MIP, MinIP and average over N mm, on every plane, against numpy on the same block."""

from __future__ import annotations

import numpy as np
import pytest

from medstation.core.volume import AXIAL, Volume
from medstation.imaging import Slab, planes_for, slab_image, slab_range


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(3)
    vox = rng.integers(-1000, 1000, (12, 9, 7)).astype(np.int16)
    return Volume(vox, spacing=(2.0, 0.7, 0.5), origin=(0, 0, 0), direction=AXIAL.copy())


def test_thickness_in_mm_becomes_planes_centred_on_the_shown_one(volume):
    axial = planes_for(volume)["axial"]  # 2 mm between planes
    assert slab_range(axial, 5, Slab("off", 10)) == (5, 5)
    assert slab_range(axial, 5, Slab("mip", 10)) == (3, 7)  # 5 planes
    assert slab_range(axial, 5, Slab("mip", 8)) == (4, 7)  # 4 planes: one deeper
    assert slab_range(axial, 5, Slab("mip", 1)) == (5, 5)  # thinner than a plane: the plane
    assert slab_range(axial, 0, Slab("mip", 10)) == (0, 2)  # clipped at the ends
    assert slab_range(axial, 11, Slab("mip", 10)) == (9, 11)
    sagittal = planes_for(volume)["sagittal"]  # 0.5 mm between planes
    assert slab_range(sagittal, 3, Slab("avg", 2)) == (2, 5)


@pytest.mark.parametrize("mode,reduce", [("mip", np.max), ("minip", np.min),
                                         ("avg", lambda a, axis: np.floor(a.mean(axis=axis) + 0.5))])
@pytest.mark.parametrize("name", ["axial", "coronal", "sagittal"])
def test_each_mode_on_each_plane_matches_numpy_on_the_same_block(volume, mode, reduce, name):
    plane = planes_for(volume)[name]
    slab = Slab(mode, 3 * plane.step_mm)
    depth = plane.depth // 2
    lo, hi = slab_range(plane, depth, slab)
    assert hi - lo == 2
    want = np.stack([plane.image(volume.voxels, d) for d in range(lo, hi + 1)]).astype(np.float64)
    got = slab_image(plane, volume.voxels, depth, slab)
    assert got.shape == plane.shape and got.dtype == np.int16
    assert np.array_equal(got, reduce(want, axis=0))


def test_slices_not_yet_arrived_are_left_out_not_counted_as_air(volume):
    plane = planes_for(volume)["axial"]
    vox = volume.voxels.copy()
    ready = np.ones(vox.shape[0], bool)
    ready[6] = False
    vox[6] = -2000  # what an unloaded slice may hold
    got = slab_image(plane, vox, 5, Slab("minip", 6), ready)
    assert np.array_equal(got, np.minimum(vox[4], vox[5]))
    none = np.zeros(vox.shape[0], bool)
    assert np.array_equal(slab_image(plane, vox, 5, Slab("mip", 6), none), vox[5])


def test_unknown_mode_is_refused_and_the_label_says_what_is_shown():
    with pytest.raises(ValueError, match="unknown slab mode"):
        Slab("max")
    assert Slab("off").label() == ""
    assert Slab("minip", 5).label() == "MinIP 5.0 mm"
