"""The PyInstaller bundle's contents (packaging/bundle.py, read by packaging/medstation.spec).

The full build takes longer than CI allows next to the tests (see packaging/README.md for its
figures); these checks keep the spec honest: every data file, model, plugin and library the app
needs is listed, and trimming never drops a library torch links against.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))
import bundle  # noqa: E402


def test_data_covers_models_and_resources():
    shipped = {Path(dest) / p.relative_to(src) for src, dest in bundle.data_dirs()
               for p in Path(src).rglob("*") if p.is_file()}
    for name in ("model.safetensors", "manifest.json", "MODEL_CARD.md"):
        assert Path("models/nodule-detector") / name in shipped
    assert any(p.parts[0] == "resources" for p in shipped)
    assert not any("screenshots" in p.parts for p in shipped)  # README pictures stay out of the bundle
    assert ("resources" in {d for _s, d in bundle.data_dirs()})  # medstation.desktop
    # the app finds its models at <bundle>/models: next to the medstation package
    from medstation.ai.store import builtin_models_dir
    assert builtin_models_dir() == ROOT / "models"


def test_hidden_imports_and_metadata_exist():
    missing = [m for m in bundle.HIDDEN_IMPORTS if importlib.util.find_spec(m) is None]
    assert missing == []
    for dist in bundle.METADATA:
        metadata.distribution(dist)
    # every pixel decoder plugin pylibjpeg finds by entry point is listed
    groups = ("pylibjpeg.jpeg_decoders", "pylibjpeg.jpeg_2000_decoders", "pylibjpeg.jpeg_ls_decoders",
              "pylibjpeg.rle_decoders")
    plugins = {ep.module.split(".")[0] for group in groups for ep in metadata.entry_points(group=group)}
    assert plugins and plugins <= set(bundle.HIDDEN_IMPORTS)
    assert not {"medstation", "torch", "torchvision", "PySide6", "pydicom"} & set(bundle.EXCLUDES)


def test_torchvision_native_libraries_are_collected():
    pytest.importorskip("PyInstaller")
    from PyInstaller.utils.hooks import collect_dynamic_libs
    names = {Path(src).name for src, _dest in collect_dynamic_libs("torchvision", search_patterns=["*.so"])}
    assert {"_C_stable.so", "image_stable.so"} <= names or any(n.startswith("_C") for n in names), names
    spec = (ROOT / "packaging" / "medstation.spec").read_text()
    assert 'collect_dynamic_libs("torchvision", search_patterns=["*.so"])' in spec
    assert "bundle.trim(" in spec and "bundle.data_dirs()" in spec and "entry.py" in spec
    assert "collect_data_files(package)" in spec and "highdicom" in bundle.DATA_PACKAGES
    from PyInstaller.utils.hooks import collect_data_files
    files = {Path(src).name for src, _dest in collect_data_files("highdicom")}
    assert "sop_class_iod_map.json" in files  # SR and SEG writing reads it


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is not installed")
def test_trim_never_drops_what_torch_links_to():
    torch_lib = Path(importlib.util.find_spec("torch").origin).parent / "lib"
    needed_by = {}
    for lib in torch_lib.glob("libtorch*.so"):
        out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
        needed_by[lib.name] = {line.split("[")[1].split("]")[0] for line in out.splitlines()
                               if "(NEEDED)" in line}
    for level in bundle.TRIM:
        kept_torch = {b[0] for b in bundle.trim([(n, n, "BINARY") for n in needed_by], level)}
        needed = set().union(*(needed_by[n] for n in kept_torch))
        kept = bundle.trim([(name, name, "BINARY") for name in needed], level)
        assert {b[0] for b in kept} == needed, level  # nothing a kept torch library links to is dropped
    fake = [("libnvrtc.alt.so.13", "x", "BINARY"), ("libcusolver.so.12", "x", "BINARY"),
            ("libcudnn.so.9", "x", "BINARY")]
    assert [b[0] for b in bundle.trim(fake, "safe")] == ["libcusolver.so.12", "libcudnn.so.9"]
    assert [b[0] for b in bundle.trim(fake, "lean")] == ["libcudnn.so.9"]


def test_desktop_entry_and_icons():
    import configparser
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(ROOT / "resources" / "medstation.desktop")
    d = entry["Desktop Entry"]
    assert d["Type"] == "Application" and d["Icon"] == "medstation" and "%F" in d["Exec"]
    assert "inode/directory" in d["MimeType"] and "application/dicom" in d["MimeType"]
    for n in (16, 32, 48, 64, 128, 256):
        png = ROOT / "resources" / "icons" / "hicolor" / f"{n}x{n}" / "apps" / "medstation.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if shutil.which("desktop-file-validate"):
        run = subprocess.run(["desktop-file-validate", str(ROOT / "resources" / "medstation.desktop")],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


def test_app_metadata_and_icon(qapp):
    from medstation import __version__
    from medstation.gui.app import create_app
    app = create_app()
    assert app.applicationVersion() == __version__ and app.desktopFileName() == "medstation"
    assert not app.windowIcon().isNull()
