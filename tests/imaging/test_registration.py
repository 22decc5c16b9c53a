"""Prior-to-current registration on a synthetic cohort: residuals against the phantoms' truth."""

from __future__ import annotations

import json

import numpy as np

from medstation.dicom import open_series
from medstation.imaging.registration import Registration, register
from medstation.synth.cohort import write_cohort_patient


def test_registration_brings_prior_nodules_within_2_mm_of_their_current_position(tmp_path):
    write_cohort_patient(tmp_path, seed=11, timepoints=2, small=True)
    tps = json.loads((tmp_path / "cohort.json").read_text())["timepoints"]
    prior = open_series(tmp_path / tps[0]["date"]).volume
    current = open_series(tmp_path / tps[1]["date"]).volume
    reg = register(current, prior)
    assert reg.ok and reg.method == "affine", reg.message
    pairs = [(a, b) for a, b in zip(tps[0]["nodules"], tps[1]["nodules"]) if a and b]
    assert len(pairs) >= 2
    before = [np.linalg.norm(np.subtract(a["center_patient"], b["center_patient"])) for a, b in pairs]
    after = [np.linalg.norm(reg.map_point(a["center_patient"]) - b["center_patient"]) for a, b in pairs]
    assert max(after) <= 2.0 and max(before) > 4.0, (before, after)
    # cached as JSON and back: the same mapping
    again = Registration.from_dict(json.loads(json.dumps(reg.to_dict())))
    p = pairs[0][0]["center_patient"]
    assert np.allclose(again.map_point(p), reg.map_point(p), atol=1e-3)


def test_a_series_without_lung_fails_clearly(tmp_path):
    from medstation.core.volume import Volume

    head = Volume(np.full((20, 40, 40), 30.0, np.float32), spacing=(2.0, 2.0, 2.0), modality="CT")
    reg = register(head, head)
    assert not reg.ok and reg.method == "identity" and "no lung" in reg.message
    assert np.allclose(reg.map_point((1, 2, 3)), (1, 2, 3))
