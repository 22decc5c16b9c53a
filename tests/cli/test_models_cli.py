"""medstation models list|show|use|remove, as a user runs them, with --json."""

from __future__ import annotations

import json
import shutil

from medstation.ai.store import builtin_models_dir
from tests.cli.test_cli import medstation


def _user_copy(tmp_path, version: str):
    """A copy of the shipped detector saved as a user version (same weights, its own manifest)."""
    user = tmp_path / "data" / "models" / f"nodule-detector-{version}"
    shutil.copytree(builtin_models_dir() / "nodule-detector", user)
    manifest = json.loads((user / "manifest.json").read_text())
    manifest.update(version=version, parent_version="1.0.0")
    (user / "manifest.json").write_text(json.dumps(manifest))
    return user


def test_list_use_show_remove(tmp_path):
    user = _user_copy(tmp_path, "1.1.0")
    listed = json.loads(medstation("models", "list", "--json").stdout)["models"]
    assert [(m["id"], m["in_use"], m["builtin"]) for m in listed] == [
        ("nodule-detector@1.0.0", True, True), ("nodule-detector@1.1.0", False, False)]
    text = medstation("models", "list").stdout
    assert "* nodule-detector@1.0.0" in text and "trained here, from 1.0.0" in text

    used = medstation("models", "use", "nodule-detector@1.1.0", "--json")
    assert used.returncode == 0 and json.loads(used.stdout)["in_use"] == "nodule-detector@1.1.0"
    shown = json.loads(medstation("models", "show", "nodule-detector", "--json").stdout)
    assert shown["version"] == "1.1.0" and shown["in_use"] and shown["parent_version"] == "1.0.0"
    assert shown["manifest"]["sha256"] == shown["sha256"]

    refused = medstation("models", "remove", "nodule-detector@1.1.0")
    assert refused.returncode == 2 and "in use and cannot be removed" in refused.stderr
    refused = medstation("models", "remove", "nodule-detector@1.0.0")
    assert refused.returncode == 2 and "built in" in refused.stderr and "Traceback" not in refused.stderr

    assert medstation("models", "use", "nodule-detector@1.0.0").returncode == 0  # roll back
    removed = medstation("models", "remove", "nodule-detector@1.1.0", "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] == "nodule-detector@1.1.0"
    assert not user.exists()


def test_unknown_names_are_one_clear_line():
    proc = medstation("models", "use", "nodule-detector@7.7.7")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no model 'nodule-detector@7.7.7'" in proc.stderr
    assert "installed: nodule-detector@1.0.0" in proc.stderr
