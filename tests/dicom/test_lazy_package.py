"""``medstation.dicom`` loads its names on first use (PEP 562): each resolves to its home's object,
whatever submodules were imported before, and reading the study database imports no pydicom."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

import medstation.dicom as dicom


def test_every_name_resolves_to_its_object_after_every_submodule_is_imported():
    for info in pkgutil.walk_packages(dicom.__path__, "medstation.dicom."):
        importlib.import_module(info.name)  # binds each submodule's name on its package
    for name in dicom.__all__:
        value = getattr(dicom, name)
        assert not isinstance(value, types.ModuleType), f"medstation.dicom.{name} is a module"
        assert value is getattr(importlib.import_module(f"medstation.dicom.{dicom._HOME[name]}"), name)
    assert set(dir(dicom)) >= set(dicom.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dicom.nope  # noqa: B018


def test_the_study_database_opens_without_pydicom(tmp_path):
    code = ("import sys\nfrom medstation.dicom import StudyDatabase\n"
            f"with StudyDatabase({str(tmp_path / 's.sqlite')!r}) as db:\n    db.index.series()\n"
            "print('pydicom' in sys.modules)\nfrom medstation.dicom import open_series\n"
            "print('pydicom' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]
