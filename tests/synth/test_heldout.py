"""The held-out generator family: independent of the training generator, with true sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medstation.synth.heldout import HeldOutPhantom, Lesion


def test_lobulated_truth_is_the_sphere_equivalent_of_the_drawn_volume():
    les = Lesion((0.0, 0.0, 0.0), 6.0, "lobulated", 30.0,
                 lobes=((0.15, 3, 0.4, 1.0), (0.1, 2, 2.0, 0.3)))
    # count voxels inside the surface on a fine grid
    g = np.arange(-10, 10, 0.2) + 0.1
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    d = np.sqrt(x * x + y * y + z * z) + 1e-9
    inside = d < les.radius_towards(x / d, y / d, z / d)
    volume = inside.sum() * 0.2 ** 3
    measured = 2 * (3 * volume / (4 * math.pi)) ** (1 / 3)
    assert les.equivalent_diameter() == pytest.approx(measured, rel=0.01)
    assert abs(les.equivalent_diameter() - 12.0) > 0.05  # lobulation changes the volume


def test_patients_vary_and_lesions_sit_in_the_lung():
    kinds, wheres, kernels = set(), set(), set()
    for seed in range(12):
        ph = HeldOutPhantom(seed)
        kernels.add(ph.kernel)
        for les in ph.lesions:
            kinds.add(les.kind)
            wheres.add(les.where)
            assert ph.lung(np.float32(les.center[0]), np.float32(les.center[1]), les.center[2])
        for t in ph.truth():
            assert 3.0 < t["diameter_mm"] < 35.0 and t["family"] == "held-out-v1"
    assert {"solid", "ground-glass", "part-solid", "calcified", "lobulated", "spiculated"} <= kinds
    assert {"parenchyma", "juxtapleural", "juxtavascular"} <= wheres
    assert len(kernels) >= 2


def test_a_slice_holds_lungs_vessels_and_the_lesion():
    ph = HeldOutPhantom(5)
    les = max(ph.lesions, key=lambda les: les.radius)
    x = (np.arange(300) - 149.5) * 1.2
    y = x + 10.0
    img = ph.render_slice(les.center[2], x, y, 1.25)
    lung = (img < -600).mean()
    assert 0.1 < lung < 0.6
    j = int(np.argmin(abs(x - les.center[0])))
    i = int(np.argmin(abs(y - les.center[1])))
    assert img[i - 1:i + 2, j - 1:j + 2].mean() > les.hu - 200  # the lesion is there
    # the noise is correlated (a grain of about a pixel): neighbours agree more than chance
    flat = ph.render_slice(ph.apex + 60, x, y, 1.25)  # the neck: a big soft-tissue area
    patch = flat[140:160, 140:160]
    patch = patch - patch.mean()
    corr = float((patch[:, 1:] * patch[:, :-1]).mean() / patch.var())
    assert 0.2 < corr < 0.95
