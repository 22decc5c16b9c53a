"""The layer contracts of ARCHITECTURE.md and the lint rules hold."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts():
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe) if exe.exists() else shutil.which("lint-imports"), "--no-cache"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_ruff_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "medstation", "tests"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_core_dicom_synth_import_without_torch_or_qt():
    code = ("import sys, medstation.dicom, medstation.synth, medstation.cli; "
            "bad = [m for m in ('torch', 'PySide6') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
