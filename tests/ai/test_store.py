"""The model store: hashes checked before deserializing, no pickle, clear ModelErrors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from medstation.ai.detector import ARCHITECTURE, DEFAULT_INPUT, Detector, build_model
from medstation.ai.registry import default_detector_dir, list_models
from medstation.ai.store import (
    MANIFEST,
    WEIGHTS,
    load_detector,
    load_state,
    save_metrics,
    save_model,
)
from medstation.core.errors import ModelError

TINY_NET = {"widths": [8, 8, 16, 16], "fpn_channels": 32, "head_convs": 1}


def _manifest(**kw):
    m = {"name": "test-detector", "version": "0.0.1", "parent_version": None, "task": "detection",
         "architecture": ARCHITECTURE, "network": TINY_NET, "input": dict(DEFAULT_INPUT),
         "classes": ["background", "nodule"], "training_data": {"source": "test"}, "metrics": {}}
    m.update(kw)
    return m


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    model = build_model(ARCHITECTURE, DEFAULT_INPUT, TINY_NET)
    return save_model(tmp_path / "tiny", model.state_dict(), _manifest()), model


def test_round_trip_loads_the_same_weights(tiny_model):
    path, model = tiny_model
    manifest, state = load_state(path)
    assert manifest["sha256"] and len(manifest["sha256"]) == 64
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k
    det = load_detector(path)
    assert isinstance(det, Detector) and det.version == "0.0.1"


def test_a_changed_byte_is_refused_before_loading(tiny_model):
    path, _ = tiny_model
    data = bytearray((path / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as err:
        load_detector(path)
    assert str(path / WEIGHTS) in str(err.value) and err.value.hint


def test_a_truncated_file_is_refused(tiny_model):
    path, _ = tiny_model
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="changed or truncated"):
        load_detector(path)


class _Boom:
    """Unpickling this would create a marker file: the store must never unpickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("consistent_hash", [False, True])
def test_a_pickled_checkpoint_is_never_unpickled(tmp_path, consistent_hash):
    import hashlib

    folder = tmp_path / "pickled"
    folder.mkdir()
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weights": _Boom(marker)})
    (folder / WEIGHTS).write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest() if consistent_hash else "0" * 64
    (folder / MANIFEST).write_text(json.dumps({**_manifest(), "sha256": sha}))
    with pytest.raises(ModelError) as err:
        load_detector(folder)
    assert ("not a valid safetensors" if consistent_hash else "sha256") in str(err.value)
    assert not marker.exists()


def test_unknown_architecture_and_bad_manifests(tiny_model, tmp_path):
    path, _ = tiny_model
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "architecture": "transformer-9000"}))
    with pytest.raises(ModelError, match="unknown model architecture 'transformer-9000'"):
        load_detector(path)
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable manifest"):
        load_detector(path)
    (path / MANIFEST).write_text(json.dumps({"name": "x"}))
    with pytest.raises(ModelError, match="lacks version"):
        load_detector(path)
    with pytest.raises(ModelError, match="no manifest.json"):
        load_detector(tmp_path / "nowhere")


def test_weights_of_another_network_shape_are_refused(tmp_path):
    model = build_model(ARCHITECTURE, DEFAULT_INPUT, TINY_NET)
    path = save_model(tmp_path / "m", model.state_dict(), _manifest(network={**TINY_NET, "fpn_channels": 64}))
    with pytest.raises(ModelError, match="do not fit"):
        load_detector(path)


def test_a_new_user_model_is_listed_but_not_used_until_chosen(tmp_path, monkeypatch, tiny_model):
    builtin = tmp_path / "builtin"
    monkeypatch.setenv("MEDSTATION_MODELS", str(builtin))
    model = tiny_model[1]
    save_model(builtin / "nodule-detector", model.state_dict(), _manifest(version="1.0.0"))
    assert default_detector_dir() == builtin / "nodule-detector"
    from medstation.ai.store import user_models_dir

    save_model(user_models_dir() / "nodule-detector-1.1.0", model.state_dict(),
               _manifest(version="1.1.0", parent_version="1.0.0"))
    save_model(user_models_dir() / "nodule-detector-1.0.9", model.state_dict(), _manifest(version="1.0.9"))
    broken = user_models_dir() / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text("[]")
    entries, problems = list_models("detection")
    assert [e.version for e in entries] == ["1.0.0", "1.0.9", "1.1.0"]
    assert entries[0].builtin and not entries[1].builtin
    assert len(problems) == 1 and "broken" in str(problems[0])
    # a newer version on disk does not become the default by itself
    assert default_detector_dir() == builtin / "nodule-detector"


def test_metrics_are_recorded_without_touching_the_weights(tiny_model):
    path, _ = tiny_model
    before = (path / WEIGHTS).read_bytes()
    save_metrics(path, {"froc": {"cpm": 0.9}})
    manifest, _ = load_state(path)
    assert manifest["metrics"]["froc"]["cpm"] == 0.9
    assert (path / WEIGHTS).read_bytes() == before


def test_the_shipped_detector_is_intact_small_and_has_a_model_card():
    from medstation.ai.store import builtin_models_dir

    path = builtin_models_dir() / "nodule-detector"
    manifest, _ = load_state(path)
    assert (path / WEIGHTS).stat().st_size <= 25 * 1024 * 1024
    card = (path / "MODEL_CARD.md").read_text()
    assert "not for clinical use" in card.lower()
    assert manifest["metrics"]["froc"]["sensitivity_at_fp_per_scan"]["1.0"] >= 0.9
    assert f"{manifest['metrics']['froc']['cpm']:.3f}" in card
    assert "medstation train-detector" in card
