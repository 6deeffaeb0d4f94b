"""Random generators: RandomUniform(Like), RandomNormal(Like), Bernoulli, Multinomial.

Shapes follow from the input's shape or the ``shape`` attribute; the *values*
are random, and no two implementations draw the same ones, even with the same
``seed`` (the spec says so).  A seeded op draws the same values on every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops.infer import tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

RANDOM = "random"
_NOTE = "the shape follows from the input's shape / the shape attribute; the values are random"


def _rng(ctx: KernelContext) -> np.random.Generator:
    seed = ctx.attr("seed")
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(int(np.float64(seed).view(np.uint64)))


def _dtype_attr(ctx: InferContext | KernelContext, default: DType | None) -> DType | None:
    code = ctx.attrs.get("dtype")
    return DType.from_onnx(int(code)) if code is not None else default


def _out_dtype(ctx: KernelContext, fallback: np.dtype[Any], default: DType | None = None) -> np.dtype[Any]:
    dt = _dtype_attr(ctx, default)
    return dt.numpy if dt is not None else fallback


def _like_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    dt = _dtype_attr(ctx, None)
    if dt is None and x is not None:
        dt = x.dtype
    return [TensorType(dt, x.shape if x is not None else None)]


def _shape_infer(ctx: InferContext) -> list[Type]:
    shape = ctx.attr("shape")
    dims = tuple(int(d) for d in shape) if shape is not None else None
    return [TensorType(_dtype_attr(ctx, DType.FLOAT), dims)]


def _shape_attr(ctx: KernelContext) -> tuple[int, ...]:
    shape = ctx.attr("shape")
    if shape is None:
        raise OpRuntimeError(f"{ctx.op.name} needs the 'shape' attribute")
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise OpRuntimeError(f"{ctx.op.name}: shape {list(dims)} has a negative dimension")
    return dims


def _uniform(ctx: KernelContext, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    low, high = float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0))
    return _rng(ctx).uniform(low, high, size=shape).astype(dtype)


def _normal(ctx: KernelContext, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    mean, scale = float(ctx.attr("mean", 0.0)), float(ctx.attr("scale", 1.0))
    return _rng(ctx).normal(mean, scale, size=shape).astype(dtype)


@register("RandomUniform", Dynamism.ISDOS, infer=_shape_infer, family=RANDOM, note=_NOTE)
def random_uniform(ctx: KernelContext) -> np.ndarray:
    return _uniform(ctx, _shape_attr(ctx), _out_dtype(ctx, np.dtype(np.float32), DType.FLOAT))


@register("RandomNormal", Dynamism.ISDOS, infer=_shape_infer, family=RANDOM, note=_NOTE)
def random_normal(ctx: KernelContext) -> np.ndarray:
    return _normal(ctx, _shape_attr(ctx), _out_dtype(ctx, np.dtype(np.float32), DType.FLOAT))


@register("RandomUniformLike", Dynamism.ISDOS, infer=_like_infer, family=RANDOM, note=_NOTE)
def random_uniform_like(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return _uniform(ctx, x.shape, _out_dtype(ctx, x.dtype))


@register("RandomNormalLike", Dynamism.ISDOS, infer=_like_infer, family=RANDOM, note=_NOTE)
def random_normal_like(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return _normal(ctx, x.shape, _out_dtype(ctx, x.dtype))


@register("Bernoulli", Dynamism.ISDOS, infer=_like_infer, family=RANDOM, note=_NOTE)
def bernoulli(ctx: KernelContext, p: np.ndarray) -> np.ndarray:
    pf = p.astype(np.float64)
    if pf.size and (np.isnan(pf).any() or pf.min() < 0 or pf.max() > 1):
        raise OpRuntimeError("Bernoulli: probabilities must lie in [0, 1]")
    draw = _rng(ctx).random(size=p.shape) < pf
    return draw.astype(_out_dtype(ctx, p.dtype))


def _multinomial_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    n = int(ctx.attr("sample_size", 1))
    batch = x.shape[0] if x is not None and x.shape is not None and len(x.shape) == 2 else None
    return [TensorType(_dtype_attr(ctx, DType.INT32), (batch, n))]


@register("Multinomial", Dynamism.ISDOS, infer=_multinomial_infer, family=RANDOM, note=_NOTE)
def multinomial(ctx: KernelContext, logits: np.ndarray) -> np.ndarray:
    if logits.ndim != 2:
        raise OpRuntimeError(f"Multinomial takes [batch, classes] log-probabilities, got shape {logits.shape}")
    n = int(ctx.attr("sample_size", 1))
    dtype = _out_dtype(ctx, np.dtype(np.int32), DType.INT32)
    if dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise OpRuntimeError(f"Multinomial: dtype must be int32 or int64, got {dtype}")
    rng = _rng(ctx)
    out = np.zeros((logits.shape[0], n), dtype=dtype)
    for b, row in enumerate(logits.astype(np.float64)):
        if row.size == 0:
            raise OpRuntimeError("Multinomial: there are no classes to draw from")
        e = np.exp(row - row.max())
        out[b] = rng.choice(row.size, size=n, p=e / e.sum())
    return out
