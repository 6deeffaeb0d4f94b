"""Quantization operators: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul.

Quantized integer types saturate to their range after rounding half to even;
float8/float4/float6 targets use ml_dtypes' round-to-nearest-even conversion,
saturating to the largest finite value (float8 only when ``saturate`` is set).
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops.infer import tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

QUANT = "quant"

_FLOAT8 = {
    np.dtype(ml_dtypes.float8_e4m3fn),
    np.dtype(ml_dtypes.float8_e4m3fnuz),
    np.dtype(ml_dtypes.float8_e5m2),
    np.dtype(ml_dtypes.float8_e5m2fnuz),
}
_ALWAYS_SATURATE = {
    np.dtype(ml_dtypes.float4_e2m1fn),
    np.dtype(ml_dtypes.float6_e2m3fn),
    np.dtype(ml_dtypes.float6_e3m2fn),
}


def _is_int(dt: np.dtype[Any]) -> bool:
    return dt.kind in "iu" or dt in (
        np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4), np.dtype(ml_dtypes.int2), np.dtype(ml_dtypes.uint2)
    )


def _int_range(dt: np.dtype[Any]) -> tuple[int, int]:
    info = ml_dtypes.iinfo(dt) if dt.kind not in "iu" else np.iinfo(dt)
    return int(info.min), int(info.max)


def _compute_dtype(scale: np.ndarray, precision: int = 0) -> np.dtype[Any]:
    """The float type arithmetic between a tensor and its scale happens in."""
    if precision:
        return DType.from_onnx(precision).numpy
    dt = scale.dtype
    if dt in (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64), np.dtype(ml_dtypes.bfloat16)):
        return dt
    return np.dtype(np.float32)


def _expand_param(p: np.ndarray, x_shape: tuple[int, ...], axis: int, block_size: int, what: str) -> np.ndarray:
    """Broadcast a scale / zero point to ``x_shape`` by its granularity (per tensor, per axis, blocked)."""
    rank = len(x_shape)
    if p.size == 1 and (p.ndim <= 1 or block_size <= 0):
        return p.reshape(())
    if not -rank <= axis < max(rank, 1):
        raise OpRuntimeError(f"axis {axis} is out of range for an input of rank {rank}")
    ax = axis + rank if axis < 0 else axis
    if block_size > 0:
        if p.ndim != rank:
            raise OpRuntimeError(f"blocked quantization needs {what} of rank {rank}, got shape {p.shape}")
        d = x_shape[ax]
        if any(p.shape[i] != x_shape[i] for i in range(rank) if i != ax) or -(-d // block_size) != p.shape[ax]:
            raise OpRuntimeError(
                f"{what} shape {p.shape} does not match input shape {x_shape} with block_size {block_size} on axis {ax}"
            )
        return np.repeat(p, block_size, axis=ax)[tuple(slice(0, d) if i == ax else slice(None) for i in range(rank))]
    if p.ndim == 1:
        if p.shape[0] != x_shape[ax]:
            raise OpRuntimeError(f"per-axis {what} has {p.shape[0]} elements but axis {ax} of the input has {x_shape[ax]}")
        shape = [1] * rank
        shape[ax] = p.shape[0]
        return p.reshape(shape)
    if p.shape == x_shape:
        return p
    raise OpRuntimeError(f"{what} of shape {p.shape} fits neither per-tensor, per-axis nor blocked layout for input {x_shape}")


def _to_target(v: np.ndarray, target: np.dtype[Any], saturate: bool) -> np.ndarray:
    """Convert real values (already offset by the zero point) to the quantized type."""
    if _is_int(target):
        lo, hi = _int_range(target)
        r = np.clip(np.rint(v.astype(np.float64)), lo, hi)
        return r.astype(np.int64).astype(target)
    if target in _FLOAT8 or target in _ALWAYS_SATURATE:
        v = v.astype(np.float32)
        if saturate or target in _ALWAYS_SATURATE:
            m = float(ml_dtypes.finfo(target).max)
            v = np.where(np.isnan(v), v, np.clip(v, -m, m))
        return v.astype(target)
    raise OpRuntimeError(f"cannot quantize to element type {target}")


def quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, target: np.dtype[Any],
             axis: int = 1, block_size: int = 0, saturate: bool = True, precision: int = 0) -> np.ndarray:
    cdt = _compute_dtype(scale, precision)
    s = _expand_param(scale, x.shape, axis, block_size, "scale").astype(cdt)
    q = x.astype(cdt) / s
    if zero_point is not None:
        z = _expand_param(zero_point, x.shape, axis, block_size, "zero point")
        if _is_int(target):
            q = np.rint(q.astype(np.float64)) + z.astype(np.float64)
        else:
            q = q.astype(np.float32) + z.astype(np.float32)
    return _to_target(np.asarray(q), target, saturate)


def _quantize_target(ctx: KernelContext | InferContext, zp_dtype: DType | None) -> DType:
    out = int(ctx.attr("output_dtype", 0) or 0)
    if out:
        if zp_dtype is not None and zp_dtype != DType.from_onnx(out):
            raise ShapeInferenceError(
                f"QuantizeLinear: output_dtype {DType.from_onnx(out).short} differs from the zero point's type {zp_dtype.short}"
            )
        return DType.from_onnx(out)
    return zp_dtype if zp_dtype is not None else DType.UINT8


def _quantize_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    zp = tensor_input(ctx, 2)
    zt = ctx.input(2)
    if zt is not None and zp is None:
        return [ANY]
    dt = _quantize_target(ctx, zp.dtype if zp is not None else None)
    return [TensorType(dt, x.shape if x is not None else None)]


@register("QuantizeLinear", Dynamism.ISDOS, family=QUANT, infer=_quantize_infer)
def quantize_linear(ctx: KernelContext, x: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray | None = None) -> np.ndarray:
    zp_dt = DType.from_numpy(y_zero_point.dtype) if y_zero_point is not None else None
    target = _quantize_target(ctx, zp_dt).numpy
    axis = int(ctx.attr("axis", 1))
    block = int(ctx.attr("block_size", 0) or 0)
    if ctx.opset < 13 and y_scale.size != 1:
        raise OpRuntimeError(f"QuantizeLinear-{ctx.opset} needs a scalar scale, got shape {y_scale.shape}")
    return quantize(x, y_scale, y_zero_point, target, axis, block, bool(ctx.attr("saturate", 1)),
                    int(ctx.attr("precision", 0) or 0))


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, out: np.dtype[Any],
               axis: int = 1, block_size: int = 0) -> np.ndarray:
    s = _expand_param(scale, x.shape, axis, block_size, "scale").astype(np.float32)
    if _is_int(x.dtype):
        v = x.astype(np.int64)
        if zero_point is not None:
            v = v - _expand_param(zero_point, x.shape, axis, block_size, "zero point").astype(np.int64)
        f = v.astype(np.float32)
    else:
        f = x.astype(np.float32)
        if zero_point is not None:
            f = f - _expand_param(zero_point, x.shape, axis, block_size, "zero point").astype(np.float32)
    return np.asarray(f * s).astype(out)


def _dequantize_out(ctx: KernelContext | InferContext, scale_dtype: DType | None) -> DType | None:
    out = int(ctx.attr("output_dtype", 0) or 0)
    if out:
        return DType.from_onnx(out)
    if scale_dtype == DType.FLOAT8E8M0:
        return DType.FLOAT
    return scale_dtype


def _dequantize_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    s = tensor_input(ctx, 1)
    dt = _dequantize_out(ctx, s.dtype if s is not None else None)
    return [TensorType(dt, x.shape if x is not None else None)]


@register("DequantizeLinear", Dynamism.ISDOS, family=QUANT, infer=_dequantize_infer)
def dequantize_linear(ctx: KernelContext, x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray | None = None) -> np.ndarray:
    out = _dequantize_out(ctx, DType.from_numpy(x_scale.dtype))
    assert out is not None
    if x_zero_point is not None and x.dtype == np.int32 and np.any(x_zero_point != 0):
        raise OpRuntimeError("DequantizeLinear of int32 input takes no (or a zero) zero point")
    axis = int(ctx.attr("axis", 1))
    block = int(ctx.attr("block_size", 0) or 0)
    return dequantize(x, x_scale, x_zero_point, out.numpy, axis, block)


@register("DynamicQuantizeLinear", Dynamism.ISDOS, family=QUANT)
def dynamic_quantize_linear(ctx: KernelContext, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xf = x.astype(np.float32)
    lo = min(0.0, float(xf.min())) if xf.size else 0.0
    hi = max(0.0, float(xf.max())) if xf.size else 0.0
    scale = np.float32((np.float32(hi) - np.float32(lo)) / np.float32(255))
    if scale == 0:
        # NOTE: an all-zero input has no range; like onnxruntime, use scale 1 and zero point 0.
        scale = np.float32(1)
        zp = np.uint8(0)
        y = np.zeros(x.shape, dtype=np.uint8)
    else:
        zp = np.uint8(np.clip(np.rint(np.float32(0 - np.float32(lo)) / scale), 0, 255))
        y = np.clip(np.rint(xf / scale) + np.float32(zp), 0, 255).astype(np.uint8)
    return y, np.asarray(scale, dtype=np.float32), np.asarray(zp, dtype=np.uint8)


def _dequant_matrix(m: np.ndarray, scale: np.ndarray, zp: np.ndarray, per_row: bool) -> np.ndarray:
    """(m - zp) * scale with per-tensor, per-row (for ``a``) or per-column (for ``b``) parameters."""
    s = scale.astype(np.float64)
    z = zp
    if per_row and s.ndim == 1 and s.size > 1:
        s = s.reshape(-1, 1)
        z = z.reshape(-1, 1)
    if _is_int(m.dtype):
        d = (m.astype(np.int64) - z.astype(np.int64)).astype(np.float64)
    else:
        d = m.astype(np.float64) - z.astype(np.float64)
    return d * s


@register("QLinearMatMul", Dynamism.ISDOS, family=QUANT)
def qlinear_matmul(ctx: KernelContext, a: np.ndarray, a_scale: np.ndarray, a_zero_point: np.ndarray, b: np.ndarray,
                   b_scale: np.ndarray, b_zero_point: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray) -> np.ndarray:
    if a.ndim == 0 or b.ndim == 0:
        raise OpRuntimeError(f"QLinearMatMul needs inputs of rank >= 1, got shapes {a.shape} and {b.shape}")
    if _is_int(a.dtype) and _is_int(b.dtype) and a_scale.size == 1 and b_scale.size == 1:
        # NOTE: exact integer accumulation, one rescale (as integer kernels do).
        acc = np.matmul(a.astype(np.int64) - a_zero_point.astype(np.int64).reshape(()),
                        b.astype(np.int64) - b_zero_point.astype(np.int64).reshape(()))
        real = acc.astype(np.float64) * (float(a_scale.astype(np.float32).reshape(())) * float(b_scale.astype(np.float32).reshape(())))
    else:
        real = np.matmul(_dequant_matrix(a, a_scale, a_zero_point, True), _dequant_matrix(b, b_scale, b_zero_point, False))
    ys = y_scale.astype(np.float64)
    if ys.size == 1:
        ys = ys.reshape(())
    elif ys.ndim == 1:
        ys = ys.reshape(-1, 1) if real.ndim >= 2 and ys.shape[0] == real.shape[-2] and ys.shape[0] != real.shape[-1] else ys
    q = real / ys
    target = y_zero_point.dtype
    zp = y_zero_point.reshape(()) if y_zero_point.size == 1 else y_zero_point
    if _is_int(target):
        q = np.rint(q) + zp.astype(np.float64)
    else:
        q = q + zp.astype(np.float64)
    return _to_target(np.asarray(q), target, True)
