"""The synthetic chest CT writer produces valid DICOM with the truth it claims."""

import json
from pathlib import Path

import numpy as np
import pydicom

from medstation.synth import ChestPhantom, Nodule, write_patient
from tests.conftest import small_spec


def test_study_files_and_truth(small_study):
    truth = json.loads((Path(small_study.folder) / "truth.json").read_text())
    assert truth["nodules"][0]["diameter_mm"] == 12.0
    ds = pydicom.dcmread(small_study.series[0].files[0])
    assert ds.Modality == "CT" and ds.RescaleIntercept == -1024 and ds.PatientID == "MS-0001"
    hu = ds.pixel_array.astype(np.int32) - 1024
    assert hu.min() < -900 and hu.max() > 300  # air outside, bone inside
    assert len({pydicom.dcmread(f).SeriesInstanceUID for f in small_study.series[1].files}) == 1


def test_priors_grow_nodules_and_keep_the_patient(tmp_path):
    nodule = Nodule((-60.0, 0.0, -20.0), 10.0)
    studies = write_patient(tmp_path, seed=4, nodules=[nodule], timepoints=3, growth_per_year=1.0,
                            interval_days=365, series=[small_spec(slices=4)])
    sizes = [s.nodules[0]["diameter_mm"] for s in studies]
    assert sizes[0] < sizes[1] < sizes[2] == 10.0
    assert abs(sizes[1] ** 3 / sizes[0] ** 3 - 2.0) < 0.05  # volume doubles in a year
    assert len({s.study_uid for s in studies}) == 3 and len({s.patient_id for s in studies}) == 1
    assert [s.study_date for s in studies] == sorted(s.study_date for s in studies)


def test_same_seed_same_pixels(tmp_path):
    from medstation.synth import write_study

    a = write_study(tmp_path / "a", ChestPhantom(seed=2), series=[small_spec(slices=2)], seed=2)
    b = write_study(tmp_path / "b", ChestPhantom(seed=2), series=[small_spec(slices=2)], seed=2)
    for fa, fb in zip(sorted(a.series[0].files), sorted(b.series[0].files)):
        assert Path(fa).read_bytes() == Path(fb).read_bytes()


def test_the_training_phantom_is_domain_randomized():
    from medstation.training.synthetic import make_phantom

    kinds, contrast, disease = set(), set(), 0
    for seed in range(30):
        ph = make_phantom(seed)
        kinds |= {ph.shapes[n.label].kind for n in ph.nodules}
        contrast.add(ph.contrast > 0)
        disease += bool(ph.emphysema) or bool(ph.fibrosis)
        for n in ph.nodules:
            assert ph.inside_lung(n.center)
    assert {"solid", "ground-glass", "part-solid", "calcified", "lobulated", "spiculated"} <= kinds
    assert contrast == {True, False} and disease >= 2
    big = [n for seed in range(30) for n in make_phantom(seed).nodules if n.diameter_mm > 30]
    assert big  # masses beyond the nodule range
