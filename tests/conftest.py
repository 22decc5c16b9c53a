import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pydicom  # noqa: E402

from medstation.dicom import WorkerPool  # noqa: E402
from medstation.synth import ChestPhantom, Nodule, SeriesSpec, write_study  # noqa: E402

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="session")
def pool():
    with WorkerPool(2, timeout=20) as p:
        p.start()
        yield p


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch):
    """Never touch the real user database or data folder."""
    monkeypatch.setenv("MEDSTATION_DB", str(tmp_path / "db" / "studies.sqlite"))
    monkeypatch.setenv("MEDSTATION_DATA", str(tmp_path / "data"))


NODULE = Nodule((-60.0, -5.0, -20.0), 12.0, label="test nodule")


def small_spec(**kw) -> SeriesSpec:
    base = dict(description="small", slices=24, rows=64, columns=64, pixel_spacing=5.0,
                slice_thickness=2.5, z_center=-20.0)
    base.update(kw)
    return SeriesSpec(**base)


@pytest.fixture(scope="session")
def small_study(tmp_path_factory):
    """A small two-series CT study with one nodule at a known position."""
    out = tmp_path_factory.mktemp("small_study")
    truth = write_study(out, ChestPhantom(seed=3, nodules=[NODULE]),
                        series=[small_spec(), small_spec(description="thick", slices=8,
                                                         slice_thickness=5.0, compression="rle")],
                        seed=3)
    return truth
