"""The false-positive reduction stage: patches, the classifier, its place in a model version."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medstation.ai import fpr
from medstation.ai.detector import ARCHITECTURE, DEFAULT_INPUT, build_model
from medstation.ai.store import load_detector, save_model
from medstation.core.errors import ModelError
from tests.ai.test_store import TINY_NET, _manifest


def test_a_patch_is_centred_on_its_point_at_the_requested_spacing():
    vox = np.full((40, 60, 60), -1000.0, np.float32)
    kk, ii, jj = np.mgrid[:40, :60, :60]
    spacing = (2.0, 0.5, 0.5)
    # a 10 mm sphere at voxel (20, 30, 25)
    r = np.sqrt(((kk - 20) * 2.0) ** 2 + ((ii - 30) * 0.5) ** 2 + ((jj - 25) * 0.5) ** 2)
    vox[r < 5] = 40.0
    spec = dict(fpr.DEFAULT_SPEC, size=16, spacing_mm=1.0)
    vol = fpr.volume_tensor(vox, spec["window"])
    p = fpr.extract(vol, spacing, [(20.0, 30.0, 25.0), (20.0, 30.0, 5.0)], spec)
    assert p.shape == (2, 1, 16, 16, 16)
    centre = p[0, 0]
    # 10 mm across at 1 mm: about 10 of the 16 voxels along each axis are bright, centred
    lines = [centre[:, 7:9, 7:9].mean(dim=(1, 2)), centre[7:9, :, 7:9].mean(dim=(0, 2)),
             centre[7:9, 7:9, :].mean(dim=(0, 1))]
    for line in lines:
        bright = torch.nonzero(line > 0.4).flatten()
        assert 8 <= len(bright) <= 12 and abs(float(bright.float().mean()) - 7.5) <= 1.0
    assert float(p[1, 0].mean()) < float(p[0, 0].mean())  # beside the sphere: mostly air
    # outside the volume reads as air (0)
    far = fpr.extract(vol, spacing, [(-50.0, -50.0, -50.0)], spec)
    assert float(far.abs().max()) == 0.0


def test_combined_score_is_the_geometric_mean():
    out = fpr.combine([0.81, 0.5], [0.25, 1.0], 0.5)
    assert out == pytest.approx([0.45, np.sqrt(0.5)])


def test_a_model_version_carries_its_classifier_in_one_hashed_file(tmp_path):
    torch.manual_seed(0)
    det = build_model(ARCHITECTURE, DEFAULT_INPUT, TINY_NET)
    net = fpr.build(fpr.DEFAULT_SPEC)
    state = {**det.state_dict(), **{f"fpr.{k}": v for k, v in net.state_dict().items()}}
    path = save_model(tmp_path / "m", state, _manifest(fp_reduction=dict(fpr.DEFAULT_SPEC)))
    loaded = load_detector(path)
    assert loaded.fpr is not None
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.fpr.state_dict()[k], v)
    # a manifest naming an unknown classifier is refused with the file named
    bad = save_model(tmp_path / "bad", state, _manifest(fp_reduction={**fpr.DEFAULT_SPEC,
                                                                      "architecture": "other"}))
    with pytest.raises(ModelError, match="false-positive reduction"):
        load_detector(bad)
    # without the section the fpr.* tensors are ignored: the detector alone
    assert load_detector(save_model(tmp_path / "plain", det.state_dict(), _manifest())).fpr is None


def test_the_classifier_rescales_scores_in_detection(tmp_path):
    from medstation.synth import Nodule
    from tests.ai.test_detector import phantom_volume

    torch.manual_seed(0)
    det = build_model(ARCHITECTURE, DEFAULT_INPUT, TINY_NET)
    net = fpr.build(fpr.DEFAULT_SPEC)
    with torch.no_grad():  # a classifier that says 0.25 to everything
        net.head.weight.zero_()
        net.head.bias.fill_(float(np.log(0.25 / 0.75)))
    plain = load_detector(save_model(tmp_path / "p", det.state_dict(), _manifest()))
    state = {**det.state_dict(), **{f"fpr.{k}": v for k, v in net.state_dict().items()}}
    manifest = _manifest(fp_reduction=dict(fpr.DEFAULT_SPEC))
    with_fpr = load_detector(save_model(tmp_path / "f", state, manifest))
    vol = phantom_volume([Nodule((-70.0, 5.0, -10.0), 12.0)], z_lo=-30, z_hi=10)
    a = plain.detect(vol, heatmap=False, min_score=0.01)
    b = with_fpr.detect(vol, heatmap=False, min_score=0.01)
    assert a.findings and len(a.findings) == len(b.findings)
    assert sorted(f.score for f in b.findings) == pytest.approx(
        sorted(float(np.sqrt(f.score * 0.25)) for f in a.findings), abs=2e-4)
    assert "fp_reduction" in b.seconds
