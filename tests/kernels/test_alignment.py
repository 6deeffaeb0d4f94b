"""Arrays at every offset from a cache line: the peeled vector loops and placed temporaries against NumPy.

Vector loops over at least 1 KiB peel their first iterations to align one access,
and heap temporaries are placed relative to the first array argument; the table's
sizes are too small for either, so these cases run at larger ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pliant.tc

from .cases import CASES, make_inputs
from .test_table import _check

LARGE = {
    "layernorm": {"N": 5, "C": 333},
    "softmax": {"N": 4, "M": 517},
    "log_softmax": {"N": 3, "M": 300},
    "gelu": {"N": 3, "M": 301},
    "argmin": {"N": 3, "M": 400},
    "broadcast_add": {"N": 3, "M": 300},
    "max_axis0": {"I": 4, "J": 300},
    "mean_last": {"N": 3, "M": 300},
    "float64_exp": {"N": 3, "M": 300},
    "int32_floordiv": {"N": 400},
    "float16_io": {"N": 400},
    "axpy_scalar": {"N": 1000},
    "global_min": {"N": 3, "M": 300},
    "row_product": {"N": 3, "M": 300},
    "dot_scalar": {"N": 1000},
    "bool_mask": {"N": 300},
    "stencil_conv1d": {"N": 400, "K": 3},
    "mlp_bias_relu": {"B": 3, "I": 300, "O": 260},
}
BY_NAME = {c.name: c for c in CASES}


def _placed(a: Any, offset: int) -> Any:
    """A copy of ``a`` starting ``offset`` bytes past a 64-byte boundary (scalars unchanged)."""
    if not isinstance(a, np.ndarray) or a.ndim == 0:
        return a
    buf = np.empty(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = buf[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("name", sorted(LARGE))
def test_results_match_numpy_at_every_offset(name: str) -> None:
    case = BY_NAME[name]
    k = pliant.tc.define(case.source)
    args = make_inputs(case, k, LARGE[name], seed=0)
    want = case.ref(*args)
    item = max((a.itemsize for a in args if isinstance(a, np.ndarray) and a.ndim), default=4)
    for offset in sorted({0, item, 16, 32, 64 - item}):
        placed = [_placed(a, offset) for a in args]
        for specialize in (False, True):
            _check(case, k(*placed, specialize=specialize), want)


def test_output_and_inputs_at_different_offsets() -> None:
    case = BY_NAME["softmax"]
    k = pliant.tc.define(case.source)
    (x,) = make_inputs(case, k, {"N": 6, "M": 700}, seed=1)
    want = case.ref(x)
    for x_off, y_off in ((16, 0), (0, 16), (4, 60), (48, 8)):
        y = _placed(np.zeros_like(x), y_off)
        k(_placed(x, x_off), out=y)
        _check(case, y, want)


def test_long_vector_loops_are_peeled_and_temporaries_placed() -> None:
    c_text = pliant.tc.define(BY_NAME["softmax"].source).source_c
    assert "pl_peel(&t_X[" in c_text and "pl_peel(&t_Y[" in c_text
    assert "pl_place(pl_mem_e, pl_anchor, 0)" in c_text
