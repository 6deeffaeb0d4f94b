"""Static regions as one native unit: C code for a ``pliant.Static`` op, and the host step that runs it.

A Static op's body is a straight-line run of ops whose every dim RDP resolved
to an expression of a few symbols.  ``RegionUnit`` turns it into one C
function (``int pliant_kernel(void **p, const int64_t *s)``, compiled and
cached like a generated kernel): a loop nest or a library call per op, all in
one call from Python instead of one call (and one NumPy dispatch) per op.

- **Sizes**: every dim of every value is a slot of ``s``.  Per input
  signature (the shapes of the region's inputs) the host binds the symbols
  from the inputs' shapes, evaluates all dims with integer code compiled once
  (``compile_dims``), checks them against the inputs, and caches the result:
  a new signature costs one plan, a known one a dictionary lookup.
- **Memory plan**: intermediates live in one arena per calling thread, reused
  across calls; offsets come from liveness over the region's order (first
  fit, a buffer is reused once its last reader ran), evaluated once per
  signature.  Reshape-like ops are aliases (no copy); the region's results
  are written straight into the arrays handed to the caller.
- **Ops**: elementwise and broadcasting ops (and ``Fused`` groups) as one loop
  nest each, which the C compiler vectorises; MatMul/Gemm through a small
  loop kernel for small products and ``conv.c``'s GEMM otherwise (a product
  is a 1x1 convolution; A given transposed is transposed into a scratch
  buffer first, B given transposed conv.c packs tile by tile), on the same
  OpenMP threads as everything else, with
  BLAS ``sgemm`` (NumPy's, by address) left for when conv.c cannot run; Softmax/LogSoftmax/LayerNormalization over the last axis;
  Transpose, Concat, Slice, Gather; ``ShapeExpr`` values are computed with
  the plan.  ``supports(op)`` says what a region may hold.

Errors: the C function returns 1 where data makes an op invalid (a Gather
index out of range); the step then runs the region op by op, so the
reference kernel reports it with its usual message.  A signature whose
shapes contradict the analysis (it cannot happen for a sound analysis, but a
caller's bad input is checked earlier) also runs op by op.
"""

from __future__ import annotations

import ctypes
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from pliant.ir.core import Op, Value
from pliant.ir.dims import Dim, Sym, compile_dims, dim_symbols, dims_equal
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType
from pliant.kernels.builtins import C_HELPERS
from pliant.ops.linalg import PACK_PANEL
from pliant.ops.typing import constant_value

__all__ = ["RegionUnit", "UnsupportedRegion", "supports"]

C_TYPES = {DType.FLOAT: "float", DType.INT64: "int64_t", DType.BOOL: "uint8_t"}
NP_TYPES: dict[DType, np.dtype[Any]] = {DType.FLOAT: np.dtype(np.float32), DType.INT64: np.dtype(np.int64), DType.BOOL: np.dtype(np.bool_)}
_ONNX_TO = {1: DType.FLOAT, 7: DType.INT64, 9: DType.BOOL}
PARALLEL_MIN_WORK = 1 << 14
"""Elements from which a unit's loop nest (and its row-wise Softmax, LayerNorm, reductions) shares its outer
loops out over the threads; below, it runs inline.  Half the kernel language's threshold: in a unit the threads
are awake (they ran the products before).  Against 32768 (one process, alternating, 10 rounds): BERT at L=64
(its 64 x 256 residual adds and LayerNorms) 0.92-0.94x the time, the other models within 1%; at 8192, BERT
at L=16 took 1.10x."""

SMALL_MATMUL = 1 << 17
"""Multiply-adds below which a matrix product runs in the unit's own loop instead of BLAS: waking BLAS's
threads for a product this small cost more than the product (a 1x256x768 MatMul: 26-31 us inside a model
against 4-6 us of loop)."""
GEMM_PARALLEL_WORK = 3 << 20
"""Multiply-adds from which a unit's matrix product of activations uses all OpenMP threads (a plan's sizes
carry it, slot 3)."""
WEIGHTS_PARALLEL_WORK = 1 << 18
"""The same for a product by constant weights (slot 4): they come from memory, and two threads read them twice
as fast.  Interleaved in one process (medians of 12 rounds), 3M / 2M / 1M: BERT L=16 0.83 / 0.70 / 0.64 ms,
MoE L=256 8.3 / 7.9 / 7.5 ms, early-exit BERT and GPT generation within 2%.  With 1M for every product
(activations too) early-exit BERT at L=128 went 3.6 -> 4.3 ms: its 1M attention products, in cache, lose more
to the split than they gain.  256K against 1M (one process, alternating, 10 rounds): MoE at L=64 (experts of
about 20 tokens, 0.65M multiply-adds a product) 0.87-0.89x the time, the other transformers within 1-3%; 128K
took MoE at L=16 1.10x."""
PANELS_PARALLEL_WORK = 1 << 16
"""Multiply-adds from which a product by packed weights (``PackedMatMul``) that takes the units' own loop (a
product of a few rows: a decoder's step) shares its panels out over the threads.  A 1 x 256 x 256 product of
weights in L3 took 2.1 us instead of 2.8 on 2 threads, 1 x 256 x 768 4.6-5.8 instead of 8.5-9.1; 1 x 128 x
128 1.0 instead of 0.6."""
_ALIGN = 64
_FIXED = 5
"""Slots at the start of a unit's sizes: sgemm's address, whether it takes 64-bit ints, conv.c's entry, the parallel
thresholds of products of activations and by weights."""
MAX_PLANS = 256
"""Input signatures whose plans a unit keeps (a loop whose sizes grow per iteration makes one per iteration)."""


class UnsupportedRegion(ValueError):
    """The region holds something the native unit cannot compile."""


class _Mismatch(Exception):
    """This signature's shapes contradict the region's types: run it op by op."""


# --- what a region may hold ---------------------------------------------------------------------


def _tensor(v: Value | None) -> TensorType | None:
    t = v.type if v is not None else None
    if isinstance(t, TensorType) and t.dtype in C_TYPES and t.shape is not None and all(d is not None for d in t.shape):
        return t
    return None


def _shape(v: Value) -> tuple[Dim, ...]:
    t = _tensor(v)
    assert t is not None and t.shape is not None
    return tuple(t.shape)


def _dtype(v: Value) -> DType:
    t = _tensor(v)
    assert t is not None and t.dtype is not None
    return t.dtype


def _attr_int(op: Op, name: str, default: int) -> int:
    v = op.attrs.get(name, default)
    return int(v) if isinstance(v, int | float | np.integer) else default


def _const_ints(v: Value | None) -> list[int] | None:
    c = constant_value(v) if v is not None else None
    if c is None or c.dtype.kind not in "iu":
        return None
    return [int(x) for x in c.reshape(-1)]


_UNARY_F = {"Relu": "({0} < 0.0f ? 0.0f : {0})", "Neg": "(-{0})", "Abs": "fabsf({0})", "Exp": "pl_expf({0})",
            "Log": "logf({0})", "Sqrt": "sqrtf({0})", "Tanh": "pl_tanhf({0})", "Erf": "erff({0})",
            "Sigmoid": "pl_sigmoidf({0})", "Reciprocal": "(1.0f / {0})", "Floor": "floorf({0})",
            "Ceil": "ceilf({0})", "Sin": "sinf({0})", "Cos": "cosf({0})", "Identity": "{0}"}
_BINARY_F = {"Add": "({0} + {1})", "Sub": "({0} - {1})", "Mul": "({0} * {1})", "Div": "({0} / {1})",
             "Pow": "powf({0}, {1})"}
_BINARY_I = {"Add": "({0} + {1})", "Sub": "({0} - {1})", "Mul": "({0} * {1})"}
_COMPARE = {"Equal": "({0} == {1})", "Less": "({0} < {1})", "Greater": "({0} > {1})", "LessOrEqual": "({0} <= {1})",
            "GreaterOrEqual": "({0} >= {1})"}
_LOGIC = {"And": "({0} && {1})", "Or": "({0} || {1})", "Xor": "(!{0} != !{1})"}
_ALIASES = {"Reshape", "Squeeze", "Unsqueeze", "Flatten"}


def _is_constant(v: Value) -> bool:
    op = v.defining_op
    return op is not None and op.domain == "" and op.name == "Constant"


def _broadcasts(v: Value, out: tuple[Dim, ...]) -> bool:
    """``v`` broadcasts to ``out`` for every size RDP allows: each dim equal to the output's or 1."""
    s = _shape(v)
    if len(s) > len(out):
        return False
    off = len(out) - len(s)
    return all(dims_equal(d, out[p + off]) or d == 1 for p, d in enumerate(s))


def _elementwise_expr(op: Op) -> str | None:
    """The C expression template of an elementwise op ({0}, {1}, ... its operands), or None."""
    n = len(op.operands)
    if op.domain != "" or len(op.results) != 1 or any(v is None for v in op.operands):
        return None
    ins = [_dtype(v) for v in op.operands if v is not None]
    out = _dtype(op.results[0])
    name = op.name
    if name == "Gelu" and n == 1 and ins == [DType.FLOAT] and str(op.attrs.get("approximate", "none")) == "none":
        return "(0.5f * {0} * (1.0f + erff({0} * 0.70710678118654752f)))"
    if name in _UNARY_F and n == 1 and ins == [DType.FLOAT] and out == DType.FLOAT:
        return _UNARY_F[name]
    if name in _BINARY_F and n == 2 and ins == [DType.FLOAT] * 2 and out == DType.FLOAT:
        return _BINARY_F[name]
    if name in _BINARY_I and n == 2 and ins == [DType.INT64] * 2 and out == DType.INT64:
        return _BINARY_I[name]
    if name in _COMPARE and n == 2 and ins[0] == ins[1] and ins[0] in (DType.FLOAT, DType.INT64) and out == DType.BOOL:
        return _COMPARE[name]
    if name in _LOGIC and n == 2 and ins == [DType.BOOL] * 2 and out == DType.BOOL:
        return _LOGIC[name]
    if name == "Not" and n == 1 and ins == [DType.BOOL]:
        return "(!{0})"
    if name == "Clip" and n in (2, 3) and ins == [DType.FLOAT] * n and out == DType.FLOAT \
            and "min" not in op.attrs and "max" not in op.attrs \
            and all(d == 1 for v in op.operands[1:] if v is not None for d in _shape(v)):
        # NOTE: min(max(x, lo), hi) as NumPy's clip: hi where lo > hi, NaN kept
        low = "({0} < {1} ? {1} : {0})"
        return low if n == 2 else f"({low} > {{2}} ? {{2}} : {low})"
    if name == "Where" and n == 3 and ins[0] == DType.BOOL and ins[1] == ins[2] == out:
        return "({0} ? {1} : {2})"
    if name == "Cast" and n == 1 and _ONNX_TO.get(_attr_int(op, "to", -1)) == out:
        if out == DType.BOOL:
            return "({0} != 0)"
        return f"(({C_TYPES[out]}){{0}})"
    return None


def _check_elementwise(op: Op) -> bool:
    if _elementwise_expr(op) is None:
        return False
    out = _shape(op.results[0])
    return all(_broadcasts(v, out) for v in op.operands if v is not None)


def _check_fused(op: Op) -> bool:
    body = op.regions["body"].block
    if len(body.outputs) != 1 or _tensor(body.outputs[0]) is None:
        return False
    for inner in body.ops:
        if _tensor(inner.results[0]) is None or any(_tensor(v) is None for v in inner.operands) \
                or not _check_elementwise(inner):
            return False
    return True


def _b_shape(op: Op) -> tuple[Dim, ...]:
    """The shape of a product's B: a PackedMatMul's (k, n), not its panels'."""
    b = op.operands[1]
    assert b is not None
    if op.domain == "pliant" and op.name == "PackedMatMul":
        panels = _shape(b)
        if len(panels) != 3 or panels[2] != PACK_PANEL or not _is_constant(b):
            raise ValueError("PackedMatMul's B is not constant panels")
        return panels[1], int(op.attrs["n"])  # type: ignore[arg-type]
    return _shape(b)


def _check_matmul(op: Op) -> bool:
    a, b = op.operands[0], op.operands[1]
    if a is None or b is None or {_dtype(a), _dtype(b), _dtype(op.results[0])} != {DType.FLOAT}:
        return False
    sa, sb, so = _shape(a), _b_shape(op), _shape(op.results[0])
    if len(sa) < 2 or len(sb) < 2 or not dims_equal(sa[-1], sb[-2]) or len(so) != max(len(sa), len(sb)):
        return False
    if not (dims_equal(so[-2], sa[-2]) and dims_equal(so[-1], sb[-1])):
        return False
    for s in (sa, sb):
        off = len(so) - len(s)
        if not all(dims_equal(d, so[p + off]) or d == 1 for p, d in enumerate(s[:-2])):
            return False
    return True


def _check_gemm(op: Op) -> bool:
    a, b = op.operands[0], op.operands[1]
    c = op.operands[2] if len(op.operands) > 2 else None
    if a is None or b is None or len(_shape(a)) != 2 or len(_shape(b)) != 2:
        return False
    if {_dtype(a), _dtype(b), _dtype(op.results[0])} != {DType.FLOAT}:
        return False
    return c is None or (_dtype(c) == DType.FLOAT and _broadcasts(c, _shape(op.results[0])))


def _last_axis(op: Op, default: int) -> bool:
    rank = len(_shape(op.operands[0])) if op.operands[0] is not None else 0
    axis = _attr_int(op, "axis", default)
    return rank >= 1 and axis in (-1, rank - 1)


def _check_softmax(op: Op) -> bool:
    x = op.operands[0]
    return x is not None and _dtype(x) == DType.FLOAT and _last_axis(op, -1)


def _check_layer_norm(op: Op) -> bool:
    x = op.operands[0]
    if x is None or len(op.results) != 1 or _dtype(x) != DType.FLOAT or not _last_axis(op, -1):
        return False
    n = _shape(x)[-1]
    for v in op.operands[1:]:
        if v is None:
            continue
        s = _shape(v)
        if _dtype(v) != DType.FLOAT or not s or not dims_equal(s[-1], n) or any(d != 1 for d in s[:-1]):
            return False
    return op.operands[1] is not None


def _check_transpose(op: Op) -> bool:
    return op.operands[0] is not None and _dtype(op.operands[0]) == _dtype(op.results[0])


def _check_alias(op: Op) -> bool:
    x = op.operands[0]
    return x is not None and _dtype(x) == _dtype(op.results[0]) and len(op.results) == 1


def _check_concat(op: Op) -> bool:
    vs = [v for v in op.operands]
    if not vs or any(v is None for v in vs):
        return False
    rank = len(_shape(op.results[0]))
    axis = _attr_int(op, "axis", 0)
    return -rank <= axis < rank and all(_dtype(v) == _dtype(op.results[0]) for v in vs if v is not None)


def _slice_spec(op: Op) -> tuple[list[int], list[int]] | None:
    """Slice's (axes, steps), constants; starts and ends may be run-time int64 tensors of as many values."""
    if len(op.operands) < 3 or any(v is None for v in op.operands[:3]):
        return None
    x, starts, ends = op.operands[0], op.operands[1], op.operands[2]
    assert x is not None and starts is not None and ends is not None
    rank = len(_shape(x))
    n = _shape(starts)
    if _dtype(starts) != DType.INT64 or _dtype(ends) != DType.INT64 or len(n) != 1 or not isinstance(n[0], int) \
            or _shape(ends) != n:
        return None
    axes = _const_ints(op.operands[3]) if len(op.operands) > 3 and op.operands[3] is not None else list(range(n[0]))
    steps = _const_ints(op.operands[4]) if len(op.operands) > 4 and op.operands[4] is not None else [1] * n[0]
    if axes is None or steps is None or not (len(axes) == len(steps) == n[0]) or 0 in steps:
        return None
    if not all(-rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        return None
    return [a % rank for a in axes], steps


def _check_slice(op: Op) -> bool:
    return _slice_spec(op) is not None and _dtype(op.operands[0]) == _dtype(op.results[0])  # type: ignore[arg-type]


def _check_shape(op: Op) -> bool:
    return op.operands[0] is not None and _dtype(op.results[0]) == DType.INT64


def _check_range(op: Op) -> bool:
    dt = _dtype(op.results[0])
    return len(op.operands) == 3 and dt in (DType.INT64, DType.FLOAT) and all(
        v is not None and _dtype(v) == dt and len(_shape(v)) <= 1 for v in op.operands) \
        and len(_shape(op.results[0])) == 1


def _split_sizes(op: Op) -> list[Dim] | None:
    """Split's output sizes along its axis (from the results' types), when they are consistent."""
    x = op.operands[0]
    if x is None or any(_dtype(r) != _dtype(x) for r in op.results):
        return None
    rank = len(_shape(x))
    axis = _attr_int(op, "axis", 0)
    if not -rank <= axis < rank:
        return None
    axis %= rank
    if len(op.operands) > 1 and op.operands[1] is not None:
        sizes = _const_ints(op.operands[1])
        if sizes is None or len(sizes) != len(op.results):
            return None
    for r in op.results:
        s = _shape(r)
        if len(s) != rank or any(not dims_equal(s[a], _shape(x)[a]) for a in range(rank) if a != axis):
            return None
    return [_shape(r)[axis] for r in op.results]


def _check_split(op: Op) -> bool:
    return _split_sizes(op) is not None


def _check_arg(op: Op) -> bool:
    x = op.operands[0]
    if x is None or _dtype(x) not in (DType.FLOAT, DType.INT64) or _dtype(op.results[0]) != DType.INT64:
        return False
    rank = len(_shape(x))
    return rank >= 1 and -rank <= _attr_int(op, "axis", 0) < rank


def _reduce_axes(op: Op) -> list[int] | None:
    """The reduced axes (sorted, non-negative), or None when they are not constants."""
    x = op.operands[0]
    assert x is not None
    rank = len(_shape(x))
    if len(op.operands) > 1 and op.operands[1] is not None:
        axes = _const_ints(op.operands[1])
    else:
        attr = op.attrs.get("axes")
        axes = [int(a) for a in attr] if isinstance(attr, list | tuple) else []  # type: ignore[arg-type]
    if axes is None or not all(-rank <= a < rank for a in axes):
        return None
    if not axes:
        return None if _attr_int(op, "noop_with_empty_axes", 0) else list(range(rank))
    return sorted({a % rank for a in axes})


def _check_reduce(op: Op) -> bool:
    x = op.operands[0]
    if x is None or _dtype(x) not in (DType.FLOAT, DType.INT64) or _dtype(op.results[0]) != _dtype(x):
        return False
    if op.name == "ReduceMean" and _dtype(x) != DType.FLOAT:
        return False
    return _reduce_axes(op) is not None


def _check_expand(op: Op) -> bool:
    x = op.operands[0]
    return x is not None and _dtype(x) == _dtype(op.results[0]) and _broadcasts(x, _shape(op.results[0]))


def _check_constant_of_shape(op: Op) -> bool:
    return _fill_value(op) is not None


def _fill_value(op: Op) -> str | None:
    """ConstantOfShape's value as a C literal of the result's type, or None."""
    v = op.attrs.get("value")
    c = np.asarray(v) if isinstance(v, np.ndarray) else (np.zeros(1, np.float32) if v is None else None)
    if c is None or c.size != 1:
        return None
    dt = _dtype(op.results[0])
    if NP_TYPES.get(dt) != c.dtype:
        return None
    x = c.reshape(-1)[0]
    if dt == DType.FLOAT:
        return f"{float(x)!r}f" if math.isfinite(float(x)) else ("INFINITY" if x > 0 else "-INFINITY" if x < 0 else None)
    return str(int(x))


def _check_gather(op: Op) -> bool:
    d, i = op.operands[0], op.operands[1] if len(op.operands) > 1 else None
    if d is None or i is None or _dtype(i) != DType.INT64:
        return False
    rank = len(_shape(d))
    return rank >= 1 and -rank <= _attr_int(op, "axis", 0) < rank


BIAS_EPILOGUE = True
"""Products add a following bias Add in their epilogue (``RegionUnit._bias_adds``); False builds units without."""

SCALED_SOFTMAX = True
"""Softmaxes take a Mul by a positive scalar in (``RegionUnit._scaled_softmax``); False builds units without."""

COLLAPSE = True
"""Parallel loop nests share out all their outer loops (``collapse``), not only the outermost; False: only it."""

ATTENTION_ROWS = 64
"""Query rows per block of a fused attention (``RegionUnit._attention``): its scores (rows x keys) stay in this
thread's cache between the two products; 0 turns the fusion off."""

BATCH_PARALLEL_WORK = 1 << 19
"""A batch of products (MatMul over leading dims) of at least this many multiply-adds in all runs one product per
thread (``batch_in_parallel`` in the units' C), and a fused attention shares its blocks out; 0 turns it off.
Against 1M (one process, alternating, 10 rounds): early-exit BERT at 32 tokens (attention of 4 x 32 x 32 x 128)
0.93-0.96x the time, BERT, MoE, conformer and GPT generation within 1%."""

BATCH_PARALLEL_READ = 1 << 17
"""The same from this many elements of the products' right operands in all, however few multiply-adds: a
decoder's step (one query row per head) streams its whole key-value cache.  GPT's decode step with 512 cached
positions (4 heads of 64: 1.3e5 elements a product) took 0.84x the time; BERT's attention at 16 rows (its
operands in cache, 4e3 elements) lost 8% shared out."""


def _softmax_row(scale: str, log: bool, unscaled: str = "") -> list[str]:
    """C lines of a (log-)softmax of one row: x to y (which may be x), n floats, each x times the scale first.
    With ``unscaled`` (a C lvalue; softmax only), y is left as the exponentials and 1 / their sum goes there."""
    fin = (f"for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mx){scale} - logf(sum);" if log else
           f"{unscaled} = 1.0f / sum;" if unscaled else
           "const float inv = 1.0f / sum; for (int64_t i = 0; i < n; i++) y[i] *= inv;")
    keep = "" if log else "y[i] = e; "
    return [
        "float mx = -INFINITY;",
        "_Pragma(\"omp simd reduction(max:mx)\") for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;",
        "float sum = 0.0f;",
        f"_Pragma(\"omp simd reduction(+:sum)\") for (int64_t i = 0; i < n; i++) {{ const float e = pl_expf((x[i] - mx){scale}); {keep}sum += e; }}",
        fin,
    ]


CONCAT_PARALLEL = 1 << 16
"""Elements from which a unit's Concat copies in parallel (the copies are memory-bound: smaller ones finish
before a second thread would start)."""

CONCAT_IN_PLACE = True
"""Whether a Concat's piece computed in the same unit (through reshapes) is computed in the Concat's result
instead of copied there, where the piece is one contiguous run of the result (every dim before the axis is 1):
a decoder's cache per layer stacked into one output of every layer's (``_concat_places``)."""

CONCAT_PIECE = 1 << 14
"""Elements a thread copies at a time in a parallel Concat (64 KiB of float32)."""


def _weight_shape(op: Op) -> tuple[Dim, ...]:
    """A conv's weight shape (M, C/group, kernel...): a PackedConv's (or its FusedConv's) from its attribute."""
    packed = op.attrs.get("weight_shape")
    if packed:
        return tuple(int(e) for e in packed)  # type: ignore[union-attr,arg-type]
    w = op.operands[1]
    assert w is not None
    return _shape(w)


def _wpack(op: Op) -> int:
    """conv.c's S_WPACK for a conv: 0 (weights as given), or its PackedConv layout's (``blas_conv.wpack_code``)."""
    from pliant.runtime import blas_conv

    return blas_conv.wpack_code(str(op.attrs.get("layout") or "panels")) if op.attrs.get("weight_shape") else 0


def _conv_geometry(op: Op) -> tuple[list[int], list[int], list[int], int] | None:
    """A conv a unit runs through conv.c: (strides, pads, dilations, group), 1-D or 2-D, not depthwise."""
    x, w = op.operands[0], op.operands[1] if len(op.operands) > 1 else None
    if x is None or w is None or {_dtype(x), _dtype(w), _dtype(op.results[0])} != {DType.FLOAT}:
        return None
    rank = len(_shape(x))
    ws = _weight_shape(op)
    if rank not in (3, 4) or len(ws) != rank or str(op.attrs.get("auto_pad", "NOTSET")) != "NOTSET":
        return None
    nsp = rank - 2
    group = _attr_int(op, "group", 1)
    cg = ws[1]
    if group < 1 or cg == 0 or not isinstance(cg, int) or (op.attrs.get("weight_shape") and (group != 1 or rank != 4)):
        return None

    def ints(name: str, n: int, default: int) -> list[int] | None:
        v = op.attrs.get(name)
        if v is None or (isinstance(v, list | tuple) and not v):
            return [default] * n
        out = [int(e) for e in v] if isinstance(v, list | tuple) else None  # type: ignore[arg-type]
        return out if out is not None and len(out) == n else None

    st, pads, dil = ints("strides", nsp, 1), ints("pads", 2 * nsp, 0), ints("dilations", nsp, 1)
    if st is None or pads is None or dil is None or min(st + dil) < 1 or min(pads) < 0:
        return None
    if op.name == "FusedConv":
        z = op.operands[3] if len(op.operands) > 3 else None
        if z is not None and _shape(z) != _shape(op.results[0]) and not all(
                dims_equal(a, b) for a, b in zip(_shape(z), _shape(op.results[0]))):
            return None
        if str(op.attrs.get("activation") or "") not in ("", "Relu", "Clip", "LeakyRelu"):
            return None
    b = op.operands[2] if len(op.operands) > 2 else None
    if b is not None and (_dtype(b) != DType.FLOAT or len(_shape(b)) != 1):
        return None
    return st, pads, dil, group


def _check_conv(op: Op) -> bool:
    return _conv_geometry(op) is not None


def _check_global_average_pool(op: Op) -> bool:
    x = op.operands[0]
    return x is not None and _dtype(x) == DType.FLOAT and len(_shape(x)) >= 3


def _check_scatter_elements(op: Op) -> bool:
    if len(op.operands) != 3 or any(v is None for v in op.operands):
        return False
    x, ind, upd = op.operands
    assert x is not None and ind is not None and upd is not None
    rank = len(_shape(x))
    red = str(op.attrs.get("reduction", "none"))
    return (_dtype(ind) == DType.INT64 and _dtype(upd) == _dtype(x) == _dtype(op.results[0])
            and _dtype(x) in (DType.FLOAT, DType.INT64) and red in ("none", "add", "mul", "max", "min")
            and len(_shape(ind)) == rank == len(_shape(upd)) and rank >= 1
            and all(dims_equal(a, b) for a, b in zip(_shape(ind), _shape(upd)))
            and -rank <= _attr_int(op, "axis", 0) < rank)


def _check_shape_expr(op: Op) -> bool:
    return _dtype(op.results[0]) == DType.INT64


_CHECKS: dict[tuple[str, str], Callable[[Op], bool]] = {
    **{("", n): _check_elementwise for n in (*_UNARY_F, *_BINARY_F, *_COMPARE, *_LOGIC, "Not", "Where", "Cast",
                                            "Gelu", "Clip")},
    ("pliant", "Fused"): _check_fused,
    ("", "MatMul"): _check_matmul,
    ("pliant", "PackedMatMul"): _check_matmul,
    ("", "Gemm"): _check_gemm,
    ("", "Softmax"): _check_softmax,
    ("", "LogSoftmax"): _check_softmax,
    ("", "LayerNormalization"): _check_layer_norm,
    ("", "Transpose"): _check_transpose,
    **{("", n): _check_alias for n in _ALIASES},
    ("", "Concat"): _check_concat,
    ("", "Slice"): _check_slice,
    ("", "Shape"): _check_shape,
    ("", "Range"): _check_range,
    ("", "Split"): _check_split,
    ("", "ArgMax"): _check_arg,
    ("", "ArgMin"): _check_arg,
    **{("", n): _check_reduce for n in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin")},
    ("", "Expand"): _check_expand,
    ("", "ConstantOfShape"): _check_constant_of_shape,
    ("", "Gather"): _check_gather,
    ("pliant", "ShapeExpr"): _check_shape_expr,
    ("", "Conv"): _check_conv,
    ("pliant", "FusedConv"): _check_conv,
    ("pliant", "PackedConv"): _check_conv,
    ("", "GlobalAveragePool"): _check_global_average_pool,
    ("", "ScatterElements"): _check_scatter_elements,
}


def _shape_binders(inputs: Sequence[Value]) -> dict[str, tuple[int, int, sympy.Expr, sympy.Symbol]]:
    """symbol -> (input, axis, its dim, the symbol): a bare symbol first, else a dim linear in one symbol."""
    out: dict[str, tuple[int, int, sympy.Expr, sympy.Symbol]] = {}
    for k, v in enumerate(inputs):
        if _tensor(v) is None:
            continue
        for a, d in enumerate(_shape(v)):
            if isinstance(d, Sym) and d.is_symbol and str(d.expr) not in out:
                out[str(d.expr)] = (k, a, d.expr, d.expr)  # type: ignore[assignment]
    for k, v in enumerate(inputs):
        if _tensor(v) is None:
            continue
        for a, d in enumerate(_shape(v)):
            if not isinstance(d, Sym) or len(d.expr.free_symbols) != 1:
                continue
            (sym,) = d.expr.free_symbols
            if sym.name in out:  # type: ignore[attr-defined]
                continue
            try:
                linear = sympy.Poly(d.expr, sym).degree() == 1
            except sympy.PolynomialError:
                linear = False
            if linear:
                out[sym.name] = (k, a, d.expr, sym)  # type: ignore[attr-defined]
    return out


def bindable(inputs: Sequence[Value]) -> set[str]:
    """The symbols a region with these inputs can bind from their sizes."""
    return set(_shape_binders(inputs))


def supports(op: Op) -> bool:
    """Whether a native unit can hold ``op``: a kind with a C emitter, known dtypes, every dim resolved."""
    check = _CHECKS.get((op.domain, op.name))
    if check is None or (op.regions and op.name not in ("Fused", "FusedConv")):
        return False
    if op.name == "Identity" and op.domain == "":
        return False  # NOTE: nothing to compute; as an alias it would only cost a copy when it is a result
    if any(_tensor(v) is None for v in op.operands if v is not None) or any(_tensor(r) is None for r in op.results):
        return False
    try:
        return check(op)
    except (TypeError, ValueError, KeyError):
        return False


# --- code generation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ConvC:
    """A convolution as the unit's C sees it (sizes are C expressions)."""

    x: Value
    w: Value
    b: Value | None
    z: Value | None
    r: Value
    h: str
    wd: str
    kh: str
    kw: str
    oh: str
    ow: str
    st: list[int]
    pads: list[int]
    dil: list[int]
    group: int
    act: str
    params: tuple[float, float, float]
    check: str
    m: str  # the weight's output channels
    wpack: int  # conv.c's S_WPACK: 0 w as given, 1 PackedConv's panels, 2 its Winograd layout


@dataclass
class _Plan:
    sizes: Any  # ctypes int64 array
    arena_bytes: int
    out_shapes: list[tuple[int, ...]]
    arrays: list[np.ndarray]  # ShapeExpr values, kept alive for the call
    array_ptrs: list[int]  # their addresses


class RegionUnit:
    """The native unit of one ``pliant.Static`` op; ``run(inputs) -> outputs`` (raises ``_Mismatch``/FALLBACK)."""

    def __init__(self, op: Op) -> None:
        self.op = op
        body = op.regions["body"].block
        self.ops = list(body.ops)
        if any(v is None for v in op.operands):
            raise UnsupportedRegion("a region reads every input it has")
        self.inputs: list[Value] = [v for v in op.operands if v is not None]
        self.outputs = list(body.outputs)
        if any(_tensor(v) is None for v in self.inputs) or any(_tensor(v) is None for v in self.outputs):
            raise UnsupportedRegion("region inputs and outputs must be tensors of known dtype and dims")
        if len(set(self.outputs)) != len(self.outputs) or any(v in self.inputs for v in self.outputs):
            raise UnsupportedRegion("a region result must be computed in the region, once")
        for o in self.ops:
            if not supports(o):
                raise UnsupportedRegion(f"{o.where} cannot run in a native unit")
        self.values: list[Value] = [v for v in self.inputs if v is not None] + [r for o in self.ops for r in o.results]
        self.vid = {v: k for k, v in enumerate(self.values)}
        # sizes: the _FIXED slots (see there) + dims of every value + arena offsets + extras
        self.dim_slot: dict[tuple[int, int], int] = {}
        dims: list[Dim] = []
        for k, v in enumerate(self.values):
            for a, d in enumerate(_shape(v)):
                self.dim_slot[(k, a)] = _FIXED + len(dims)
                dims.append(d)
        self.n_dims = len(dims)
        self.symbols = sorted(set().union(*(dim_symbols(d) for d in dims)) if dims else set())
        self.binders = self._bind_symbols()
        self.dims_fn = compile_dims(dims, self.symbols)
        self.plan_arrays: list[Op] = [o for o in self.ops if (o.domain, o.name) in (("pliant", "ShapeExpr"), ("", "Shape"))]
        self.calls_conv_c = any(o.name in ("Conv", "FusedConv", "PackedConv", "MatMul", "PackedMatMul", "Gemm")
                               for o in self.ops)
        self.elided = self._elided_transposes()
        self.views = self._gather_views()
        self.bias_adds = self._bias_adds()
        self._folded_adds = {add: m.results[0] for m, (add, _) in self.bias_adds.items()}
        """Each folded Add -> the product's result, whose buffer holds the Add's result."""
        self.scaled_softmax = self._scaled_softmax()
        self._folded_muls = {mul: x for mul, x, _ in self.scaled_softmax.values()}
        """Each Mul a Softmax takes in (see _scaled_softmax) -> its other operand, which its result aliases."""
        self.attention = self._attention_chains()
        self._attention_inner = {inner: chain[0].operands[0] for chain in self.attention.values()
                                 for inner in chain[:2]}
        """The scores product and the Softmax of each fused attention -> its queries (never written: the block's
        products and softmax run at the second product, see _attention)."""
        self.storage = self._storage()
        self.inside = self._concat_places()
        self.offset_slot: dict[int, int] = {}
        for k in sorted({self.storage[v][1] for v in self.values if self.storage[v][0] == "arena"}):
            self.offset_slot[k] = _FIXED + self.n_dims + len(self.offset_slot)
        self.extras: list[Callable[[dict[Value, tuple[int, ...]]], int]] = []
        self.lines: list[str] = []
        # pointers: the inputs that change per call, the outputs, the arena, the plan's arrays, then a table of
        # the constant inputs' pointers (built once)
        self._dyn = [k for k, v in enumerate(self.inputs) if not _is_constant(v)]
        self._const_index = {k: j for j, k in enumerate(k for k in range(len(self.inputs)) if k not in self._dyn)}
        self._out_base = len(self._dyn)
        self._array_base = self._out_base + len(self.outputs) + 1
        self._table_slot = self._array_base + len(self.plan_arrays)
        self.source: str | None = self._generate()
        self._fn: Any = None
        self._value_keys = sorted({k for k, a, _, _ in self.binders.values() if a < 0})
        self._in_dtypes = [NP_TYPES[_dtype(v)] for v in self.inputs]
        self._out_dtypes = tuple(NP_TYPES[_dtype(v)] for v in self.outputs)
        self._consts: list[tuple[int, np.ndarray]] | None = None
        self._table: Any = None
        self._table_address = 0
        self._plans: dict[tuple[Any, ...], _Plan | None] = {}
        # the C path (unit_call.c): on once the constants are taken; plans as tuples, inputs as tuples
        self._call: Callable[..., Any] | None = None
        self._cplans: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._fn_address = 0
        self._dyn_t = tuple(self._dyn)
        self._descrs = tuple(self._in_dtypes[k] for k in self._dyn)
        self._const_at: tuple[int, ...] = ()
        self._const_objs: tuple[np.ndarray, ...] = ()
        # NOTE: run's arguments but the inputs, for the block executor (unit_call.c's exec_block); None until
        # the C path is on
        # and, after them, the last plan the executor found and the input sizes it was for
        self.c_args: list[Any] = [None, None, None]
        self._lock = threading.Lock()
        self._pointers = ctypes.c_void_p * (self._table_slot + 1)

    # -- symbols and storage ---------------------------------------------------------------------
    def _bind_symbols(self) -> dict[str, tuple[int, int, sympy.Expr, sympy.Symbol]]:
        """symbol -> (input, axis, its dim, the symbol); axis -1: the input's (scalar) value is the symbol."""
        out = _shape_binders(self.inputs)
        bound: Any = zip(self.op.attrs.get("bind_values") or [], self.op.attrs.get("bind_symbols") or [])  # type: ignore[arg-type, call-overload]
        for k, name in bound:
            out.setdefault(str(name), (int(k), -1, sympy.S.Zero, sympy.S.Zero))
        missing = [s for s in self.symbols if s not in out]
        if missing:
            raise UnsupportedRegion(f"symbols {missing} are not sizes of the region's inputs")
        return out

    def _elided_transposes(self) -> set[Value]:
        """Transposes of the last two axes read only by MatMuls (or as the A of PackedMatMuls): the product reads
        the source transposed."""
        out: set[Value] = set()
        for o in self.ops:
            if o.domain != "" or o.name != "Transpose" or o.results[0] in self.outputs:
                continue
            rank = len(_shape(o.results[0]))
            perm_attr = o.attrs.get("perm")
            perm = [int(p) for p in perm_attr] if isinstance(perm_attr, list | tuple) else list(  # type: ignore[arg-type]
                reversed(range(rank)))
            if rank < 2 or perm != [*range(rank - 2), rank - 1, rank - 2] or _dtype(o.results[0]) != DType.FLOAT:
                continue
            uses = o.results[0].uses
            if uses and all(isinstance(u.user, Op) and u.user in self.ops
                            and ((u.user.name == "MatMul" and u.user.domain == "" and u.index in (0, 1))
                                 or (u.user.name == "PackedMatMul" and u.user.domain == "pliant" and u.index == 0))
                            and u.user.operands[1 - u.index] is not o.results[0] for u in uses):
                out.add(o.results[0])
        return out

    def _bias_adds(self) -> dict[Op, tuple[Op, Value]]:
        """Products whose result's one use is an Add of a vector along its last axis (a bias), in this unit and
        not an output of it: product -> (the Add, the vector).  The product adds the bias as it stores its
        tiles, and the Add's result lives in the product's buffer (an alias), so the Add costs nothing."""
        out: dict[Op, tuple[Op, Value]] = {}
        if not BIAS_EPILOGUE:
            return out
        members = set(self.ops)
        outputs = set(self.outputs)
        order = {o: n for n, o in enumerate(self.ops)}
        for o in self.ops:
            if (o.domain, o.name) not in (("", "MatMul"), ("pliant", "PackedMatMul")) or _dtype(o.results[0]) != DType.FLOAT:
                continue
            r = o.results[0]
            uses = r.uses
            if r in outputs or len(uses) != 1 or not isinstance(uses[0].user, Op):
                continue
            add = uses[0].user
            if add.domain != "" or add.name != "Add" or add not in members or add.results[0] in outputs:
                continue
            other = add.operands[1 - uses[0].index] if len(add.operands) == 2 else None
            if other is None or other is r or _dtype(add.results[0]) != DType.FLOAT:
                continue
            src = other.defining_op
            if other not in self.inputs and (src is None or order.get(src, len(order)) > order[o]):
                continue  # NOTE: the bias must exist when the product runs
            rs, ys = _shape(r), _shape(add.results[0])
            if len(ys) != len(rs) or not all(dims_equal(p, q) for p, q in zip(ys, rs)) or not self._along_columns(other, r):
                continue
            out[o] = (add, other)
        return out

    def _attention_chains(self) -> dict[Op, tuple[Op, Op]]:
        """Attention in this unit, MatMul(Q, Kt) -> [Mul by c, see _scaled_softmax] -> Softmax (last axis) ->
        MatMul(., V), each result read only by the next and not an output, all of one rank with the same batch
        dims: second product -> (the first, the Softmax).  It runs as one loop over blocks of ATTENTION_ROWS
        query rows: a block's scores are computed, softmaxed and multiplied by V while they are in cache, instead
        of all the scores written to memory and read back twice (BERT at 512 tokens: 4 MB a layer)."""
        out: dict[Op, tuple[Op, Op]] = {}
        if not ATTENTION_ROWS:
            return out
        members = set(self.ops)
        outputs = set(self.outputs)

        def only_use(v: Value | None, user: Op) -> bool:
            return v is not None and v not in outputs and len(v.uses) == 1 and next(iter(v.uses)).user is user

        for o in self.ops:
            if (o.domain, o.name) != ("", "Softmax") or not _last_axis(o, -1) or o in self.bias_adds:
                continue
            x = self.scaled_softmax[o][1] if o in self.scaled_softmax else o.operands[0]
            first = x.defining_op if x is not None else None
            r = o.results[0]
            second = next(iter(r.uses)).user if len(r.uses) == 1 else None
            if first is None or first not in members or (first.domain, first.name) != ("", "MatMul") \
                    or first in self.bias_adds or not isinstance(second, Op) or second not in members \
                    or (second.domain, second.name) != ("", "MatMul") or second.operands[0] is not r \
                    or second.operands[1] is r or second in self.bias_adds or not only_use(r, second):
                continue
            if o in self.scaled_softmax:
                mul = self.scaled_softmax[o][0]
                if not only_use(x, mul) or not only_use(mul.results[0], o):
                    continue
            elif not only_use(x, o):
                continue
            q, kt, v = first.operands[0], first.operands[1], second.operands[1]
            vals = [q, kt, x, v, second.results[0]]
            if any(w is None or _dtype(w) != DType.FLOAT for w in vals) or q in self.elided:
                continue
            shapes = [_shape(w) for w in vals if w is not None]
            rank = len(shapes[0])
            if rank < 3 or any(len(sh) != rank for sh in shapes) or not all(
                    dims_equal(sh[a], shapes[0][a]) for sh in shapes for a in range(rank - 2)):
                continue
            out[second] = (first, o)
        return out

    def _scaled_softmax(self) -> dict[Op, tuple[Op, Value, float]]:
        """Softmaxes (and LogSoftmaxes) of a Mul by a positive constant scalar c, the Mul in this unit, read only
        by them and not an output: softmax -> (the Mul, its other operand x, c).  The softmax of c * x is taken
        from x, exp(c * (x - max x)), so the scaled copy of x (attention's scores) is never written."""
        out: dict[Op, tuple[Op, Value, float]] = {}
        if not SCALED_SOFTMAX:
            return out
        members = set(self.ops)
        outputs = set(self.outputs)
        for o in self.ops:
            if o.domain != "" or o.name not in ("Softmax", "LogSoftmax"):
                continue
            v = o.operands[0]
            mul = v.defining_op if v is not None else None
            if v is None or mul is None or mul not in members or (mul.domain, mul.name) != ("", "Mul") \
                    or v in outputs or len(v.uses) != 1 or len(mul.operands) != 2:
                continue
            for i in (0, 1):
                x, c = mul.operands[i], mul.operands[1 - i]
                cv = constant_value(c)
                if x is None or cv is None or cv.size != 1 or cv.dtype != np.float32 or _dtype(x) != DType.FLOAT:
                    continue
                xs, vs = _shape(x), _shape(v)
                scale = float(cv.reshape(-1)[0])
                if cv.ndim <= len(vs) and len(xs) == len(vs) and all(dims_equal(p, q) for p, q in zip(xs, vs)) \
                        and math.isfinite(scale) and scale > 0.0:
                    out[o] = (mul, x, scale)
                    break
        return out

    @staticmethod
    def _along_columns(v: Value, r: Value) -> bool:
        """``v`` is a float vector along ``r``'s last axis (all its other dims 1): one row added to each of ``r``'s."""
        vs, rs = _shape(v), _shape(r)
        return (_dtype(v) == DType.FLOAT and bool(vs) and bool(rs) and len(vs) <= len(rs)
                and all(d == 1 for d in vs[:-1]) and dims_equal(vs[-1], rs[-1]))

    def _gather_views(self) -> dict[Value, int]:
        """Gathers of one constant index along an axis with only size-1 axes before it: a contiguous block of
        the source, used in place (value -> the index)."""
        out: dict[Value, int] = {}
        for o in self.ops:
            if o.domain != "" or o.name != "Gather" or o.results[0] in self.outputs:
                continue
            d, ind = o.operands[0], o.operands[1]
            assert d is not None and ind is not None
            idx = constant_value(ind)
            if idx is None or idx.ndim != 0:
                continue
            axis = _attr_int(o, "axis", 0) % len(_shape(d))
            if all(x == 1 for x in _shape(d)[:axis]):
                out[o.results[0]] = int(idx)
        return out

    def _storage(self) -> dict[Value, tuple[str, int]]:
        """Where each value lives: ("in", k), ("out", j), ("arena", root id), ("alias", root value id), ("array", j),
        ("inside", the id of the Concat result it is a piece of: see _concat_places)."""
        st: dict[Value, tuple[str, int]] = {}
        for k, v in enumerate(self.inputs):
            assert v is not None
            st[v] = ("in", k)
        out_index = {v: j for j, v in enumerate(self.outputs)}
        for o in self.ops:
            r = o.results[0]
            if o in self._folded_adds:
                st[r] = ("alias", self.vid[self._folded_adds[o]])
                continue
            if o in self._folded_muls:  # NOTE: never read: the Softmax after it reads the Mul's operand
                st[r] = ("alias", self.vid[self._folded_muls[o]])
                continue
            if o in self._attention_inner:  # NOTE: never written nor read (see _attention)
                q = self._attention_inner[o]
                assert q is not None
                st[r] = ("alias", self.vid[q])
                continue
            if (o.domain == "" and o.name in _ALIASES and r not in out_index) or r in self.elided or r in self.views:
                src = o.operands[0]
                assert src is not None
                st[r] = ("alias", self.vid[src])
                continue
            for res in o.results:
                if res in out_index:
                    st[res] = ("out", out_index[res])
                elif o in self.plan_arrays:
                    st[res] = ("array", self.plan_arrays.index(o))
                else:
                    st[res] = ("arena", self.vid[res])
        return st

    def _root(self, v: Value) -> Value:
        """The value whose memory ``v`` is in: through aliases and Concat results it is computed inside."""
        while self.storage[v][0] in ("alias", "inside"):
            v = self.values[self.storage[v][1]]
        return v

    def _reshaped(self, v: Value) -> Value:
        """``v`` through the reshapes (``_ALIASES`` ops that alias their operand) it is a view of."""
        while self.storage[v][0] == "alias" and (p := v.defining_op) is not None and p.domain == "" \
                and p.name in _ALIASES and p.operands[0] is not None:
            v = p.operands[0]
        return v

    def _concat_places(self) -> dict[Value, tuple[Op, int]]:
        """Pieces of Concats computed where the Concat would copy them (``CONCAT_IN_PLACE``): value -> (the
        Concat, operand index).  A piece qualifies where, through reshapes, it is a value this unit keeps in its
        arena, read by that one operand of the Concat only once, and the Concat's dims before its axis are all
        1 (the piece is one run of the result).  Its storage becomes ("inside", the Concat's result): the
        result's memory is taken when the first piece is computed (``_memory``), and the Concat copies the
        other pieces only.  Other readers of the piece read it there."""
        out: dict[Value, tuple[Op, int]] = {}
        if not CONCAT_IN_PLACE:
            return out
        for o in self.ops:
            if o.domain != "" or o.name != "Concat" or len(o.results) != 1:
                continue
            r = o.results[0]
            rank = len(_shape(r))
            axis = _attr_int(o, "axis", 0) % rank
            if any(d != 1 for d in _shape(r)[:axis]) or self.storage[r][0] not in ("arena", "out"):
                continue
            roots = [self._reshaped(v) if v is not None else None for v in o.operands]
            for j, w in enumerate(roots):
                if w is None or w in out or roots.count(w) != 1 or self.storage[w][0] != "arena" \
                        or _dtype(w) != _dtype(r):
                    continue
                out[w] = (o, j)
                self.storage[w] = ("inside", self.vid[r])
        return out

    def _inside_at(self, w: Value) -> str:
        """The element offset of piece ``w`` in its Concat's result (see _concat_places)."""
        o, j = self.inside[w]
        axis = _attr_int(o, "axis", 0) % len(_shape(o.results[0]))
        parts = [self._size(v, axis) for v in o.operands[:j] if v is not None]
        return " + ".join(f"({p})" for p in parts) or "0"

    # -- C source --------------------------------------------------------------------------------
    def _d(self, v: Value, a: int) -> str:
        return f"s[{self.dim_slot[(self.vid[v], a)]}]"

    def _size(self, v: Value, start: int = 0, stop: int | None = None) -> str:
        s = _shape(v)
        parts = [self._d(v, a) for a in range(start, len(s) if stop is None else stop)]
        return " * ".join(parts) if parts else "1"

    def _p(self, v: Value) -> str:
        return f"v{self.vid[v]}"

    def _extra(self, fn: Callable[[dict[Value, tuple[int, ...]]], int]) -> str:
        self.extras.append(fn)
        return f"s[{_FIXED + self.n_dims + len(self.offset_slot) + len(self.extras) - 1}]"

    def _index(self, v: Value, out: tuple[Dim, ...], idx: list[str]) -> str:
        """The linear index of ``v`` broadcast to an output with index variables ``idx``."""
        s = _shape(v)
        off = len(out) - len(s)
        expr = ""
        for p, d in enumerate(s):
            i = "0" if d == 1 else idx[p + off]
            expr = i if not expr else f"({expr}) * {self._d(v, p)} + {i}"
        return expr or "0"

    def _loops(self, out: Value, body: list[str]) -> None:
        self._nest(out, len(_shape(out)), body, parallel=True)

    def _nest(self, v: Value, depth: int, body: list[str], parallel: bool = False, pragma: str = "") -> None:
        """``body`` inside loops ``i0, i1, ...`` over the first ``depth`` dims of ``v``.  With ``parallel``: the
        outer loop in parallel past PARALLEL_MIN_WORK elements, the inner one
        vectorised; else ``pragma`` (a line) before the outer loop."""
        par = f"if({self._size(v)} >= {PARALLEL_MIN_WORK})"
        lines = [pragma] if pragma and not parallel else []
        for a in range(depth):
            if parallel and a == 0 and depth > 1:
                # NOTE: every loop but the vectorised one shared out: the outer dims of (1, L, C) are 1 and L
                together = f"collapse({depth - 1}) " if depth > 2 and COLLAPSE else ""
                lines.append(f"_Pragma(\"omp parallel for {together}{par}\")")
            if parallel and a == depth - 1:
                lines.append("  " * a + ("_Pragma(\"omp simd\")" if depth > 1 else f"_Pragma(\"omp parallel for simd {par}\")"))
            lines.append("  " * a + f"for (int64_t i{a} = 0; i{a} < {self._d(v, a)}; i{a}++) {{")
        lines += ["  " * depth + b for b in body]
        lines += ["  " * (depth - 1 - a) + "}" for a in range(depth)]
        self.lines += ["{"] + lines + ["}"]

    def _elementwise(self, ops: list[Op], result: Value) -> None:
        self._fused(ops, ops[-1].results[0], result)

    def _generate(self) -> str:
        self.lines = []
        for o in self.ops:
            self._emit(o)
        self.lines = _serial_branches(self.lines)
        head = ["#include <stdint.h>", "#include <stdlib.h>", "#include <string.h>", "#include <math.h>", C_HELPERS,
                *_vector_decls(self.lines), f"#define SMALL_MATMUL {SMALL_MATMUL}", _gemm_defines(), _PRELUDE,
                "#if defined(__GNUC__) && !defined(__clang__)", "#define SERIAL_NESTED 1", "#else",
                "#define SERIAL_NESTED 0", "#endif",
                "int pliant_kernel(void **p, const int64_t *s) {",
                f"  char *arena = (char *)p[{self._out_base + len(self.outputs)}];"]
        # NOTE: a value's memory is declared before the values in it: pieces of Concats after the Concats' results
        # (so in reverse order: a Concat's result is defined after its pieces), aliases after everything
        order = [v for v in self.values if self.storage[v][0] not in ("alias", "inside")] \
            + [v for v in reversed(self.values) if self.storage[v][0] == "inside"] \
            + [v for v in self.values if self.storage[v][0] == "alias"]
        for v in order:
            kind, k = self.storage[v]
            ct = C_TYPES[_dtype(v)]
            if kind == "in":
                src = f"p[{self._dyn.index(k)}]" if k in self._dyn else f"((void *const *)p[{self._table_slot}])[{self._const_index[k]}]"
            elif kind == "out":
                src = f"p[{self._out_base + k}]"
            elif kind == "array":
                src = f"p[{self._array_base + k}]"
            elif kind == "arena":
                src = f"(arena + s[{self.offset_slot[k]}])"
            elif kind == "inside":
                src = f"(v{k} + {self._inside_at(v)})"
            elif v in self.views:
                g = v.defining_op
                assert g is not None and g.operands[0] is not None
                d = g.operands[0]
                axis = _attr_int(g, "axis", 0) % len(_shape(d))
                at = self.views[v]
                at_expr = f"({at} + {self._d(d, axis)})" if at < 0 else str(at)
                src = f"v{k} + {at_expr} * ({self._size(d, axis + 1)})"
            else:
                src = f"v{k}"
            head.append(f"  {ct} *restrict v{self.vid[v]} = ({ct} *){src};" if kind not in ("alias", "inside")
                        else f"  {ct} *v{self.vid[v]} = ({ct} *){src};")
        # NOTE: aliases share memory with their source: restrict would be a lie for them, and for the
        # source too -- drop it everywhere an alias exists
        if any(self.storage[v][0] in ("alias", "inside") for v in self.values):
            head = [h.replace(" *restrict ", " *") for h in head]
        # NOTE: sizes are copied to locals: read through ``s`` they could alias the int64 outputs, and the
        # compiler would reload them in every loop and vectorise nothing
        body = [re.sub(r"\bs\[(\d+)\]", r"S\1", line) for line in self.lines]
        used = sorted({int(m) for line in self.lines for m in re.findall(r"\bs\[(\d+)\]", line)})
        locals_ = [f"  const int64_t S{k} = s[{k}];" for k in used]
        return "\n".join(head + locals_ + ["  " + line for line in body] + ["  return 0;", "}"]) + "\n"

    # -- emitters --------------------------------------------------------------------------------
    def _emit(self, o: Op) -> None:
        name = o.name
        r = o.results[0]
        if o in self._folded_adds:
            return  # NOTE: added by the product before it (see _bias_adds)
        if o in self._folded_muls:
            return  # NOTE: scaled by the Softmax after it (see _scaled_softmax)
        if o in self._attention_inner:
            return  # NOTE: run with the product after them (see _attention)
        if o in self.attention:
            self._attention(o)
            return
        if o.domain == "pliant" and name == "Fused":
            body = o.regions["body"].block
            self._fused(list(body.ops), body.outputs[0], r)
        elif o.domain == "pliant" and name == "ShapeExpr":
            if self.storage[r][0] == "out":
                self.lines.append(f"memcpy({self._p(r)}, p[{self._array_base + self.plan_arrays.index(o)}], "
                                  f"(size_t)({self._size(r)}) * sizeof(int64_t));")
        elif name in _ALIASES:
            if self.storage[r][0] != "alias":
                src = o.operands[0]
                assert src is not None
                self.lines.append(f"memcpy({self._p(r)}, {self._p(src)}, (size_t)({self._size(r)}) * sizeof({C_TYPES[_dtype(r)]}));")
        elif name in ("MatMul", "PackedMatMul"):
            self._matmul(o)
        elif name == "Gemm":
            self._gemm(o)
        elif name in ("Softmax", "LogSoftmax"):
            self._softmax(o, log=name == "LogSoftmax")
        elif name == "LayerNormalization":
            self._layer_norm(o)
        elif name == "Transpose":
            if r not in self.elided:
                self._transpose(o)
        elif name == "Concat":
            self._concat(o)
        elif name == "Slice":
            self._slice(o)
        elif name == "Gather":
            if r in self.views:
                d = o.operands[0]
                assert d is not None
                at, dim = self.views[r], self._d(d, _attr_int(o, "axis", 0) % len(_shape(d)))
                self.lines.append(f"if ({at} < -{dim} || {at} >= {dim}) return 1;")
            else:
                self._gather(o)
        elif name in ("Conv", "FusedConv", "PackedConv"):
            if _weight_shape(o)[1] == 1 and _attr_int(o, "group", 1) > 1:
                self._conv_depthwise(o)
            else:
                self._conv(o)
        elif name == "GlobalAveragePool":
            self._global_average_pool(o)
        elif name == "ScatterElements":
            self._scatter_elements(o)
        elif name == "Range":
            self._range(o)
        elif name == "Split":
            self._split(o)
        elif name in ("ArgMax", "ArgMin"):
            self._arg(o)
        elif name in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"):
            self._reduce(o)
        elif name == "Expand":
            self._expand(o)
        elif name == "ConstantOfShape":
            self._fill(o)
        elif name == "Shape":
            if self.storage[r][0] == "out":
                self.lines.append(f"memcpy({self._p(r)}, p[{self._array_base + self.plan_arrays.index(o)}], "
                                  f"(size_t)({self._size(r)}) * sizeof(int64_t));")
        else:
            self._elementwise([o], r)

    def _fused(self, inner: list[Op], body_out: Value, result: Value) -> None:
        out = _shape(result)
        idx = [f"i{a}" for a in range(len(out))]
        temps: dict[Value, str] = {}
        body: list[str] = []
        for n, o in enumerate(inner):
            args = []
            for v in o.operands:
                assert v is not None
                args.append(temps[v] if v in temps else f"{self._p(v)}[{self._index(v, out, idx)}]")
            expr = _elementwise_expr(o)
            assert expr is not None
            body.append(f"const {C_TYPES[_dtype(o.results[0])]} t{n} = {expr.format(*args)};")
            temps[o.results[0]] = f"t{n}"
        body.append(f"{self._p(result)}[{self._index(result, out, idx)}] = {temps[body_out]};")
        self._loops(result, body)

    def _matmul(self, o: Op) -> None:
        """A product per batch index through ``gemm_t``; a bias Add that follows it (``_bias_adds``) is added to
        each row of the result in the product's epilogue, and the Add's result is the product's buffer."""
        bias = self.bias_adds[o][1] if o in self.bias_adds else None
        a, b = o.operands[0], o.operands[1]
        assert a is not None and b is not None
        r = o.results[0]
        so = _shape(r)
        nb = len(so) - 2
        m, n, k = self._d(r, nb), self._d(r, nb + 1), self._d(a, len(_shape(a)) - 1)
        idx = [f"i{q}" for q in range(nb)]
        # NOTE: tb 2: B is constant panels (PackedMatMul), one matrix for every batch index
        ta, tb = int(a in self.elided), 2 if o.domain == "pliant" else int(b in self.elided)
        sa = _shape(a)
        if nb > 0 and not ta and (tb == 2 or len(_shape(b)) == 2) and len(sa) == len(so) \
                and all(dims_equal(p, q) for p, q in zip(sa[:nb], so[:nb])):
            # one B for every batch index, A and the result contiguous over it: one product of all the rows
            m, nb, idx = self._size(r, 0, nb + 1), 0, []
        par = self._parallel_work(b) if nb == 0 else f"(pb_ ? INT64_MAX : {self._parallel_work(b)})"
        at = [self._batch(v, so, idx) if nb else "0" for v in (a, b, r)]
        body = [f"gemm_t(s, {par}, {ta}, {tb}, {m}, {n}, {k}, 1.0f, {self._p(a)} + ({at[0]}) * {m} * {k}, "
                f"{self._p(b)} + ({at[1] if tb != 2 else 0}) * {k} * {n}, "
                f"{self._p(r)} + ({at[2]}) * {m} * {n}, {self._p(bias) if bias is not None else 'NULL'});"]
        if nb == 0:
            self._nest(r, nb, body)
            return
        # NOTE: a batch of products (attention's heads) shares the threads out by product, each product on one
        # thread, where batch_in_parallel says so: one parallel region instead of one per product.  Not an
        # if() clause: the products inside an inactive region open parallel regions of their own, each a new
        # team of new threads (3 ms for BERT's 16 products)
        self.lines += ["{", f"const int pb_ = batch_in_parallel({self._size(r, 0, nb)}, {m} * {n} * {k}, {n} * {k});",
                       "if (pb_) {"]
        self._nest(r, nb, body, pragma=f"_Pragma(\"omp parallel for collapse({nb})\")")
        self.lines.append("} else {")
        self._nest(r, nb, body)
        self.lines += ["}", "}"]

    def _attention(self, o: Op) -> None:
        """A fused attention (see _attention_chains) at its second product: for each batch index and block of
        query rows, scores = Q Kt into a scratch buffer of this thread, their softmax in place, then scores V
        into the result; the blocks shared out over the threads, each product on one thread.  Where a batch
        index has several blocks, the thread first lays out its Kt and V as panels (``pack_panels``), once for
        all of them: read in place, every block's products packed their tiles again (BERT at 512 tokens: 10% of
        the attention's time).  The softmax leaves its rows unscaled; the product's rows are scaled instead
        (dv sums a row, not one per key)."""
        first, soft = self.attention[o]
        q, kt, v = first.operands[0], first.operands[1], o.operands[1]
        assert q is not None and kt is not None and v is not None
        r = o.results[0]
        rank = len(_shape(r))
        scale = f" * {self.scaled_softmax[soft][2]!r}f" if soft in self.scaled_softmax else ""
        rows, dk, keys, dv = self._d(r, rank - 2), self._d(q, rank - 1), self._d(v, rank - 2), self._d(r, rank - 1)
        batches = self._size(r, 0, rank - 2)
        tk, tv = int(kt in self.elided), int(v in self.elided)
        qp, kp, vp, rp = self._p(q), self._p(kt), self._p(v), self._p(r)
        self.lines += [
            "{",
            f"  const int64_t nb_ = {batches}, L_ = {rows}, dk_ = {dk}, n_ = {keys}, dv_ = {dv};",
            f"  const int64_t rb_ = {ATTENTION_ROWS}, blocks_ = (L_ + rb_ - 1) / rb_;",
            "  /* Kt and V as panels where a batch index has several blocks (and the products are not the small ones) */",
            "  const int pk_ = blocks_ > 1 && rb_ * n_ * (dk_ < dv_ ? dk_ : dv_) >= SMALL_MATMUL;",
            "  const int64_t kn_ = pk_ ? (n_ + GEMM_PANEL - 1) / GEMM_PANEL * GEMM_PANEL * dk_ : 0;",
            "  const int64_t vn_ = pk_ ? (dv_ + GEMM_PANEL - 1) / GEMM_PANEL * GEMM_PANEL * n_ : 0;",
            "  int failed_ = 0;",
            "  _Pragma(\"omp parallel if(nb_ * L_ * n_ * (dk_ + dv_) >= GEMM_BATCH_WORK)\")",
            "  {",
            "    int64_t packed_ = -1; /* the batch index whose panels this thread holds */",
            "    _Pragma(\"omp for collapse(2) schedule(static)\")",
            "    for (int64_t b_ = 0; b_ < nb_; b_++) {",
            "      for (int64_t blk_ = 0; blk_ < blocks_; blk_++) {",
            "        static __thread float *sc_ = NULL;",
            "        static __thread int64_t sc_n_ = 0;",
            "        const int64_t need_ = rb_ * n_ + rb_ + kn_ + vn_;",
            "        if (need_ > sc_n_) {",
            "          free(sc_);",
            "          sc_ = (float *)malloc((size_t)need_ * sizeof(float));",
            "          sc_n_ = sc_ ? need_ : 0;",
            "          packed_ = -1;",
            "        }",
            "        if (!sc_) { failed_ = 1; continue; }",
            "        float *inv_ = sc_ + rb_ * n_, *kpan_ = inv_ + rb_, *vpan_ = kpan_ + kn_;",
            "        const float *kb_ = " + kp + " + b_ * dk_ * n_, *vb_ = " + vp + " + b_ * n_ * dv_;",
            "        int tk_ = " + str(tk) + ", tv_ = " + str(tv) + ";",
            "        if (pk_) {",
            "          if (packed_ != b_) {",
            "            pack_panels(kb_, tk_, dk_, n_, kpan_);",
            "            pack_panels(vb_, tv_, n_, dv_, vpan_);",
            "            packed_ = b_;",
            "          }",
            "          kb_ = kpan_, vb_ = vpan_, tk_ = tv_ = 2;",
            "        }",
            "        const int64_t r0_ = blk_ * rb_, m_ = L_ - r0_ < rb_ ? L_ - r0_ : rb_;",
            f"        gemm_t(s, INT64_MAX, 0, tk_, m_, n_, dk_, 1.0f, {qp} + (b_ * L_ + r0_) * dk_, kb_, sc_, NULL);",
            "        for (int64_t row = 0; row < m_; row++) {",
            "          const int64_t n = n_; float *y = sc_ + row * n; const float *x = y;",
            *("          " + line for line in _softmax_row(scale, False, unscaled="inv_[row]")),
            "        }",
            f"        float *out_ = {rp} + (b_ * L_ + r0_) * dv_;",
            "        gemm_t(s, INT64_MAX, 0, tv_, m_, dv_, n_, 1.0f, sc_, vb_, out_, NULL);",
            "        for (int64_t row = 0; row < m_; row++) {",
            "          const float f_ = inv_[row]; float *o_ = out_ + row * dv_;",
            "          _Pragma(\"omp simd\") for (int64_t i = 0; i < dv_; i++) o_[i] *= f_;",
            "        }",
            "      }",
            "    }",
            "  }",
            "  if (failed_) return -1;",
            "}",
        ]

    def _batch(self, v: Value, out: tuple[Dim, ...], idx: list[str]) -> str:
        """The linear batch index of ``v`` (its dims before the last two) for output batch index ``idx``."""
        s = _shape(v)
        nb, onb = len(s) - 2, len(out) - 2
        off = onb - nb
        expr = ""
        for p in range(nb):
            i = "0" if s[p] == 1 else idx[p + off]
            expr = i if not expr else f"({expr}) * {self._d(v, p)} + {i}"
        return expr or "0"

    @staticmethod
    def _parallel_work(b: Value) -> str:
        """The parallel threshold of a product whose B is ``b``: lower for weights, which come from memory (two
        threads read them twice as fast), than for activations, which are in cache."""
        return "s[4]" if _is_constant(b) else "s[3]"

    def _gemm(self, o: Op) -> None:
        a, b = o.operands[0], o.operands[1]
        c = o.operands[2] if len(o.operands) > 2 else None
        assert a is not None and b is not None
        r = o.results[0]
        ta, tb = _attr_int(o, "transA", 0), _attr_int(o, "transB", 0)
        alpha = float(o.attrs.get("alpha", 1.0))  # type: ignore[arg-type]
        beta = float(o.attrs.get("beta", 1.0))  # type: ignore[arg-type]
        m, n = self._d(r, 0), self._d(r, 1)
        k = self._d(a, 0 if ta else 1)
        # NOTE: C along the columns with beta 1 is a bias gemm_t adds (in conv.c's epilogue where it can)
        bias = c if c is not None and beta == 1.0 and self._along_columns(c, r) else None
        self.lines.append(f"gemm_t(s, {self._parallel_work(b)}, {ta}, {tb}, {m}, {n}, {k}, {alpha!r}f, {self._p(a)}, "
                          f"{self._p(b)}, {self._p(r)}, {self._p(bias) if bias is not None else 'NULL'});")
        if c is not None and beta != 0.0 and bias is None:
            out = _shape(r)
            idx = ["i0", "i1"]
            self._loops(r, [f"{self._p(r)}[i0 * {n} + i1] += {beta!r}f * {self._p(c)}[{self._index(c, out, idx)}];"])

    def _softmax(self, o: Op, log: bool) -> None:
        """Along the last axis; of c * x where the operand is a Mul by a positive constant (_scaled_softmax)."""
        x = o.operands[0]
        scale = ""
        if o in self.scaled_softmax:
            _, x, c = self.scaled_softmax[o]
            scale = f" * {c!r}f"
        assert x is not None
        r = o.results[0]
        rank = len(_shape(x))
        n = self._d(x, rank - 1)
        rows = self._size(x, 0, rank - 1)
        self.lines += [
            f"_Pragma(\"omp parallel for if({rows} * {n} >= {PARALLEL_MIN_WORK})\")",
            f"for (int64_t row = 0; row < {rows}; row++) {{",
            f"  const int64_t n = {n}; const float *x = {self._p(x)} + row * n; float *y = {self._p(r)} + row * n;",
            *("  " + line for line in _softmax_row(scale, log)),
            "}",
        ]

    def _layer_norm(self, o: Op) -> None:
        x, sc = o.operands[0], o.operands[1]
        bias = o.operands[2] if len(o.operands) > 2 else None
        assert x is not None and sc is not None
        r = o.results[0]
        rank = len(_shape(x))
        eps = float(o.attrs.get("epsilon", 1e-5))  # type: ignore[arg-type]
        b = f"+ {self._p(bias)}[i]" if bias is not None else ""
        self.lines += [
            f"_Pragma(\"omp parallel for if({self._size(x)} >= {PARALLEL_MIN_WORK})\")",
            f"for (int64_t row = 0; row < {self._size(x, 0, rank - 1)}; row++) {{",
            f"  const int64_t n = {self._d(x, rank - 1)}; const float *x = {self._p(x)} + row * n; "
            f"float *y = {self._p(r)} + row * n;",
            "  float sum = 0.0f;",
            "  _Pragma(\"omp simd reduction(+:sum)\") for (int64_t i = 0; i < n; i++) sum += x[i];",
            "  const float mean = sum / (float)n;",
            "  float sq = 0.0f;",
            "  _Pragma(\"omp simd reduction(+:sq)\") for (int64_t i = 0; i < n; i++) { const float d = x[i] - mean; sq += d * d; }",
            f"  const float inv = 1.0f / sqrtf(sq / (float)n + {eps!r}f);",
            "  _Pragma(\"omp simd\")",
            f"  for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * {self._p(sc)}[i] {b};",
            "}",
        ]

    def _transpose(self, o: Op) -> None:
        x = o.operands[0]
        assert x is not None
        r = o.results[0]
        rank = len(_shape(x))
        perm_attr = o.attrs.get("perm")
        perm = [int(p) for p in perm_attr] if isinstance(perm_attr, list | tuple) else list(  # type: ignore[arg-type]
            reversed(range(rank)))
        idx = [f"i{a}" for a in range(rank)]
        src_idx = [""] * rank
        for q, p in enumerate(perm):
            src_idx[p] = idx[q]
        expr = ""
        for p in range(rank):
            expr = src_idx[p] if not expr else f"({expr}) * {self._d(x, p)} + {src_idx[p]}"
        self._loops(r, [f"{self._p(r)}[{self._index(r, _shape(r), idx)}] = {self._p(x)}[{expr or '0'}];"])

    def _concat(self, o: Op) -> None:
        r = o.results[0]
        rank = len(_shape(r))
        axis = _attr_int(o, "axis", 0) % rank
        ct = C_TYPES[_dtype(r)]
        outer = self._size(r, 0, axis)
        self.lines.append(f"{{ int64_t off = 0; const int64_t outer = {outer}, inner_out = {self._size(r, axis)};")
        for v in o.operands:
            assert v is not None
            if self.inside.get(self._reshaped(v), (None,))[0] is o:
                self.lines.append(f"  off += {self._size(v, axis)};  /* computed in place */")
                continue
            # NOTE: large copies in pieces of CONCAT_PIECE elements shared out over the threads: a decode step's
            # key-value cache (2 x 4 x 512 x 64 floats twice) took 106 of the step's 231 us on one thread
            self.lines += [
                f"  {{ const int64_t inner = {self._size(v, axis)}, pieces = (inner + {CONCAT_PIECE - 1}) / "
                f"{CONCAT_PIECE};",
                f"    _Pragma(\"omp parallel for collapse(2) if(outer * inner >= {CONCAT_PARALLEL})\")",
                "    for (int64_t q = 0; q < outer; q++)",
                "      for (int64_t k = 0; k < pieces; k++) {",
                f"        const int64_t at = k * {CONCAT_PIECE}, n = inner - at < {CONCAT_PIECE} ? inner - at : "
                f"{CONCAT_PIECE};",
                f"        memcpy({self._p(r)} + q * inner_out + off + at, {self._p(v)} + q * inner + at, "
                f"(size_t)n * sizeof({ct}));",
                "      }",
                "    off += inner; }",
            ]
        self.lines.append("}")

    def _slice(self, o: Op) -> None:
        """Slice with run-time starts and ends, clamped as ONNX says; a count other than the typed one is an
        error code (the analysis would have been wrong): the region then runs op by op."""
        x, starts, ends = o.operands[0], o.operands[1], o.operands[2]
        assert x is not None and starts is not None and ends is not None
        spec = _slice_spec(o)
        assert spec is not None
        r = o.results[0]
        rank = len(_shape(x))
        self.lines.append("{")
        begin: dict[int, tuple[str, int]] = {}
        for j, (a, sp) in enumerate(zip(*spec)):
            dim, out = self._d(x, a), self._d(r, a)
            b = f"b{a}"
            self.lines += [
                f"  int64_t {b} = {self._p(starts)}[{j}], e{a} = {self._p(ends)}[{j}];",
                f"  if ({b} < 0) {b} += {dim}; if (e{a} < 0) e{a} += {dim};",
            ]
            if sp > 0:
                self.lines += [
                    f"  {b} = {b} < 0 ? 0 : ({b} > {dim} ? {dim} : {b}); e{a} = e{a} < 0 ? 0 : (e{a} > {dim} ? {dim} : e{a});",
                    f"  if ((e{a} > {b} ? (e{a} - {b} + {sp - 1}) / {sp} : 0) != {out}) return 2;",
                ]
            else:
                self.lines += [
                    f"  {b} = {b} < 0 ? -1 : ({b} > {dim} - 1 ? {dim} - 1 : {b}); "
                    f"e{a} = e{a} < -1 ? -1 : (e{a} > {dim} - 1 ? {dim} - 1 : e{a});",
                    f"  if (({b} > e{a} ? ({b} - e{a} + {-sp - 1}) / {-sp} : 0) != {out}) return 2;",
                ]
            begin[a] = (b, sp)
        idx = [f"i{a}" for a in range(rank)]
        src = ""
        for a in range(rank):
            i = f"({begin[a][0]} + {idx[a]} * {begin[a][1]})" if a in begin else idx[a]
            src = i if not src else f"({src}) * {self._d(x, a)} + {i}"
        self._loops(r, [f"{self._p(r)}[{self._index(r, _shape(r), idx)}] = {self._p(x)}[{src or '0'}];"])
        self.lines.append("}")

    def _conv_parts(self, o: Op) -> _ConvC:
        """A Conv/FusedConv's operands, its geometry as 2-D (a 1-D one lifted to height 1), its epilogue, and the
        C test that returns 2 where the sizes contradict the geometry (the region then runs op by op)."""
        geo = _conv_geometry(o)
        assert geo is not None
        st, pads, dil, group = geo
        x, w = o.operands[0], o.operands[1]
        assert x is not None and w is not None
        b = o.operands[2] if len(o.operands) > 2 else None
        z = o.operands[3] if len(o.operands) > 3 and o.name == "FusedConv" else None
        r = o.results[0]
        d = self._d
        ws = _weight_shape(o)

        def dw(a: int) -> str:
            return str(ws[a]) if o.attrs.get("weight_shape") else d(w, a)

        if len(_shape(x)) == 3:
            (h, wd), (kh, kw), (oh, ow) = ("1", d(x, 2)), ("1", dw(2)), ("1", d(r, 2))
            st, dil, pads = [1, st[0]], [1, dil[0]], [0, pads[0], 0, pads[1]]
        else:
            (h, wd), (kh, kw), (oh, ow) = (d(x, 2), d(x, 3)), (dw(2), dw(3)), (d(r, 2), d(r, 3))
        act = str(o.attrs.get("activation") or "") if o.name == "FusedConv" else ""
        raw: Any = o.attrs.get("activation_params") or []
        lo, hi, alpha = ([float(v) for v in raw] + [0.0] * 3)[:3]
        span = [f"({h} + {pads[0]} + {pads[2]} - {dil[0]} * ({kh} - 1) - 1)",
                f"({wd} + {pads[1]} + {pads[3]} - {dil[1]} * ({kw} - 1) - 1)"]
        check = (f"if ({span[0]} < 0 || {span[1]} < 0 || {span[0]} / {st[0]} + 1 != {oh} || {span[1]} / {st[1]} + 1 "
                 f"!= {ow} || {dw(1)} * {group} != {d(x, 1)} || {dw(0)} % {group} != 0) return 2;")
        return _ConvC(x, w, b, z, r, h, wd, kh, kw, oh, ow, st, pads, dil, group, act, (lo, hi, alpha), check,
                      dw(0), _wpack(o))

    def _conv(self, o: Op) -> None:
        """conv.c's entry (address in s[2]) with this op's geometry and epilogue; a geometry the sizes contradict
        returns 2 (the region then runs op by op)."""
        from pliant.runtime import blas_conv

        c = self._conv_parts(o)
        x, w, b, z, r, st, pads, dil, group = c.x, c.w, c.b, c.z, c.r, c.st, c.pads, c.dil, c.group
        d = self._d
        params = ", ".join(_c_float(v) for v in c.params)
        sizes = [d(x, 0), d(x, 1), c.h, c.wd, c.m, c.kh, c.kw, c.oh, c.ow, str(st[0]), str(st[1]), str(dil[0]),
                 str(dil[1]), str(pads[0]), str(pads[1]), str(group), str(blas_conv.ACTIVATIONS[c.act]),
                 str(blas_conv.BLOCK_FLOATS), str(blas_conv.K_BLOCK), str(blas_conv.PARALLEL_WORK),
                 str(blas_conv.DIRECT_WASTE), "0", "0", str(blas_conv.SWAP_POSITIONS), str(c.wpack), str(blas_conv.SMALL_K),
                 str(blas_conv.WINOGRAD_4X4)]
        # NOTE: S_BT 0: B is not transposed; S_ZROW 0: z is a tensor; S_WPACK: how PackedConv stores w
        self.lines += [
            c.check,
            "{",
            f"  static const float cparams[3] = {{{params}}};",
            f"  const int64_t cs[{len(sizes)}] = {{{', '.join(sizes)}}};",
            f"  void *cp[6] = {{(void *){self._p(x)}, (void *){self._p(w)}, "
            f"(void *){self._p(b) if b is not None else 'NULL'}, (void *){self._p(z) if z is not None else 'NULL'}, "
            f"(void *){self._p(r)}, (void *)cparams}};",
            "  if (((int (*)(void **, const int64_t *))(intptr_t)s[2])(cp, cs) != 0) return -1;",
            "}",
        ]

    def _scatter_elements(self, o: Op) -> None:
        """A copy of the data, then each update written (or combined) at its index along the axis, in order
        (a repeated index: the last write wins, as NumPy's assignment); an index out of range returns 1."""
        x, ind, upd = o.operands
        assert x is not None and ind is not None and upd is not None
        r = o.results[0]
        rank = len(_shape(x))
        axis = _attr_int(o, "axis", 0) % rank
        ct = C_TYPES[_dtype(x)]
        red = str(o.attrs.get("reduction", "none"))
        combine = {"none": "{1}", "add": "{0} + {1}", "mul": "{0} * {1}",
                   "max": "({1} > {0} || {1} != {1}) ? {1} : {0}", "min": "({1} < {0} || {1} != {1}) ? {1} : {0}"}[red]
        checks = " || ".join(f"{self._d(ind, a)} > {self._d(x, a)}" for a in range(rank) if a != axis) or "0"
        idx = [f"i{a}" for a in range(rank)]
        dst = ""
        for a in range(rank):
            i = "k" if a == axis else idx[a]
            dst = i if not dst else f"({dst}) * {self._d(x, a)} + {i}"
        self.lines += [
            f"if ({checks}) return 1;",
            f"memcpy({self._p(r)}, {self._p(x)}, (size_t)({self._size(x)}) * sizeof({ct}));",
        ]
        lin = self._index(ind, _shape(ind), idx)
        self._nest(ind, rank, [f"int64_t k = {self._p(ind)}[{lin}]; if (k < 0) k += {self._d(x, axis)}; "
                               f"if (k < 0 || k >= {self._d(x, axis)}) return 1;",
                               f"{ct} *dst = {self._p(r)} + ({dst}); const {ct} u = {self._p(upd)}[{lin}]; "
                               f"*dst = {combine.format('*dst', 'u')};"])

    def _conv_depthwise(self, o: Op) -> None:
        """One input channel per group (any channel multiplier): a direct loop per output element, the epilogue
        (bias, residual, activation) applied to it; conv.c's GEMM would multiply 1-row matrices."""
        c = self._conv_parts(o)
        x, w, b, z, r, st, pads, dil = c.x, c.w, c.b, c.z, c.r, c.st, c.pads, c.dil
        lo, hi, alpha = (_c_float(v) for v in c.params)
        finish = {"": "v", "Relu": "(v < 0.0f ? 0.0f : v)", "Clip": f"(v < {lo} ? {lo} : (v > {hi} ? {hi} : v))",
                  "LeakyRelu": f"(v < 0.0f ? {alpha} * v : v)"}[c.act]
        d = self._d
        px, pw, pr = self._p(x), self._p(w), self._p(r)
        bias = f"{self._p(b)}[m]" if b is not None else "0.0f"
        resid = f" + {self._p(z)}[yi]" if z is not None else ""
        self.lines += [
            c.check,
            "{",
            f"  const int64_t N = {d(x, 0)}, C = {d(x, 1)}, H = {c.h}, W = {c.wd}, M = {d(w, 0)}, KH = {c.kh}, "
            f"KW = {c.kw}, OH = {c.oh}, OW = {c.ow}, J = M / C;",
            f"  _Pragma(\"omp parallel for if(N * M * OH * OW * KH * KW >= {PARALLEL_MIN_WORK})\")",
            "  for (int64_t nm = 0; nm < N * M; nm++) {",
            "    const int64_t n = nm / M, m = nm % M, g = m / J;",
            f"    const float *xc = {px} + (n * C + g) * H * W; const float *wk = {pw} + m * KH * KW;",
            "    for (int64_t y = 0; y < OH; y++) {",
            f"      float *restrict yr = {pr} + (nm * OH + y) * OW;",
            f"      for (int64_t xo = 0; xo < OW; xo++) yr[xo] = {bias};",
            "      for (int64_t a = 0; a < KH; a++) {",
            f"        const int64_t ih = y * {st[0]} - {pads[0]} + a * {dil[0]}; if (ih < 0 || ih >= H) continue;",
            "        const float *restrict xr = xc + ih * W;",
            "        for (int64_t c = 0; c < KW; c++) {",
            # NOTE: the output columns whose tap lies inside the row, a contiguous range: the loop over them
            # vectorises (the taps are added in the reference's order, one output element at a time)
            f"          const int64_t off = c * {dil[1]} - {pads[1]}, sw = {st[1]};",
            "          int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw, hi = W - off > 0 ? (W - off + sw - 1) / sw : 0;",
            "          if (hi > OW) hi = OW;",
            "          const float wv = wk[a * KW + c];",
            "          _Pragma(\"omp simd\") for (int64_t xo = lo; xo < hi; xo++) yr[xo] += wv * xr[xo * sw + off];",
            "        }",
            "      }",
            "      for (int64_t xo = 0; xo < OW; xo++) {",
            f"        const int64_t yi = (nm * OH + y) * OW + xo; const float v = yr[xo]{resid}; yr[xo] = {finish};",
            "      }",
            "    }",
            "  }",
            "}",
        ]

    def _global_average_pool(self, o: Op) -> None:
        x = o.operands[0]
        assert x is not None
        r = o.results[0]
        rows, n = self._size(x, 0, 2), self._size(x, 2)
        self.lines += [
            f"_Pragma(\"omp parallel for if({self._size(x)} >= {PARALLEL_MIN_WORK})\")",
            f"for (int64_t row = 0; row < {rows}; row++) {{",
            f"  const int64_t n = {n}; const float *x = {self._p(x)} + row * n; double acc = 0.0;",
            "  _Pragma(\"omp simd reduction(+:acc)\") for (int64_t i = 0; i < n; i++) acc += x[i];",
            f"  {self._p(r)}[row] = (float)(acc / (double)n);",
            "}",
        ]

    def _split(self, o: Op) -> None:
        x = o.operands[0]
        assert x is not None
        rank = len(_shape(x))
        axis = _attr_int(o, "axis", 0) % rank
        ct = C_TYPES[_dtype(x)]
        total = " + ".join(self._d(r, axis) for r in o.results)
        self.lines += [f"if (({total}) != {self._d(x, axis)}) return 2;",
                       f"{{ int64_t off = 0; const int64_t outer = {self._size(x, 0, axis)}, inner_in = {self._size(x, axis)};"]
        for r in o.results:
            self.lines += [
                f"  {{ const int64_t inner = {self._size(r, axis)};",
                f"    for (int64_t q = 0; q < outer; q++) memcpy({self._p(r)} + q * inner, "
                f"{self._p(x)} + q * inner_in + off, (size_t)inner * sizeof({ct}));",
                "    off += inner; }",
            ]
        self.lines.append("}")

    def _range(self, o: Op) -> None:
        st, lim, dl = (self._p(v) for v in o.operands if v is not None)
        r = o.results[0]
        if _dtype(r) == DType.FLOAT:
            # as the reference: the count from double arithmetic, each value start + i * delta in double
            self.lines += [
                f"{{ const double st = {st}[0], lim = {lim}[0], dl = {dl}[0];",
                "  if (dl == 0.0) return 2;",
                "  double c = ceil((lim - st) / dl); const int64_t cnt = c > 0.0 ? (int64_t)c : 0;",
                f"  if (cnt != {self._d(r, 0)}) return 2;",
                f"  for (int64_t i = 0; i < cnt; i++) {self._p(r)}[i] = (float)(st + (double)i * dl);",
                "}",
            ]
            return
        self.lines += [
            f"{{ const int64_t st = {st}[0], lim = {lim}[0], dl = {dl}[0];",
            "  if (dl == 0) return 2;",
            "  const int64_t cnt = dl > 0 ? (lim > st ? (lim - st + dl - 1) / dl : 0) : (st > lim ? (st - lim - dl - 1) / (-dl) : 0);",
            f"  if (cnt != {self._d(r, 0)}) return 2;",
            f"  for (int64_t i = 0; i < cnt; i++) {self._p(r)}[i] = st + i * dl;",
            "}",
        ]

    def _arg(self, o: Op) -> None:
        x = o.operands[0]
        assert x is not None
        r = o.results[0]
        rank = len(_shape(x))
        axis = _attr_int(o, "axis", 0) % rank
        ct = C_TYPES[_dtype(x)]
        last = _attr_int(o, "select_last_index", 0)
        better = (">" if o.name == "ArgMax" else "<") + ("=" if last else "")
        nan = " || (v != v && best == best)" if _dtype(x) == DType.FLOAT else ""
        self.lines += [
            f"{{ const int64_t outer = {self._size(x, 0, axis)}, n = {self._d(x, axis)}, inner = {self._size(x, axis + 1)};",
            "  for (int64_t q = 0; q < outer; q++) for (int64_t t = 0; t < inner; t++) {",
            f"    const {ct} *src = {self._p(x)} + q * n * inner + t; {ct} best = src[0]; int64_t at = 0;",
            f"    for (int64_t j = 1; j < n; j++) {{ const {ct} v = src[j * inner]; if ((v {better} best{nan}) && "
            f"!(best != best)) {{ best = v; at = j; }} }}",
            f"    {self._p(r)}[q * inner + t] = at;",
            "  }",
            "}",
        ]

    def _reduce(self, o: Op) -> None:
        x = o.operands[0]
        assert x is not None
        r = o.results[0]
        axes = _reduce_axes(o)
        assert axes is not None
        rank = len(_shape(x))
        keep = _attr_int(o, "keepdims", 1)
        ct = C_TYPES[_dtype(x)]
        init = {"ReduceSum": "0", "ReduceMean": "0", "ReduceMax": "-INFINITY" if ct == "float" else "INT64_MIN",
                "ReduceMin": "INFINITY" if ct == "float" else "INT64_MAX"}[o.name]
        step = {"ReduceSum": "acc + v", "ReduceMean": "acc + v",
                "ReduceMax": "(v > acc || v != v) ? v : acc", "ReduceMin": "(v < acc || v != v) ? v : acc"}[o.name]
        self.lines.append(f"for (int64_t i = 0; i < {self._size(r)}; i++) {self._p(r)}[i] = {init};")
        idx = [f"i{a}" for a in range(rank)]
        # the result's index: the kept axes (keepdims: reduced ones at 0)
        out_expr = ""
        rd = 0
        for a in range(rank):
            if a in axes and not keep:
                continue
            i = "0" if a in axes else idx[a]
            out_expr = i if not out_expr else f"({out_expr}) * {self._d(r, rd)} + {i}"
            rd += 1
        self._nest(x, rank, [f"{ct} *dst = {self._p(r)} + ({out_expr or '0'}); const {ct} acc = *dst, "
                             f"v = {self._p(x)}[{self._index(x, _shape(x), idx)}]; *dst = {step};"])
        if o.name == "ReduceMean":
            count = " * ".join(self._d(x, a) for a in axes) or "1"
            self.lines.append(f"for (int64_t i = 0; i < {self._size(r)}; i++) {self._p(r)}[i] /= (float)({count});")

    def _expand(self, o: Op) -> None:
        x = o.operands[0]
        assert x is not None
        r = o.results[0]
        out = _shape(r)
        idx = [f"i{a}" for a in range(len(out))]
        self._loops(r, [f"{self._p(r)}[{self._index(r, out, idx)}] = {self._p(x)}[{self._index(x, out, idx)}];"])

    def _fill(self, o: Op) -> None:
        r = o.results[0]
        self.lines.append(f"for (int64_t i = 0; i < {self._size(r)}; i++) {self._p(r)}[i] = {_fill_value(o)};")

    def _gather(self, o: Op) -> None:
        d, ind = o.operands[0], o.operands[1]
        assert d is not None and ind is not None
        r = o.results[0]
        rank = len(_shape(d))
        axis = _attr_int(o, "axis", 0) % rank
        ct = C_TYPES[_dtype(r)]
        self.lines += [
            f"{{ const int64_t outer = {self._size(d, 0, axis)}, n = {self._size(ind)}, dim = {self._d(d, axis)}, "
            f"inner = {self._size(d, axis + 1)};",
            "  for (int64_t q = 0; q < outer; q++) for (int64_t j = 0; j < n; j++) {",
            f"    int64_t k = {self._p(ind)}[j]; if (k < 0) k += dim; if (k < 0 || k >= dim) return 1;",
            f"    const {ct} *src = {self._p(d)} + (q * dim + k) * inner; {ct} *dst = {self._p(r)} + (q * n + j) * inner;",
            "    for (int64_t t = 0; t < inner; t++) dst[t] = src[t];",
            "  }",
            "}",
        ]

    # -- running ---------------------------------------------------------------------------------
    def _plan(self, xs: Sequence[np.ndarray]) -> _Plan:
        env: dict[str, int] = {}
        for name, (k, a, expr, sym) in self.binders.items():
            if a < 0:
                if xs[k].size != 1:
                    raise _Mismatch(f"{name} is bound to a scalar input that has {xs[k].size} elements")
                env[name] = int(xs[k].reshape(-1)[0])
                continue
            actual = xs[k].shape[a]
            if expr is sym:
                env[name] = actual
            else:
                sol = sympy.solve(sympy.Eq(expr, actual), sym)
                if len(sol) != 1 or not sol[0].is_integer:
                    raise _Mismatch(f"{name} has no integer value for size {actual}")
                env[name] = int(sol[0])
        dims = self.dims_fn(env)
        if any(d is None or d < 0 for d in dims):
            raise _Mismatch("a size evaluates below 0")
        shapes: dict[Value, tuple[int, ...]] = {}
        for k, v in enumerate(self.values):
            shapes[v] = tuple(int(dims[self.dim_slot[(k, a)] - _FIXED] or 0) for a in range(len(_shape(v))))
        for k, v in enumerate(self.inputs):
            assert v is not None
            if shapes[v] != tuple(xs[k].shape):
                raise _Mismatch(f"input {k} has shape {tuple(xs[k].shape)}, the region's types say {shapes[v]}")
        offsets, arena = self._memory(shapes)
        extras = [fn(shapes) for fn in self.extras]
        arrays = [self._shape_expr(o, shapes) for o in self.plan_arrays]
        from pliant.runtime.blas_conv import BlasUnavailableError, sgemm

        try:
            address, ilp64 = sgemm()
        except BlasUnavailableError:
            address, ilp64 = 0, True
        conv = self._conv_address() if self.calls_conv_c else 0
        values = [address, int(ilp64), conv, GEMM_PARALLEL_WORK, WEIGHTS_PARALLEL_WORK, *[int(d or 0) for d in dims], *[offsets[k] for k in sorted(self.offset_slot)],
                  *extras]
        from pliant.kernels.compiled import data_pointers

        return _Plan((ctypes.c_int64 * max(1, len(values)))(*values), arena,
                     [shapes[v] for v in self.outputs], arrays, data_pointers(arrays))

    @staticmethod
    def _conv_address() -> int:
        from pliant.runtime import blas_conv

        return ctypes.cast(blas_conv._kernel(), ctypes.c_void_p).value or 0

    def _memory(self, shapes: dict[Value, tuple[int, ...]]) -> tuple[dict[int, int], int]:
        """Arena offsets (first fit over the region's order) of the values kept in the arena, and its size."""
        last: dict[Value, int] = {}
        for n, o in enumerate(self.ops):
            # NOTE: a fused attention reads its queries and keys at its second product (see _attention)
            extra = self.attention[o][0].operands if o in self.attention else []
            for v in [*o.operands, *extra]:
                if v is not None and v in self.storage:
                    last[self._root(v)] = n
            if o.domain == "pliant" and o.name == "Fused":
                for inner in o.regions["body"].block.walk():
                    for w in inner.operands:
                        if w is not None and w in self.storage:
                            last[self._root(w)] = n
        live: list[tuple[int, int, Value]] = []  # (offset, end, value)
        offsets: dict[int, int] = {}
        top = 0
        for n, o in enumerate(self.ops):
            for res in o.results:
                if self.storage[res][0] == "inside":
                    res = self._root(res)  # NOTE: the Concat's result, taken at its first piece
                if self.storage[res][0] != "arena" or self.vid[res] in offsets:
                    continue
                size = max(1, math.prod(shapes[res]) * NP_TYPES[_dtype(res)].itemsize)
                size = (size + _ALIGN - 1) // _ALIGN * _ALIGN
                at = 0
                for off, end, _ in sorted(live, key=lambda t: t[0]):
                    if at + size <= off:
                        break
                    at = max(at, end)
                live.append((at, at + size, res))
                offsets[self.vid[res]] = at
                top = max(top, at + size)
            live = [t for t in live if last.get(t[2], -1) > n]
        return offsets, top

    def _shape_expr(self, o: Op, shapes: dict[Value, tuple[int, ...]]) -> np.ndarray:
        from pliant.ops.shape_expr import _compiled

        if o.name == "Shape":
            x = o.operands[0]
            assert x is not None
            full = shapes[x]
            start, end = _attr_int(o, "start", 0), o.attrs.get("end")
            picked = full[start:int(end)] if isinstance(end, int) else full[start:]  # type: ignore[misc]
            if (len(picked),) != shapes[o.results[0]]:
                raise _Mismatch("Shape: the result's length differs from its type")
            return np.array(picked, dtype=np.int64)

        symbols = tuple(str(s) for s in o.attrs["symbols"])  # type: ignore[union-attr]
        bind = [int(b) for b in o.attrs["bind"]]  # type: ignore[union-attr, arg-type]
        env: dict[str, int] = {}
        for j, name in enumerate(symbols):
            src = o.operands[bind[2 * j]]
            assert src is not None
            if src not in shapes:
                raise _Mismatch(f"ShapeExpr reads the size of a value the region does not know: {src}")
            env[name] = shapes[src][bind[2 * j + 1]]
        vals = _compiled(tuple(str(e) for e in o.attrs["exprs"]), symbols)(env)  # type: ignore[union-attr]
        shape = tuple(int(d) for d in o.attrs["shape"])  # type: ignore[union-attr, arg-type]
        return np.array(vals, dtype=np.int64).reshape(shape)

    def load(self) -> None:
        """Compile (or fetch from the cache) the C function; raises CompilerNotFoundError/CompileError."""
        if self._fn is None:
            from pliant.kernels import cache
            from pliant.kernels.toolchain import find_toolchain

            assert self.source is not None
            self._fn = cache.load(self.source, find_toolchain()).fn
            self._fn_address = ctypes.cast(self._fn, ctypes.c_void_p).value or 0
            self._publish()
            self.source = None  # NOTE: kept only until loaded; a model's sources add up to megabytes

    def run(self, xs: list[Any]) -> list[np.ndarray]:
        """The region's outputs for inputs ``xs``; raises ``_Mismatch`` where it must run op by op.

        Constant inputs (weights) are the same arrays at every call: their pointers are taken once. The
        common path is one call into ``unit_call.c``; the Python path below makes new plans, raises the
        errors, and runs units where that C function cannot be built.
        """
        if self._call is not None:
            res = self._run_c(xs)
            if res is not None:
                return res
        return self._run_python(xs)

    def _run_c(self, xs: list[Any]) -> list[np.ndarray] | None:
        """The outputs through ``unit_call.c``, or None where the Python path must decide."""
        assert self._call is not None
        res = self._call(self._fn_address, xs, self._dyn_t, self._descrs, self._const_at, self._const_objs,
                         self._cplans, self._table_address)
        if res is None or type(res) is list:
            return res  # type: ignore[no-any-return]
        raise _Mismatch(f"the native unit returned {res}")

    def _run_python(self, xs: list[Any]) -> list[np.ndarray]:
        from pliant.kernels.compiled import data_pointers

        dyn, dtypes = self._dyn, self._in_dtypes
        for k in dyn:
            x = xs[k]
            if type(x) is not np.ndarray or not x.flags.c_contiguous or x.dtype != dtypes[k]:
                raise _Mismatch("an input is not a C-contiguous array of its type")
        key = tuple([xs[k].shape for k in dyn])
        if self._value_keys:
            key += tuple([int(xs[k].reshape(-1)[0]) if xs[k].size == 1 else None for k in self._value_keys])
        plan = self._plans[key] if key in self._plans else self._new_plan(key, xs)
        if plan is None:
            raise _Mismatch("this signature runs op by op")
        consts = self._consts
        if consts is None:
            consts = self._take_constants(xs)
        for k, obj in consts:
            if xs[k] is not obj:
                raise _Mismatch("a constant input changed")
        if self._call is not None:
            # NOTE: the plan and the constants are in place now: the C path takes the call (one arena per thread)
            res = self._run_c(xs)
            if res is not None:
                return res
        outs = [np.empty(shape, dt) for shape, dt in zip(plan.out_shapes, self._out_dtypes)]
        arena = getattr(_ARENA, "buffer", None)
        if arena is None or arena.nbytes < plan.arena_bytes:
            arena = _ARENA.buffer = np.empty(max(plan.arena_bytes, 64), np.uint8)
            _ARENA.address = data_pointers([arena])[0]
        ptrs = data_pointers([*[xs[k] for k in dyn], *outs])
        ptrs.append(_ARENA.address)
        ptrs += plan.array_ptrs
        ptrs.append(self._table_address)
        rc = self._fn(self._pointers(*ptrs), plan.sizes)
        if rc != 0:
            raise _Mismatch(f"the native unit returned {rc}")
        return outs

    def _new_plan(self, key: tuple[Any, ...], xs: list[Any]) -> _Plan | None:
        try:
            if any(type(x) is not np.ndarray or not x.flags.c_contiguous for x in xs):
                raise _Mismatch("an input is not a C-contiguous array")
            plan: _Plan | None = self._plan(xs)
        except _Mismatch:
            plan = None
        with self._lock:
            if len(self._plans) >= MAX_PLANS:
                old = next(iter(self._plans))
                self._plans.pop(old)  # NOTE: the oldest signature goes
                self._cplans.pop(old, None)
            self._plans[key] = plan
            if plan is not None and not self._value_keys:
                # NOTE: what unit_call.c reads; the plan object (last) keeps the sizes and arrays alive
                self._cplans[key] = (ctypes.addressof(plan.sizes), plan.arena_bytes, tuple(plan.out_shapes),
                                     self._out_dtypes, tuple(plan.array_ptrs), plan)
        return plan

    def _take_constants(self, xs: list[Any]) -> list[tuple[int, np.ndarray]]:
        from pliant.kernels.compiled import data_pointers

        consts = [(k, xs[k]) for k in range(len(xs)) if k not in set(self._dyn)]
        for k, x in consts:
            if type(x) is not np.ndarray or not x.flags.c_contiguous or x.dtype != self._in_dtypes[k]:
                raise _Mismatch("a constant input is not a C-contiguous array of its type")
        table = (ctypes.c_void_p * max(1, len(consts)))(*data_pointers([x for _, x in consts]))
        with self._lock:
            self._table, self._table_address, self._consts = table, ctypes.addressof(table), consts
            self._const_at, self._const_objs = tuple(k for k, _ in consts), tuple(x for _, x in consts)
            if self._fn is not None and not self._value_keys:
                from pliant.runtime.unit_call import runner

                self._call = runner()
            self._publish()
        return consts

    def _publish(self) -> None:
        """Hand the C path's arguments to the block executor (once the unit and its constants are in place)."""
        self.c_args[1:] = [None, None]
        self.c_args[0] = None if self._call is None or not self._fn_address else (
            self._fn_address, self._dyn_t, self._descrs, self._const_at, self._const_objs, self._cplans,
            self._table_address)


MISMATCH = _Mismatch

# NOTE: one arena per thread for every unit of every model: a unit uses it only while its native call runs
# (its results go to arrays of their own), and a thread runs one unit at a time
_ARENA = threading.local()


def arena_bytes() -> int:
    """The size of this thread's arena: the C path's (``unit_call``) where it runs, else the Python path's."""
    from pliant.runtime.unit_call import arena_size

    buffer = getattr(_ARENA, "buffer", None)
    return max(arena_size(), 0 if buffer is None else int(buffer.nbytes))


def _c_float(v: float) -> str:
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return f"{v!r}f"


_PARALLEL_IF = re.compile(r'^(\s*)_Pragma\("omp parallel for ((?:[a-z]+(?:\(\d+\))? )*)if\((.*)\)"\)\s*$')


def _serial_branches(lines: list[str], count: list[int] | None = None) -> list[str]:
    """Each loop under ``omp parallel for ... if(cond)`` as ``if (cond) { parallel loop } else { loop }``.

    An inactive parallel region still goes through the OpenMP runtime (a team of
    one): 0.36 us a loop here, and a unit runs dozens of small ones (YOLO's heads,
    MoE's routing).  The loop (the statement after the pragma) ends where its
    braces balance; in the serial copy ``simd`` stays as ``omp simd``.  With GCC
    the serial copy is a nested function (``serial_<n>``, called in place, never
    taken by address: no trampoline), so that the unit's function stays as small
    as the parallel loops' outlining kept it: inline, a BERT unit took 3.8 s to
    compile instead of 1.5 (register allocation over one function of every loop);
    nested, 2.7 s.  Other compilers get it inline.
    """
    out: list[str] = []
    count = [0] if count is None else count
    i = 0
    while i < len(lines):
        m = _PARALLEL_IF.match(lines[i])
        if m is None:
            out.append(lines[i])
            i += 1
            continue
        indent, clauses, cond = m.group(1), m.group(2).split(), m.group(3)
        j, depth, opened = i + 1, 0, False
        while j < len(lines):
            depth += lines[j].count("{") - lines[j].count("}")
            opened = opened or "{" in lines[j]
            j += 1
            if opened and depth == 0:
                break
        loop = _serial_branches(lines[i + 1:j], count)
        together = " ".join(clauses)
        serial = [f'{indent}_Pragma("omp simd")'] if "simd" in clauses else []
        name = f"serial_{count[0]}"
        count[0] += 1
        out += [f"{indent}if ({cond}) {{", f'{indent}_Pragma("omp parallel for{" " + together if together else ""}")',
                *loop, f"{indent}}} else {{",
                "#if SERIAL_NESTED", f"{indent}__attribute__((noinline)) void {name}(void) {{", *serial, *loop,
                f"{indent}}}", f"{indent}{name}();",
                "#else", *serial, *loop,
                "#endif", f"{indent}}}"]
        i = j
    return out


def _vector_decls(lines: list[str]) -> list[str]:
    """``simd`` declarations of the libm functions the code calls that libmvec vectorises (as the kernel layer's)."""
    from pliant.kernels.toolchain import find_toolchain

    tc = find_toolchain()
    if not tc.openmp_simd:
        return []
    text = "\n".join(lines)
    return [f'float {fn}f(float{", float" if fn in ("pow", "atan2", "hypot") else ""}) __attribute__((simd("notinbranch")));'
            for fn in sorted(tc.vector_math) if re.search(rf"\b{fn}f\(", text)]


def _gemm_defines() -> str:
    from pliant.runtime import blas_conv

    return "\n".join([f"#define GEMM_{name} {getattr(blas_conv, name)}" for name in
                       ("BLOCK_FLOATS", "K_BLOCK", "DIRECT_WASTE")] + [f"#define GEMM_PANEL {PACK_PANEL}",
                                                                    f"#define GEMM_BATCH_WORK {BATCH_PARALLEL_WORK}",
                                                                    f"#define GEMM_BATCH_READ {BATCH_PARALLEL_READ}",
                                                                    f"#define GEMM_PANELS_WORK {PANELS_PARALLEL_WORK}"])


_PRELUDE = r"""
#ifdef _OPENMP
#include <omp.h>
#endif
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
/* whether `count` products of `each` multiply-adds (and `read` elements of B each) run in parallel, one per
 * thread at a time (each on one thread): where there are enough of them to share evenly and enough work (or
 * enough to read) to pay for waking the threads */
static int batch_in_parallel(int64_t count, int64_t each, int64_t read) {
#ifdef _OPENMP
    const int t = omp_get_max_threads();
    return GEMM_BATCH_WORK > 0 && t > 1 && count >= 2
           && (count * each >= GEMM_BATCH_WORK || count * read >= GEMM_BATCH_READ)
           && (count % t == 0 || count >= 4 * t);
#else
    (void)count, (void)each, (void)read;
    return 0;
#endif
}
typedef void (*sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                           const float *, int64_t, float, float *, int64_t);
typedef void (*sgemm32_fn)(int, int, int, int, int, int, float, const float *, int,
                           const float *, int, float, float *, int);
/* B (k x n; tb 1: given as B^T, n x k) as panels of GEMM_PANEL columns, d[p][q][c] = B[q][p * GEMM_PANEL + c],
 * zeros past column n (gemm_t's tb 2) */
static void pack_panels(const float *restrict b, int tb, int64_t k, int64_t n, float *restrict d) {
    for (int64_t p0 = 0; p0 < n; p0 += GEMM_PANEL, d += k * GEMM_PANEL) {
        const int64_t w = n - p0 < GEMM_PANEL ? n - p0 : GEMM_PANEL;
        if (tb) {
            if (w < GEMM_PANEL) memset(d, 0, (size_t)(k * GEMM_PANEL) * sizeof(float));
            for (int64_t c = 0; c < w; c++) {
                const float *restrict br = b + (p0 + c) * k;
                for (int64_t q = 0; q < k; q++) d[q * GEMM_PANEL + c] = br[q];
            }
        } else {
            for (int64_t q = 0; q < k; q++) {
                memcpy(d + q * GEMM_PANEL, b + q * n + p0, (size_t)w * sizeof(float));
                if (w < GEMM_PANEL) memset(d + q * GEMM_PANEL + w, 0, (size_t)(GEMM_PANEL - w) * sizeof(float));
            }
        }
    }
}
/* rows 2-4 of C (MR) against panels [lo, hi) of B: each row of B's panel meets every row of A while it is in
 * registers, MR * GEMM_PANEL sums (a panel is read once, not once per row) */
#define PACKED_ROWS(MR) \
static void packed_rows##MR(int64_t n, int64_t k, float alpha, const float *restrict a, const float *restrict b, \
                            float *restrict c, int64_t lo, int64_t hi) { \
    for (int64_t p = lo; p < hi; p++) { \
        const int64_t p0 = p * GEMM_PANEL, w = n - p0 < GEMM_PANEL ? n - p0 : GEMM_PANEL; \
        const float *restrict bp = b + p0 * k; \
        float acc[MR][GEMM_PANEL] = {{0.0f}}; \
        for (int64_t q = 0; q < k; q++) { \
            const float *restrict bq = bp + q * GEMM_PANEL; \
            for (int i = 0; i < MR; i++) { \
                const float av = a[i * k + q]; \
                _Pragma("omp simd") for (int cc = 0; cc < GEMM_PANEL; cc++) acc[i][cc] += av * bq[cc]; \
            } \
        } \
        for (int i = 0; i < MR; i++) \
            for (int64_t cc = 0; cc < w; cc++) c[i * n + p0 + cc] = alpha * acc[i][cc]; \
    } \
}
PACKED_ROWS(2)
PACKED_ROWS(3)
PACKED_ROWS(4)
/* C = alpha * op(A) * B, columns of panels [lo, hi) of B (panels of GEMM_PANEL columns, see gemm_t).  Not
 * inlined: in the outlined body of gemm_t's parallel region its loops were not vectorised (12x the time) */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void packed_panels(int ta, int64_t m, int64_t n, int64_t k, float alpha, const float *restrict a,
                          const float *restrict b, float *restrict c, int64_t lo, int64_t hi) {
    if (!ta && m >= 2 && m <= 4) {
        if (m == 2) packed_rows2(n, k, alpha, a, b, c, lo, hi);
        else if (m == 3) packed_rows3(n, k, alpha, a, b, c, lo, hi);
        else packed_rows4(n, k, alpha, a, b, c, lo, hi);
        return;
    }
    /* each row of C meets a panel in one pass over it, GEMM_PANEL sums in registers (the panel stays in cache
     * for the next row); row i of op(A) is ar[q * as] (one loop the compiler vectorises for both layouts: with
     * the choice inside, it vectorised neither) */
    const int64_t as = ta ? m : 1;
    for (int64_t p = lo; p < hi; p++) {
        const int64_t p0 = p * GEMM_PANEL, w = n - p0 < GEMM_PANEL ? n - p0 : GEMM_PANEL;
        const float *restrict bp = b + p0 * k;
        for (int64_t i = 0; i < m; i++) {
            const float *restrict ar = ta ? a + i : a + i * k;
            float acc[GEMM_PANEL] = {0.0f};
            for (int64_t q = 0; q < k; q++) {
                const float av = ar[q * as];
                const float *restrict bq = bp + q * GEMM_PANEL;
                _Pragma("omp simd") for (int cc = 0; cc < GEMM_PANEL; cc++) acc[cc] += av * bq[cc];
            }
            for (int64_t cc = 0; cc < w; cc++) c[i * n + p0 + cc] = alpha * acc[cc];
        }
    }
}
/* C (m x n) = alpha * op(A) * op(B); A is (m x k) or, transposed, (k x m); B (k x n), or (n x k) (tb 1), or
 * (tb 2) panels of GEMM_PANEL columns (b[p][q][c] = B[q][p * GEMM_PANEL + c], zeros past column n) */
static void gemm_t(const int64_t *s, int64_t par, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *restrict a, const float *restrict b, float *restrict c, const float *restrict bias) {
    int biased = 0; /* the bias (along the columns, or NULL) was added in conv.c's epilogue */
    if (tb == 2 && (m <= 4 || m * n * k < SMALL_MATMUL || s[2] == 0)) goto packed;
    if (tb && (m <= 4 || m * n * k < SMALL_MATMUL || s[0] == 0)) {
        /* rows of B are the columns of op(B): one contiguous dot product per element of C, four at a time
         * (four independent sums: one sum is a chain of dependent adds, bound by their latency); the four
         * rows of B stay in cache while every row of A meets them, so B is read from memory once */
        int64_t j = 0;
        if (!ta) {
            for (; j + 4 <= n; j += 4) {
                const float *restrict b0 = b + j * k, *restrict b1 = b0 + k, *restrict b2 = b1 + k, *restrict b3 = b2 + k;
                for (int64_t i = 0; i < m; i++) {
                    const float *restrict ar = a + i * k;
                    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
                    _Pragma("omp simd reduction(+:s0, s1, s2, s3)") for (int64_t q = 0; q < k; q++) {
                        const float x = ar[q];
                        s0 += x * b0[q];
                        s1 += x * b1[q];
                        s2 += x * b2[q];
                        s3 += x * b3[q];
                    }
                    float *restrict cr = c + i * n + j;
                    cr[0] = alpha * s0;
                    cr[1] = alpha * s1;
                    cr[2] = alpha * s2;
                    cr[3] = alpha * s3;
                }
            }
        }
        for (; j < n; j++) {
            const float *restrict br = b + j * k;
            for (int64_t i = 0; i < m; i++) {
                float acc = 0.0f;
                if (!ta) {
                    const float *restrict ar = a + i * k;
                    _Pragma("omp simd reduction(+:acc)") for (int64_t q = 0; q < k; q++) acc += ar[q] * br[q];
                } else {
                    for (int64_t q = 0; q < k; q++) acc += a[q * m + i] * br[q];
                }
                c[i * n + j] = alpha * acc;
            }
        }
        goto done;
    }
    if (m <= 4 || m * n * k < SMALL_MATMUL || s[0] == 0) {
        /* four rows of B per pass over each row of C (a third of the loads and stores of C), every row of A
         * meeting them while they are in cache: B is read from memory once */
        for (int64_t i = 0; i < m * n; i++) c[i] = 0.0f;
        int64_t q = 0;
        if (!ta) {
            for (; q + 4 <= k; q += 4) {
                const float *restrict b0 = b + q * n, *restrict b1 = b0 + n, *restrict b2 = b1 + n, *restrict b3 = b2 + n;
                for (int64_t i = 0; i < m; i++) {
                    const float a0 = alpha * a[i * k + q], a1 = alpha * a[i * k + q + 1];
                    const float a2 = alpha * a[i * k + q + 2], a3 = alpha * a[i * k + q + 3];
                    float *restrict cr = c + i * n;
                    for (int64_t j = 0; j < n; j++) cr[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
                }
            }
        }
        for (; q < k; q++) {
            const float *restrict br = b + q * n;
            for (int64_t i = 0; i < m; i++) {
                const float av = alpha * (ta ? a[q * m + i] : a[i * k + q]);
                float *restrict cr = c + i * n;
                for (int64_t j = 0; j < n; j++) cr[j] += av * br[j];
            }
        }
        goto done;
    }
    if (s[2] != 0) {
        /* conv.c's GEMM: C (m x n) = A (m x k) B (k x n) is a 1x1 convolution of a one-pixel-high image B of
         * k channels and n columns by m filters A.  A given transposed is transposed into a scratch buffer of
         * this thread first (m*k copies against m*n*k multiply-adds); B given transposed conv.c packs from
         * B^T itself, tile by tile (S_BT) */
        static __thread float *scratch = NULL;
        static __thread int64_t scratch_n = 0;
        const int64_t need = ta ? m * k : 0;
        if (need > scratch_n) {
            free(scratch);
            scratch = (float *)malloc((size_t)need * sizeof(float));
            scratch_n = scratch ? need : 0;
        }
        if (need == 0 || scratch) {
            const float *aa = a;
            if (ta) {
                for (int64_t i = 0; i < m; i++)
                    for (int64_t q = 0; q < k; q++) scratch[i * k + q] = a[q * m + i];
                aa = scratch;
            }
            static const float no_params[3] = {0.0f, 0.0f, 0.0f};
            /* the bias as z, one row added to every row of C (S_ZROW), where alpha does not scale it */
            const float *zb = alpha == 1.0f ? bias : NULL;
            const int64_t cs[27] = {1, k, 1, n, m, 1, 1, 1, n, 1, 1, 1, 1, 0, 0, 1, 0,
                                    GEMM_BLOCK_FLOATS, GEMM_K_BLOCK, par, GEMM_DIRECT_WASTE, tb, zb != NULL, 0, 0, 0, 0};
            void *cp[6] = {(void *)b, (void *)aa, NULL, (void *)zb, (void *)c, (void *)no_params};
            if (((int (*)(void **, const int64_t *))(intptr_t)s[2])(cp, cs) == 0) {
                biased = zb != NULL;
                if (alpha != 1.0f)
                    for (int64_t i = 0; i < m * n; i++) c[i] *= alpha;
                goto done;
            }
        }
    }
    if (tb == 2) goto packed;
    void *f = (void *)(intptr_t)s[0];
    const int oa = ta ? TRANS : NO_TRANS, ob = tb ? TRANS : NO_TRANS;
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    if (s[1]) ((sgemm64_fn)f)(ROW_MAJOR, oa, ob, m, n, k, alpha, a, lda, b, ldb, 0.0f, c, n);
    else ((sgemm32_fn)f)(ROW_MAJOR, oa, ob, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, 0.0f, c, (int)n);
    goto done;
packed:
    {
        /* the panels shared out over the threads, each thread the same ones at every call (its share of the
         * weights stays in its own cache from one call to the next), where there are enough multiply-adds
         * to pay for waking the threads: a product of a few rows reads its weights once, at memory speed */
        const int64_t np = (n + GEMM_PANEL - 1) / GEMM_PANEL;
#ifdef _OPENMP
        if (par != INT64_MAX && np >= 2 && m * n * k >= (par < GEMM_PANELS_WORK ? par : GEMM_PANELS_WORK)
                && omp_get_max_threads() > 1 && !omp_in_parallel()) {
            _Pragma("omp parallel") {
                const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
                packed_panels(ta, m, n, k, alpha, a, b, c, np * t / nt, np * (t + 1) / nt);
            }
        } else
#endif
            packed_panels(ta, m, n, k, alpha, a, b, c, 0, np);
    }
done:
    if (bias && !biased)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * n + j] += bias[j];
}
"""
