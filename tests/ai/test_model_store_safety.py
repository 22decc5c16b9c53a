"""The model store under hostile or broken files (issue 26, items 1, 2 and 7): it never reads or
deletes outside its folder, survives any one bad file (listed as a problem, the rest usable), says
when it falls back, and never saves a model with non-finite weights."""

from __future__ import annotations

import json

import pytest
import torch

from medstation.ai.detector import ARCHITECTURE, DEFAULT_INPUT, build_model
from medstation.ai.registry import check_identifier
from medstation.ai.store import MANIFEST, WEIGHTS, save_model
from medstation.core.errors import ModelError
from tests.ai.test_registry import registry  # noqa: F401 (a fixture)
from tests.ai.test_store import TINY_NET, _manifest
from tests.cli.test_cli import medstation


def _tiny_state():
    torch.manual_seed(0)
    return build_model(ARCHITECTURE, DEFAULT_INPUT, TINY_NET).state_dict()


def _edit(folder, **changes):
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_remove_refuses_a_model_folder_outside_the_store(registry, tmp_path):  # noqa: F811
    outside = tmp_path / "elsewhere" / "my-project"
    save_model(outside, _tiny_state(), _manifest(name="nodule-detector", version="7.0.0"))
    (outside / "thesis.tex").write_text("unrelated")
    for spec in (str(outside), str(outside / ".." / "my-project")):
        with pytest.raises(ModelError, match="not a folder of the user model store"):
            registry.remove(spec)
    assert (outside / "thesis.tex").read_text() == "unrelated" and (outside / WEIGHTS).exists()
    # a link inside the store that points out of it is not a store folder either
    (registry.user_dir / "nodule-detector-7.0.0").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelError, match="not .*user model store"):
        registry.remove("nodule-detector@7.0.0")
    assert (outside / "thesis.tex").exists()
    # a registered version inside the store is removed as before
    assert registry.remove("nodule-detector@1.1.0").version == "1.1.0"
    assert not (registry.user_dir / "nodule-detector-1.1.0").exists()


def test_the_cli_remove_outside_the_store_exits_with_one_line(tmp_path):
    outside = tmp_path / "project"
    save_model(outside, _tiny_state(), _manifest(name="nodule-detector", version="7.0.0"))
    (outside / "notes.txt").write_text("keep me")
    proc = medstation("models", "remove", str(outside))
    assert proc.returncode != 0 and "not a folder of the user model store" in proc.stderr
    assert "Traceback" not in proc.stderr and (outside / "notes.txt").exists()


@pytest.mark.parametrize("bad", ["../../x", "..", "a/b", "x\\y", "", "1.²", "é", "a" * 65, ".hidden"])
def test_names_and_versions_are_identifiers(bad):
    with pytest.raises(ModelError, match="is not a valid model name"):
        check_identifier("name", bad, "test")


def test_a_traversing_manifest_name_or_out_version_writes_nothing_outside(registry, tmp_path):  # noqa: F811
    evil = registry.user_dir / "evil"
    save_model(evil, _tiny_state(), _manifest(name="../../x", version="1.0.0"))
    registry.versions()
    assert any("name '../../x' is not a valid model name" in str(p) for p in registry.problems)
    with pytest.raises(ModelError, match="no model"):
        registry.resolve("../../x@1.0.0")
    for name, version in (("nodule-detector", "../.."), ("../../x", "1.0.0"), ("nodule-detector", "1/2")):
        with pytest.raises(ModelError, match="not a valid model"):
            registry.new_version_dir(name, version)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builtin", "user"]


def test_train_refuses_a_traversing_out_version_before_writing_anything(tmp_path):
    proc = medstation("train", "--out-version", "../..", "--epochs", "1")
    assert proc.returncode != 0 and "is not a valid model version" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    store = tmp_path / "data" / "models"
    assert not any(p.name not in (".training",) for p in store.iterdir()) if store.exists() else True
    assert not (tmp_path / "data").parent.joinpath("nodule-detector-..").exists()


@pytest.mark.parametrize("change", [
    {"metrics": [1]}, {"version": "1.²"}, {"name": {"a": 1}}, {"operating_point": "high"},
    {"operating_point": float("nan")}, {"metrics": {"froc": [0.5]}}, {"task": None, "name": None},
    {"keep_findings_in": "everywhere"},
])
def test_one_malformed_manifest_leaves_the_others_usable(registry, change):  # noqa: F811
    _edit(registry.user_dir / "nodule-detector-1.10.0", **change)
    ids = [v.id for v in registry.versions("detection")]
    assert ids == ["nodule-detector@1.0.0", "nodule-detector@1.1.0"]
    assert len(registry.problems) == 1 and "nodule-detector-1.10.0" in str(registry.problems[0])
    assert registry.default("detection").id == "nodule-detector@1.0.0"


def test_a_deeply_nested_or_huge_manifest_is_a_problem_not_a_crash(registry):  # noqa: F811
    folder = registry.user_dir / "nodule-detector-1.10.0"
    manifest = json.loads((folder / MANIFEST).read_text())
    deep = "[" * 100_000 + "]" * 100_000
    (folder / MANIFEST).write_text(json.dumps(manifest)[:-1] + ', "x": ' + deep + "}")
    assert [v.version for v in registry.versions("detection")] == ["1.0.0", "1.1.0"]
    assert "nested too deeply" in str(registry.problems[0])
    (folder / MANIFEST).write_text(" " * 5_000_000 + "{}")
    registry.versions()
    assert "a manifest is at most" in str(registry.problems[0])


@pytest.mark.parametrize("text", ['{"defaults": [1]}', "[" * 50_000, '{"defaults": {"detection": 5}}',
                                  "\xff\xfe"])
def test_a_malformed_registry_file_falls_back_to_the_built_in_model_aloud(registry, text):  # noqa: F811
    registry.settings_file.write_bytes(text.encode("latin-1"))
    assert registry.default("detection").id == "nodule-detector@1.0.0"
    assert any("registry.json: unreadable" in str(p) and "built-in models are in use" in str(p)
               for p in registry.problems)
    registry.use("nodule-detector@1.1.0")  # and it can be written again
    assert registry.default("detection").version == "1.1.0"


def test_a_dangling_pointer_falls_back_and_says_so(registry):  # noqa: F811
    registry.use("nodule-detector@1.1.0")
    import shutil

    shutil.rmtree(registry.user_dir / "nodule-detector-1.1.0")
    assert registry.default("detection").id == "nodule-detector@1.0.0"
    assert any("nodule-detector@1.1.0, is not installed" in str(p) and "built-in one is used" in str(p)
               for p in registry.problems)


def test_a_half_written_version_is_listed_and_removable(registry):  # noqa: F811
    half = registry.user_dir / "nodule-detector-2.0.0"
    half.mkdir()
    (half / WEIGHTS).write_bytes(b"\0" * 100)  # a crash before the manifest
    registry.versions()
    assert half in registry.incomplete
    assert any("not a complete model (no manifest.json" in str(p) for p in registry.problems)
    with pytest.raises(ModelError, match="not a complete model.*models remove"):
        registry.new_version_dir("nodule-detector", "2.0.0")
    assert registry.remove(str(half)) == half and not half.exists()
    assert registry.new_version_dir("nodule-detector", "2.0.0") == half


def test_save_model_never_writes_non_finite_weights_or_metrics(tmp_path):
    state = _tiny_state()
    key = next(iter(state))
    state[key] = state[key].clone().fill_(float("nan"))
    with pytest.raises(ModelError, match="NaN or Infinity"):
        save_model(tmp_path / "m", state, _manifest())
    with pytest.raises(ModelError, match="metric .* is not a number"):
        save_model(tmp_path / "m", _tiny_state(), _manifest(metrics={"cpm": float("inf")}))
    assert list(tmp_path.iterdir()) == []  # not even a folder, nor its hidden staging copy
    save_model(tmp_path / "m", _tiny_state(), _manifest())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_models_list_with_a_malformed_user_manifest_lists_the_rest_and_the_problem(tmp_path):
    bad = tmp_path / "data" / "models" / "nodule-detector-3.0.0"
    save_model(bad, _tiny_state(), _manifest(name="nodule-detector", version="3.0.0"))
    _edit(bad, metrics=[1], version="1.²")
    (tmp_path / "data" / "models" / "registry.json").write_text('{"defaults": {"detection": "x@1"}}')
    proc = medstation("models", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert any(m["builtin"] and m["in_use"] and m["task"] == "detection" for m in out["models"])
    problems = " ".join(p["reason"] for p in out["problems"])
    assert "nodule-detector-3.0.0" in problems and "x@1, is not installed" in problems


def test_a_registered_version_never_changes_a_derived_one_does(registry):  # noqa: F811
    """Issue 28, item 6: calibrating a registered version makes a new one (parent = the old); the old
    folder's bytes stay; the cache key follows the whole manifest, not only the weights."""
    old = registry.user_dir / "nodule-detector-1.1.0"
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    assert registry.holds(old) and registry.holds(registry.builtin_dir / "nodule-detector")
    assert not registry.holds(registry.user_dir.parent / "elsewhere" / "m")
    new = registry.derive(old, "cal", {"calibration": {"kind": "platt", "a": 1.0, "b": 0.0},
                                       "operating_point": 0.4})
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    got = registry.resolve(str(new))
    assert (got.version, got.manifest.parent_version) == ("1.1.0-cal1", "1.1.0")
    assert got.manifest.operating_point == 0.4
    assert got.manifest.sha256 == registry.resolve("nodule-detector@1.1.0").manifest.sha256  # same weights
    assert got.manifest.fingerprint != registry.resolve("nodule-detector@1.1.0").manifest.fingerprint
    assert registry.derive(old, "cal", {}).name == "nodule-detector-1.1.0-cal2"


def test_evaluate_write_metrics_refuses_a_registered_version(tmp_path):
    proc = medstation("evaluate", "--studies", "1", "--write-metrics")  # the built-in detector
    assert proc.returncode == 2 and "is a registered version: it never changes" in proc.stderr
    assert "Traceback" not in proc.stderr
