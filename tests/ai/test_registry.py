"""The model registry: versions by task, NAME and NAME@VERSION, an explicit default, safe removal."""

from __future__ import annotations

import json

import pytest
import torch

from medstation.ai.detector import ARCHITECTURE, DEFAULT_INPUT, build_model
from medstation.ai.registry import Manifest, ModelRegistry, version_key
from medstation.ai.store import WEIGHTS, save_model
from medstation.core.errors import ModelError
from tests.ai.test_store import TINY_NET, _manifest


@pytest.fixture
def registry(tmp_path):
    torch.manual_seed(0)
    state = build_model(ARCHITECTURE, DEFAULT_INPUT, TINY_NET).state_dict()
    builtin, user = tmp_path / "builtin", tmp_path / "user"
    save_model(builtin / "nodule-detector", state, _manifest(name="nodule-detector", version="1.0.0",
                                                             metrics={"froc": {"threshold_at_1fp": 0.6}}))
    save_model(user / "nodule-detector-1.1.0", state,
               _manifest(name="nodule-detector", version="1.1.0", parent_version="1.0.0"))
    save_model(user / "nodule-detector-1.10.0", state, _manifest(name="nodule-detector", version="1.10.0"))
    save_model(user / "growth-rnn-0.1.0", state,
               _manifest(name="growth-rnn", version="0.1.0", task="followup"))
    return ModelRegistry(builtin, user)


def test_versions_by_task_and_the_typed_manifest(registry):
    det = registry.versions("detection")
    assert [v.id for v in det] == ["nodule-detector@1.0.0", "nodule-detector@1.1.0", "nodule-detector@1.10.0"]
    assert det[0].builtin and not det[1].builtin
    assert [v.id for v in registry.versions("followup")] == ["growth-rnn@0.1.0"]
    assert registry.tasks() == ["detection", "followup"]
    m = det[0].manifest
    assert isinstance(m, Manifest) and m.task == "detection" and m.threshold == 0.6
    assert det[1].manifest.parent_version == "1.0.0" and len(m.sha256) == 64
    assert version_key("1.10.0") > version_key("1.9.0") and version_key("1.9.1") > version_key("1.9.0")


def test_resolve_names_versions_and_paths(registry):
    assert registry.resolve("nodule-detector@1.1.0").version == "1.1.0"
    assert registry.resolve("nodule-detector").builtin  # the built-in one until another is used
    path = registry.user_dir / "nodule-detector-1.10.0"
    assert registry.resolve(str(path)).version == "1.10.0"
    with pytest.raises(ModelError, match=r"no model 'nodule-detector@9\.9' .*installed: .*1\.1\.0"):
        registry.resolve("nodule-detector@9.9")
    with pytest.raises(ModelError, match="no model 'growth-rnn' for detection"):
        registry.resolve("growth-rnn", "detection")


def test_a_new_version_is_not_the_default_until_used_and_use_is_a_pointer(registry):
    assert registry.default("detection").id == "nodule-detector@1.0.0"  # not the newest 1.10.0
    def model_files():
        return {p.relative_to(registry.user_dir): p.read_bytes() for p in registry.user_dir.rglob("*")
                if p.is_file() and p.name != "registry.json"}

    before = model_files()
    used = registry.use("nodule-detector@1.1.0")
    assert used.id == registry.default("detection").id == "nodule-detector@1.1.0"
    assert registry.resolve("nodule-detector").version == "1.1.0"
    saved = json.loads(registry.settings_file.read_text())["defaults"]
    assert saved == {"detection": "nodule-detector@1.1.0"}
    # rolling back moves the pointer; no file is changed
    registry.use("nodule-detector@1.0.0")
    assert registry.default("detection").builtin
    assert model_files() == before
    # a pointer to a version that went away falls back to the built-in one
    registry.use("nodule-detector@1.10.0")
    import shutil

    shutil.rmtree(registry.user_dir / "nodule-detector-1.10.0")
    assert registry.default("detection").id == "nodule-detector@1.0.0"


def test_use_refuses_a_damaged_version(registry):
    bad = registry.user_dir / "nodule-detector-1.1.0" / WEIGHTS
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(ModelError, match="sha256"):
        registry.use("nodule-detector@1.1.0")
    assert registry.default("detection").builtin


def test_remove_refuses_builtin_and_in_use(registry):
    with pytest.raises(ModelError, match="built in and cannot be removed"):
        registry.remove("nodule-detector@1.0.0")
    registry.use("nodule-detector@1.1.0")
    with pytest.raises(ModelError, match="in use and cannot be removed"):
        registry.remove("nodule-detector@1.1.0")
    removed = registry.remove("nodule-detector@1.10.0")
    assert not removed.path.exists()
    assert [v.version for v in registry.versions("detection")] == ["1.0.0", "1.1.0"]
    with pytest.raises(ModelError, match="already exists"):
        registry.new_version_dir("nodule-detector", "1.1.0")
    assert registry.new_version_dir("nodule-detector", "1.2.0").name == "nodule-detector-1.2.0"


def test_a_new_built_in_version_ships_installed_and_the_defaults_file_says_which_is_used(registry):
    """``models/defaults.json`` names the built-in version a task uses: a newer built-in one is
    listed and can be picked, but is not used by itself; without the file the newest is used."""
    import json

    state = build_model(ARCHITECTURE, DEFAULT_INPUT, TINY_NET).state_dict()
    save_model(registry.builtin_dir / "nodule-detector-2.0.0", state,
               _manifest(name="nodule-detector", version="2.0.0", parent_version=None))
    assert registry.default("detection").id == "nodule-detector@2.0.0"  # no file: the newest
    save_model(registry.builtin_dir / "nodule-detector-1.5.0", state,
               _manifest(name="nodule-detector", version="1.5.0", parent_version="1.0.0"))
    (registry.builtin_dir / "defaults.json").write_text(json.dumps({"detection": "nodule-detector@1.5.0"}))
    assert registry.default("detection").id == "nodule-detector@1.5.0"
    assert "nodule-detector@2.0.0" in [v.id for v in registry.versions("detection")]
    assert registry.resolve("nodule-detector").id == "nodule-detector@1.5.0"  # the name means the default
    registry.use("nodule-detector@2.0.0")  # a reader's choice wins over the shipped default
    assert registry.default("detection").id == "nodule-detector@2.0.0"
    (registry.builtin_dir / "defaults.json").write_text("{not json")
    registry.use("nodule-detector@1.0.0")
    registry.settings_file.unlink()
    assert registry.default("detection").id == "nodule-detector@2.0.0"  # unreadable: the newest, said
    assert any("defaults.json" in str(p) for p in registry.problems)
