"""Elementwise operators: unary math, broadcasting binary ops, variadic ops,
activations, logical ops and casts.

Floating-point kernels compute in float32 (float64 for double inputs) and round
the result back to the input's type, so half, bfloat16 and float8 inputs get
correctly rounded answers without relying on NumPy loops for ``ml_dtypes`` types.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops import symvalue
from pliant.ops.infer import broadcast, broadcast_bool, broadcast_shapes, same_as_input, tensor_input
from pliant.ops.numerics import is_float_dtype
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

UNARY = "unary"
BINARY = "binary"
VARIADIC = "variadic"
ACTIVATION = "activation"
CAST = "cast"
LOGICAL = "logical"

Array = np.ndarray
Fn = Callable[[Array], Array]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


# -- helpers -------------------------------------------------------------------



def _is_small_int(dt: np.dtype[Any]) -> bool:
    """int4/uint4/int2/uint2 (ml_dtypes types NumPy does no integer arithmetic on)."""
    return dt in (_I4, _U4, _I2, _U2)


def _compute_dtype(dt: np.dtype[Any]) -> np.dtype[Any]:
    return _F64 if dt == _F64 else _F32


def _float_op(x: Array, fn: Fn) -> Array:
    """Apply ``fn`` in float32 (float64 for doubles) and round back to ``x``'s type."""
    ct = _compute_dtype(x.dtype)
    xc = x if x.dtype == ct else x.astype(ct)
    return np.asarray(fn(xc)).astype(x.dtype, copy=False)


def _float_op2(a: Array, b: Array, fn: Callable[[Array, Array], Array]) -> Array:
    """Binary float op computed as in ``_float_op``; the result has ``a``'s type."""
    ct = _compute_dtype(a.dtype)
    ac = a if a.dtype == ct else a.astype(ct)
    bc = b if b.dtype == ct else b.astype(ct)
    return np.asarray(fn(ac, bc)).astype(a.dtype, copy=False)


def _legacy_b(ctx: KernelContext, a: Array, b: Array) -> Array:
    """Before opset 7, binary ops broadcast ``b`` onto ``a`` starting at ``axis``."""
    if ctx.opset < 7 and ctx.attr("broadcast", 0):
        axis = ctx.attr("axis")
        if axis is not None and b.ndim < a.ndim:
            ax = axis + a.ndim if axis < 0 else axis
            if not 0 <= ax <= a.ndim - b.ndim:
                raise OpRuntimeError(f"legacy broadcast axis {axis} does not fit shapes {a.shape} and {b.shape}")
            b = b.reshape(b.shape + (1,) * (a.ndim - ax - b.ndim))
    return b


def _same_dtype(idxs: tuple[int, ...] | None = None) -> Callable[[InferContext], None]:
    """A check that inputs ``idxs`` (all when None) share one element type, as their schema's T demands."""

    def check(ctx: InferContext) -> None:
        seen: DType | None = None
        for i, t in enumerate(ctx.input_types):
            if idxs is not None and i not in idxs:
                continue
            if not isinstance(t, TensorType) or t.dtype is None:
                continue
            if seen is None:
                seen = t.dtype
            elif t.dtype != seen:
                raise ShapeInferenceError(
                    f"{ctx.name}: input types disagree: {seen.short} and {t.dtype.short} (input {i}); they must be equal"
                )

    return check


def _checked(rule: Callable[[InferContext], list[Type]], idxs: tuple[int, ...] | None = None) -> Callable[[InferContext], list[Type]]:
    """``rule`` after checking that inputs ``idxs`` have one element type."""
    check = _same_dtype(idxs)

    def infer(ctx: InferContext) -> list[Type]:
        check(ctx)
        return rule(ctx)

    infer.__name__ = getattr(rule, "__name__", "infer")
    return infer


def _binary_infer(ctx: InferContext) -> list[Type]:
    """Multidirectional broadcast; before opset 7 the result has input 0's shape."""
    if ctx.opset < 7:
        return same_as_input(ctx)
    return broadcast(ctx)


def _binary_bool_infer(ctx: InferContext) -> list[Type]:
    if ctx.opset < 7:
        t = tensor_input(ctx, 0)
        return [TensorType(DType.BOOL, t.shape if t is not None else None)]
    return broadcast_bool(ctx)


def _unary_bool_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    return [TensorType(DType.BOOL, t.shape if t is not None else None)]


def _check_int_divisor(b: Array, op: str) -> None:
    if b.dtype.kind in "iu" and not np.all(b):
        raise OpRuntimeError(f"{op}: integer division by zero (divisor {b.tolist() if b.size <= 16 else 'has zeros'})")


# -- erf -------------------------------------------------------------------------

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def erf(x: Array) -> Array:
    """The error function in float64, accurate to a few ulps.

    For |x| < 3 the everywhere-positive series
    ``erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (2n+1)!!``;
    beyond, ``erfc`` by its continued fraction
    ``exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))``.
    """
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    out = np.empty_like(ax)
    # NOTE: the series runs per magnitude band, so small inputs stop after few terms.
    for lo, hi in ((0.0, 0.75), (0.75, 1.75), (1.75, 3.0)):
        band = (ax >= lo) & (ax < hi)
        xs = ax[band]
        if not xs.size:
            continue
        x2 = xs * xs
        term = xs.copy()
        total = xs.copy()
        for n in range(1, 200):
            term = term * (2.0 * x2 / (2 * n + 1))
            total += term
            if np.all(term <= 1e-17 * total):
                break
        out[band] = _TWO_OVER_SQRT_PI * np.exp(-x2) * total
    big = ~(ax < 3.0)
    xl = ax[big]
    if xl.size:
        f = xl.copy()
        for k in range(80, 0, -1):
            f = xl + (0.5 * k) / f
        out[big] = 1.0 - np.exp(-xl * xl) / (math.sqrt(math.pi) * f)
    return np.copysign(out, x)


# -- unary math ------------------------------------------------------------------

def _sign(x: Array) -> Array:
    if is_float_dtype(x.dtype):
        return _float_op(x, np.sign)
    if x.dtype.kind == "u":
        return (x != 0).astype(x.dtype)
    return np.sign(x).astype(x.dtype, copy=False)


def _abs(x: Array) -> Array:
    if is_float_dtype(x.dtype):
        return _float_op(x, np.abs)
    if x.dtype.kind == "u":
        return x.copy()
    return np.abs(x).astype(x.dtype, copy=False)


def _neg(x: Array) -> Array:
    if is_float_dtype(x.dtype):
        return _float_op(x, np.negative)
    return np.negative(x).astype(x.dtype, copy=False)


_FLOAT_UNARY: dict[str, Fn] = {
    "Acos": np.arccos,
    "Acosh": np.arccosh,
    "Asin": np.arcsin,
    "Asinh": np.arcsinh,
    "Atan": np.arctan,
    "Atanh": np.arctanh,
    "Ceil": np.ceil,
    "Cos": np.cos,
    "Cosh": np.cosh,
    "Erf": erf,
    "Exp": np.exp,
    "Floor": np.floor,
    "Log": np.log,
    "Reciprocal": np.reciprocal,
    "Round": np.round,  # NOTE: NumPy rounds half to even, as ONNX specifies
    "Sin": np.sin,
    "Sinh": np.sinh,
    "Sqrt": np.sqrt,
    "Tan": np.tan,
    "Tanh": np.tanh,
}


def _make_float_unary(name: str, fn: Fn) -> Callable[..., Array]:
    def kernel(ctx: KernelContext, x: Array) -> Array:
        if name == "Erf" and x.dtype.kind in "iu":
            return np.rint(erf(x.astype(np.float64))).astype(x.dtype)
        return _float_op(x, fn)

    kernel.__name__ = name.lower()
    kernel.__doc__ = f"{name}, elementwise."
    return kernel


for _name, _fn in _FLOAT_UNARY.items():
    register(_name, Dynamism.ISDOS, family=UNARY, infer=same_as_input,
             value=symvalue.unary_value if _name in ("Floor", "Ceil") else None)(_make_float_unary(_name, _fn))


@register("Abs", Dynamism.ISDOS, family=UNARY, infer=same_as_input, value=symvalue.unary_value)
def abs_(ctx: KernelContext, x: Array) -> Array:
    return _abs(x)


@register("Neg", Dynamism.ISDOS, family=UNARY, infer=same_as_input, value=symvalue.unary_value)
def neg(ctx: KernelContext, x: Array) -> Array:
    return _neg(x)


@register("Sign", Dynamism.ISDOS, family=UNARY, infer=same_as_input)
def sign(ctx: KernelContext, x: Array) -> Array:
    return _sign(x)


@register("IsNaN", Dynamism.ISDOS, family=(UNARY, LOGICAL), infer=_unary_bool_infer)
def isnan(ctx: KernelContext, x: Array) -> Array:
    if not is_float_dtype(x.dtype):
        return np.zeros(x.shape, dtype=bool)
    return np.isnan(x if x.dtype.kind == "f" else x.astype(np.float32))


@register("IsInf", Dynamism.ISDOS, family=(UNARY, LOGICAL), infer=_unary_bool_infer)
def isinf(ctx: KernelContext, x: Array) -> Array:
    if not is_float_dtype(x.dtype):
        return np.zeros(x.shape, dtype=bool)
    xf = x if x.dtype.kind == "f" else x.astype(np.float32)
    pos = bool(ctx.attr("detect_positive", 1))
    negv = bool(ctx.attr("detect_negative", 1))
    out = np.isinf(xf)
    if not pos:
        out &= xf < 0
    if not negv:
        out &= xf > 0
    return out


@register("Not", Dynamism.ISDOS, family=(UNARY, LOGICAL), infer=same_as_input, value=symvalue.unary_value)
def not_(ctx: KernelContext, x: Array) -> Array:
    return np.logical_not(x)


@register("BitwiseNot", Dynamism.ISDOS, family=UNARY, infer=same_as_input)
def bitwise_not(ctx: KernelContext, x: Array) -> Array:
    return np.invert(x).astype(x.dtype, copy=False)


# -- binary arithmetic -----------------------------------------------------------

def _arith(ctx: KernelContext, a: Array, b: Array, fn: Callable[[Array, Array], Array]) -> Array:
    b = _legacy_b(ctx, a, b)
    if is_float_dtype(a.dtype):
        return _float_op2(a, b, fn)
    if _is_small_int(a.dtype):
        return _wrap_int(fn(a.astype(np.int64), b.astype(np.int64)), a.dtype)
    return np.asarray(fn(a, b)).astype(a.dtype, copy=False)


@register("Add", Dynamism.ISDOS, family=BINARY, infer=_checked(_binary_infer), value=symvalue.binary_value)
def add(ctx: KernelContext, a: Array, b: Array) -> Array:
    return _arith(ctx, a, b, np.add)


@register("Sub", Dynamism.ISDOS, family=BINARY, infer=_checked(_binary_infer), value=symvalue.binary_value)
def sub(ctx: KernelContext, a: Array, b: Array) -> Array:
    return _arith(ctx, a, b, np.subtract)


@register("Mul", Dynamism.ISDOS, family=BINARY, infer=_checked(_binary_infer), value=symvalue.binary_value)
def mul(ctx: KernelContext, a: Array, b: Array) -> Array:
    return _arith(ctx, a, b, np.multiply)


def _int_trunc_div(a: Array, b: Array) -> Array:
    """Integer division rounding toward zero (NumPy's // rounds toward -inf)."""
    q = np.floor_divide(a, b)
    if a.dtype.kind == "i" or b.dtype.kind == "i":
        fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        q = q + fix.astype(q.dtype)
    return q


@register("Div", Dynamism.ISDOS, family=BINARY, infer=_checked(_binary_infer), value=symvalue.binary_value)
def div(ctx: KernelContext, a: Array, b: Array) -> Array:
    b = _legacy_b(ctx, a, b)
    if is_float_dtype(a.dtype):
        return _float_op2(a, b, np.divide)
    _check_int_divisor(b, "Div")
    if _is_small_int(a.dtype):
        return _wrap_int(_int_trunc_div(a.astype(np.int64), b.astype(np.int64)), a.dtype)
    return _int_trunc_div(a, b).astype(a.dtype, copy=False)


@register("Mod", Dynamism.ISDOS, family=BINARY, infer=_checked(broadcast), value=symvalue.binary_value)
def mod(ctx: KernelContext, a: Array, b: Array) -> Array:
    fmod = bool(ctx.attr("fmod", 0))
    fn = np.fmod if fmod else np.mod
    if is_float_dtype(a.dtype):
        return _float_op2(a, b, fn)
    _check_int_divisor(b, "Mod")
    return np.asarray(fn(a, b)).astype(a.dtype, copy=False)


def _int_pow(a: Array, e: Array) -> Array:
    """Integer power in ``a``'s type (wrapping); negative exponents truncate 1/a^n toward zero."""
    e64 = e.astype(np.int64)
    neg_e = e64 < 0
    work = a.astype(np.int64) if a.dtype.kind == "i" or _is_small_int(a.dtype) else a.astype(np.uint64)
    pos = np.power(work, np.where(neg_e, 0, e64).astype(work.dtype))
    if np.any(neg_e):
        if np.any(neg_e & (work == 0)):
            raise OpRuntimeError("Pow: zero raised to a negative integer power")
        odd = (e64 % 2) != 0
        inv = np.where(work == 1, 1, np.where(work == -1, np.where(odd, -1, 1), 0)) if work.dtype.kind == "i" else (work == 1)
        pos = np.where(neg_e, inv.astype(work.dtype), pos)
    return _wrap_int(pos, a.dtype) if _is_small_int(a.dtype) else pos.astype(a.dtype)


@register("Pow", Dynamism.ISDOS, family=BINARY, infer=_binary_infer)
def pow_(ctx: KernelContext, a: Array, b: Array) -> Array:
    b = _legacy_b(ctx, a, b)
    if is_float_dtype(a.dtype):
        if a.dtype == _F32 and b.dtype == _F32:
            return np.power(a, b)
        ct = _F64 if (a.dtype == _F64 or not is_float_dtype(b.dtype) or b.dtype == _F64) else _F32
        return np.power(a.astype(ct), b.astype(ct)).astype(a.dtype)
    if is_float_dtype(b.dtype):
        r = np.power(a.astype(np.float64), b.astype(np.float64))
        return _cast_array(r, DType.from_numpy(a.dtype), True, "up")
    return _int_pow(a, b)


def _shift_kernel(ctx: KernelContext, x: Array, y: Array) -> Array:
    direction = str(ctx.attr("direction", "")).upper()
    if direction not in ("LEFT", "RIGHT"):
        raise OpRuntimeError(f"BitShift direction must be LEFT or RIGHT, got '{direction}'")
    bits = x.dtype.itemsize * 8
    y64 = y.astype(np.int64) if y.dtype.kind == "i" else y.astype(np.uint64).astype(np.float64)
    bad = (y64 < 0) | (y64 >= bits)
    amount = np.where(bad, 0, y64).astype(np.int64)
    if direction == "LEFT":
        ux = x.view(np.dtype(f"u{x.dtype.itemsize}"))
        shifted = np.left_shift(ux, amount.astype(ux.dtype)).astype(ux.dtype).view(x.dtype)
        fill = np.zeros((), dtype=x.dtype)
        return np.where(bad, fill, shifted).astype(x.dtype, copy=False)
    shifted = np.right_shift(x, amount.astype(x.dtype)).astype(x.dtype, copy=False)
    fill_arr = np.where(x < 0, -1, 0).astype(x.dtype) if x.dtype.kind == "i" else np.zeros((), dtype=x.dtype)
    return np.where(bad, fill_arr, shifted).astype(x.dtype, copy=False)


@register("BitShift", Dynamism.ISDOS, family=BINARY, infer=_checked(broadcast))
def bitshift(ctx: KernelContext, x: Array, y: Array) -> Array:
    x, y = np.broadcast_arrays(x, y)
    return _shift_kernel(ctx, np.ascontiguousarray(x), np.ascontiguousarray(y))


def _make_bitwise(fn: Callable[[Array, Array], Array]) -> Callable[..., Array]:
    def kernel(ctx: KernelContext, a: Array, b: Array) -> Array:
        return np.asarray(fn(a, b)).astype(a.dtype, copy=False)

    return kernel


register("BitwiseAnd", Dynamism.ISDOS, family=BINARY, infer=_checked(broadcast))(_make_bitwise(np.bitwise_and))
register("BitwiseOr", Dynamism.ISDOS, family=BINARY, infer=_checked(broadcast))(_make_bitwise(np.bitwise_or))
register("BitwiseXor", Dynamism.ISDOS, family=BINARY, infer=_checked(broadcast))(_make_bitwise(np.bitwise_xor))


# -- logical and comparisons -------------------------------------------------------

def _make_logical(fn: Callable[[Array, Array], Array]) -> Callable[..., Array]:
    def kernel(ctx: KernelContext, a: Array, b: Array) -> Array:
        b = _legacy_b(ctx, a, b)
        return np.asarray(fn(a.astype(bool, copy=False), b.astype(bool, copy=False)), dtype=bool)

    return kernel


register("And", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(_binary_bool_infer), value=symvalue.binary_value)(_make_logical(np.logical_and))
register("Or", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(_binary_bool_infer), value=symvalue.binary_value)(_make_logical(np.logical_or))
register("Xor", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(_binary_bool_infer))(_make_logical(np.logical_xor))


def _comparable(a: Array, b: Array) -> tuple[Array, Array]:
    """Operands NumPy can compare: ml_dtypes floats go through float32, small ints through int8."""
    if a.dtype.kind == "O" or b.dtype.kind == "O":
        return a, b
    if a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
        if is_float_dtype(a.dtype) or is_float_dtype(b.dtype):
            return a.astype(np.float32), b.astype(np.float32)
        return a.astype(np.int64), b.astype(np.int64)
    return a, b


def _make_compare(fn: Callable[[Array, Array], Array]) -> Callable[..., Array]:
    def kernel(ctx: KernelContext, a: Array, b: Array) -> Array:
        b = _legacy_b(ctx, a, b)
        a, b = _comparable(a, b)
        return np.asarray(fn(a, b), dtype=bool)

    return kernel


def _string_equal(a: Array, b: Array) -> Array:
    return np.asarray(np.equal(a.astype(object), b.astype(object)), dtype=bool)


@register("Equal", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(_binary_bool_infer), value=symvalue.binary_value)
def equal(ctx: KernelContext, a: Array, b: Array) -> Array:
    b = _legacy_b(ctx, a, b)
    if a.dtype.kind == "O" or b.dtype.kind == "O":
        return _string_equal(a, b)
    a, b = _comparable(a, b)
    return np.asarray(np.equal(a, b), dtype=bool)


register("Greater", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(_binary_bool_infer), value=symvalue.binary_value)(_make_compare(np.greater))
register("GreaterOrEqual", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(broadcast_bool), value=symvalue.binary_value)(
    _make_compare(np.greater_equal)
)
register("Less", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(_binary_bool_infer), value=symvalue.binary_value)(_make_compare(np.less))
register("LessOrEqual", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(broadcast_bool), value=symvalue.binary_value)(_make_compare(np.less_equal))


def _where_infer(ctx: InferContext) -> list[Type]:
    shapes = [t.shape if isinstance(t, TensorType) else None for t in ctx.input_types]
    t1 = tensor_input(ctx, 1)
    return [TensorType(t1.dtype if t1 is not None else None, broadcast_shapes(shapes, f"{ctx.name}: "))]


@register("Where", Dynamism.ISDOS, family=(BINARY, LOGICAL), infer=_checked(_where_infer, (1, 2)), value=symvalue.where_value)
def where(ctx: KernelContext, cond: Array, x: Array, y: Array) -> Array:
    out = np.where(cond.astype(bool, copy=False), x, y)
    return out.astype(x.dtype, copy=False)


@register("PRelu", Dynamism.ISDOS, family=(BINARY, ACTIVATION), infer=_checked(same_as_input))
def prelu(ctx: KernelContext, x: Array, slope: Array) -> Array:
    s = slope
    try:
        np.broadcast_shapes(x.shape, s.shape)
        ok = np.broadcast_shapes(x.shape, s.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        # NOTE: before opset 7 a 1-D slope of size C applied per channel (axis 1).
        if s.ndim == 1 and x.ndim >= 2 and s.shape[0] == x.shape[1]:
            s = s.reshape((s.shape[0],) + (1,) * (x.ndim - 2))
        else:
            raise OpRuntimeError(f"PRelu: slope of shape {slope.shape} does not broadcast to input shape {x.shape}")
    if is_float_dtype(x.dtype):
        return _float_op2(x, s, lambda a, b: np.where(a < 0, a * b, a))
    return np.where(x < 0, x * s, x).astype(x.dtype, copy=False)


# -- variadic ---------------------------------------------------------------------

def _variadic(name: str, xs: tuple[Array, ...], fn: Callable[[Array, Array], Array]) -> Array:
    arrs = [x for x in xs if x is not None]
    if not arrs:
        raise OpRuntimeError(f"{name} needs at least one input")
    dt = arrs[0].dtype
    if is_float_dtype(dt):
        ct = _compute_dtype(dt)
        acc = arrs[0].astype(ct)
        for x in arrs[1:]:
            acc = fn(acc, x.astype(ct))
        return acc
    if _is_small_int(dt):
        acc = arrs[0].astype(np.int64)
        for x in arrs[1:]:
            acc = fn(acc, x.astype(np.int64))
        return acc
    acc = arrs[0]
    for x in arrs[1:]:
        acc = fn(acc, x)
    return np.asarray(acc)


@register("Max", Dynamism.ISDOS, family=VARIADIC, infer=_checked(broadcast), value=symvalue.binary_value)
def max_(ctx: KernelContext, *xs: Array) -> Array:
    dt = xs[0].dtype
    return _back(_variadic("Max", xs, np.maximum), dt)


@register("Min", Dynamism.ISDOS, family=VARIADIC, infer=_checked(broadcast), value=symvalue.binary_value)
def min_(ctx: KernelContext, *xs: Array) -> Array:
    dt = xs[0].dtype
    return _back(_variadic("Min", xs, np.minimum), dt)


@register("Sum", Dynamism.ISDOS, family=VARIADIC, infer=_checked(broadcast))
def sum_(ctx: KernelContext, *xs: Array) -> Array:
    dt = xs[0].dtype
    return _back(_variadic("Sum", xs, np.add), dt)


@register("Mean", Dynamism.ISDOS, family=VARIADIC, infer=_checked(broadcast))
def mean(ctx: KernelContext, *xs: Array) -> Array:
    dt = xs[0].dtype
    n = sum(1 for x in xs if x is not None)
    total = _variadic("Mean", xs, np.add)
    if is_float_dtype(dt):
        return (total / n).astype(dt)
    return _back(_int_trunc_div(total, np.asarray(n, dtype=total.dtype)), dt)


def _back(r: Array, dt: np.dtype[Any]) -> Array:
    if _is_small_int(dt):
        return _wrap_int(r, dt)
    return np.asarray(r).astype(dt, copy=False)


# -- activations -------------------------------------------------------------------

def _act(name: str, fn: Callable[[Array, KernelContext], Array], int_ok: bool = False) -> None:
    def kernel(ctx: KernelContext, x: Array) -> Array:
        if not is_float_dtype(x.dtype):
            if int_ok:
                return np.asarray(fn(x, ctx)).astype(x.dtype, copy=False)
            raise OpRuntimeError(f"{name} takes floating-point input, got {x.dtype}")
        return _float_op(x, lambda v: fn(v, ctx))

    kernel.__name__ = name.lower()
    register(name, Dynamism.ISDOS, family=ACTIVATION, infer=same_as_input)(kernel)


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x: Array) -> Array:
    return np.logaddexp(np.zeros((), dtype=x.dtype), x)


def _f(ctx: KernelContext, name: str, default: float, x: Array) -> Any:
    """A float attribute as a scalar of ``x``'s compute type."""
    return x.dtype.type(ctx.attr(name, default))


_act("Relu", lambda x, c: np.maximum(x, np.zeros((), dtype=x.dtype)), int_ok=True)
_act("LeakyRelu", lambda x, c: np.where(x < 0, x * _f(c, "alpha", 0.01, x), x))
_act("Elu", lambda x, c: np.where(x > 0, x, _f(c, "alpha", 1.0, x) * np.expm1(np.minimum(x, 0))))
_act(
    "Selu",
    lambda x, c: _f(c, "gamma", 1.0507010221481323, x)
    * np.where(x > 0, x, _f(c, "alpha", 1.6732631921768188, x) * np.expm1(np.minimum(x, 0))),
)
_act(
    "Celu",
    lambda x, c: np.maximum(x, 0)
    + np.minimum(0, _f(c, "alpha", 1.0, x) * np.expm1(np.minimum(x, 0) / _f(c, "alpha", 1.0, x))),
)
_act("HardSigmoid", lambda x, c: np.clip(_f(c, "alpha", 0.2, x) * x + _f(c, "beta", 0.5, x), 0, 1))
_act("HardSwish", lambda x, c: x * np.clip(x / x.dtype.type(6) + x.dtype.type(0.5), 0, 1))
_act("Mish", lambda x, c: x * np.tanh(_softplus(x)))
_act("Sigmoid", lambda x, c: _sigmoid(x))
_act("Softplus", lambda x, c: _softplus(x))
_act("Softsign", lambda x, c: x / (1 + np.abs(x)))
_act("Swish", lambda x, c: x * _sigmoid(_f(c, "alpha", 1.0, x) * x))
_act("ThresholdedRelu", lambda x, c: np.where(x > _f(c, "alpha", 1.0, x), x, 0))


def _gelu(x: Array, ctx: KernelContext) -> Array:
    approx = str(ctx.attr("approximate", "none"))
    if approx == "tanh":
        k = x.dtype.type(math.sqrt(2.0 / math.pi))
        return 0.5 * x * (1 + np.tanh(k * (x + x.dtype.type(0.044715) * x * x * x)))
    if approx != "none":
        raise OpRuntimeError(f"Gelu approximate must be 'none' or 'tanh', got '{approx}'")
    return (0.5 * x.astype(np.float64) * (1 + erf(x.astype(np.float64) / math.sqrt(2.0)))).astype(x.dtype)


_act("Gelu", _gelu)


@register("Shrink", Dynamism.ISDOS, family=ACTIVATION, infer=same_as_input)
def shrink(ctx: KernelContext, x: Array) -> Array:
    lambd = float(ctx.attr("lambd", 0.5))
    bias = float(ctx.attr("bias", 0.0))
    if is_float_dtype(x.dtype):
        return _float_op(x, lambda v: np.where(v < -lambd, v + bias, np.where(v > lambd, v - bias, 0)))
    # NOTE: integer inputs: compare in float64, add the bias and wrap back to the type.
    xf = x.astype(np.float64)
    r = np.where(xf < -lambd, xf + bias, np.where(xf > lambd, xf - bias, 0))
    return _cast_array(r, DType.from_numpy(x.dtype), True, "up")


@register("Clip", Dynamism.ISDOS, family=ACTIVATION, infer=_checked(same_as_input), note="min/max are attributes before opset 11")
def clip(ctx: KernelContext, x: Array, lo: Array | None = None, hi: Array | None = None) -> Array:
    if ctx.opset < 11:
        lo_v: Any = ctx.attr("min", -3.4028234663852886e38)
        hi_v: Any = ctx.attr("max", 3.4028234663852886e38)
    else:
        lo_v = None if lo is None or lo.size == 0 else lo.reshape(-1)[0]
        hi_v = None if hi is None or hi.size == 0 else hi.reshape(-1)[0]
        for what, v in (("min", lo), ("max", hi)):
            if v is not None and v.size > 1:
                raise OpRuntimeError(f"Clip {what} must be a scalar, got shape {v.shape}")

    def f(v: Array) -> Array:
        r = v
        if lo_v is not None:
            r = np.maximum(r, np.asarray(lo_v).astype(v.dtype))
        if hi_v is not None:
            r = np.minimum(r, np.asarray(hi_v).astype(v.dtype))
        return r

    if is_float_dtype(x.dtype):
        return _float_op(x, f)
    if _is_small_int(x.dtype):
        return f(x.astype(np.int64)).astype(x.dtype)
    return np.asarray(f(x)).astype(x.dtype, copy=False)


# -- casts --------------------------------------------------------------------------

_I4 = np.dtype(ml_dtypes.int4)
_U4 = np.dtype(ml_dtypes.uint4)
_I2 = np.dtype(ml_dtypes.int2)
_U2 = np.dtype(ml_dtypes.uint2)
_SMALL_INT_BITS: dict[np.dtype[Any], tuple[int, bool]] = {_I4: (4, True), _U4: (4, False), _I2: (2, True), _U2: (2, False)}
_F8_SATURATING = {
    DType.FLOAT8E4M3FN,
    DType.FLOAT8E4M3FNUZ,
    DType.FLOAT8E5M2,
    DType.FLOAT8E5M2FNUZ,
    DType.FLOAT6E2M3,
    DType.FLOAT6E3M2,
}


def _wrap_int(v: Array, dt: np.dtype[Any]) -> Array:
    """Integers (any NumPy int type) wrapped into the 2- or 4-bit type ``dt``."""
    bits, signed = _SMALL_INT_BITS[dt]
    m = np.asarray(v).astype(np.int64) & ((1 << bits) - 1)
    if signed:
        m = np.where(m >= (1 << (bits - 1)), m - (1 << bits), m)
    return m.astype(np.int8 if signed else np.uint8).astype(dt)


def _widen(x: Array) -> Array:
    """ml_dtypes values as a NumPy type that holds them exactly (float32 or int64)."""
    if x.dtype.kind in "biufcO":
        return x
    if _is_small_int(x.dtype):
        return x.astype(np.int64)
    return x.astype(np.float32)


def _to_e8m0(x: Array, saturate: bool, round_mode: str) -> Array:
    """Float values to FLOAT8E8M0 (powers of two 2^(e-127), e in 0..254; 255 is NaN)."""
    if round_mode not in ("up", "down", "nearest"):
        raise OpRuntimeError(f"Cast round_mode must be 'up', 'down' or 'nearest', got '{round_mode}'")
    v = np.abs(np.asarray(x, dtype=np.float64))  # NOTE: negative inputs are undefined; their magnitude is used
    m, e = np.frexp(v)  # v = m * 2^e, m in [0.5, 1)
    k = (e - 1).astype(np.int64)  # floor(log2 v)
    if round_mode == "up":
        k = k + (m != 0.5)
    elif round_mode == "nearest":
        k = k + (m >= 0.75)
    biased = k + 127
    nan_code, max_code = 255, 254
    out = np.where(biased > max_code, max_code if saturate else nan_code, biased)
    out = np.where(biased < 0, 0 if saturate else nan_code, out)
    out = np.where(v == 0, 0 if saturate else nan_code, out)
    out = np.where(np.isinf(v), max_code if saturate else nan_code, out)
    out = np.where(np.isnan(v), nan_code, out)
    return out.astype(np.uint8).view(ml_dtypes.float8_e8m0fnu)


def _float_str(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "INF" if v > 0 else "-INF"
    return str(v)


def _to_string(x: Array) -> Array:
    """Numbers to their text: shortest round-trip form for floats, 'NaN'/'INF'/'-INF' specials."""
    if x.dtype.kind == "O":
        return x.copy()
    if x.dtype.kind in "US":
        return x.astype(object)
    flat = x.reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    if x.dtype == np.bool_:
        for i, b in enumerate(flat.tolist()):
            out[i] = "1" if b else "0"
    elif x.dtype.kind in "iu":
        for i, n in enumerate(flat.tolist()):
            out[i] = str(n)
    else:
        for i, s in enumerate(flat):
            out[i] = str(s) if math.isfinite(float(s)) else _float_str(float(s))
    return out.reshape(x.shape)


def _parse_number(s: Any, want_int: bool) -> float | int:
    text = s.decode("utf-8") if isinstance(s, bytes) else str(s)
    t = text.strip()
    if want_int:
        try:
            return int(t)
        except ValueError:
            pass
    low = t.lower()
    if low in ("true", "false"):
        return 1 if low == "true" else 0
    try:
        f = float(t)
    except ValueError:
        raise OpRuntimeError(f"Cast cannot read the string {text!r} as a number") from None
    return int(f) if want_int and math.isfinite(f) else f


def _from_string(x: Array, to: DType, saturate: bool, round_mode: str) -> Array:
    flat = x.reshape(-1)
    if to.is_int:
        vals = [_parse_number(s, True) for s in flat]
        if to in (DType.INT64, DType.INT32, DType.INT16, DType.INT8, DType.INT4, DType.INT2):
            arr = np.array([int(v) for v in vals], dtype=object)
            # NOTE: wrap through Python ints so values beyond int64 do not raise.
            arr = np.array([((int(v) + (1 << 63)) % (1 << 64)) - (1 << 63) for v in arr], dtype=np.int64)
        else:
            arr = np.array([int(v) % (1 << 64) for v in vals], dtype=np.uint64)
        return _cast_array(arr.reshape(x.shape), to, saturate, round_mode)
    if to == DType.BOOL:
        return np.array([_parse_number(s, False) != 0 for s in flat], dtype=bool).reshape(x.shape)
    vals_f = np.array([float(_parse_number(s, False)) for s in flat], dtype=np.float64).reshape(x.shape)
    return _cast_array(vals_f, to, saturate, round_mode)


def _cast_array(x: Array, to: DType, saturate: bool, round_mode: str) -> Array:
    """``x`` converted to ``to`` by ONNX Cast's rules."""
    if to == DType.STRING:
        return _to_string(x)
    if x.dtype.kind in "OUS":
        return _from_string(x, to, saturate, round_mode)
    tgt = to.numpy
    if x.dtype == tgt:
        return x.copy()
    src_float = is_float_dtype(x.dtype)
    w = _widen(x)
    if to == DType.BOOL:
        return np.asarray(w != 0, dtype=bool)
    if to in _F8_SATURATING:
        v = w if src_float else w.astype(np.float64)
        if saturate:
            fmax = float(ml_dtypes.finfo(tgt).max)
            v = np.clip(v, -fmax, fmax)
        return v.astype(tgt)
    if to == DType.FLOAT8E8M0:
        return _to_e8m0(w, saturate, round_mode)
    if to in (DType.INT4, DType.UINT4, DType.INT2, DType.UINT2):
        if src_float:
            w = np.trunc(w.astype(np.float64))
            w = np.where(np.isfinite(w), w, 0).astype(np.int64)
        return _wrap_int(w, tgt)
    if tgt.kind in "iu" and src_float and w.dtype.kind == "f" and w.dtype != _F32 and w.dtype != _F64:
        w = w.astype(np.float32)
    if tgt.kind not in "biufc" and w.dtype.kind in "iub":
        # NOTE: integers reach ml_dtypes float types through float64 (exact below 2^53).
        w = w.astype(np.float64)
    return w.astype(tgt)


def _to_attr(ctx: InferContext) -> DType | None:
    to = ctx.attr("to")
    if to is None:
        return None
    try:
        return DType.from_onnx(int(to))
    except ValueError as e:
        raise ShapeInferenceError(f"{ctx.name}: attribute 'to': {e}") from None


def _cast_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    dt = _to_attr(ctx)
    return [TensorType(dt, t.shape if t is not None else None)]


def _castlike_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    like = tensor_input(ctx, 1)
    return [TensorType(like.dtype if like is not None else None, t.shape if t is not None else None)]


def _cast_to(ctx: KernelContext) -> DType:
    to = ctx.attr("to")
    if to is None:
        raise OpRuntimeError("Cast needs the 'to' attribute")
    try:
        return DType.from_onnx(int(to))
    except ValueError as e:
        raise OpRuntimeError(f"Cast: {e}") from None


@register("Cast", Dynamism.ISDOS, family=CAST, infer=_cast_infer, value=symvalue.cast_value)
def cast(ctx: KernelContext, x: Array) -> Array:
    return _cast_array(x, _cast_to(ctx), bool(ctx.attr("saturate", 1)), str(ctx.attr("round_mode", "up")))


@register("CastLike", Dynamism.ISDOS, family=CAST, infer=_castlike_infer, value=symvalue.cast_value)
def castlike(ctx: KernelContext, x: Array, like: Array) -> Array:
    return _cast_array(x, DType.from_numpy(like.dtype), bool(ctx.attr("saturate", 1)), str(ctx.attr("round_mode", "up")))


_BITS: dict[DType, int] = {DType.BOOL: 8, DType.INT4: 4, DType.UINT4: 4, DType.FLOAT4E2M1: 4, DType.INT2: 2, DType.UINT2: 2}


def _bit_width(dt: DType) -> int:
    if dt in _BITS:
        return _BITS[dt]
    return dt.numpy.itemsize * 8


def _bitcast_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    dt = _to_attr(ctx)
    if t is not None and t.dtype is not None and dt is not None:
        if t.dtype == DType.STRING or dt == DType.STRING:
            raise ShapeInferenceError("BitCast does not take strings")
        if _bit_width(t.dtype) != _bit_width(dt):
            raise ShapeInferenceError(
                f"BitCast from {t.dtype.short} ({_bit_width(t.dtype)} bits) to {dt.short} ({_bit_width(dt)} bits): widths differ"
            )
    return [TensorType(dt, t.shape if t is not None else None)]


@register("BitCast", Dynamism.ISDOS, family=CAST, infer=_bitcast_infer)
def bitcast(ctx: KernelContext, x: Array) -> Array:
    to = _cast_to(ctx)
    src = DType.from_numpy(x.dtype)
    if src == DType.STRING or to == DType.STRING:
        raise OpRuntimeError("BitCast does not take strings")
    if _bit_width(src) != _bit_width(to):
        raise OpRuntimeError(f"BitCast from {src.short} to {to.short}: bit widths differ")
    tgt = to.numpy
    bits = _bit_width(src)
    if bits < 8:
        # NOTE: sub-byte types: take the low bits of each value's code and read them in the new type.
        mask = (1 << bits) - 1
        if src.is_int:
            code = x.astype(np.int64) & mask
        else:
            code = x.view(np.uint8).astype(np.int64) & mask
        if to.is_int:
            return _wrap_int(code, tgt)
        return code.astype(np.uint8).view(tgt)
    a = np.ascontiguousarray(x)
    if to == DType.BOOL:
        return a.view(np.uint8) != 0
    if sys.byteorder == "big":  # pragma: no cover - the bytes are defined as little endian
        return a.astype(a.dtype.newbyteorder("<")).view(tgt.newbyteorder("<")).astype(tgt)
    return a.view(tgt).reshape(x.shape)


__all__ = ["erf"]
