"""Where medstation keeps the user's data: one place for every layer.

=====================  ===========================================  ======================
what                   default                                      override
=====================  ===========================================  ======================
user data directory    platformdirs' user data dir for "medstation" ``MEDSTATION_DATA``
study database         ``studies.sqlite`` in the user data dir      ``MEDSTATION_DB``
user models            ``models/`` in the user data dir             ``MEDSTATION_USER_MODELS``
settings (GUI)         ``settings.ini`` in the user data dir
=====================  ===========================================  ======================

The platform folder is the one ``platformdirs.user_data_dir("medstation",
appauthor=False)`` gives (XDG on Linux, Application Support on macOS, the local
AppData on Windows), worked out here with the standard library so that ``core``
imports nothing else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_DATA = "MEDSTATION_DATA"
ENV_DB = "MEDSTATION_DB"
ENV_USER_MODELS = "MEDSTATION_USER_MODELS"
APP = "medstation"


def _platform_data_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(base) / APP


def user_data_path() -> Path:
    """``$MEDSTATION_DATA`` or medstation's folder in the user data directory."""
    env = os.environ.get(ENV_DATA)
    return Path(env) if env else _platform_data_dir()


def default_db_path() -> Path:
    """``$MEDSTATION_DB`` or ``studies.sqlite`` in the platform's user data directory.

    Not moved by ``MEDSTATION_DATA`` (as before): the database is named on its own.
    """
    env = os.environ.get(ENV_DB)
    return Path(env) if env else _platform_data_dir() / "studies.sqlite"


def user_models_path() -> Path:
    """``$MEDSTATION_USER_MODELS`` or ``models/`` in the user data directory."""
    env = os.environ.get(ENV_USER_MODELS)
    return Path(env) if env else user_data_path() / "models"


def settings_path() -> Path:
    return user_data_path() / "settings.ini"
