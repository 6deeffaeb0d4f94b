"""Reductions and axis-wise ops: Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax/Hardmax, CumSum/CumProd, TopK.

Reduce* take their ``axes`` as an attribute up to opset 17 (opset 12 for
ReduceSum) and as an optional second input from then on.  Reductions over an
empty set of values give the op's identity (0 for sums, 1 for products, -inf /
+inf or the dtype's extreme for Max / Min, -inf for the log-sums).  With
``noop_with_empty_axes`` and no axes the reduction runs over no axes at all,
i.e. each element alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, d_add, d_max, d_min, d_mul
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops import symvalue
from pliant.ops.infer import normalize_axis, same_as_input, tensor_input
from pliant.ops.numerics import is_float_dtype, work_dtype
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

REDUCE = "reduce"

Axes = tuple[int, ...]


# -- helpers --------------------------------------------------------------------





def _norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1) or (rank == 0 and axis not in (0, -1)):
        raise OpRuntimeError(f"{what} {axis} is out of range for an input of rank {rank}")
    return axis + rank if axis < 0 else axis


def _scalar_int(v: np.ndarray, what: str) -> int:
    a = np.asarray(v)
    if a.size != 1:
        raise OpRuntimeError(f"{what} must hold exactly one value, got shape {list(a.shape)}")
    return int(a.reshape(-1)[0])


# -- Reduce* --------------------------------------------------------------------

_AXES_INPUT_SINCE = {"ReduceSum": 13}
"""Opset from which ``axes`` is an input rather than an attribute (18 unless listed)."""


def _axes_is_input(name: str, opset: int) -> bool:
    return opset >= _AXES_INPUT_SINCE.get(name, 18)


def _reduce_axes(ctx: KernelContext, x: np.ndarray, axes_in: np.ndarray | None) -> Axes:
    """The (normalized, sorted) axes to reduce; () means reduce nothing."""
    if _axes_is_input(ctx.op.name, ctx.opset):
        raw = None if axes_in is None else [int(a) for a in np.asarray(axes_in).reshape(-1)]
    else:
        attr = ctx.attrs.get("axes")
        raw = None if attr is None else [int(a) for a in attr]  # type: ignore[union-attr]
    if not raw:
        if int(ctx.attr("noop_with_empty_axes", 0)):
            return ()
        return tuple(range(x.ndim))
    axes = sorted(_norm_axis(a, x.ndim, "reduction axis") for a in raw)
    if len(set(axes)) != len(axes):
        raise OpRuntimeError(f"reduction axes {raw} name an axis twice (input rank {x.ndim})")
    return tuple(axes)


def _finish(r: np.ndarray, axes: Axes, keepdims: bool, dtype: np.dtype) -> np.ndarray:
    """``r`` was reduced with keepdims=True; drop the axes if asked, cast to ``dtype``."""
    if not keepdims and axes:
        r = np.squeeze(r, axis=axes)
    return np.asarray(r).astype(dtype, copy=False)


def _sum(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = work_dtype(x.dtype)
    return np.sum(x.astype(w, copy=False), axis=axes, keepdims=True, dtype=w)


def _k_sum(x: np.ndarray, axes: Axes) -> np.ndarray:
    return _sum(x, axes)


def _k_sum_square(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = work_dtype(x.dtype)
    xw = x.astype(w, copy=False)
    return np.sum(xw * xw, axis=axes, keepdims=True, dtype=w)


def _k_l1(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = work_dtype(x.dtype)
    return np.sum(np.abs(x.astype(w, copy=False)), axis=axes, keepdims=True, dtype=w)


def _k_l2(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = np.dtype(np.float64) if not is_float_dtype(x.dtype) else work_dtype(x.dtype)
    xw = x.astype(w, copy=False)
    return np.sqrt(np.sum(xw * xw, axis=axes, keepdims=True, dtype=w))


def _k_prod(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = work_dtype(x.dtype)
    return np.prod(x.astype(w, copy=False), axis=axes, keepdims=True, dtype=w)


def _k_mean(x: np.ndarray, axes: Axes) -> np.ndarray:
    n = 1
    for a in axes:
        n *= x.shape[a]
    if is_float_dtype(x.dtype):
        s = _sum(x, axes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return s / s.dtype.type(n) if n else np.full(s.shape, np.nan, s.dtype)
    if n == 0:
        raise OpRuntimeError("ReduceMean of an integer tensor over an empty set of values is undefined")
    s64 = np.sum(x, axis=axes, keepdims=True, dtype=np.int64 if x.dtype.kind == "i" else np.uint64)
    # NOTE: integer mean truncates toward zero, as a cast of the exact quotient would.
    q = np.abs(s64) // n
    return np.where(s64 < 0, -q, q)


def _k_log_sum(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = work_dtype(x.dtype) if is_float_dtype(x.dtype) else np.dtype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.sum(x.astype(w, copy=False), axis=axes, keepdims=True, dtype=w))


def _k_log_sum_exp(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = np.dtype(np.float64)
    xw = x.astype(w, copy=False)
    m = np.max(xw, axis=axes, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return np.log(np.sum(np.exp(xw - m), axis=axes, keepdims=True)) + m


def _low(dt: np.dtype) -> object:
    if dt == np.bool_:
        return False
    if is_float_dtype(dt):
        return -np.inf
    return np.iinfo(dt).min


def _high(dt: np.dtype) -> object:
    if dt == np.bool_:
        return True
    if is_float_dtype(dt):
        return np.inf
    return np.iinfo(dt).max


def _k_max(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = work_dtype(x.dtype)
    return np.max(x.astype(w, copy=False), axis=axes, keepdims=True, initial=_low(w))  # type: ignore[call-overload]


def _k_min(x: np.ndarray, axes: Axes) -> np.ndarray:
    w = work_dtype(x.dtype)
    return np.min(x.astype(w, copy=False), axis=axes, keepdims=True, initial=_high(w))  # type: ignore[call-overload]


def _reduce_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    if t is None:
        return [ANY]
    keep = bool(ctx.attr("keepdims", 1))
    raw: list[int] | None
    if _axes_is_input(ctx.name, ctx.opset):
        if ctx.input(1) is None:
            raw = None
        else:
            c = ctx.const(1)
            if c is None:
                if t.shape is not None and keep:
                    return [TensorType(t.dtype, (None,) * len(t.shape))]
                return [TensorType(t.dtype, None)]
            raw = [int(a) for a in np.asarray(c).reshape(-1)]
    else:
        attr = ctx.attrs.get("axes")
        raw = None if attr is None else [int(a) for a in attr]
    if t.shape is None:
        if not raw and not int(ctx.attr("noop_with_empty_axes", 0)) and not keep:
            return [TensorType(t.dtype, ())]
        return [TensorType(t.dtype, None)]
    rank = len(t.shape)
    if not raw:
        axes = set() if int(ctx.attr("noop_with_empty_axes", 0)) else set(range(rank))
    else:
        axes = {normalize_axis(a, rank, "reduction axis") for a in raw}
        if len(axes) != len(raw):
            raise ShapeInferenceError(f"{ctx.name}: reduction axes {raw} name an axis twice")
    dims: list[Dim] = []
    for i, d in enumerate(t.shape):
        if i in axes:
            if keep:
                dims.append(1)
        else:
            dims.append(d)
    return [TensorType(t.dtype, tuple(dims))]


ReduceFn = Callable[[np.ndarray, Axes], np.ndarray]


def reduce_axes_of(ctx: InferContext, rank: int) -> list[int] | None:
    """The normalised reduction axes for an input of ``rank`` (None when not constant)."""
    if _axes_is_input(ctx.name, ctx.opset):
        if ctx.input(1) is None:
            raw: list[int] = []
        else:
            c = ctx.const(1)
            if c is None:
                return None
            raw = [int(a) for a in np.asarray(c).reshape(-1)]
    else:
        attr = ctx.attrs.get("axes")
        raw = [] if attr is None else [int(a) for a in attr]
    if not raw:
        return [] if int(ctx.attr("noop_with_empty_axes", 0)) else list(range(rank))
    try:
        return sorted({normalize_axis(a, rank, "reduction axis") for a in raw})
    except ShapeInferenceError:
        return None


_VALUE_RULES = {
    "ReduceSum": symvalue.reduce_all(d_add),
    "ReduceProd": symvalue.reduce_all(d_mul),
    "ReduceMax": symvalue.reduce_all(d_max),
    "ReduceMin": symvalue.reduce_all(d_min),
}


def _make_reduce(name: str, fn: ReduceFn) -> None:
    since = _AXES_INPUT_SINCE.get(name, 18)

    def kernel(ctx: KernelContext, x: np.ndarray, axes_in: np.ndarray | None = None) -> np.ndarray:
        axes = _reduce_axes(ctx, x, axes_in)
        return _finish(fn(x, axes), axes, bool(ctx.attr("keepdims", 1)), x.dtype)

    kernel.__name__ = kernel.__qualname__ = f"reduce_{name[6:].lower()}"
    register(name, Dynamism.ISVDOS, family=REDUCE, infer=_reduce_infer, value=_VALUE_RULES.get(name),
             note=f"ISDOS when axes is an attribute (opset < {since}) or the axes input is constant or absent")(kernel)


for _name, _fn in [
    ("ReduceSum", _k_sum),
    ("ReduceSumSquare", _k_sum_square),
    ("ReduceL1", _k_l1),
    ("ReduceL2", _k_l2),
    ("ReduceProd", _k_prod),
    ("ReduceMean", _k_mean),
    ("ReduceLogSum", _k_log_sum),
    ("ReduceLogSumExp", _k_log_sum_exp),
    ("ReduceMax", _k_max),
    ("ReduceMin", _k_min),
]:
    _make_reduce(_name, _fn)


# -- ArgMax / ArgMin --------------------------------------------------------------

def _arg_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    if t is None or t.shape is None:
        return [TensorType(DType.INT64, None)]
    rank = len(t.shape)
    axis = normalize_axis(int(ctx.attr("axis", 0)), rank)
    keep = bool(ctx.attr("keepdims", 1))
    dims: list[Dim] = []
    for i, d in enumerate(t.shape):
        if i == axis:
            if keep:
                dims.append(1)
        else:
            dims.append(d)
    return [TensorType(DType.INT64, tuple(dims))]


def _arg(ctx: KernelContext, x: np.ndarray, largest: bool) -> np.ndarray:
    axis = _norm_axis(int(ctx.attr("axis", 0)), x.ndim)
    if x.ndim == 0:
        raise OpRuntimeError(f"{ctx.op.name} needs an input of rank >= 1")
    n = x.shape[axis]
    if n == 0:
        raise OpRuntimeError(f"{ctx.op.name} over an empty axis {axis} (input shape {list(x.shape)})")
    xw = x.astype(work_dtype(x.dtype), copy=False)
    find = np.argmax if largest else np.argmin
    if int(ctx.attr("select_last_index", 0)):
        idx = (n - 1) - find(np.flip(xw, axis=axis), axis=axis)
    else:
        idx = find(xw, axis=axis)
    idx = np.asarray(idx, dtype=np.int64)
    if int(ctx.attr("keepdims", 1)):
        idx = np.expand_dims(idx, axis)
    return idx


@register("ArgMax", Dynamism.ISDOS, family=REDUCE, infer=_arg_infer)
def argmax(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return _arg(ctx, x, True)


@register("ArgMin", Dynamism.ISDOS, family=REDUCE, infer=_arg_infer)
def argmin(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return _arg(ctx, x, False)


# -- Softmax / LogSoftmax / Hardmax ---------------------------------------------

def _along_axis(ctx: KernelContext, x: np.ndarray, fn: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Apply ``fn(x, axis)``; before opset 13 the input is first coerced to 2-D at ``axis``."""
    if ctx.opset >= 13:
        if x.ndim == 0:
            raise OpRuntimeError(f"{ctx.op.name} needs an input of rank >= 1")
        return fn(x, _norm_axis(int(ctx.attr("axis", -1)), x.ndim))
    axis = int(ctx.attr("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise OpRuntimeError(f"axis {axis} is out of range for an input of rank {x.ndim}")
    axis = axis + x.ndim if axis < 0 else axis
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    cols = int(np.prod(x.shape[axis:], dtype=np.int64))
    return fn(x.reshape(rows, cols), 1).reshape(x.shape)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    xw = x.astype(work_dtype(x.dtype), copy=False)
    m = np.max(xw, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(xw - m)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype, copy=False)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    xw = x.astype(work_dtype(x.dtype), copy=False)
    m = np.max(xw, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    s = xw - m
    return (s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))).astype(x.dtype, copy=False)


def _hardmax(x: np.ndarray, axis: int) -> np.ndarray:
    out = np.zeros(x.shape, dtype=x.dtype)
    if x.size == 0:
        return out
    idx = np.expand_dims(np.argmax(x.astype(work_dtype(x.dtype), copy=False), axis=axis), axis)
    np.put_along_axis(out, idx, x.dtype.type(1), axis=axis)
    return out


@register("Softmax", Dynamism.ISDOS, family=REDUCE, infer=same_as_input)
def softmax(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return _along_axis(ctx, x, _softmax)


@register("LogSoftmax", Dynamism.ISDOS, family=REDUCE, infer=same_as_input)
def log_softmax(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return _along_axis(ctx, x, _log_softmax)


@register("Hardmax", Dynamism.ISDOS, family=REDUCE, infer=same_as_input)
def hardmax(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return _along_axis(ctx, x, _hardmax)


# -- CumSum / CumProd -------------------------------------------------------------

def _cumulative(ctx: KernelContext, x: np.ndarray, axis_in: np.ndarray, prod: bool) -> np.ndarray:
    if x.ndim == 0:
        raise OpRuntimeError(f"{ctx.op.name} needs an input of rank >= 1")
    axis = _norm_axis(_scalar_int(axis_in, f"{ctx.op.name} axis"), x.ndim)
    reverse = bool(ctx.attr("reverse", 0))
    exclusive = bool(ctx.attr("exclusive", 0))
    w = work_dtype(x.dtype)
    y = x.astype(w, copy=False)
    if reverse:
        y = np.flip(y, axis=axis)
    c = np.cumprod(y, axis=axis, dtype=w) if prod else np.cumsum(y, axis=axis, dtype=w)
    if exclusive and c.shape[axis]:
        head_shape = list(c.shape)
        head_shape[axis] = 1
        head = np.full(head_shape, 1 if prod else 0, dtype=w)
        c = np.concatenate([head, np.delete(c, -1, axis=axis)], axis=axis)
    if reverse:
        c = np.flip(c, axis=axis)
    return np.ascontiguousarray(c).astype(x.dtype, copy=False)


@register("CumSum", Dynamism.ISDOS, family=REDUCE, infer=same_as_input)
def cumsum(ctx: KernelContext, x: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return _cumulative(ctx, x, axis, False)


@register("CumProd", Dynamism.ISDOS, family=REDUCE, infer=same_as_input)
def cumprod(ctx: KernelContext, x: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return _cumulative(ctx, x, axis, True)


# -- TopK -------------------------------------------------------------------------

def _topk_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    if t is None:
        return [ANY, TensorType(DType.INT64, None)]
    if t.shape is None:
        return [TensorType(t.dtype, None), TensorType(DType.INT64, None)]
    rank = len(t.shape)
    axis = normalize_axis(int(ctx.attr("axis", -1)), rank)
    k: Dim
    if ctx.opset < 10:
        k = int(ctx.attr("k"))
    else:
        c = ctx.const(1)
        k = None if c is None or np.asarray(c).size != 1 else int(np.asarray(c).reshape(-1)[0])
    if isinstance(k, int):
        if k < 0:
            raise ShapeInferenceError(f"TopK: k must be >= 0, got {k}")
        n = t.shape[axis]
        if isinstance(n, int) and k > n:
            raise ShapeInferenceError(f"TopK: k = {k} exceeds the size {n} of axis {axis}")
    dims = list(t.shape)
    dims[axis] = k
    return [TensorType(t.dtype, tuple(dims)), TensorType(DType.INT64, tuple(dims))]


@register("TopK", Dynamism.ISVDOS, family=REDUCE, infer=_topk_infer,
          note="ISDOS when k is an attribute (opset < 10) or the k input is constant")
def topk(ctx: KernelContext, x: np.ndarray, k_in: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim == 0:
        raise OpRuntimeError("TopK needs an input of rank >= 1")
    if ctx.opset < 10:
        k = int(ctx.attr("k"))
    else:
        if k_in is None:
            raise OpRuntimeError("TopK needs the K input")
        k = _scalar_int(k_in, "TopK's K")
    axis = _norm_axis(int(ctx.attr("axis", -1)), x.ndim)
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise OpRuntimeError(f"TopK: k = {k} must lie in [0, {n}] (the size of axis {axis})")
    largest = bool(ctx.attr("largest", 1))
    xw = x.astype(work_dtype(x.dtype), copy=False)
    if largest:
        # NOTE: a stable ascending sort of the flipped axis, read backwards, gives the
        # values in descending order with equal values in ascending index order.
        order = np.argsort(np.flip(xw, axis=axis), axis=axis, kind="stable")
        order = (n - 1) - np.flip(order, axis=axis)
    else:
        order = np.argsort(xw, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis).astype(np.int64)
    values = np.take_along_axis(x, idx, axis=axis)
    return values, idx
