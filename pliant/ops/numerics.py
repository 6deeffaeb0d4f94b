"""Numeric helpers shared by reference kernels: which dtypes are floats, what to accumulate in."""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.ir.dtypes import DType


def is_float_dtype(dt: np.dtype[Any]) -> bool:
    """Floating point, including the ml_dtypes ones (bfloat16, float8...)."""
    if np.issubdtype(dt, np.floating):
        return True
    try:
        return DType.from_numpy(dt).is_float
    except (KeyError, ValueError, TypeError):
        return False


def work_dtype(dt: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype to compute and accumulate in: narrow floats (float16, bfloat16, float8) widen to float32."""
    if is_float_dtype(dt) and dt != np.float64:
        return np.dtype(np.float32)
    return dt
