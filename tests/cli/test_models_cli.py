"""medstation models list|show|use|remove, as a user runs them, with --json."""

from __future__ import annotations

import json
import shutil

from medstation.ai.store import builtin_models_dir
from tests.cli.test_cli import medstation

#: the shipped detector's version (the built-in one) and a user version trained "here" from it
BUILTIN = json.loads((builtin_models_dir() / "nodule-detector" / "manifest.json").read_text())["version"]
USER = "9.1.0"


def _user_copy(tmp_path, version: str):
    """A copy of the shipped detector saved as a user version (same weights, its own manifest)."""
    user = tmp_path / "data" / "models" / f"nodule-detector-{version}"
    shutil.copytree(builtin_models_dir() / "nodule-detector", user)
    manifest = json.loads((user / "manifest.json").read_text())
    manifest.update(version=version, parent_version=BUILTIN)
    (user / "manifest.json").write_text(json.dumps(manifest))
    return user


def test_list_use_show_remove(tmp_path):
    user = _user_copy(tmp_path, USER)
    listed = json.loads(medstation("models", "list", "--task", "detection", "--json").stdout)["models"]
    everything = json.loads(medstation("models", "list", "--json").stdout)["models"]
    assert {m["task"] for m in everything} == {"detection", "followup"}  # the follow-up predictor too
    assert [(m["id"], m["in_use"], m["builtin"]) for m in listed] == [
        (f"nodule-detector@{BUILTIN}", True, True), (f"nodule-detector@{USER}", False, False)]
    text = medstation("models", "list", "--task", "detection").stdout
    assert f"* nodule-detector@{BUILTIN}" in text and f"trained here, from {BUILTIN}" in text

    used = medstation("models", "use", f"nodule-detector@{USER}", "--json")
    assert used.returncode == 0 and json.loads(used.stdout)["in_use"] == f"nodule-detector@{USER}"
    shown = json.loads(medstation("models", "show", "nodule-detector", "--json").stdout)
    assert shown["version"] == USER and shown["in_use"] and shown["parent_version"] == BUILTIN
    assert shown["manifest"]["sha256"] == shown["sha256"]

    refused = medstation("models", "remove", f"nodule-detector@{USER}")
    assert refused.returncode == 2 and "in use and cannot be removed" in refused.stderr
    refused = medstation("models", "remove", f"nodule-detector@{BUILTIN}")
    assert refused.returncode == 2 and "built in" in refused.stderr and "Traceback" not in refused.stderr

    assert medstation("models", "use", f"nodule-detector@{BUILTIN}").returncode == 0  # roll back
    removed = medstation("models", "remove", f"nodule-detector@{USER}", "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] == f"nodule-detector@{USER}"
    assert not user.exists()


def test_unknown_names_are_one_clear_line():
    proc = medstation("models", "use", "nodule-detector@7.7.7")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no model 'nodule-detector@7.7.7'" in proc.stderr
    assert f"nodule-detector@{BUILTIN}" in proc.stderr and "installed: " in proc.stderr
