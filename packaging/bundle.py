"""What the PyInstaller bundle holds: read by medstation.spec and checked by tests/test_packaging.py.

Kept apart from the spec so the lists can be tested without building.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: folders of the checkout shipped as data, at the same relative place in the bundle
DATA_DIRS = ["models", "resources"]

#: modules imported only at run time (plugins found by name or entry point, lazy imports)
HIDDEN_IMPORTS = [
    # pydicom's pixel decoders, found by name at run time
    "pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "_CharLS",
    "pydicom.pixels.decoders", "pydicom.pixels.encoders",
    # medstation's lazy imports (torch is imported on a worker thread, after the window shows)
    "medstation.ai.detector", "medstation.ai.engine", "medstation.ai.store", "medstation.ai.registry",
    "medstation.ai.jobs", "medstation.cli.ai", "medstation.cli.detect", "medstation.cli.models",
    "medstation.cli.launcher",
    "medstation.cli.pacs", "medstation.cli.selftest", "medstation.dicom._tasks",
    "medstation.dicom.pacs", "medstation.dicom.results", "medstation.dicom.deid",
    "medstation.gui.pacs_dialog", "medstation.gui.exports", "medstation.gui.selftest",
    "medstation.gui.child", "medstation.training.card", "medstation.training.trainer",
    "medstation.cli.labels", "medstation.cli.train", "medstation.cli.followup", "medstation.ai.followup",
    "medstation.ai.predictor", "medstation.ai.fpr", "medstation.ai.calibration",
    "medstation.workflows.bench", "medstation.workflows.followup", "medstation.workflows.jobs",
    "medstation.dicom.masks", "medstation.dicom.volume_files", "medstation.core.linking",
    "medstation.training.finetune", "medstation.training.distributed", "medstation.training.followup_rnn",
    "medstation.training.followup_eval", "medstation.training.fpr", "medstation.training.evaluate",
    "medstation.training.detector", "medstation.training.synthetic", "medstation.training.annotations",
    "medstation.imaging.registration", "medstation.synth.cohort", "medstation.synth.courses",
    "medstation.synth.heldout", "medstation.synth.varied", "medstation.dicom.labels",
    "medstation.gui.finetune", "medstation.gui.followup", "pyqtgraph",
    "safetensors.torch", "keyring.backends", "pynetdicom.sop_class",
    "highdicom.sr", "highdicom.seg",
]

#: packages that read their own data files at run time (highdicom: the standard's IOD tables)
DATA_PACKAGES = ["highdicom"]

#: distributions whose metadata the app reads (versions in About, pylibjpeg's plugin entry points)
METADATA = ["medstation", "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg",
            "pylibjpeg-rle", "numpy", "torch", "torchvision", "PySide6-Essentials", "SimpleITK",
            "pynetdicom", "highdicom", "dicomweb-client", "keyring", "pyqtgraph"]

#: never bundled: build and test tools, and torch's compiler stack (eager inference needs none of it)
EXCLUDES = ["triton", "torch._inductor.codegen.triton", "pytest", "_pytest", "PyInstaller",
            "import_linter", "importlinter", "ruff", "tkinter", "matplotlib", "IPython",
            "torch.utils.tensorboard", "dicomanonymizer", "openvino",  # openvino: a bench lane only
            # NVIDIA's cuda-python bindings: torch imports them in a try (an optional feature)
            "cuda.bindings", "cuda.pathfinder"]

#: shared libraries torch opens only on demand. "safe": not needed by any eager CUDA op
#: (nvrtc's alternate build; torch loads libnvrtc). "lean": also what only some CUDA ops use
#: (cuSOLVER + torch's CUDA linalg library: torch.linalg on the GPU; cuDNN's runtime-fusion
#: and tensor-IR engines: fused graphs). Neither level touches what libtorch_cuda links to.
TRIM = {
    "none": [],
    "safe": ["libnvrtc.alt.so*"],
    "lean": ["libnvrtc.alt.so*", "libcusolver.so*", "libcusolverMg.so*", "libtorch_cuda_linalg.so",
             "libcudnn_engines_runtime_compiled.so*", "libcudnn_engines_tensor_ir.so*"],
    # "slim": what medstation's code never calls, whatever the op: torch.linalg on the GPU (cuSOLVER
    # and nvJitLink, which only cuSOLVER and cuSPARSE link to); cuDNN stays whole. With STUBS and
    # STRIP_LEVELS below (packaging/slim.py, run on the built folder).
    "slim": ["libnvrtc.alt.so*", "libcusolver.so*", "libcusolverMg.so*", "libtorch_cuda_linalg.so",
             "libnvJitLink.so*"],
    # "cpu": a CPU-only app from the CUDA wheels: cuDNN's sub-libraries (only its shim links to them)
    # go too, and every other NVIDIA library becomes a stub (STUBS): torch finds no GPU and runs on CPU
    "cpu": ["libnvrtc.alt.so*", "libcusolver.so*", "libcusolverMg.so*", "libtorch_cuda_linalg.so",
            "libnvJitLink.so*", "libcudnn_*.so*"],
}

#: libraries torch links to but medstation never calls (FFT, sparse, semi-structured sparsity; cuRAND,
#: of which libtorch_cuda imports nothing): replaced by stubs in the built folder (packaging/slim.py)
STUBS = {"slim": ["libcufft.so.*", "libcurand.so.*", "libcusparse.so.*", "libcusparseLt.so.*",
                  # NCCL: GPU-to-GPU collectives; the bundle's torchrun training uses Gloo instead
                  # (medstation.training.distributed reads the bundle's medstation-trim.json)
                  "libnccl.so.*",
                  # NVSHMEM (symmetric memory): never used
                  "libnvshmem_host.so.*"]}
# (cuFile, GPUDirect Storage, 3 MB, is not stubbed: torch calls it while loading and a stub crashes it)
STUBS["cpu"] = STUBS["slim"] + ["libcublas.so.*", "libcublasLt.so.*", "libcudart.so.*", "libcudnn.so.*",
                                "libcupti.so.*", "libnvrtc.so.*"]

#: files of the built folder no code path opens, at every level: protobuf's compiler, and Qt's own
#: translations (medstation's interface is English and installs no QTranslator)
REMOVE = ["torch/bin/protoc", "torch/bin/protoc-*", "PySide6/Qt/translations/*.qm"]

#: libraries that lose their symbol tables at these levels (``strip --strip-unneeded``: .dynsym is
#: kept). Named, not all: the wheels' vendored libraries (numpy.libs, pillow.libs) were rewritten by
#: patchelf, and strip breaks their load segments ("ELF load command address/offset not page-aligned")
STRIP = {"slim": ["libtorch_cpu.so", "libtorch_cuda.so", "libtorch_python.so"]}
STRIP["cpu"] = STRIP["slim"]


def trim(binaries, level: str = "safe"):
    """Drop the TRIM[level] libraries from PyInstaller's binaries list ((dest, src, kind) tuples)."""
    patterns = TRIM[level]
    return [b for b in binaries if not any(fnmatch.fnmatch(Path(b[0]).name, p) for p in patterns)]


#: folders of DATA_DIRS the app never reads (the README's screenshots; a model's training state kept
#: between sessions, ``models/.training``): left out of the bundle
NOT_SHIPPED = {"resources/screenshots", "models/.training"}


def data_dirs() -> list[tuple[str, str]]:
    """(source, destination) folders for PyInstaller's datas: models/ and resources/ without
    what the app never reads."""
    out = []
    for d in DATA_DIRS:
        root = ROOT / d
        if not root.is_dir():
            continue
        subs = [p for p in sorted(root.iterdir()) if p.is_dir()]
        if any(f"{d}/{p.name}" in NOT_SHIPPED for p in subs):
            out += [(str(p), f"{d}/{p.name}") for p in subs if f"{d}/{p.name}" not in NOT_SHIPPED]
            out += [(str(f), d) for f in sorted(root.iterdir()) if f.is_file()]
        else:
            out.append((str(root), d))
    return out
