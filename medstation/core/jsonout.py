"""Strict JSON out: no NaN or Infinity (which are not JSON), numpy scalars and arrays as plain values.

A non-finite number becomes ``null``: a reader of the report sees that the value is unknown,
and every JSON parser reads the file.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def clean(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None and numpy values made plain."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """``json.dumps`` that always writes strict JSON."""
    return json.dumps(clean(obj), allow_nan=False, **kwargs)
