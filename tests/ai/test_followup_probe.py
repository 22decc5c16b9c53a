"""Looking for a lesion where the registration puts it (``ai.followup.measure_at`` / ``probe``): a
small round lesion is measured, empty lung and a vessel are not lesions."""

from __future__ import annotations

import numpy as np
import pytest

from medstation.ai.followup import Timepoint, measure_at, probe
from medstation.core.findings import Finding
from medstation.core.volume import Volume
from medstation.imaging.registration import Registration

SPACING = (1.25, 0.7, 0.7)


def _lung(seed=0):
    rng = np.random.default_rng(seed)
    vox = (-850 + 20 * rng.standard_normal((60, 120, 120))).astype(np.float32)
    k, i, j = np.meshgrid(*(np.arange(n) * s for n, s in zip(vox.shape, SPACING)), indexing="ij")
    return vox, k, i, j


def _ref(center, d, volume):
    return Finding("F1", tuple(center), (0.0, 0.0, 0.0), d, 0.9, (0, 0), np.pi / 6 * d ** 3,
                   size_method="segmentation", mean_diameter_mm=d, equivalent_diameter_mm=d)


def test_a_small_lesion_is_measured_where_it_maps_and_empty_lung_or_a_vessel_is_not():
    vox, k, i, j = _lung()
    nodule = (37.5, 42.0, 42.0)  # mm: a 4.5 mm solid nodule
    vox[(k - nodule[0]) ** 2 + (i - nodule[1]) ** 2 + (j - nodule[2]) ** 2 <= 2.25 ** 2] = 20.0
    vessel = ((i - 42.0) ** 2 + (j - 70.0) ** 2 <= 1.5 ** 2)  # a 3 mm vessel running through the slices
    vox[vessel] = 40.0
    vol = Volume(vox, spacing=SPACING, modality="CT")
    prior = _ref((0.0, 0.0, 0.0), 7.0, vol)
    # the registration puts it 2 mm off: the densest voxel near there seeds the segmentation
    where = np.array([nodule[2] + 2.0, nodule[1], nodule[0]])  # patient x, y, z = j, i, k (mm)
    f = measure_at(vol, where, prior)
    assert f is not None and f.size_method == "segmentation" and f.score == 0.0
    assert np.linalg.norm(np.asarray(f.center_mm) - [nodule[2], nodule[1], nodule[0]]) < 1.0
    assert f.equivalent_diameter_mm == pytest.approx(4.5, rel=0.2)
    assert measure_at(vol, [80.0, 80.0, 37.5], prior) is None  # empty lung: resolved
    assert measure_at(vol, [70.0, 42.0, 37.5], prior) is None  # a vessel runs out of its region


def test_probe_follows_a_lesion_the_detector_lost_and_leaves_a_gone_one_gone():
    vox, k, i, j = _lung(1)
    vox[(k - 37.5) ** 2 + (i - 42.0) ** 2 + (j - 42.0) ** 2 <= 2.0 ** 2] = 10.0  # shrank to 4 mm
    current_volume = Volume(vox, spacing=SPACING, modality="CT")
    prior_volume = Volume(_lung(2)[0], spacing=SPACING, modality="CT")
    ident = Registration(matrix=np.eye(3), offset=np.zeros(3), ok=True, method="affine")
    prior = Timepoint("1.1", "20250101", "1.1.1", [_ref((42.0, 42.0, 37.5), 7.0, prior_volume),
                                                   _ref((80.0, 80.0, 37.5), 6.0, prior_volume)])
    current = Timepoint("1.2", "20250601", "1.2.1", [])
    assert probe(prior, prior_volume, current, current_volume, ident) == 1
    (found,) = current.probed
    assert found in current.candidates and np.linalg.norm(np.subtract(found.center_mm, (42, 42, 37.5))) < 1
