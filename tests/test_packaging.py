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
    shipped |= {Path(dest) / Path(src).name for src, dest in bundle.data_dirs() if Path(src).is_file()}
    for name in ("model.safetensors", "manifest.json", "MODEL_CARD.md"):
        assert Path("models/nodule-detector") / name in shipped
    assert any(p.parts[0] == "resources" for p in shipped)
    assert not any("screenshots" in p.parts for p in shipped)  # README pictures stay out of the bundle
    assert not any(".training" in p.parts for p in shipped)  # nor training state kept between sessions
    assert Path("models/defaults.json") in shipped  # which built-in version each task uses
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


@pytest.mark.skipif(not all(shutil.which(t) for t in ("gcc", "nm", "readelf")),
                    reason="gcc and binutils are needed to build stubs")
def test_a_stub_stands_for_a_cuda_library_torch_links_to_but_never_calls(tmp_path):
    import ctypes

    import slim

    site = Path(importlib.util.find_spec("torch").origin).parent.parent
    torch_cuda = site / "torch" / "lib" / "libtorch_cuda.so"
    real = next(iter(sorted((site / "nvidia").rglob("libcusparse.so.*"))), None)
    if not torch_cuda.exists() or real is None:
        pytest.skip("this torch is not the CUDA build")
    out = tmp_path / real.name
    wanted = slim.build_stub(real, [torch_cuda], out)
    # every versioned symbol libtorch_cuda takes from cuSPARSE is exported, under the same version
    defined = slim.exports(real)
    imported = {s for s in slim.imports(torch_cuda) if s.split("@")[0] in defined}
    exported = set(subprocess.run(["nm", "-D", "--defined-only", str(out)], capture_output=True,
                                  text=True).stdout.replace("@@", "@").split())
    assert imported and imported <= exported
    assert sum(len(v) for v in wanted.values()) == len(imported)
    assert slim.soname(out) == slim.soname(real)
    assert out.stat().st_size < 100_000 < real.stat().st_size
    lib = ctypes.CDLL(str(out))
    lib.cusparseGetErrorString.restype = ctypes.c_char_p
    assert b"not in this medstation bundle" in lib.cusparseGetErrorString(0)
    lib.cusparseCreate.restype = ctypes.c_int
    assert lib.cusparseCreate(None) != 0  # a status code: an error, never CUSPARSE_STATUS_SUCCESS


@pytest.mark.skipif(not all(shutil.which(t) for t in ("gcc", "nm", "readelf")),
                    reason="gcc and binutils are needed to build stubs")
def test_a_library_that_imports_data_cannot_be_stubbed(tmp_path):
    import slim

    (tmp_path / "a.c").write_text("int table[4] = {1, 2, 3, 4};\nint f(void) { return 1; }\n")
    (tmp_path / "b.c").write_text("extern int table[4];\nint g(void) { return table[0]; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "liba.so"), str(tmp_path / "a.c"),
                    "-Wl,-soname,liba.so"], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libb.so"), str(tmp_path / "b.c"),
                    "-L", str(tmp_path), "-la"], check=True)
    with pytest.raises(slim.SlimError, match="data object table"):
        slim.build_stub(tmp_path / "liba.so", [tmp_path / "libb.so"], tmp_path / "stub.so")


def test_slim_level_never_drops_a_library_without_a_stub_or_no_importer():
    # what "slim" stubs is never also dropped, and the stripped names are torch's own
    for level, patterns in bundle.STUBS.items():
        assert level in bundle.TRIM
        assert not set(patterns) & set(bundle.TRIM[level])
    assert all(p.startswith("libtorch") for p in bundle.STRIP["slim"])


def test_a_bundle_without_nccl_trains_across_gpus_over_gloo(tmp_path, monkeypatch):
    import json

    from medstation.training import distributed

    assert distributed.backend(cuda=True) == "nccl" and distributed.backend(cuda=False) == "gloo"
    (tmp_path / "medstation-trim.json").write_text(json.dumps({"level": "slim",
                                                               "stubbed": ["libnccl.so.2"]}))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert distributed.stubbed_libraries() == {"libnccl.so.2"}
    assert distributed.backend(cuda=True) == "gloo"


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
