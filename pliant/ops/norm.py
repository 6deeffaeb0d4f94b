"""Normalizations: BatchNormalization, InstanceNormalization, LayerNormalization,
GroupNormalization, RMSNormalization, LpNormalization, MeanVarianceNormalization,
LRN, and Dropout (identity at inference).

Statistics are computed in float32 for half-precision inputs (or in the
``stash_type`` where the op has one) and the result cast back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError
from pliant.ir.dims import Dim
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops.infer import normalize_axis, same_as_input, tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

NORM = "norm"


def _calc_dtype(dt: np.dtype[Any]) -> np.dtype[Any]:
    return np.dtype(np.float64) if dt == np.float64 else np.dtype(np.float32)


def _stash_dtype(ctx: KernelContext, x: np.ndarray) -> np.dtype[Any]:
    st = ctx.attrs.get("stash_type")
    if st is None:
        return _calc_dtype(x.dtype)
    try:
        return DType.from_onnx(int(st)).numpy
    except ValueError:
        raise OpRuntimeError(f"stash_type {st} is not a known element type") from None


def _channel_param(p: np.ndarray, x: np.ndarray, what: str) -> np.ndarray:
    """A per-channel parameter (C,) shaped to broadcast over (N, C, D1...); (C, D1...) for non-spatial BN."""
    if p.ndim <= 1:
        if p.size != x.shape[1] and p.size != 1:
            raise OpRuntimeError(f"{what} has {p.size} values but the input has {x.shape[1]} channels")
        return p.reshape(1, -1, *([1] * (x.ndim - 2)))
    return p.reshape(1, *p.shape)


# -- BatchNormalization -------------------------------------------------------------------


def _bn_training(ctx: KernelContext) -> bool:
    if ctx.opset >= 14:
        return bool(ctx.attr("training_mode", 0))
    if ctx.opset < 7 and int(ctx.attr("is_test", 0)):
        return False
    return ctx.num_outputs > 1


def _bn_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    out: list[Type] = [tx if tx is not None else TensorType(None, None)]
    tm = tensor_input(ctx, 3)
    for _ in range(1, ctx.num_outputs):
        out.append(tm if tm is not None else TensorType(None, None))
    return out


@register("BatchNormalization", Dynamism.ISDOS, infer=_bn_infer, family=NORM)
def batch_normalization(ctx: KernelContext, x: np.ndarray, scale: np.ndarray, b: np.ndarray, mean: np.ndarray,
                        var: np.ndarray) -> Any:
    if x.ndim < 2:
        raise OpRuntimeError(f"BatchNormalization needs an input of rank >= 2 (N, C, ...), got shape {x.shape}")
    eps = float(ctx.attr("epsilon", 1e-5))
    dt = _calc_dtype(x.dtype)
    xf = x.astype(dt, copy=False)
    s, bb = _channel_param(scale, x, "scale").astype(dt), _channel_param(b, x, "B").astype(dt)
    if not _bn_training(ctx):
        m, v = _channel_param(mean, x, "mean").astype(dt), _channel_param(var, x, "var").astype(dt)
        y = (xf - m) / np.sqrt(v + dt.type(eps)) * s + bb
        return y.astype(x.dtype, copy=False)
    spatial = ctx.opset >= 9 or int(ctx.attr("spatial", 1)) != 0
    axes = tuple(i for i in range(x.ndim) if i != 1) if spatial else (0,)
    bm = xf.mean(axis=axes, keepdims=True)
    bv = ((xf - bm) ** 2).mean(axis=axes, keepdims=True)
    y = ((xf - bm) / np.sqrt(bv + dt.type(eps)) * s + bb).astype(x.dtype, copy=False)
    mom = float(ctx.attr("momentum", 0.9))
    pdt = mean.dtype
    saved_mean = bm.reshape(mean.shape)
    saved_var = bv.reshape(var.shape)
    run_mean = (mean.astype(dt) * dt.type(mom) + saved_mean * dt.type(1 - mom)).astype(pdt)
    run_var = (var.astype(dt) * dt.type(mom) + saved_var * dt.type(1 - mom)).astype(var.dtype)
    if ctx.opset >= 14:
        return y, run_mean, run_var
    return y, run_mean, run_var, saved_mean.astype(pdt), saved_var.astype(var.dtype)


# -- InstanceNormalization ------------------------------------------------------------------


@register("InstanceNormalization", Dynamism.ISDOS, infer=same_as_input, family=NORM)
def instance_normalization(ctx: KernelContext, x: np.ndarray, scale: np.ndarray, b: np.ndarray) -> np.ndarray:
    if x.ndim < 3:
        raise OpRuntimeError(f"InstanceNormalization needs an input of rank >= 3 (N, C, D1, ...), got shape {x.shape}")
    eps = float(ctx.attr("epsilon", 1e-5))
    dt = _calc_dtype(x.dtype)
    xf = x.astype(dt, copy=False)
    axes = tuple(range(2, x.ndim))
    m = xf.mean(axis=axes, keepdims=True)
    v = ((xf - m) ** 2).mean(axis=axes, keepdims=True)
    y = (xf - m) / np.sqrt(v + dt.type(eps)) * _channel_param(scale, x, "scale").astype(dt) + _channel_param(b, x, "B").astype(dt)
    return y.astype(x.dtype, copy=False)


# -- LayerNormalization / RMSNormalization ------------------------------------------------------


def _stat_shape(ctx: InferContext, t: TensorType | None) -> tuple[Dim, ...] | None:
    if t is None or t.shape is None:
        return None
    rank = len(t.shape)
    axis = normalize_axis(int(ctx.attr("axis", -1)), rank)
    return (*t.shape[:axis], *([1] * (rank - axis)))


def _stash_type_of(ctx: InferContext) -> DType | None:
    st = ctx.attrs.get("stash_type")
    try:
        return DType.from_onnx(int(st)) if st is not None else DType.FLOAT
    except ValueError:
        return None


def _layernorm_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    out: list[Type] = [tx if tx is not None else TensorType(None, None)]
    stat = TensorType(_stash_type_of(ctx), _stat_shape(ctx, tx))
    out += [stat] * (ctx.num_outputs - 1)
    return out


def _norm_axes(ctx: KernelContext, x: np.ndarray) -> tuple[int, ...]:
    axis = int(ctx.attr("axis", -1))
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise OpRuntimeError(f"axis {axis} is out of range for an input of rank {x.ndim}")
    axis = axis + x.ndim if axis < 0 else axis
    return tuple(range(axis, x.ndim))


def _check_unidirectional(p: np.ndarray, x: np.ndarray, what: str) -> None:
    try:
        if np.broadcast_shapes(p.shape, x.shape) != x.shape:
            raise ValueError
    except ValueError:
        raise OpRuntimeError(f"{what} of shape {p.shape} does not broadcast to the input's shape {x.shape}") from None


@register("LayerNormalization", Dynamism.ISDOS, infer=_layernorm_infer, family=NORM)
def layer_normalization(ctx: KernelContext, x: np.ndarray, scale: np.ndarray, b: np.ndarray | None = None) -> Any:
    axes = _norm_axes(ctx, x)
    eps = float(ctx.attr("epsilon", 1e-5))
    sd = _stash_dtype(ctx, x)
    xf = x.astype(sd, copy=False)
    m = xf.mean(axis=axes, keepdims=True)
    d = xf - m
    v = (d * d).mean(axis=axes, keepdims=True)
    inv = (1 / np.sqrt(v + sd.type(eps))).astype(sd, copy=False)
    _check_unidirectional(scale, x, "Scale")
    y = (d * inv).astype(x.dtype, copy=False) * scale
    if b is not None:
        _check_unidirectional(b, x, "B")
        y = y + b
    y = y.astype(x.dtype, copy=False)
    if ctx.num_outputs == 1:
        return y
    return y, m.astype(sd, copy=False), inv


@register("RMSNormalization", Dynamism.ISDOS, infer=same_as_input, family=NORM)
def rms_normalization(ctx: KernelContext, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    axes = _norm_axes(ctx, x)
    eps = float(ctx.attr("epsilon", 1e-5))
    sd = _stash_dtype(ctx, x)
    xf = x.astype(sd, copy=False)
    rms = np.sqrt((xf * xf).mean(axis=axes, keepdims=True) + sd.type(eps))
    _check_unidirectional(scale, x, "scale")
    return ((xf / rms).astype(x.dtype, copy=False) * scale).astype(x.dtype, copy=False)


# -- GroupNormalization ---------------------------------------------------------------------------


@register("GroupNormalization", Dynamism.ISDOS, infer=same_as_input, family=NORM,
          note="opset 18: scale/bias per group; opset 21: per channel")
def group_normalization(ctx: KernelContext, x: np.ndarray, scale: np.ndarray, b: np.ndarray) -> np.ndarray:
    if x.ndim < 2:
        raise OpRuntimeError(f"GroupNormalization needs an input of rank >= 2 (N, C, ...), got shape {x.shape}")
    groups = int(ctx.attr("num_groups"))
    n, c = x.shape[:2]
    if groups < 1 or c % groups:
        raise OpRuntimeError(f"{c} channels are not divisible by num_groups {groups}")
    eps = float(ctx.attr("epsilon", 1e-5))
    sd = _stash_dtype(ctx, x) if ctx.opset >= 21 else _calc_dtype(x.dtype)
    xg = x.astype(sd, copy=False).reshape(n, groups, -1)
    m = xg.mean(axis=2, keepdims=True)
    d = xg - m
    v = (d * d).mean(axis=2, keepdims=True)
    norm = (d / np.sqrt(v + sd.type(eps))).reshape(x.shape)
    if ctx.opset >= 21:
        want = c
        s, bb = scale.reshape(-1), b.reshape(-1)
    else:
        want = groups
        s, bb = np.repeat(scale.reshape(-1), c // groups), np.repeat(b.reshape(-1), c // groups)
    if scale.size != want or b.size != want:
        raise OpRuntimeError(f"scale and bias must have {want} values at opset {ctx.opset}, got {scale.size} and {b.size}")
    shape = (1, c, *([1] * (x.ndim - 2)))
    if ctx.opset >= 21:
        y = norm.astype(x.dtype, copy=False) * s.reshape(shape) + bb.reshape(shape)
    else:
        y = norm * s.astype(sd).reshape(shape) + bb.astype(sd).reshape(shape)
    return y.astype(x.dtype, copy=False)


# -- LpNormalization / MeanVarianceNormalization / LRN ------------------------------------------


@register("LpNormalization", Dynamism.ISDOS, infer=same_as_input, family=NORM)
def lp_normalization(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    axis = int(ctx.attr("axis", -1))
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise OpRuntimeError(f"axis {axis} is out of range for an input of rank {x.ndim}")
    p = int(ctx.attr("p", 2))
    dt = _calc_dtype(x.dtype)
    xf = x.astype(dt, copy=False)
    if p == 1:
        nrm = np.sum(np.abs(xf), axis=axis, keepdims=True)
    elif p == 2:
        nrm = np.sqrt(np.sum(xf * xf, axis=axis, keepdims=True))
    else:
        raise OpRuntimeError(f"LpNormalization supports p = 1 or 2, got {p}")
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(nrm == 0, dt.type(0), xf / nrm)
    return y.astype(x.dtype, copy=False)


@register("MeanVarianceNormalization", Dynamism.ISDOS, infer=same_as_input, family=NORM)
def mean_variance_normalization(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    if ctx.opset < 9:
        across = int(ctx.attr("across_channels", 0))
        axes = tuple(range(1 if across else 2, x.ndim))
        norm_var = int(ctx.attr("normalize_variance", 1))
    else:
        axes = tuple(int(a) for a in ctx.attr("axes", [0, 2, 3]))
        norm_var = 1
    try:
        axes = tuple(sorted({a + x.ndim if a < 0 else a for a in axes}))
        if any(not 0 <= a < x.ndim for a in axes):
            raise ValueError
    except ValueError:
        raise OpRuntimeError(f"axes {list(axes)} are out of range for an input of rank {x.ndim}") from None
    dt = _calc_dtype(x.dtype)
    xf = x.astype(dt, copy=False)
    d = xf - xf.mean(axis=axes, keepdims=True)
    if norm_var:
        d = d / (np.sqrt((d * d).mean(axis=axes, keepdims=True)) + dt.type(1e-9))
    return d.astype(x.dtype, copy=False)


@register("LRN", Dynamism.ISDOS, infer=same_as_input, family=NORM)
def lrn(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    if x.ndim < 2:
        raise OpRuntimeError(f"LRN needs an input of rank >= 2 (N, C, ...), got shape {x.shape}")
    size = int(ctx.attr("size"))
    if size < 1:
        raise OpRuntimeError(f"LRN size must be >= 1, got {size}")
    alpha = float(ctx.attr("alpha", 1e-4))
    beta = float(ctx.attr("beta", 0.75))
    bias = float(ctx.attr("bias", 1.0))
    dt = _calc_dtype(x.dtype)
    xf = x.astype(dt, copy=False)
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.pad(xf * xf, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    cs = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    c = x.shape[1]
    square_sum = cs[:, size:size + c] - cs[:, :c]
    y = xf / np.power(dt.type(bias) + dt.type(alpha / size) * square_sum, dt.type(beta))
    return y.astype(x.dtype, copy=False)


# -- Dropout ------------------------------------------------------------------------------------------


def _dropout_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    out: list[Type] = [tx if tx is not None else TensorType(None, None)]
    if ctx.num_outputs > 1:
        mask_dt = DType.BOOL if ctx.opset >= 10 else (tx.dtype if tx else None)
        out.append(TensorType(mask_dt, tx.shape if tx else None))
    return out


@register("Dropout", Dynamism.ISDOS, infer=_dropout_infer, family=NORM,
          note="identity at inference; in training mode the values are random but the shapes are not")
def dropout(ctx: KernelContext, x: np.ndarray, ratio: np.ndarray | None = None,
            training_mode: np.ndarray | None = None) -> Any:
    if ctx.opset >= 12:
        r = float(np.asarray(ratio).reshape(-1)[0]) if ratio is not None else 0.5
        training = bool(np.asarray(training_mode).reshape(-1)[0]) if training_mode is not None else False
    else:
        r = float(ctx.attr("ratio", 0.5))
        training = ctx.opset < 7 and not int(ctx.attr("is_test", 0))
    if not 0.0 <= r < 1.0:
        raise OpRuntimeError(f"Dropout ratio must be in [0, 1), got {r}")
    mask_dt = np.bool_ if ctx.opset >= 10 else x.dtype
    if not training or r == 0.0:
        if ctx.num_outputs < 2:
            return x
        return x, np.ones(x.shape, dtype=mask_dt)
    seed = ctx.attrs.get("seed")
    # NOTE: a given seed drives NumPy's legacy generator, so runs with a seed are reproducible.
    rng = np.random.RandomState(int(seed) & 0xFFFFFFFF) if seed is not None else np.random.RandomState()
    keep = rng.uniform(0.0, 1.0, x.shape) >= r
    scale = x.dtype.type(1.0 / (1.0 - r)) if x.dtype.kind == "f" else 1.0 / (1.0 - r)
    y = (x * keep * scale).astype(x.dtype, copy=False)
    if ctx.num_outputs < 2:
        return y
    return y, keep.astype(mask_dt)

