"""Resize and Upsample.

Resizing is separable: each resized axis is processed on its own.  For an axis,
every output position is mapped to a coordinate ``x`` of the input (the
``coordinate_transformation_mode``); nearest picks one input index, linear and
cubic build a (out, in) weight matrix from their kernel (stretched by 1/scale
when antialiasing a downscale) that is applied along the axis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, dim_expr, sym_dim
from pliant.ir.types import Type
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register
from pliant.ops.shape import in_type, present, tensor_result, unknown_dims

RESIZE = "resize"

_TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
               "tf_crop_and_resize")


# -- coordinates and weights -----------------------------------------------------


def _coords(mode: str, out_len: int, in_len: int, scale: float, roi: tuple[float, float]) -> np.ndarray:
    """The input coordinate of each output position along one axis."""
    y = np.arange(out_len, dtype=np.float64)
    out_w = scale * in_len  # NOTE: the fractional output length, as ONNX's reference uses it
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_len / out_w
        offset = in_len / 2 * (1 - adjustment)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(y)
    if mode == "align_corners":
        return y * (in_len - 1) / (out_w - 1) if out_len > 1 else np.zeros_like(y)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_len > 1:
            return start * (in_len - 1) + y * (end - start) * (in_len - 1) / (out_w - 1)
        return np.full_like(y, 0.5 * (start + end) * (in_len - 1))
    raise OpRuntimeError(f"Resize: unknown coordinate_transformation_mode '{mode}' (one of {', '.join(_TRANSFORMS)})")


def _nearest_index(x: np.ndarray, mode: str, in_len: int, scale: float) -> np.ndarray:
    if mode == "round_prefer_floor":
        i = np.ceil(x - 0.5)
    elif mode == "round_prefer_ceil":
        i = np.floor(x + 0.5)
    elif mode == "floor":
        i = np.floor(x)
    elif mode == "ceil":
        i = np.ceil(x)
    elif mode == "simple":
        # NOTE: Resize-10 / Upsample: floor when upsampling, ceil when downsampling.
        i = np.ceil(x) if scale < 1 else np.floor(x)
    else:
        raise OpRuntimeError(f"Resize: unknown nearest_mode '{mode}' (round_prefer_floor, round_prefer_ceil, floor, ceil)")
    return np.clip(i, 0, in_len - 1).astype(np.intp)


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    d = np.abs(d)
    d2, d3 = d * d, d * d * d
    near = (a + 2) * d3 - (a + 3) * d2 + 1
    far = a * d3 - 5 * a * d2 + 8 * a * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _linear(d: np.ndarray) -> np.ndarray:
    return np.clip(1 - np.abs(d), 0.0, 1.0)


def _weights(x: np.ndarray, in_len: int, scale: float, mode: str, cubic_a: float, antialias: bool,
             exclude_outside: bool) -> np.ndarray:
    """The (out, in) interpolation matrix for linear or cubic mode along one axis."""
    radius = 1 if mode == "linear" else 2
    s = min(scale, 1.0) if antialias else 1.0
    i0 = math.floor(-radius / s) + 1
    taps = np.arange(i0, 2 - i0)
    base = np.floor(x)
    base = np.where(base == x, base - 1, base)  # NOTE: an exact hit takes the left window (ratio 1)
    j = base[:, None].astype(np.int64) + taps[None, :]
    d = (j - x[:, None]) * s
    w = _linear(d) if mode == "linear" else _cubic(d, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((j < 0) | (j >= in_len), 0.0, w)
        tot = w.sum(axis=1, keepdims=True)
        w = w / np.where(tot == 0, 1.0, tot)
    mat = np.zeros((x.shape[0], in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(x.shape[0])[:, None], j.shape)
    np.add.at(mat, (rows, np.clip(j, 0, in_len - 1)), w)
    return mat


def _cast_back(y: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(y), info.min, info.max).astype(dtype)
    return y.astype(dtype)


def resize_nd(x: np.ndarray, out_shape: list[int], scales: list[float], *, mode: str, transform: str,
              nearest_mode: str, cubic_a: float = -0.75, exclude_outside: bool = False,
              extrapolation: float = 0.0, antialias: bool = False, roi: list[tuple[float, float]] | None = None,
              ) -> np.ndarray:
    """Resize ``x`` to ``out_shape``; ``scales`` are the per-axis scales used for coordinates."""
    if mode not in ("nearest", "linear", "cubic"):
        raise OpRuntimeError(f"Resize: unknown mode '{mode}' (nearest, linear or cubic)")
    if transform not in _TRANSFORMS:
        raise OpRuntimeError(f"Resize: unknown coordinate_transformation_mode '{transform}'")
    r = x.ndim
    rois = roi if roi is not None else [(0.0, 1.0)] * r
    y: np.ndarray = x if mode == "nearest" else x.astype(np.float64)
    for ax in range(r):
        n_in, n_out, sc = y.shape[ax], out_shape[ax], scales[ax]
        crop = transform == "tf_crop_and_resize" and rois[ax] != (0.0, 1.0)
        if n_out == n_in and sc == 1.0 and not crop:
            continue
        if n_out == 0 or n_in == 0:
            shp = list(y.shape)
            shp[ax] = n_out
            if n_out and not n_in:
                raise OpRuntimeError(f"Resize: cannot resize an empty axis {ax} to {n_out}")
            y = np.empty(shp, dtype=y.dtype)
            continue
        if sc <= 0:
            raise OpRuntimeError(f"Resize: scale {sc} on axis {ax} must be positive")
        xc = _coords(transform, n_out, n_in, sc, rois[ax])
        if mode == "nearest":
            y = np.take(y, _nearest_index(xc, nearest_mode, n_in, sc), axis=ax)
        else:
            w = _weights(xc, n_in, sc, mode, cubic_a, antialias, exclude_outside)
            y = np.moveaxis(np.moveaxis(y, ax, -1) @ w.T, -1, ax)
        if transform == "tf_crop_and_resize":
            outside = (xc < 0) | (xc > n_in - 1)
            if outside.any():
                shp = [1] * r
                shp[ax] = n_out
                fill = np.asarray(extrapolation).astype(y.dtype) if y.dtype.kind != "O" else extrapolation
                y = np.where(outside.reshape(shp), fill, y)
    if mode == "nearest":
        return np.array(y, dtype=x.dtype)
    return _cast_back(y, x.dtype)


# -- Resize ----------------------------------------------------------------------


def _nonempty(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    a = np.asarray(v)
    return a if a.size else None


def _resize_inputs(ctx: InferContext | KernelContext, args: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    """(roi, scales, sizes) from the op's inputs after X, by opset."""
    if ctx.opset < 11:
        return None, args[0] if args else None, None
    roi = args[0] if len(args) > 0 else None
    scales = args[1] if len(args) > 1 else None
    sizes = args[2] if len(args) > 2 else None
    return _nonempty(roi), _nonempty(scales), _nonempty(sizes)


def _axes(ctx: InferContext | KernelContext, rank: int, err: type[Exception]) -> list[int]:
    a = ctx.attrs.get("axes") if ctx.opset >= 18 else None
    if a is None:
        return list(range(rank))
    out = []
    for v in a:
        v = int(v)
        if not -rank <= v < rank:
            raise err(f"Resize: axis {v} is out of range for rank {rank}")
        out.append(v + rank if v < 0 else v)
    return out


def _plan(ctx: InferContext | KernelContext, in_shape: list[int], scales: np.ndarray | None,
          sizes: np.ndarray | None, err: type[Exception]) -> tuple[list[int], list[float]]:
    """Output shape and per-axis coordinate scales."""
    r = len(in_shape)
    axes = _axes(ctx, r, err)
    out = list(in_shape)
    sc = [1.0] * r
    if sizes is not None:
        sz = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(sz) != len(axes):
            raise err(f"Resize: {len(sz)} sizes for {len(axes)} axes (input rank {r})")
        policy = str(ctx.attr("keep_aspect_ratio_policy", "stretch")) if ctx.opset >= 18 else "stretch"
        ratios = [s / in_shape[a] if in_shape[a] else 1.0 for a, s in zip(axes, sz)]
        if policy == "stretch":
            for a, s, q in zip(axes, sz, ratios):
                out[a], sc[a] = s, q
        elif policy in ("not_larger", "not_smaller"):
            q = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                out[a] = int(q * in_shape[a] + 0.5)
                sc[a] = q
        else:
            raise err(f"Resize: unknown keep_aspect_ratio_policy '{policy}' (stretch, not_larger, not_smaller)")
    elif scales is not None:
        sv = [float(v) for v in np.asarray(scales).reshape(-1)]
        if len(sv) != len(axes):
            raise err(f"Resize: {len(sv)} scales for {len(axes)} axes (input rank {r})")
        for a, f in zip(axes, sv):
            if f <= 0:
                raise err(f"Resize: scale {f} must be positive")
            sc[a] = f
            out[a] = math.floor(in_shape[a] * f)
    else:
        raise err("Resize needs scales or sizes")
    return out, sc


def _resize_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    r = len(t.shape)
    if ctx.opset < 11:
        scales_c, sizes_c = ctx.const(1), None
        scales_given, sizes_given = present(ctx, 1), False
    else:
        scales_given, sizes_given = present(ctx, 2), present(ctx, 3)
        scales_c, sizes_c = ctx.const(2), ctx.const(3)
        if scales_c is not None and scales_c.size == 0:
            scales_c, scales_given = None, False
        if sizes_c is not None and sizes_c.size == 0:
            sizes_c, sizes_given = None, False
    axes = _axes(ctx, r, ShapeInferenceError)
    if (sizes_given and sizes_c is None) or (scales_given and scales_c is None and not sizes_given):
        return tensor_result(dtype, [None if i in axes else d for i, d in enumerate(t.shape)])
    if sizes_c is not None:
        if all(isinstance(d, int) for d in t.shape):
            out, _ = _plan(ctx, [int(d) for d in t.shape if isinstance(d, int)], None, sizes_c, ShapeInferenceError)
            return tensor_result(dtype, out)
        policy = str(ctx.attr("keep_aspect_ratio_policy", "stretch")) if ctx.opset >= 18 else "stretch"
        sz = [int(v) for v in sizes_c.reshape(-1)]
        if policy != "stretch" or len(sz) != len(axes):
            return tensor_result(dtype, [None if i in axes else d for i, d in enumerate(t.shape)])
        dims: list[Dim] = list(t.shape)
        for a, s in zip(axes, sz):
            dims[a] = s
        return tensor_result(dtype, dims)
    if scales_c is not None:
        sv = [float(v) for v in scales_c.reshape(-1)]
        if len(sv) != len(axes):
            raise ShapeInferenceError(f"Resize: {len(sv)} scales for {len(axes)} axes (input rank {r})")
        return tensor_result(dtype, _scaled_dims(t.shape, axes, sv))
    return tensor_result(dtype, unknown_dims(r))


def _scaled_dims(shape: tuple[Dim, ...], axes: list[int], scales: list[float]) -> list[Dim]:
    dims = list(shape)
    for a, s in zip(axes, scales):
        d = dims[a]
        if d is None:
            continue
        if isinstance(d, int):
            dims[a] = math.floor(d * s)
        else:
            dims[a] = sym_dim(sympy.floor(dim_expr(d) * sympy.Rational(s)))
    return dims


@register("Resize", Dynamism.ISVDOS, infer=_resize_infer, family=RESIZE,
          note="ISDOS when scales/sizes are constants")
def resize(ctx: KernelContext, x: np.ndarray, *args: Any) -> np.ndarray:
    roi_in, scales, sizes = _resize_inputs(ctx, args)
    if scales is not None and sizes is not None:
        raise OpRuntimeError("Resize: give scales or sizes, not both")
    out_shape, sc = _plan(ctx, list(x.shape), scales, sizes, OpRuntimeError)
    mode = str(ctx.attr("mode", "nearest"))
    if ctx.opset < 11:
        transform, nearest_mode = "asymmetric", "simple"
    else:
        transform = str(ctx.attr("coordinate_transformation_mode", "half_pixel"))
        nearest_mode = str(ctx.attr("nearest_mode", "round_prefer_floor"))
    roi: list[tuple[float, float]] | None = None
    if transform == "tf_crop_and_resize":
        if roi_in is None:
            raise OpRuntimeError("Resize: tf_crop_and_resize needs the roi input")
        axes = _axes(ctx, x.ndim, OpRuntimeError)
        rv = [float(v) for v in np.asarray(roi_in).reshape(-1)]
        if len(rv) != 2 * len(axes):
            raise OpRuntimeError(f"Resize: roi has {len(rv)} values for {len(axes)} axes (needs 2 per axis)")
        roi = [(0.0, 1.0)] * x.ndim
        for i, a in enumerate(axes):
            roi[a] = (rv[i], rv[i + len(axes)])
    return resize_nd(
        x, out_shape, sc, mode=mode, transform=transform, nearest_mode=nearest_mode,
        cubic_a=float(ctx.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(ctx.attr("exclude_outside", 0)),
        extrapolation=float(ctx.attr("extrapolation_value", 0.0)),
        antialias=bool(ctx.attr("antialias", 0)) if ctx.opset >= 18 else False,
        roi=roi,
    )


# -- Upsample --------------------------------------------------------------------


def _upsample_scales(ctx: InferContext | KernelContext, rank: int, scales_in: Any) -> list[float] | None:
    if ctx.opset >= 9:
        return [float(v) for v in np.asarray(scales_in).reshape(-1)] if scales_in is not None else None
    if ctx.opset >= 7:
        a = ctx.attrs.get("scales")
        return [float(v) for v in a] if a is not None else None
    hs, ws = float(ctx.attr("height_scale", 1.0)), float(ctx.attr("width_scale", 1.0))
    return [1.0] * (rank - 2) + [hs, ws]


def _upsample_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    r = len(t.shape)
    sv = _upsample_scales(ctx, r, ctx.const(1) if ctx.opset >= 9 else None)
    if sv is None:
        return tensor_result(dtype, unknown_dims(r))
    if len(sv) != r:
        raise ShapeInferenceError(f"Upsample: {len(sv)} scales for an input of rank {r}")
    return tensor_result(dtype, _scaled_dims(t.shape, list(range(r)), sv))


@register("Upsample", Dynamism.ISVDOS, infer=_upsample_infer, family=RESIZE,
          note="ISDOS when the scales are an attribute (opset 7) or a constant")
def upsample(ctx: KernelContext, x: np.ndarray, scales_in: np.ndarray | None = None) -> np.ndarray:
    sv = _upsample_scales(ctx, x.ndim, scales_in)
    if sv is None or len(sv) != x.ndim:
        raise OpRuntimeError(f"Upsample: scales {sv} do not fit an input of rank {x.ndim}")
    mode = str(ctx.attr("mode", "nearest"))
    if mode == "bilinear":
        mode = "linear"
    out_shape = [math.floor(d * s) for d, s in zip(x.shape, sv)]
    return resize_nd(x, out_shape, sv, mode=mode, transform="asymmetric", nearest_mode="simple")


__all__ = ["resize_nd"]
