"""``core.geometry.Grid``: the one patient mm <-> voxel index conversion."""

import numpy as np
import pytest

from medstation.core.geometry import Grid
from medstation.core.volume import AXIAL, Volume

# direction rows: k (slice normal), i (down the rows), j (along the columns)
ORIENTATIONS = {
    "axial": AXIAL,
    "axial, rows flipped": np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float),
    "axial, columns flipped": np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float),
    "axial, feet first": np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], float),
    "coronal": np.array([[0, 1, 0], [0, 0, -1], [1, 0, 0]], float),
    "sagittal": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float),
}


def _oblique() -> np.ndarray:
    a = np.radians(20)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return (rot @ AXIAL.T).T


@pytest.mark.parametrize("name", [*ORIENTATIONS, "oblique"])
def test_round_trip_with_anisotropic_voxels(name):
    direction = ORIENTATIONS.get(name, _oblique()) if name != "oblique" else _oblique()
    g = Grid.of((40, 100, 120), (2.5, 0.82, 0.7), (-120.0, 33.0, -379.0), direction)
    idx = np.array([[0, 0, 0], [39, 99, 119], [12.5, 40.25, 7.75]])
    back = g.patient_to_index(g.index_to_patient(idx))
    assert np.allclose(back, idx)
    # one slice step moves 2.5 mm along the slice normal, one row 0.82 mm, one column 0.7 mm
    p0, pk, pi, pj = g.index_to_patient(np.array([[3, 4, 5], [4, 4, 5], [3, 5, 5], [3, 4, 6]], float))
    assert np.allclose(pk - p0, 2.5 * direction[0])
    assert np.allclose(pi - p0, 0.82 * direction[1])
    assert np.allclose(pj - p0, 0.7 * direction[2])


def test_contains_is_the_voxels_outer_faces():
    g = Grid.of((140, 512, 512), (2.5, 0.82, 0.82), (-210.0, -210.0, -379.0), AXIAL)
    centre = g.index_to_patient((69.5, 255.5, 255.5))
    assert g.contains(centre)
    assert g.contains(g.index_to_patient((-0.5, 0, 0)))
    assert not g.contains(g.index_to_patient((-0.6, 0, 0)))
    assert g.contains(g.index_to_patient((139.5, 511, 511)))
    assert not g.contains(g.index_to_patient((139.6, 511, 511)))
    # the old transposed solve swapped slice and column spacing: this point was "outside"
    assert g.contains((0.0, 0.0, -379.0 + 100 * 2.5))
    assert not g.contains((float("nan"), 0.0, 0.0))


def test_volume_uses_the_grid():
    v = Volume(np.zeros((10, 20, 30), np.int16), (5.0, 0.84, 0.84), (1.0, 2.0, 3.0), ORIENTATIONS["coronal"])
    assert v.grid.shape == (10, 20, 30)
    p = v.index_to_patient((2, 3, 4))
    assert np.allclose(p, v.grid.index_to_patient((2, 3, 4)))
    assert np.allclose(v.patient_to_index(p), (2, 3, 4))
    assert np.allclose(v.affine() @ [2, 3, 4, 1], [*p, 1])


def test_sitk_direction_matches_simpleitk_physical_points():
    sitk = pytest.importorskip("SimpleITK")
    direction = _oblique()
    g = Grid.of((6, 7, 8), (2.5, 0.8, 0.6), (10.0, -20.0, 30.0), direction)
    img = sitk.GetImageFromArray(np.zeros(g.shape, np.float32))
    img.SetSpacing((0.6, 0.8, 2.5))
    img.SetOrigin(g.origin)
    img.SetDirection(g.sitk_direction())
    k, i, j = 4, 5, 3
    assert np.allclose(img.TransformIndexToPhysicalPoint((j, i, k)), g.index_to_patient((k, i, j)))
