"""One place says where user data, the database and user models live; the environment overrides it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from medstation.core import paths


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSTATION_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MEDSTATION_DB", str(tmp_path / "db.sqlite"))
    monkeypatch.delenv("MEDSTATION_USER_MODELS", raising=False)
    assert paths.user_data_path() == tmp_path / "data"
    assert paths.default_db_path() == tmp_path / "db.sqlite"
    assert paths.user_models_path() == tmp_path / "data" / "models"
    assert paths.settings_path() == tmp_path / "data" / "settings.ini"
    monkeypatch.setenv("MEDSTATION_USER_MODELS", str(tmp_path / "mine"))
    assert paths.user_models_path() == tmp_path / "mine"


def test_defaults_match_platformdirs(monkeypatch):
    from platformdirs import user_data_dir

    for var in ("MEDSTATION_DATA", "MEDSTATION_DB", "MEDSTATION_USER_MODELS"):
        monkeypatch.delenv(var, raising=False)
    expected = Path(user_data_dir("medstation", appauthor=False))
    assert paths.user_data_path() == expected
    assert paths.default_db_path() == expected / "studies.sqlite"


def test_dicom_and_ai_use_the_core_paths(monkeypatch, tmp_path):
    from medstation.ai.store import user_models_dir
    from medstation.dicom.database import default_db_path, user_data_path
    from medstation.dicom.pacs import nodes_path

    monkeypatch.setenv("MEDSTATION_DATA", str(tmp_path))
    monkeypatch.delenv("MEDSTATION_USER_MODELS", raising=False)
    assert user_data_path() == tmp_path and default_db_path() == paths.default_db_path()
    assert user_models_dir() == tmp_path / "models"
    assert nodes_path() == tmp_path / "pacs_nodes.json"


def test_core_imports_nothing_but_the_standard_library_and_numpy():
    code = ("import sys, medstation.core, medstation.core.paths, medstation.core.series; "
            "bad = [m for m in ('platformdirs', 'pydicom', 'torch', 'PySide6') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
