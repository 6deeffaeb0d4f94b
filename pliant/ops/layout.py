"""Ops that move data between positions: Pad, DepthToSpace, SpaceToDepth, CenterCropPad."""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.types import Type
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register
from pliant.ops.shape import (
    SHAPE,
    const_ints,
    dadd,
    ddiv,
    dmul,
    in_dtype,
    in_shape,
    in_type,
    ints,
    merge_dims,
    norm_axis_rt,
    present,
    tensor_result,
    unknown_dims,
)

# -- Pad -----------------------------------------------------------------------


def _pad_widths(ctx: InferContext | KernelContext, rank: int, pads_in: Any, axes_in: Any,
                err: type[Exception]) -> tuple[list[int], list[int]] | None:
    """Per-axis (begin, end) pads, or None if the pads are not known."""
    if ctx.opset < 11:
        a = ctx.attrs.get("pads") if ctx.opset >= 2 else ctx.attrs.get("paddings")
        if a is None:
            return None
        pads = [int(v) for v in a]
        axes: list[int] = list(range(rank))
    else:
        if pads_in is None:
            return None
        pads = ints(pads_in)
        if axes_in is not None:
            axes = []
            for v in ints(axes_in):
                if not -rank <= v < rank:
                    raise err(f"Pad: axis {v} is out of range for rank {rank}")
                axes.append(v + rank if v < 0 else v)
        else:
            axes = list(range(rank))
    if len(pads) != 2 * len(axes):
        raise err(f"Pad: {len(pads)} pads {pads} for {len(axes)} axes (need 2 per axis)")
    begin, end = [0] * rank, [0] * rank
    n = len(axes)
    for i, ax in enumerate(axes):
        begin[ax] = pads[i]
        end[ax] = pads[i + n]
    return begin, end


def _pad_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    r = len(t.shape)
    if ctx.opset >= 11:
        pads_c = ctx.const(1)
        axes_given = present(ctx, 3)
        axes_c = ctx.const(3) if axes_given else None
        if pads_c is None or (axes_given and axes_c is None):
            return tensor_result(dtype, unknown_dims(r))
        w = _pad_widths(ctx, r, pads_c, axes_c, ShapeInferenceError)
    else:
        w = _pad_widths(ctx, r, None, None, ShapeInferenceError)
    if w is None:
        return tensor_result(dtype, unknown_dims(r))
    begin, end = w
    return tensor_result(dtype, [dadd(d, b, e) if (b or e) else d for d, b, e in zip(t.shape, begin, end)])


@register("Pad", Dynamism.ISVDOS, infer=_pad_infer, family=SHAPE,
          note="ISDOS when the pads (and axes) are attributes or constant inputs")
def pad(ctx: KernelContext, x: np.ndarray, pads_in: np.ndarray | None = None,
        value_in: np.ndarray | None = None, axes_in: np.ndarray | None = None) -> np.ndarray:
    w = _pad_widths(ctx, x.ndim, pads_in, axes_in, OpRuntimeError)
    if w is None:
        raise OpRuntimeError("Pad needs pads")
    begin, end = w
    mode = str(ctx.attr("mode", "constant"))
    # NOTE: negative pads crop first.
    crop = tuple(slice(-b if b < 0 else 0, d + e if e < 0 else d) for b, e, d in zip(begin, end, x.shape))
    if any(d + b + e < 0 for d, b, e in zip(x.shape, begin, end)):
        raise OpRuntimeError(f"Pad: pads {begin + end} crop more than the input shape {list(x.shape)}")
    x = x[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if not any(b or e for b, e in widths):
        return np.array(x)
    if mode == "constant":
        if ctx.opset < 11:
            value: Any = float(ctx.attr("value", 0.0))
        elif value_in is not None and np.asarray(value_in).size:
            value = np.asarray(value_in).reshape(-1)[0]
        else:
            value = "" if x.dtype == object else 0
        out = np.empty(tuple(d + b + e for d, (b, e) in zip(x.shape, widths)), dtype=x.dtype)
        out[...] = np.asarray(value).astype(x.dtype) if x.dtype != object else value
        inner = tuple(slice(b, b + d) for (b, _), d in zip(widths, x.shape))
        out[inner] = x
        return out
    if mode not in ("reflect", "edge", "wrap"):
        raise OpRuntimeError(f"Pad: unknown mode '{mode}' (constant, reflect, edge or wrap)")
    for ax, (b, e) in enumerate(widths):
        if (b or e) and x.shape[ax] == 0:
            raise OpRuntimeError(f"Pad: cannot {mode}-pad axis {ax} of size 0")
    return np.pad(x, widths, mode=mode)  # type: ignore[call-overload,no-any-return]


# -- DepthToSpace / SpaceToDepth ------------------------------------------------


def _d2s_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, (None,) * 4)
    if len(t.shape) != 4:
        raise ShapeInferenceError(f"DepthToSpace needs a 4-D input, got rank {len(t.shape)}")
    b = int(ctx.attr("blocksize"))
    n, c, h, w = t.shape
    return tensor_result(dtype, (n, ddiv(c, b * b, "DepthToSpace channels"), dmul(h, b), dmul(w, b)))


@register("DepthToSpace", Dynamism.ISDOS, infer=_d2s_infer, family=SHAPE)
def depthtospace(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    b = int(ctx.attr("blocksize"))
    if x.ndim != 4:
        raise OpRuntimeError(f"DepthToSpace needs a 4-D input, got shape {list(x.shape)}")
    n, c, h, w = x.shape
    if b <= 0 or c % (b * b):
        raise OpRuntimeError(f"DepthToSpace: channels {c} are not divisible by blocksize² ({b}²)")
    mode = str(ctx.attr("mode", "DCR")) if ctx.opset >= 11 else "DCR"
    if mode == "DCR":
        tmp = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        tmp = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise OpRuntimeError(f"DepthToSpace: unknown mode '{mode}' (DCR or CRD)")
    return tmp.reshape(n, c // (b * b), h * b, w * b)


def _s2d_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, (None,) * 4)
    if len(t.shape) != 4:
        raise ShapeInferenceError(f"SpaceToDepth needs a 4-D input, got rank {len(t.shape)}")
    b = int(ctx.attr("blocksize"))
    n, c, h, w = t.shape
    return tensor_result(dtype, (n, dmul(c, b * b), ddiv(h, b, "SpaceToDepth height"), ddiv(w, b, "SpaceToDepth width")))


@register("SpaceToDepth", Dynamism.ISDOS, infer=_s2d_infer, family=SHAPE)
def spacetodepth(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    b = int(ctx.attr("blocksize"))
    if x.ndim != 4:
        raise OpRuntimeError(f"SpaceToDepth needs a 4-D input, got shape {list(x.shape)}")
    n, c, h, w = x.shape
    if b <= 0 or h % b or w % b:
        raise OpRuntimeError(f"SpaceToDepth: spatial dims {h}x{w} are not divisible by blocksize {b}")
    tmp = x.reshape(n, c, h // b, b, w // b, b)
    mode = str(ctx.attr("mode", "DCR"))
    if mode == "DCR":
        tmp = tmp.transpose(0, 3, 5, 1, 2, 4)
    elif mode == "CRD":
        tmp = tmp.transpose(0, 1, 3, 5, 2, 4)
    else:
        raise OpRuntimeError(f"SpaceToDepth: unknown mode '{mode}' (DCR or CRD)")
    return tmp.reshape(n, c * b * b, h // b, w // b)


# -- CenterCropPad ---------------------------------------------------------------


def _ccp_axes(axes_attr: Any, rank: int, err: type[Exception]) -> list[int]:
    if axes_attr is None:
        return list(range(rank))
    out = []
    for a in axes_attr:
        a = int(a)
        if not -rank <= a < rank:
            raise err(f"CenterCropPad: axis {a} is out of range for rank {rank}")
        out.append(a + rank if a < 0 else a)
    return out


def _ccp_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    axes = _ccp_axes(ctx.attrs.get("axes"), len(t.shape), ShapeInferenceError)
    target = const_ints(ctx, 1)
    out = list(t.shape)
    for i, a in enumerate(axes):
        out[a] = target[i] if target is not None and i < len(target) else None
    return tensor_result(dtype, out)


@register("CenterCropPad", Dynamism.ISVDOS, infer=_ccp_infer, family=SHAPE,
          note="ISDOS when the shape input is a constant")
def centercroppad(ctx: KernelContext, x: np.ndarray, shape_in: np.ndarray) -> np.ndarray:
    axes = _ccp_axes(ctx.attrs.get("axes"), x.ndim, OpRuntimeError)
    target = ints(shape_in)
    if len(target) != len(axes):
        raise OpRuntimeError(f"CenterCropPad: {len(target)} sizes {target} for {len(axes)} axes")
    out_shape = list(x.shape)
    src: list[slice] = [slice(None)] * x.ndim
    dst: list[slice] = [slice(None)] * x.ndim
    for a, tsize in zip(axes, target):
        d = x.shape[a]
        out_shape[a] = tsize
        if tsize <= d:
            s = (d - tsize) // 2
            src[a] = slice(s, s + tsize)
        else:
            s = (tsize - d) // 2
            dst[a] = slice(s, s + d)
    out = np.zeros(out_shape, dtype=x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


__all__ = [
    "const_ints",
    "dadd",
    "ddiv",
    "dmul",
    "in_dtype",
    "in_shape",
    "in_type",
    "ints",
    "merge_dims",
    "norm_axis_rt",
    "present",
    "tensor_result",
    "unknown_dims",
]
