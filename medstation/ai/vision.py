"""The torchvision parts medstation uses, imported without torch._dynamo.

torchvision 0.29's ``ops/roi_align.py`` runs ``from torch._dynamo.utils import is_compile_supported``
at import time, and ``import torchvision`` reaches it through ``models.convnext`` -> ``ops``: that one
line imports the whole of torch._dynamo (1.6-3.3 s on a 2-core machine, about as long as torch
itself), in every process that detects, trains or exports, for a function medstation never calls
(its detector has no ROI pooling). While torchvision loads, ``torch._dynamo.utils`` is a stand-in
whose ``is_compile_supported`` imports the real module on its first call; the stand-in is removed as
soon as torchvision has loaded, so ``torch.compile``, ONNX export and anything else that imports
torch._dynamo later gets the real package. Where torch._dynamo is already loaded nothing is done.
"""

from __future__ import annotations

import importlib
import sys
import types


def _import_torchvision_without_dynamo() -> None:
    name = "torch._dynamo.utils"
    if "torchvision" in sys.modules or "torch._dynamo" in sys.modules or name in sys.modules:
        return
    stand_in = types.ModuleType(name)

    def is_compile_supported(device_type):  # what roi_align asks, answered by the real module
        return importlib.import_module(name).is_compile_supported(device_type)

    stand_in.is_compile_supported = is_compile_supported
    sys.modules[name] = stand_in
    try:
        import torchvision  # noqa: F401
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


_import_torchvision_without_dynamo()

from torchvision.models.detection import FCOS  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.fcos import FCOSHead  # noqa: E402
from torchvision.models.detection.transform import GeneralizedRCNNTransform  # noqa: E402
from torchvision.models.resnet import BasicBlock  # noqa: E402
from torchvision.ops import FeaturePyramidNetwork, box_iou  # noqa: E402
from torchvision.ops.misc import Conv2dNormActivation  # noqa: E402

__all__ = ["FCOS", "AnchorGenerator", "BasicBlock", "Conv2dNormActivation", "FCOSHead",
           "FeaturePyramidNetwork", "GeneralizedRCNNTransform", "box_iou"]
