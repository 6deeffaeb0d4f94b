"""Symbolic values: small integer tensors whose elements are dims.

Exported models compute shapes at run time: ``Shape -> Gather -> Concat ->
Reshape``, ``Shape -> Range``, ``Shape -> ConstantOfShape``.  The shape
analysis follows these chains by giving such tensors a *symbolic value*: an
object array (its shape the tensor's static shape) whose elements are dims
(``int``, ``Sym`` or None for an element not known).  Booleans are the ints 0
and 1; a float tensor holding small integers (a ``Cast`` of a shape) keeps
exact rational elements so that ``Floor``/``Ceil``/``Cast`` back to int work.

This module holds the machinery that the ops' value rules (``value=`` in
``register``) are written with; each rule sits next to its op.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

from pliant.ir.dims import (
    Dim,
    Sym,
    d_add,
    d_floordiv,
    d_max,
    d_min,
    d_mod,
    d_mul,
    d_sub,
    dims_equal,
    provably_le,
    sym_dim,
)
from pliant.ir.types import TensorType
from pliant.ops.registry import InferContext

MAX_ELEMENTS = 64
"""Tensors with more elements than this are not tracked."""

SymArray = np.ndarray
"""An object array of dims."""


def from_constant(c: np.ndarray | None) -> SymArray | None:
    """The symbolic value of a constant: integer and boolean tensors up to ``MAX_ELEMENTS``."""
    if c is None:
        return None
    c = np.asarray(c)
    if c.dtype.kind not in "iubf" or c.size > MAX_ELEMENTS:
        return None
    out = np.empty(c.shape, dtype=object)
    flat = out.reshape(-1)
    for k, v in enumerate(c.reshape(-1).tolist()):
        if c.dtype.kind != "f" or float(v).is_integer():
            flat[k] = int(v)
            continue
        # NOTE: a float holding a simple fraction (a 0.5 scale) is kept exact; others are not tracked
        if not np.isfinite(v):
            return None
        frac = Fraction(v).limit_denominator(1024)
        if c.dtype.type(frac.numerator / frac.denominator) != c.dtype.type(v):
            return None
        flat[k] = Sym(sympy.Rational(frac.numerator, frac.denominator))
    return out


def array(elements: list[Dim], shape: tuple[int, ...]) -> SymArray:
    out = np.empty(len(elements), dtype=object)
    for k, e in enumerate(elements):
        out[k] = e
    return out.reshape(shape)


def is_known(v: SymArray | None) -> bool:
    """Whether every element of ``v`` is known."""
    return v is not None and all(e is not None for e in v.reshape(-1))


def static_shape(t: Any) -> tuple[int, ...] | None:
    """The shape of a tensor type when every dim is an int."""
    if isinstance(t, TensorType) and t.shape is not None and all(isinstance(d, int) for d in t.shape):
        return tuple(t.shape)  # type: ignore[arg-type]
    return None


def elementwise(fn: Callable[..., Dim], *args: SymArray) -> SymArray | None:
    """``fn`` applied element by element with NumPy broadcasting (None where any input is None)."""

    def safe(*xs: Dim) -> Dim:
        if any(x is None for x in xs):
            return None
        try:
            return fn(*xs)
        except (TypeError, ValueError, ZeroDivisionError):
            return None

    try:
        out = np.frompyfunc(safe, len(args), 1)(*args)
    except ValueError:
        return None
    return np.asarray(out, dtype=object)


# -- element arithmetic ---------------------------------------------------------


def _nonneg(d: Dim) -> bool:
    return d is not None and provably_le(0, d)


def _trunc_div(a: Dim, b: Dim) -> Dim:
    """Integer division rounding toward zero (ONNX's ``Div`` on integers)."""
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            return None
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b > 0) else -q
    if _nonneg(a) and _nonneg(b):
        return d_floordiv(a, b)
    return None


def _exact_div(a: Dim, b: Dim) -> Dim:
    """Exact division, for float tensors holding integers (may be a rational)."""
    if b == 0 or a is None or b is None:
        return None
    ea = sympy.Integer(a) if isinstance(a, int) else a.expr
    eb = sympy.Integer(b) if isinstance(b, int) else b.expr
    q = sympy.cancel(ea / eb)
    if q.is_Integer:
        return int(q)
    return Sym(q)


def _fmod(a: Dim, b: Dim) -> Dim:
    if _nonneg(a) and isinstance(b, int) and b > 0:
        return d_mod(a, b)
    return None


def _floor(a: Dim) -> Dim:
    return a if isinstance(a, int) else sym_dim(sympy.floor(a.expr)) if a is not None else None


def _ceil(a: Dim) -> Dim:
    return a if isinstance(a, int) else sym_dim(sympy.ceiling(a.expr)) if a is not None else None


def _to_int(a: Dim) -> Dim:
    """A cast to an integer type: truncation, exact for values proven >= 0."""
    if a is None or isinstance(a, int):
        return a
    if a.expr.is_integer:
        return sym_dim(a.expr)
    if _nonneg(a):
        return sym_dim(sympy.floor(a.expr))
    return None


def _bool(x: bool) -> int:
    return 1 if x else 0


def _eq(a: Dim, b: Dim) -> Dim:
    if dims_equal(a, b):
        return 1
    if isinstance(a, int) and isinstance(b, int):
        return 0
    if provably_le(d_add(a, 1), b) or provably_le(d_add(b, 1), a):
        return 0
    return None


def _lt(a: Dim, b: Dim) -> Dim:
    if provably_le(d_add(a, 1), b):
        return 1
    if provably_le(b, a):
        return 0
    return None


def _le(a: Dim, b: Dim) -> Dim:
    if provably_le(a, b):
        return 1
    if provably_le(d_add(b, 1), a):
        return 0
    return None


def _where(c: Dim, x: Dim, y: Dim) -> Dim:
    if c == 1:
        return x
    if c == 0:
        return y
    return None


BINARY: dict[str, Callable[[Dim, Dim], Dim]] = {
    "Add": d_add,
    "Sub": d_sub,
    "Mul": d_mul,
    "Max": d_max,
    "Min": d_min,
    "Equal": _eq,
    "Less": _lt,
    "LessOrEqual": _le,
    "Greater": lambda a, b: _lt(b, a),
    "GreaterOrEqual": lambda a, b: _le(b, a),
    "And": lambda a, b: _bool(bool(a) and bool(b)) if isinstance(a, int) and isinstance(b, int) else (0 if 0 in (a, b) else None),
    "Or": lambda a, b: _bool(bool(a) or bool(b)) if isinstance(a, int) and isinstance(b, int) else (1 if 1 in (a, b) else None),
}


def _is_float(ctx: InferContext, i: int) -> bool:
    t = ctx.input(i)
    return isinstance(t, TensorType) and t.dtype is not None and t.dtype.is_float


# -- value rules, used by the ops' registrations ---------------------------------


def binary_value(ctx: InferContext) -> list[SymArray | None]:
    """Add, Sub, Mul, Div, Mod, Max, Min, comparisons, And, Or: element by element."""
    vals = [ctx.value(i) for i in range(len(ctx.input_types))]
    if not vals or any(v is None for v in vals):
        return [None]
    name = ctx.name
    fn: Callable[[Dim, Dim], Dim]
    if name == "Div":
        fn = _exact_div if _is_float(ctx, 0) else _trunc_div
    elif name == "Mod":
        fn = _fmod
    elif name in BINARY:
        fn = BINARY[name]
    else:
        return [None]
    acc = vals[0]
    for v in vals[1:]:
        acc = elementwise(fn, acc, v)  # type: ignore[arg-type]
        if acc is None:
            return [None]
    return [acc]


def unary_value(ctx: InferContext) -> list[SymArray | None]:
    """Neg, Abs, Not, Floor, Ceil, Identity-like ops."""
    v = ctx.value(0)
    if v is None:
        return [None]
    fns: dict[str, Callable[[Dim], Dim]] = {
        "Neg": lambda a: d_mul(a, -1),
        "Abs": lambda a: abs(a) if isinstance(a, int) else a if _nonneg(a) else None,
        "Not": lambda a: 1 - a if isinstance(a, int) else None,
        "Floor": _floor,
        "Ceil": _ceil,
        "Identity": lambda a: a,
    }
    fn = fns.get(ctx.name)
    return [None] if fn is None else [elementwise(fn, v)]


def where_value(ctx: InferContext) -> list[SymArray | None]:
    c, x, y = ctx.value(0), ctx.value(1), ctx.value(2)
    if c is None or x is None or y is None:
        return [None]
    return [elementwise(_where, c, x, y)]


def cast_value(ctx: InferContext) -> list[SymArray | None]:
    """Cast/CastLike: ints stay; a float -> int cast truncates; bool casts map nonzero to 1."""
    v = ctx.value(0)
    if v is None:
        return [None]
    from pliant.ir.dtypes import DType

    to = ctx.attrs.get("to")
    if ctx.name == "CastLike":
        t = ctx.input(1)
        to_dt = t.dtype if isinstance(t, TensorType) else None
    else:
        to_dt = DType(int(to)) if to is not None else None
    if to_dt is None:
        return [None]
    if to_dt == DType.BOOL:
        return [elementwise(lambda a: _bool(a != 0) if isinstance(a, int) else (1 if _nonneg(d_sub(a, 1)) else None), v)]
    if to_dt.is_float:
        return [v]
    if to_dt.numpy.kind in "iu":
        return [elementwise(_to_int, v)]
    return [None]


def same_elements(ctx: InferContext) -> list[SymArray | None]:
    """Reshape, Flatten, Squeeze, Unsqueeze, Identity: the elements, in the output's static shape.

    The output shape is taken from the op's own shape rule (run first by the analysis).
    """
    v = ctx.value(0)
    if v is None:
        return [None]
    return [v.reshape(-1)]


def shape_value(ctx: InferContext) -> list[SymArray | None]:
    """Shape: the input's dims (between ``start`` and ``end``)."""
    t = ctx.input(0)
    if not isinstance(t, TensorType) or t.shape is None:
        return [None]
    from pliant.ops.shape import shape_bounds

    start, end = shape_bounds(ctx, len(t.shape))
    return [array(list(t.shape[start:end]), (max(end - start, 0),))]


def size_value(ctx: InferContext) -> list[SymArray | None]:
    t = ctx.input(0)
    if not isinstance(t, TensorType) or t.shape is None:
        return [None]
    acc: Dim = 1
    for d in t.shape:
        acc = d_mul(acc, d)
    return [array([acc], ())]


def reduce_all(fn: Callable[[Dim, Dim], Dim]) -> Callable[[InferContext], list[SymArray | None]]:
    """ReduceProd/ReduceSum/ReduceMax/ReduceMin over every axis, or over a 1-D input."""

    def rule(ctx: InferContext) -> list[SymArray | None]:
        v = ctx.value(0)
        if v is None:
            return [None]
        from pliant.ops.reduce import reduce_axes_of

        axes = reduce_axes_of(ctx, v.ndim)
        if axes is None:
            return [None]
        keep = bool(int(ctx.attr("keepdims", 1)))
        moved = np.moveaxis(v, axes, list(range(len(axes)))) if axes else v.reshape((1, *v.shape))
        n = len(axes) if axes else 1
        rest = moved.shape[n:]
        flat = moved.reshape((-1, *rest)) if rest else moved.reshape(-1, 1)
        out = np.empty(flat.shape[1:] if rest else (1,), dtype=object)
        for idx in np.ndindex(*out.shape):
            col = flat[(slice(None), *idx)] if rest else flat[:, 0]
            acc: Dim = col[0] if len(col) else None
            for e in col[1:]:
                acc = fn(acc, e) if acc is not None and e is not None else None
            out[idx] = acc
        if not rest:
            out = out.reshape(())
        if keep:
            shape = [1 if k in axes else s for k, s in enumerate(v.shape)] if axes else [1] * v.ndim
            out = out.reshape(shape)
        return [out]

    return rule


def concat_value(ctx: InferContext) -> list[SymArray | None]:
    vals = [ctx.value(i) for i in range(len(ctx.input_types))]
    if not vals or any(v is None for v in vals):
        return [None]
    axis = int(ctx.attr("axis", 0))
    try:
        return [np.concatenate(vals, axis=axis)]  # type: ignore[arg-type]
    except (ValueError, np.exceptions.AxisError):
        return [None]


def gather_value(ctx: InferContext) -> list[SymArray | None]:
    data, idx = ctx.value(0), ctx.value(1)
    if data is None or idx is None or any(not isinstance(i, int) for i in idx.reshape(-1)):
        return [None]
    axis = int(ctx.attr("axis", 0))
    try:
        n = data.shape[axis]
        ii = np.array([i + n if i < 0 else i for i in idx.reshape(-1)], dtype=np.int64).reshape(idx.shape)
        return [np.take(data, ii, axis=axis)]
    except (IndexError, ValueError, np.exceptions.AxisError):
        return [None]


def slice_value(ctx: InferContext) -> list[SymArray | None]:
    """Slice of a tracked tensor with constant starts/ends/axes/steps."""
    data = ctx.value(0)
    if data is None:
        return [None]
    from pliant.ops.indexing import slice_params

    if ctx.opset >= 10:
        parts = [ctx.const(i) for i in range(1, 5)]
        if any(p is None and ctx.input(i + 1) is not None for i, p in enumerate(parts)):
            return [None]
        params = slice_params(ctx, data.ndim, parts[0], parts[1], parts[2], parts[3], ValueError)
    else:
        params = slice_params(ctx, data.ndim, None, None, None, None, ValueError)
    sl: list[slice] = [slice(None)] * data.ndim
    for a, s, e, p in params:
        n = data.shape[a]
        s = max(min(s + n if s < 0 else s, n), 0) if p > 0 else max(min(s + n if s < 0 else s, n - 1), -1)
        e = max(min(e + n if e < 0 else e, n), 0) if p > 0 else max(min(e + n if e < 0 else e, n - 1), -1)
        sl[a] = slice(s, e if e >= 0 else None, p)
    return [data[tuple(sl)]]


def range_value(ctx: InferContext) -> list[SymArray | None]:
    s, lim, d = (ctx.value(i) for i in range(3))
    if s is None or lim is None or d is None:
        return [None]
    start, delta = s.reshape(-1)[0], d.reshape(-1)[0]
    from pliant.ops.creation import range_length

    n = range_length(start, lim.reshape(-1)[0], delta)
    if not isinstance(n, int) or n > MAX_ELEMENTS or start is None or not isinstance(delta, int):
        return [None]
    return [array([d_add(start, k * delta) for k in range(n)], (n,))]


def constant_of_shape_value(ctx: InferContext) -> list[SymArray | None]:
    dims = ctx.dims(0)
    if dims is None or any(not isinstance(d, int) for d in dims):
        return [None]
    shape = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    if int(np.prod(shape)) > MAX_ELEMENTS:
        return [None]
    v = ctx.attrs.get("value")
    fill = np.asarray(v).reshape(-1)[0] if v is not None else 0
    if np.asarray(fill).dtype.kind not in "iub":
        return [None]
    out = np.empty(shape, dtype=object)
    out.fill(int(fill))
    return [out]


def expand_value(ctx: InferContext) -> list[SymArray | None]:
    v, dims = ctx.value(0), ctx.dims(1)
    if v is None or dims is None or any(not isinstance(d, int) for d in dims):
        return [None]
    try:
        shape = np.broadcast_shapes(v.shape, tuple(int(d) for d in dims))  # type: ignore[arg-type]
    except ValueError:
        return [None]
    if int(np.prod(shape)) > MAX_ELEMENTS:
        return [None]
    return [np.array(np.broadcast_to(v, shape), dtype=object)]
