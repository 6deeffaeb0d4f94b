"""Pooling: AveragePool, MaxPool (with Indices), LpPool, the Global pools, MaxUnpool.

Windows are strided views of the padded input (see ``pliant.ops.conv``);
padding geometry (explicit pads, auto_pad, ceil_mode, dilations) is shared
with the convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, dim_expr, sym_dim
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops.conv import (
    acc_dtype,
    auto_pad_of,
    explicit_pads,
    ints_attr,
    out_dim,
    pad_spatial,
    window_geometry,
    windows,
)
from pliant.ops.infer import tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

POOL = "pool"


def _kernel(ctx: KernelContext | InferContext, nsp: int) -> list[int]:
    ks = ctx.attrs.get("kernel_shape")
    if not ks:
        raise ShapeInferenceError("pooling needs the kernel_shape attribute")
    k = [int(e) for e in ks]
    if len(k) != nsp:
        raise ShapeInferenceError(f"kernel_shape {k} has {len(k)} values but the input has {nsp} spatial axes")
    return k


class _Geom:
    """Resolved window geometry of one pooling op on one input."""

    def __init__(self, ctx: KernelContext, x: np.ndarray) -> None:
        if x.ndim < 3:
            raise OpRuntimeError(f"pooling needs an input of rank >= 3 (N, C, spatial...), got shape {x.shape}")
        nsp = x.ndim - 2
        self.kernel = _kernel(ctx, nsp)
        self.strides = ints_attr(ctx, "strides", nsp, 1)
        self.dil = ints_attr(ctx, "dilations", nsp, 1)
        pads_b, pads_e = explicit_pads(ctx, nsp)
        self.auto_pad = auto_pad_of(ctx)
        ceil = bool(ctx.attr("ceil_mode", 0))
        self.pb, self.pe, self.outs = window_geometry(x.shape[2:], self.kernel, self.strides, self.dil, self.auto_pad,
                                                      pads_b, pads_e, ceil)
        # the padding the op declares (explicit or auto), without ceil_mode's overhang
        self.declared_pe = list(pads_e) if self.auto_pad == "NOTSET" else (
            [0] * nsp if self.auto_pad == "VALID" else self._auto_end(x.shape[2:]))

    def _auto_end(self, sizes: Sequence[int]) -> list[int]:
        out = []
        for i, n in enumerate(sizes):
            eff = self.dil[i] * (self.kernel[i] - 1) + 1
            o = -(-n // self.strides[i])
            total = max(0, (o - 1) * self.strides[i] + eff - n)
            out.append(total - self.pb[i])
        return out

    def flat_windows(self, x: np.ndarray, fill: Any) -> np.ndarray:
        xp = pad_spatial(x, self.pb, self.pe, fill)
        w = windows(xp, self.kernel, self.strides, self.dil, self.outs)
        return w.reshape(*w.shape[: 2 + len(self.outs)], -1)

    def counts(self, include_pad: bool, sizes: Sequence[int]) -> np.ndarray:
        """How many window elements count for the average, shaped to broadcast over (N, C, outs...)."""
        total: np.ndarray = np.ones((), dtype=np.int64)
        nsp = len(sizes)
        for i, n in enumerate(sizes):
            lo = -self.pb[i] if include_pad else 0
            hi = n + self.declared_pe[i] if include_pad else n
            starts = np.arange(self.outs[i]) * self.strides[i] - self.pb[i]
            pos = starts[:, None] + np.arange(self.kernel[i])[None, :] * self.dil[i]
            c = ((pos >= lo) & (pos < hi)).sum(axis=1)
            shape = [1] * nsp
            shape[i] = self.outs[i]
            total = total * c.reshape(shape)
        return total


def _pool_shape(ctx: InferContext) -> tuple[Dim, ...] | None:
    tx = tensor_input(ctx, 0)
    if tx is None or tx.shape is None:
        return None
    nsp = len(tx.shape) - 2
    if nsp < 1:
        raise ShapeInferenceError(f"{ctx.name} needs an input of rank >= 3, got {tx}")
    k = _kernel(ctx, nsp)
    strides = ints_attr(ctx, "strides", nsp, 1)
    dil = ints_attr(ctx, "dilations", nsp, 1)
    pb, pe = explicit_pads(ctx, nsp)
    ap = auto_pad_of(ctx)
    ceil = bool(ctx.attr("ceil_mode", 0))
    sp = [out_dim(tx.shape[2 + i], k[i], strides[i], dil[i], ap, pb[i], pe[i], ceil) for i in range(nsp)]
    return (tx.shape[0], tx.shape[1], *sp)


def _pool_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    shape = _pool_shape(ctx)
    out: list[Type] = [TensorType(tx.dtype if tx else None, shape)]
    if ctx.num_outputs > 1:
        out.append(TensorType(DType.INT64, shape))
    return out


@register("AveragePool", Dynamism.ISDOS, infer=_pool_infer, family=POOL)
def average_pool(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    g = _Geom(ctx, x)
    dt = acc_dtype(x.dtype)
    s = g.flat_windows(x.astype(dt, copy=False), 0).sum(axis=-1)
    cnt = g.counts(bool(ctx.attr("count_include_pad", 0)), x.shape[2:])
    with np.errstate(divide="ignore", invalid="ignore"):
        y = s / np.maximum(cnt, 1).astype(dt)
    return y.astype(x.dtype, copy=False)


def _lowest(dt: np.dtype[Any]) -> Any:
    if dt.kind in "iu":
        return np.iinfo(dt).min
    if dt.kind == "b":
        return False
    return -np.inf


@register("MaxPool", Dynamism.ISDOS, infer=_pool_infer, family=POOL)
def max_pool(ctx: KernelContext, x: np.ndarray) -> Any:
    g = _Geom(ctx, x)
    w = g.flat_windows(x, _lowest(x.dtype))
    if ctx.num_outputs < 2:
        return w.max(axis=-1)
    arg = w.argmax(axis=-1)
    y = np.take_along_axis(w, arg[..., None], axis=-1)[..., 0]
    nsp = x.ndim - 2
    kpos = np.unravel_index(arg, g.kernel)
    sizes = x.shape[2:]
    coords = []
    for i in range(nsp):
        o = np.arange(g.outs[i]).reshape([1, 1] + [g.outs[i] if j == i else 1 for j in range(nsp)])
        coords.append(o * g.strides[i] - g.pb[i] + kpos[i] * g.dil[i])
    n_idx = np.arange(x.shape[0]).reshape([-1] + [1] * (nsp + 1))
    c_idx = np.arange(x.shape[1]).reshape([1, -1] + [1] * nsp)
    plane = int(np.prod(sizes, dtype=np.int64))
    order = range(nsp) if int(ctx.attr("storage_order", 0)) == 0 else range(nsp - 1, -1, -1)
    flat = np.zeros(arg.shape, dtype=np.int64)
    for i in order:
        flat = flat * sizes[i] + coords[i]
    idx = (n_idx * x.shape[1] + c_idx) * plane + flat
    return y, idx.astype(np.int64)


@register("LpPool", Dynamism.ISDOS, infer=_pool_infer, family=POOL)
def lp_pool(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    g = _Geom(ctx, x)
    p = float(ctx.attr("p", 2))
    dt = acc_dtype(x.dtype)
    w = g.flat_windows(np.abs(x.astype(dt, copy=False)), 0)
    y = np.power(np.sum(np.power(w, p), axis=-1), 1.0 / p)
    return y.astype(x.dtype, copy=False)


# -- global pools -----------------------------------------------------------------------


def _global_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    if tx is None:
        return [TensorType(None, None)]
    if tx.shape is None:
        return [TensorType(tx.dtype, None)]
    if len(tx.shape) < 2:
        raise ShapeInferenceError(f"{ctx.name} needs an input of rank >= 2 (N, C, ...), got {tx}")
    return [TensorType(tx.dtype, (*tx.shape[:2], *([1] * (len(tx.shape) - 2))))]


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    if x.ndim < 2:
        raise OpRuntimeError(f"global pooling needs an input of rank >= 2 (N, C, ...), got shape {x.shape}")
    return tuple(range(2, x.ndim))


@register("GlobalAveragePool", Dynamism.ISDOS, infer=_global_infer, family=POOL)
def global_average_pool(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return np.mean(x, axis=_spatial_axes(x), keepdims=True, dtype=acc_dtype(x.dtype)).astype(x.dtype, copy=False)


@register("GlobalMaxPool", Dynamism.ISDOS, infer=_global_infer, family=POOL)
def global_max_pool(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return np.max(x, axis=_spatial_axes(x), keepdims=True)


@register("GlobalLpPool", Dynamism.ISDOS, infer=_global_infer, family=POOL)
def global_lp_pool(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    p = float(ctx.attr("p", 2))
    dt = acc_dtype(x.dtype)
    s = np.sum(np.power(np.abs(x.astype(dt, copy=False)), p), axis=_spatial_axes(x), keepdims=True)
    return np.power(s, 1.0 / p).astype(x.dtype, copy=False)


# -- MaxUnpool ------------------------------------------------------------------------------


def _unpool_default_dim(d: Dim, k: int, s: int, pb: int, pe: int) -> Dim:
    if d is None:
        return None
    if isinstance(d, int):
        return (d - 1) * s + k - pb - pe
    return sym_dim((dim_expr(d) - 1) * s + k - pb - pe)


def _maxunpool_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    dt = tx.dtype if tx else None
    if len(ctx.input_types) > 2 and ctx.input_types[2] is not None:
        c = ctx.const(2)
        if c is not None:
            return [TensorType(dt, tuple(int(v) for v in c.reshape(-1)))]
        rank = tx.rank if tx is not None else None
        return [TensorType(dt, None if rank is None else (None,) * rank)]
    if tx is None or tx.shape is None:
        return [TensorType(dt, None)]
    nsp = len(tx.shape) - 2
    k = _kernel(ctx, nsp)
    strides = ints_attr(ctx, "strides", nsp, 1)
    pb, pe = explicit_pads(ctx, nsp)
    sp = [_unpool_default_dim(tx.shape[2 + i], k[i], strides[i], pb[i], pe[i]) for i in range(nsp)]
    return [TensorType(dt, (*tx.shape[:2], *sp))]


@register("MaxUnpool", Dynamism.ISVDOS, infer=_maxunpool_infer, family=POOL,
          note="ISDOS without the output_shape input (or when it is a constant)")
def max_unpool(ctx: KernelContext, x: np.ndarray, indices: np.ndarray, output_shape: np.ndarray | None = None) -> np.ndarray:
    if x.ndim < 3:
        raise OpRuntimeError(f"MaxUnpool needs an input of rank >= 3, got shape {x.shape}")
    if indices.shape != x.shape:
        raise OpRuntimeError(f"indices shape {indices.shape} differs from X's shape {x.shape}")
    nsp = x.ndim - 2
    k = _kernel(ctx, nsp)
    strides = ints_attr(ctx, "strides", nsp, 1)
    pb, pe = explicit_pads(ctx, nsp)
    sp = [(x.shape[2 + i] - 1) * strides[i] + k[i] - pb[i] - pe[i] for i in range(nsp)]
    default = (*x.shape[:2], *sp)
    dtotal = int(np.prod(default, dtype=np.int64))
    flat_idx = indices.reshape(-1).astype(np.int64)
    if flat_idx.size and (flat_idx.min() < 0 or flat_idx.max() >= dtotal):
        raise OpRuntimeError(f"indices must lie in [0, {dtotal}) for the unpooled shape {list(default)}; got range "
                             f"[{flat_idx.min()}, {flat_idx.max()}]")
    shape = default
    if output_shape is not None:
        # NOTE: indices address the unpooled tensor of the default shape; output_shape only
        # enlarges it (the extra elements, at the high end of each axis, are zeros).
        shape = tuple(int(v) for v in output_shape.reshape(-1))
        if len(shape) != x.ndim or shape[:2] != default[:2] or any(a < b for a, b in zip(shape[2:], sp)):
            raise OpRuntimeError(f"output_shape {list(shape)} must have {x.ndim} entries, batch and channels "
                                 f"{list(default[:2])} and spatial sizes at least {sp}")
        flat_idx = np.ravel_multi_index(np.unravel_index(flat_idx, default), shape)
    total = int(np.prod(shape, dtype=np.int64))
    y = np.zeros(total, dtype=x.dtype)
    y[flat_idx] = x.reshape(-1)
    return y.reshape(shape)
