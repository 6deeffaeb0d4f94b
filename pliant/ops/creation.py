"""Ops that create tensors from sizes and values: ConstantOfShape, Range, OneHot."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, Sym, d_max, d_sub, sym_dim
from pliant.ir.dtypes import DType
from pliant.ir.types import Type
from pliant.ops import symvalue
from pliant.ops.infer import normalize_axis
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register
from pliant.ops.shape import (
    SHAPE,
    in_dtype,
    in_shape,
    ints,
    norm_axis_rt,
    size_dims,
    static_rank_of_1d,
    tensor_result,
    unknown_dims,
)

# -- ConstantOfShape / Range -----------------------------------------------------


def _cos_value(attrs: dict[str, Any]) -> np.ndarray:
    v = attrs.get("value")
    if v is None:
        return np.zeros((1,), dtype=np.float32)
    return np.asarray(v)


def _constantofshape_infer(ctx: InferContext) -> list[Type]:
    v = _cos_value(ctx.attrs)
    dtype = DType.from_numpy(v.dtype) if v.dtype != object else DType.STRING
    target = size_dims(ctx, 0)
    if target is None:
        n = static_rank_of_1d(ctx, 0)
        return tensor_result(dtype, unknown_dims(n) if n is not None else None)
    if any(isinstance(d, int) and d < 0 for d in target):
        raise ShapeInferenceError(f"ConstantOfShape: negative dims in {target}")
    return tensor_result(dtype, target)


@register("ConstantOfShape", Dynamism.ISVDOS, infer=_constantofshape_infer, family=SHAPE,
          value=symvalue.constant_of_shape_value,
          note="ISDOS when the shape input is a constant")
def constantofshape(ctx: KernelContext, shape_in: np.ndarray) -> np.ndarray:
    v = _cos_value(ctx.attrs)
    target = ints(shape_in)
    if any(d < 0 for d in target):
        raise OpRuntimeError(f"ConstantOfShape: negative dims in {target}")
    if v.size != 1:
        raise OpRuntimeError(f"ConstantOfShape: the value attribute must hold one element, got {v.size}")
    return np.full(target, v.reshape(-1)[0], dtype=v.dtype)


def _range_count(start: Any, limit: Any, delta: Any, integral: bool) -> int:
    if integral:
        s, lim, d = int(start), int(limit), int(delta)
        if d == 0:
            raise OpRuntimeError("Range: delta is 0")
        return max(-((s - lim) // d), 0)
    fs, fl, fd = float(start), float(limit), float(delta)
    if fd == 0:
        raise OpRuntimeError("Range: delta is 0")
    n = math.ceil((fl - fs) / fd)
    return max(n, 0)


def range_length(start: Dim, limit: Dim, delta: Dim) -> Dim:
    """The number of elements of ``Range(start, limit, delta)`` on dims (exact rationals for floats)."""
    if start is None or limit is None or delta is None or delta == 0:
        return None
    if isinstance(start, int) and isinstance(limit, int) and isinstance(delta, int):
        return max(-((start - limit) // delta), 0)
    if not isinstance(delta, int):
        return None
    span = d_sub(limit, start) if delta > 0 else d_sub(start, limit)
    if span is None:
        return None
    e = span.expr if isinstance(span, Sym) else sympy.Integer(span)
    n = sym_dim(sympy.ceiling(e / abs(delta)))
    return d_max(n, 0)


def _range_infer(ctx: InferContext) -> list[Type]:
    dtype = in_dtype(ctx, 0) or in_dtype(ctx, 1) or in_dtype(ctx, 2)
    cs = [ctx.const(i) for i in range(3)]
    if any(c is None for c in cs):
        vs = [ctx.value(i) for i in range(3)]
        if any(v is None or v.size != 1 for v in vs):
            return tensor_result(dtype, (None,))
        n = range_length(*(v.reshape(-1)[0] for v in vs))  # type: ignore[union-attr]
        return tensor_result(dtype, (n,))
    vals = [np.asarray(c).reshape(-1)[0] for c in cs]
    integral = np.asarray(cs[0]).dtype.kind in "iu"
    try:
        n = _range_count(vals[0], vals[1], vals[2], integral)
    except OpRuntimeError as e:
        raise ShapeInferenceError(str(e)) from None
    return tensor_result(dtype, (n,))


@register("Range", Dynamism.ISVDOS, infer=_range_infer, family=SHAPE, value=symvalue.range_value,
          note="ISDOS when start, limit and delta are constants")
def range_(ctx: KernelContext, start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray:
    dt = start.dtype
    s, lim, d = (np.asarray(v).reshape(-1)[0] for v in (start, limit, delta))
    integral = dt.kind in "iu"
    n = _range_count(s, lim, d, integral)
    if integral:
        return (int(s) + np.arange(n, dtype=np.int64) * int(d)).astype(dt)
    if dt.itemsize < 4:
        # NOTE: float16/bfloat16 compute in float32 unless stash_type (opset 27) says otherwise.
        stash = ctx.opset < 27 or int(ctx.attr("stash_type", 1)) == 1
        if not stash:
            return (np.asarray(s, dt) + np.arange(n).astype(dt) * np.asarray(d, dt)).astype(dt)
        return (np.float32(s) + np.arange(n, dtype=np.float32) * np.float32(d)).astype(dt)
    return (np.float64(s) + np.arange(n, dtype=np.float64) * np.float64(d)).astype(dt)


# -- OneHot --------------------------------------------------------------------


def _onehot_infer(ctx: InferContext) -> list[Type]:
    dtype = in_dtype(ctx, 2)
    s = in_shape(ctx, 0)
    if s is None:
        return tensor_result(dtype, None)
    ds = size_dims(ctx, 1)
    depth: Dim = ds[0] if ds else None
    if isinstance(depth, int) and depth < 1:
        raise ShapeInferenceError(f"OneHot: depth {depth} must be positive")
    r = len(s) + 1
    axis = normalize_axis(int(ctx.attr("axis", -1)), r, "OneHot axis")
    out = list(s)
    out.insert(axis, depth)
    return tensor_result(dtype, out)


@register("OneHot", Dynamism.ISVDOS, infer=_onehot_infer, family=SHAPE,
          note="ISDOS when depth is a constant")
def onehot(ctx: KernelContext, indices: np.ndarray, depth_in: np.ndarray, values: np.ndarray) -> np.ndarray:
    depth = int(np.asarray(depth_in).reshape(-1)[0])
    if depth < 1:
        raise OpRuntimeError(f"OneHot: depth {depth} must be positive")
    if values.size != 2:
        raise OpRuntimeError(f"OneHot: values must hold [off_value, on_value], got {values.size} elements")
    vals = values.reshape(-1)
    r = indices.ndim + 1
    axis = norm_axis_rt(int(ctx.attr("axis", -1)), r, "OneHot axis")
    idx = np.asarray(indices)
    idx = np.trunc(idx).astype(np.int64) if idx.dtype.kind == "f" else idx.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)
    hot = idx[..., None] == np.arange(depth, dtype=np.int64)
    out = np.where(hot, vals[1], vals[0]).astype(values.dtype)
    return np.moveaxis(out, -1, axis)
