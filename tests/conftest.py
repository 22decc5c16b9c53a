import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# never read or write the developer's real keyring (PACS passwords stay in memory in the tests)
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

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


@pytest.fixture(scope="session")
def small_volume(small_study, tmp_path_factory):
    """The small study's thin series loaded as a Volume, with each slice's SOP Instance UID."""
    from medstation.core.series import SeriesRef
    from medstation.dicom import StudyDatabase, import_paths, open_series

    with StudyDatabase(tmp_path_factory.mktemp("small_db") / "db.sqlite") as db, \
            WorkerPool(1, timeout=20) as p:
        import_paths(db, [small_study.folder], p)
        ref = SeriesRef(small_study.study_uid, small_study.series[0].series_uid)
        volume = open_series(ref, db=db, pool=p).volume
    uids = [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path, _ in volume.sources]
    return volume, uids


#: the shipped detector's version: findings "made by it" carry it (reviews are stored per version)
BUILTIN_VERSION = json.loads((Path(__file__).resolve().parents[1] / "models" / "nodule-detector" /
                              "manifest.json").read_text())["version"]


def nodule_finding(volume, nodule=NODULE, finding_id="F1", score=0.91):
    """A finding where ``nodule`` is, with a box on each slice it spans (as the detector reports one)."""
    from medstation.core.findings import Finding

    c = volume.patient_to_index(nodule.center)
    r_k = nodule.diameter_mm / 2 / volume.spacing[0]
    r_i, r_j = nodule.diameter_mm / 2 / volume.spacing[1], nodule.diameter_mm / 2 / volume.spacing[2]
    ks = range(int(round(c[0] - r_k)), int(round(c[0] + r_k)) + 1)
    boxes = [(k, round(c[1] - r_i, 2), round(c[2] - r_j, 2), round(c[1] + r_i, 2), round(c[2] + r_j, 2),
              score) for k in ks]
    return Finding(finding_id, tuple(round(float(v), 2) for v in nodule.center),
                   tuple(round(float(v), 2) for v in c), float(nodule.diameter_mm), score,
                   (ks[0], ks[-1]), 904.8, boxes, "nodule-detector", BUILTIN_VERSION)


# ------------------------------------------------------------ a real PACS (Orthanc), see tests/_orthanc.py

@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    from tests._orthanc import ORTHANC, Orthanc

    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed (packaging/dev-setup.sh installs it)")
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.stop()


def make_node(server, **kw):
    base = dict(name="test-orthanc", host="127.0.0.1", port=server.dicom_port, ae_title=server.aet,
                calling_ae=server.client_aet, store_port=server.store_port,
                dicomweb_url=server.dicomweb_url, username="reader", timeout=10.0, retries=0)
    base.update(kw)
    from medstation.dicom.pacs import PacsNode, set_node_password
    from tests._orthanc import PASSWORD

    node = PacsNode(**base)
    set_node_password(node, PASSWORD)
    return node


@pytest.fixture(scope="session")
def stored_study(orthanc, small_study):
    """The small study, sent to Orthanc with medstation's own C-STORE."""
    files = sorted(str(p) for p in Path(small_study.folder).rglob("*.dcm"))
    from medstation.dicom.pacs import DimseClient

    report = DimseClient(make_node(orthanc)).store(files)
    assert report.transferred == len(files) and report.failed == 0
    return small_study, files


@pytest.fixture
def node(orthanc):
    return make_node(orthanc)


