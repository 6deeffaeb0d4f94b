"""Convolutions: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv, CausalConvWithState.

Also home of the sliding-window helpers the pooling ops share: padding
resolution (explicit pads / auto_pad / ceil_mode), windowed views and the
symbolic output-size rule.  Kernels are vectorised: a convolution is a
windowed view of the padded input (``sliding_window_view``) contracted with
the weights by one batched matmul per call; transposed convolutions scatter
one strided slab per kernel element.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy
from numpy.lib.stride_tricks import sliding_window_view

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, d_mul, dim_expr, sym_dim
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops.infer import tensor_input
from pliant.ops.linalg import PACK_PANEL, pack_columns, unpack_columns
from pliant.ops.registry import Dynamism, InferContext, KernelContext, ParamSpec, Schema, register

CONV = "conv"

# -- shared window geometry -----------------------------------------------------


def ints_attr(ctx: KernelContext | InferContext, name: str, n: int, fill: int) -> list[int]:
    """An int-list attribute of length ``n`` (``fill`` everywhere when absent or empty)."""
    v = ctx.attrs.get(name)
    if v is None or (isinstance(v, list) and len(v) == 0):
        return [fill] * n
    out = [int(e) for e in v]
    if len(out) != n:
        raise ShapeInferenceError(f"attribute '{name}' has {len(out)} values but the op has {n} spatial axes")
    return out


def auto_pad_of(ctx: KernelContext | InferContext) -> str:
    v = ctx.attrs.get("auto_pad")
    s = "NOTSET" if v is None else (v.decode() if isinstance(v, bytes) else str(v))
    s = s or "NOTSET"
    if s not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ShapeInferenceError(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '{s}'")
    return s


def explicit_pads(ctx: KernelContext | InferContext, n: int) -> tuple[list[int], list[int]]:
    p = ctx.attrs.get("pads")
    if p is None or (isinstance(p, list) and len(p) == 0):
        return [0] * n, [0] * n
    pads = [int(e) for e in p]
    if len(pads) != 2 * n:
        raise ShapeInferenceError(f"pads has {len(pads)} values but needs 2 x {n} (begin and end per spatial axis)")
    return pads[:n], pads[n:]


def window_geometry(
    in_shape: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    auto_pad: str,
    pads_begin: Sequence[int],
    pads_end: Sequence[int],
    ceil_mode: bool = False,
) -> tuple[list[int], list[int], list[int]]:
    """Per spatial axis: (pads_begin, pads_end, output size).

    ``pads_end`` here may exceed the declared end padding when ``ceil_mode``
    lets the last window run past it; callers that must not count that extra
    region compare with the declared pads.
    """
    pb: list[int] = []
    pe: list[int] = []
    outs: list[int] = []
    for i, size in enumerate(in_shape):
        k, s, d = kernel[i], strides[i], dilations[i]
        if s < 1 or d < 1:
            raise OpRuntimeError(f"strides and dilations must be >= 1, got strides {list(strides)}, dilations {list(dilations)}")
        eff = d * (k - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-size // s)
            total = max(0, (out - 1) * s + eff - size)
            small = total // 2
            b, e = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
        else:
            b, e = (0, 0) if auto_pad == "VALID" else (pads_begin[i], pads_end[i])
            span = size + b + e - eff
            if span < 0:
                raise OpRuntimeError(
                    f"the window (kernel {k}, dilation {d}) is larger than the padded input ({size} + {b} + {e}) on spatial axis {i}"
                )
            if ceil_mode:
                out = -(-span // s) + 1
                if (out - 1) * s >= size + b:
                    out -= 1
            else:
                out = span // s + 1
        pb.append(b)
        pe.append(max(e, (out - 1) * s + eff - size - b))
        outs.append(out)
    return pb, pe, outs


def out_dim(
    size: Dim, k: int, s: int, d: int, auto_pad: str, pb: int, pe: int, ceil_mode: bool = False
) -> Dim:
    """The output size of a window op along one axis, symbolic where ``size`` is (None: unknown)."""
    if size is None:
        return None
    if isinstance(size, int):
        try:
            return window_geometry([size], [k], [s], [d], auto_pad, [pb], [pe], ceil_mode)[2][0]
        except OpRuntimeError as err:
            raise ShapeInferenceError(str(err)) from None
    e = dim_expr(size)
    eff = d * (k - 1) + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return sym_dim(sympy.floor((e + s - 1) / s))
    if auto_pad == "VALID":
        pb = pe = 0
    if ceil_mode:
        # NOTE: the "last window must start inside" correction needs a comparison on the symbol.
        return None
    return sym_dim(sympy.floor((e + pb + pe - eff) / s) + 1)


def windows(xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
            outs: Sequence[int]) -> np.ndarray:
    """A view (N, C, o1..on, k1..kn) of the windows of the (already padded) ``xp``."""
    n = len(kernel)
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations))
    axes = tuple(range(2, 2 + n))
    v = sliding_window_view(xp, eff, axis=axes)
    idx: tuple[slice, ...] = (slice(None), slice(None))
    idx += tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, strides))
    idx += tuple(slice(None, None, d) for d in dilations)
    return v[idx]


def pad_spatial(x: np.ndarray, pb: Sequence[int], pe: Sequence[int], value: Any = 0) -> np.ndarray:
    if not any(pb) and not any(pe):
        return x
    if min(*pb, *pe) < 0:
        raise OpRuntimeError(f"negative pads are not supported: begin {list(pb)}, end {list(pe)}")
    widths = [(0, 0)] * (x.ndim - len(pb)) + list(zip(pb, pe))
    return np.pad(x, widths, mode="constant", constant_values=value)


def acc_dtype(dt: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype a kernel accumulates in for inputs of ``dt``."""
    if dt == np.float64:
        return np.dtype(np.float64)
    if dt.kind in "iub":
        return np.dtype(np.int64)
    return np.dtype(np.float32)


def kernel_shape(ctx: KernelContext, w: np.ndarray) -> list[int]:
    ks = ctx.attrs.get("kernel_shape")
    wk = [int(e) for e in w.shape[2:]]
    if ks:
        if [int(e) for e in ks] != wk:
            raise OpRuntimeError(f"kernel_shape {list(ks)} does not match the weight's spatial shape {wk}")
    return wk


# -- Conv -------------------------------------------------------------------------


def conv_core(
    x: np.ndarray, w: np.ndarray, strides: Sequence[int], dilations: Sequence[int], pb: Sequence[int],
    pe: Sequence[int], outs: Sequence[int], group: int, dtype: np.dtype[Any],
) -> np.ndarray:
    """Grouped N-D correlation of ``x`` with ``w`` in ``dtype`` (inputs already offset/cast as needed)."""
    n_batch, c = x.shape[0], x.shape[1]
    m, cg = w.shape[0], w.shape[1]
    kernel = list(w.shape[2:])
    if group < 1 or c != cg * group:
        raise OpRuntimeError(f"input has {c} channels but the weight expects {cg} per group x {group} groups")
    if m % group:
        raise OpRuntimeError(f"{m} output channels are not divisible by group {group}")
    mg = m // group
    xp = pad_spatial(x.astype(dtype, copy=False), pb, pe)
    win = windows(xp, kernel, strides, dilations, outs)  # N, C, O..., K...
    o = int(np.prod(outs, dtype=np.int64))
    k = int(np.prod(kernel, dtype=np.int64))
    nsp = len(kernel)
    perm = (0, *range(2, 2 + nsp), 1, *range(2 + nsp, 2 + 2 * nsp))
    patches = np.ascontiguousarray(win.transpose(perm)).reshape(n_batch, o, group, cg * k)
    patches = patches.transpose(0, 2, 1, 3)  # N, G, O, Cg*K
    wm = w.astype(dtype, copy=False).reshape(group, mg, cg * k).transpose(0, 2, 1)  # G, Cg*K, Mg
    y = np.matmul(patches, wm)  # N, G, O, Mg
    return y.transpose(0, 1, 3, 2).reshape(n_batch, m, *outs)


def _conv_setup(ctx: KernelContext, x: np.ndarray, w: np.ndarray) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    if x.ndim < 3 or w.ndim != x.ndim:
        raise OpRuntimeError(f"Conv needs X of rank >= 3 and W of the same rank, got X {x.shape}, W {w.shape}")
    nsp = x.ndim - 2
    kernel = kernel_shape(ctx, w)
    strides = ints_attr(ctx, "strides", nsp, 1)
    dil = ints_attr(ctx, "dilations", nsp, 1)
    pads_b, pads_e = explicit_pads(ctx, nsp)
    pb, pe, outs = window_geometry(x.shape[2:], kernel, strides, dil, auto_pad_of(ctx), pads_b, pads_e)
    return strides, dil, pb, pe, outs


def _conv_infer_shape(ctx: InferContext, x_idx: int = 0, w_idx: int = 1, w_out_axis: int = 0,
                      weight: TensorType | None = None) -> tuple[Dim, ...] | None:
    """The output shape; ``weight``: the weight's type where operand ``w_idx`` is not the weight as ONNX has it."""
    tx, tw = tensor_input(ctx, x_idx), weight or tensor_input(ctx, w_idx)
    if tx is None or tx.shape is None:
        return None
    nsp = len(tx.shape) - 2
    if nsp < 1:
        raise ShapeInferenceError(f"{ctx.name} needs an input of rank >= 3, got {tx}")
    m: Dim = None
    kern: list[int] | None = None
    ks = ctx.attrs.get("kernel_shape")
    if ks:
        kern = [int(e) for e in ks]
    if tw is not None and tw.shape is not None:
        if len(tw.shape) != nsp + 2:
            raise ShapeInferenceError(f"{ctx.name}: weight {tw} and input {tx} have different ranks")
        m = tw.shape[w_out_axis]
        if kern is None and all(isinstance(d, int) for d in tw.shape[2:]):
            kern = [int(d) for d in tw.shape[2:]]  # type: ignore[arg-type]
    if kern is None:
        return (tx.shape[0], m, *([None] * nsp))
    if len(kern) != nsp:
        raise ShapeInferenceError(f"{ctx.name}: kernel_shape {kern} does not match {nsp} spatial axes")
    strides = ints_attr(ctx, "strides", nsp, 1)
    dil = ints_attr(ctx, "dilations", nsp, 1)
    pb, pe = explicit_pads(ctx, nsp)
    ap = auto_pad_of(ctx)
    spatial = [out_dim(tx.shape[2 + i], kern[i], strides[i], dil[i], ap, pb[i], pe[i]) for i in range(nsp)]
    return (tx.shape[0], m, *spatial)


def _conv_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    return [TensorType(tx.dtype if tx else None, _conv_infer_shape(ctx))]


def _conv_backward(ctx: InferContext, results: list[Type]) -> list[tuple[Dim, Dim]]:
    """Input channels = weight channels x group."""
    tx, tw = tensor_input(ctx, 0), tensor_input(ctx, 1)
    if tx is None or tw is None or not tx.shape or not tw.shape or len(tx.shape) < 2 or len(tw.shape) < 2:
        return []
    return [(tx.shape[1], d_mul(tw.shape[1], int(ctx.attr("group", 1))))]


@register("Conv", Dynamism.ISDOS, infer=_conv_infer, family=CONV, backward=_conv_backward)
def conv(ctx: KernelContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    strides, dil, pb, pe, outs = _conv_setup(ctx, x, w)
    dt = acc_dtype(x.dtype)
    y = conv_core(x, w, strides, dil, pb, pe, outs, int(ctx.attr("group", 1)), dt)
    if b is not None:
        if b.size != y.shape[1]:
            raise OpRuntimeError(f"bias has {b.size} values but the output has {y.shape[1]} channels")
        y = y + b.astype(dt).reshape(1, -1, *([1] * (y.ndim - 2)))
    return y.astype(x.dtype, copy=False)


# -- PackedConv ---------------------------------------------------------------------
# ``pliant.PackedConv(x, p, b, weight_shape=[M, C, KH, KW], layout=...)`` is ``Conv(x, w, b)`` (one group, 2-D)
# for a constant ``w`` stored, once, by ``pliant.transforms.pack_weights``, in the layout conv.c streams instead
# of rearranging it at every call:
#   "panels" (the default): the panels of its turned-around product, ``w`` as a (C*KH*KW) x M matrix packed by
#     ``pack_columns`` (PACK_PANEL output channels a panel);
#   "winograd": a 3x3 window of stride 1 and no dilation, as Winograd F(2x2, 3x3)'s transformed weights
#     ``U[4i + j, m, c] = (G w[m, c] G^T)[i, j]`` (``pack_winograd_weights``), which conv.c multiplies by the
#     transformed input tiles: 16 products per 2x2 outputs and channel pair instead of 36.

PACKED_CONV_SCHEMA = Schema(
    "PackedConv", "pliant", 1, (ParamSpec("X"), ParamSpec("W"), ParamSpec("B", optional=True)), (ParamSpec("Y"),),
    {"weight_shape": None, "strides": None, "pads": None, "dilations": None, "layout": "panels"},
    frozenset({"weight_shape"}))

PACKED_LAYOUTS = ("panels", "winograd", "winograd_taps")
"""PackedConv's layouts; conv.c's S_WPACK is a layout's index plus one."""

WINOGRAD_LAYOUTS = ("winograd", "winograd_taps")
"""The layouts conv.c runs as Winograd F(2x2, 3x3) (the taps, on AVX-512, also as F(4x4, 3x3)): 3x3 windows of
stride 1, no dilation."""

WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
"""F(2x2, 3x3)'s weight transform (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
interpolation at 0, 1, -1 and infinity."""


def pack_conv_weights(w: np.ndarray) -> np.ndarray:
    """Conv weights (M, C, KH, KW) as PackedConv's panels: shape (ceil(M / PACK_PANEL), C*KH*KW, PACK_PANEL)."""
    return pack_columns(w.reshape(w.shape[0], -1).T)


def unpack_conv_weights(p: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The weights (M, C, KH, KW) whose panels ``p`` are (``pack_conv_weights``'s inverse)."""
    return np.ascontiguousarray(unpack_columns(p, int(shape[0])).T).reshape(*shape)


def pack_winograd_weights(w: np.ndarray) -> np.ndarray:
    """3x3 conv weights (M, C, 3, 3) as PackedConv's "winograd" layout: shape (16, M, C), computed in float64."""
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"Winograd F(2x2, 3x3) needs weights of shape (M, C, 3, 3), got {w.shape}")
    m, c = w.shape[:2]
    u = np.empty((4, 4, m, c), w.dtype)
    # NOTE: a few output channels at a time: float64 temporaries of all the weights at once stayed in the heap
    # (SkipNet: 9.5 MB more resident for 7.6 MB of transformed weights)
    for m0 in range(0, m, 4):
        u[:, :, m0:m0 + 4] = np.einsum("ij,mcjk,lk->ilmc", WINOGRAD_G, w[m0:m0 + 4].astype(np.float64), WINOGRAD_G)
    return u.reshape(16, m, c)


def unpack_winograd_weights(u: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The weights (M, C, 3, 3) whose transform ``u`` is (``pack_winograd_weights``'s inverse: G's left inverse
    on both sides, exact up to float32 rounding)."""
    gi = np.linalg.pinv(WINOGRAD_G)
    m, c = int(shape[0]), int(shape[1])
    w = np.einsum("ai,ijmc,bj->mcab", gi, u.astype(np.float64).reshape(4, 4, m, c), gi)
    return np.ascontiguousarray(w, dtype=u.dtype)


def pack_winograd_taps(w: np.ndarray) -> np.ndarray:
    """3x3 conv weights (M, C, 3, 3) as PackedConv's "winograd_taps" layout: shape (M, 9, C), each output channel's
    nine taps with the input channels contiguous, which conv.c transforms (G w G^T) a few rows at a time."""
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"Winograd F(2x2, 3x3) needs weights of shape (M, C, 3, 3), got {w.shape}")
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], 9, w.shape[1])


def unpack_winograd_taps(t: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The weights (M, C, 3, 3) whose taps ``t`` are (``pack_winograd_taps``'s inverse)."""
    m, c = int(shape[0]), int(shape[1])
    return np.ascontiguousarray(t.reshape(m, 3, 3, c).transpose(0, 3, 1, 2))


def packed_layout(attrs: Any, what: str, error: type[Exception] = ShapeInferenceError) -> str:
    """PackedConv's (or its FusedConv's) ``layout`` attribute, checked."""
    layout = attrs.get("layout") or "panels"
    if layout not in PACKED_LAYOUTS:
        raise error(f"{what}: PackedConv's layout must be one of {list(PACKED_LAYOUTS)}, got {layout!r}")
    return str(layout)


def packed_array_shape(layout: str, weight_shape: Sequence[int]) -> tuple[int, int, int]:
    """The shape of weights ``weight_shape`` (M, C, KH, KW) stored in PackedConv's ``layout``."""
    m, c, kh, kw = (int(e) for e in weight_shape)
    if layout == "winograd":
        return (16, m, c)
    if layout == "winograd_taps":
        return (m, kh * kw, c)
    return (-(-m // PACK_PANEL), c * kh * kw, PACK_PANEL)


def unpack_packed_weights(p: np.ndarray, layout: str, shape: Sequence[int]) -> np.ndarray:
    """The weights (M, C, KH, KW) stored as ``p`` in PackedConv's ``layout``."""
    if layout == "winograd":
        return unpack_winograd_weights(p, shape)
    if layout == "winograd_taps":
        return unpack_winograd_taps(p, shape)
    return unpack_conv_weights(p, shape)


def packed_weight_shape(attrs: Any, panels: tuple[Any, ...] | None, what: str,
                        error: type[Exception] = ShapeInferenceError) -> tuple[int, int, int, int]:
    """PackedConv's ``weight_shape`` attribute, checked against its layout and the stored array's shape (where
    known)."""
    ws = attrs.get("weight_shape")
    if not isinstance(ws, list | tuple) or len(ws) != 4 or any(int(e) < 1 for e in ws):
        raise error(f"{what}: PackedConv needs 'weight_shape' = [M, C, KH, KW] (positive), got {ws!r}")
    m, c, kh, kw = (int(e) for e in ws)
    layout = packed_layout(attrs, what, error)
    if layout in WINOGRAD_LAYOUTS:
        strides, dil = attrs.get("strides") or [1, 1], attrs.get("dilations") or [1, 1]
        if (kh, kw) != (3, 3) or any(int(e) != 1 for e in [*strides, *dil]):
            raise error(f"{what}: PackedConv's {layout} layout is for 3x3 windows of stride 1 without dilation, "
                        f"got weight_shape {[m, c, kh, kw]}, strides {list(strides)}, dilations {list(dil)}")
    want = packed_array_shape(layout, (m, c, kh, kw))
    if panels is not None and (len(panels) != 3 or any(isinstance(a, int) and a != b for a, b in zip(panels, want))):
        raise error(f"{what}: PackedConv's W ({layout}) must have shape {list(want)} for weight_shape "
                    f"{[m, c, kh, kw]}, got {list(panels)}")
    return m, c, kh, kw


def _packed_conv_infer(ctx: InferContext) -> list[Type]:
    tx, tp = tensor_input(ctx, 0), tensor_input(ctx, 1)
    ws = packed_weight_shape(ctx.attrs, tuple(tp.shape) if tp is not None and tp.shape is not None else None, ctx.name)
    if tx is not None and tx.shape is not None and len(tx.shape) != 4:
        raise ShapeInferenceError(f"{ctx.name}: PackedConv is 2-D (an input of rank 4), got {tx}")
    weight = TensorType(tp.dtype if tp else None, ws)
    return [TensorType(tx.dtype if tx else None, _conv_infer_shape(ctx, weight=weight))]


@register("PackedConv", Dynamism.ISDOS, domain="pliant", infer=_packed_conv_infer, family=CONV,
          schema=PACKED_CONV_SCHEMA)
def packed_conv(ctx: KernelContext, x: np.ndarray, p: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    shape = packed_weight_shape(ctx.attrs, p.shape, "PackedConv", OpRuntimeError)  # NOTE: checks the array
    return conv(ctx, x, unpack_packed_weights(p, packed_layout(ctx.attrs, "PackedConv"), shape), b)


# -- ConvInteger / QLinearConv ------------------------------------------------------


def _zero_point(zp: np.ndarray | None, what: str) -> np.ndarray:
    if zp is None:
        return np.zeros((), dtype=np.int64)
    return zp.astype(np.int64)


def _per_channel(v: np.ndarray, m: int, nsp: int, what: str) -> np.ndarray:
    """A scalar or per-output-channel parameter, shaped to broadcast over (N, M, spatial...)."""
    if v.size == 1:
        return v.reshape(())
    if v.size != m:
        raise OpRuntimeError(f"{what} has {v.size} values; it must be a scalar or have one per output channel ({m})")
    return v.reshape(1, m, *([1] * nsp))


def _int_conv(ctx: KernelContext, x: np.ndarray, x_zp: np.ndarray | None, w: np.ndarray, w_zp: np.ndarray | None) -> np.ndarray:
    strides, dil, pb, pe, outs = _conv_setup(ctx, x, w)
    xz = _zero_point(x_zp, "x_zero_point")
    if xz.size != 1:
        raise OpRuntimeError(f"x_zero_point must be a scalar, got shape {xz.shape}")
    wz = _zero_point(w_zp, "w_zero_point")
    xs = x.astype(np.int64) - xz.reshape(())
    if wz.size == 1:
        ws = w.astype(np.int64) - wz.reshape(())
    elif wz.size == w.shape[0]:
        ws = w.astype(np.int64) - wz.reshape(-1, *([1] * (w.ndim - 1)))
    else:
        raise OpRuntimeError(f"w_zero_point has {wz.size} values; it must be a scalar or have one per output channel ({w.shape[0]})")
    return conv_core(xs, ws, strides, dil, pb, pe, outs, int(ctx.attr("group", 1)), np.dtype(np.int64))


def _convinteger_infer(ctx: InferContext) -> list[Type]:
    return [TensorType(DType.INT32, _conv_infer_shape(ctx))]


@register("ConvInteger", Dynamism.ISDOS, infer=_convinteger_infer, family=CONV)
def conv_integer(ctx: KernelContext, x: np.ndarray, w: np.ndarray, x_zp: np.ndarray | None = None,
                 w_zp: np.ndarray | None = None) -> np.ndarray:
    return _int_conv(ctx, x, x_zp, w, w_zp).astype(np.int32)


def _qlinearconv_infer(ctx: InferContext) -> list[Type]:
    tz = tensor_input(ctx, 7)
    return [TensorType(tz.dtype if tz else None, _conv_infer_shape(ctx, 0, 3))]


@register("QLinearConv", Dynamism.ISDOS, infer=_qlinearconv_infer, family=CONV)
def qlinear_conv(ctx: KernelContext, x: np.ndarray, x_scale: np.ndarray, x_zp: np.ndarray | None, w: np.ndarray,
                 w_scale: np.ndarray, w_zp: np.ndarray | None, y_scale: np.ndarray, y_zp: np.ndarray | None,
                 b: np.ndarray | None = None) -> np.ndarray:
    acc = _int_conv(ctx, x, x_zp, w, w_zp)
    nsp = acc.ndim - 2
    m = acc.shape[1]
    if b is not None:
        if b.size != m:
            raise OpRuntimeError(f"bias has {b.size} values but the output has {m} channels")
        acc = acc + b.astype(np.int64).reshape(1, m, *([1] * nsp))
    if x_scale.size != 1 or y_scale.size != 1:
        raise OpRuntimeError(f"x_scale and y_scale must be scalars, got shapes {x_scale.shape} and {y_scale.shape}")
    out_dt = y_zp.dtype if y_zp is not None else np.dtype(np.uint8)
    scale = (x_scale.astype(np.float32).reshape(()) * _per_channel(w_scale.astype(np.float32), m, nsp, "w_scale")
             / y_scale.astype(np.float32).reshape(()))
    yz = y_zp.astype(np.float64).reshape(()) if y_zp is not None else np.float64(0.0)
    y = np.rint(acc.astype(np.float64) * scale.astype(np.float64)) + yz
    info = np.iinfo(out_dt)
    return np.clip(y, info.min, info.max).astype(out_dt)


# -- ConvTranspose --------------------------------------------------------------------


def _convtranspose_geometry(
    ctx: KernelContext | InferContext, in_sp: Sequence[Any], kernel: Sequence[int]
) -> tuple[list[int], list[int], list[int], list[int], list[Any]]:
    """strides, dilations, pads_begin, pads_end, output spatial sizes (symbolic-friendly)."""
    nsp = len(kernel)
    strides = ints_attr(ctx, "strides", nsp, 1)
    dil = ints_attr(ctx, "dilations", nsp, 1)
    opad = ints_attr(ctx, "output_padding", nsp, 0)
    pads_b, pads_e = explicit_pads(ctx, nsp)
    ap = auto_pad_of(ctx)
    oshape = ctx.attrs.get("output_shape")
    target: list[Any] | None = None
    if oshape:
        os_ = [int(e) for e in oshape]
        if len(os_) == nsp + 2:
            os_ = os_[2:]
        if len(os_) != nsp:
            raise ShapeInferenceError(f"output_shape {list(oshape)} does not match {nsp} spatial axes")
        target = list(os_)
    elif ap in ("SAME_UPPER", "SAME_LOWER"):
        # NOTE: output = input * stride, except that (as in ONNX's shape inference and ONNX Runtime)
        # the total padding is never negative: a kernel shorter than the stride gives the natural size.
        target = []
        for d, s, k, dl, op in zip(in_sp, strides, kernel, dil, opad):
            shrink = min(0, dl * (k - 1) + 1 + op - s)
            target.append(None if d is None else (d * s + shrink if isinstance(d, int) else sym_dim(dim_expr(d) * s + shrink)))
    pb: list[int] = []
    pe: list[int] = []
    outs: list[Any] = []
    for i in range(nsp):
        eff = dil[i] * (kernel[i] - 1) + 1
        size = in_sp[i]
        if target is None:
            b, e = (0, 0) if ap == "VALID" else (pads_b[i], pads_e[i])
            pb.append(b)
            pe.append(e)
            if size is None:
                outs.append(None)
            elif isinstance(size, int):
                outs.append(strides[i] * (size - 1) + opad[i] + eff - b - e)
            else:
                outs.append(sym_dim(strides[i] * (dim_expr(size) - 1) + opad[i] + eff - b - e))
            continue
        t = target[i]
        outs.append(t)
        if isinstance(size, int) and isinstance(t, int):
            total = strides[i] * (size - 1) + opad[i] + eff - t
            half = total // 2
            if ap == "SAME_UPPER":
                pb.append(half)
                pe.append(total - half)
            else:
                pb.append(total - half)
                pe.append(half)
        else:
            pb.append(0)
            pe.append(0)
    return strides, dil, pb, pe, outs


def _convtranspose_infer(ctx: InferContext) -> list[Type]:
    tx, tw = tensor_input(ctx, 0), tensor_input(ctx, 1)
    dt = tx.dtype if tx else None
    if tx is None or tx.shape is None:
        return [TensorType(dt, None)]
    nsp = len(tx.shape) - 2
    if nsp < 1:
        raise ShapeInferenceError(f"ConvTranspose needs an input of rank >= 3, got {tx}")
    group = int(ctx.attr("group", 1))
    m: Dim = None
    kern: list[int] | None = [int(e) for e in ctx.attrs["kernel_shape"]] if ctx.attrs.get("kernel_shape") else None
    if tw is not None and tw.shape is not None:
        if len(tw.shape) != nsp + 2:
            raise ShapeInferenceError(f"ConvTranspose: weight {tw} and input {tx} have different ranks")
        w1 = tw.shape[1]
        m = w1 * group if isinstance(w1, int) else (sym_dim(dim_expr(w1) * group) if w1 is not None else None)
        if kern is None and all(isinstance(d, int) for d in tw.shape[2:]):
            kern = [int(d) for d in tw.shape[2:]]  # type: ignore[arg-type]
    if kern is None:
        return [TensorType(dt, (tx.shape[0], m, *([None] * nsp)))]
    *_, outs = _convtranspose_geometry(ctx, tx.shape[2:], kern)
    return [TensorType(dt, (tx.shape[0], m, *outs))]


def scatter_windows(cols: np.ndarray, lead: tuple[int, ...], kernel: Sequence[int], in_sp: Sequence[int],
                    strides: Sequence[int], dilations: Sequence[int], pb: Sequence[int], outs: Sequence[int]) -> np.ndarray:
    """Sum window contributions ``cols`` (lead..., K..., I...) into an output (lead..., outs...).

    Input position i and kernel element k land at output position
    ``i*stride + k*dilation - pad_begin``; positions outside the output are dropped.
    """
    nsp = len(kernel)
    lo = [min(0, p) for p in pb]  # NOTE: buffer origin relative to the uncropped output (pads may be negative)
    full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(in_sp, strides, dilations, kernel)]
    hi = [max(f, p + o) for f, p, o in zip(full, pb, outs)]
    buf = np.zeros((*lead, *[h - lw for h, lw in zip(hi, lo)]), dtype=cols.dtype)
    nl = len(lead)
    for kk in np.ndindex(*kernel):
        sl: tuple[Any, ...] = (Ellipsis, *(slice(k * d - lw, k * d - lw + (n - 1) * s + 1, s)
                                           for k, d, lw, n, s in zip(kk, dilations, lo, in_sp, strides)))
        buf[sl] += cols[(slice(None),) * nl + kk]
    crop: tuple[Any, ...] = (Ellipsis, *(slice(p - lw, p - lw + o) for p, lw, o in zip(pb, lo, outs)))
    return buf[crop] if nsp else buf


@register("ConvTranspose", Dynamism.ISDOS, infer=_convtranspose_infer, family=CONV)
def conv_transpose(ctx: KernelContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    if x.ndim < 3 or w.ndim != x.ndim:
        raise OpRuntimeError(f"ConvTranspose needs X of rank >= 3 and W of the same rank, got X {x.shape}, W {w.shape}")
    n_batch, c = x.shape[0], x.shape[1]
    in_sp = list(x.shape[2:])
    kernel = kernel_shape(ctx, w)
    group = int(ctx.attr("group", 1))
    if group < 1 or c % group or w.shape[0] != c:
        raise OpRuntimeError(f"input has {c} channels; the weight's first axis ({w.shape[0]}) must equal it and be divisible by group {group}")
    cg, mg = c // group, w.shape[1]
    strides, dil, pb, _, outs = _convtranspose_geometry(ctx, in_sp, kernel)
    if any(o <= 0 for o in outs):
        raise OpRuntimeError(f"ConvTranspose output spatial shape {outs} is not positive")
    dt = acc_dtype(x.dtype)
    i_n = int(np.prod(in_sp, dtype=np.int64))
    k_n = int(np.prod(kernel, dtype=np.int64))
    xm = x.astype(dt, copy=False).reshape(n_batch, group, cg, i_n).transpose(0, 1, 3, 2)  # N, G, I, Cg
    wm = w.astype(dt, copy=False).reshape(group, cg, mg * k_n)  # G, Cg, Mg*K
    cols = np.matmul(xm, wm)  # N, G, I, Mg*K
    cols = cols.reshape(n_batch, group, *in_sp, mg, *kernel)
    nsp = len(kernel)
    perm = (0, 1, 2 + nsp, *range(3 + nsp, 3 + 2 * nsp), *range(2, 2 + nsp))
    cols = cols.transpose(perm).reshape(n_batch, group * mg, *kernel, *in_sp)
    y = scatter_windows(cols, (n_batch, group * mg), kernel, in_sp, strides, dil, pb, outs)
    if b is not None:
        if b.size != group * mg:
            raise OpRuntimeError(f"bias has {b.size} values but the output has {group * mg} channels")
        y = y + b.astype(dt).reshape(1, -1, *([1] * nsp))
    return np.ascontiguousarray(y).astype(x.dtype, copy=False)


# -- DeformConv ---------------------------------------------------------------------


def _deform_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    return [TensorType(tx.dtype if tx else None, _conv_infer_shape(ctx))]


def linear_sample(img: np.ndarray, coords: Sequence[np.ndarray]) -> np.ndarray:
    """Multilinear samples of ``img`` (B, C, D1..Dn) at ``coords`` (n arrays of shape (B, P)); zeros outside.

    Returns (B, C, P).  A sample whose coordinate is <= -1 or >= size on some axis is 0;
    corners outside the image contribute 0.
    """
    b, c = img.shape[:2]
    sizes = img.shape[2:]
    nsp = len(sizes)
    flat = img.reshape(b, c, -1)
    p = coords[0].shape[1]
    out = np.zeros((b, c, p), dtype=img.dtype)
    inside = np.ones((b, p), dtype=bool)
    lows = []
    fracs = []
    for ax in range(nsp):
        co = coords[ax]
        inside &= (co > -1) & (co < sizes[ax])
        lo = np.floor(co)
        lows.append(lo.astype(np.int64))
        fracs.append((co - lo).astype(img.dtype))
    strides_flat = [int(np.prod(sizes[ax + 1:], dtype=np.int64)) for ax in range(nsp)]
    for corner in np.ndindex(*([2] * nsp)):
        wgt = np.ones((b, p), dtype=img.dtype)
        idx = np.zeros((b, p), dtype=np.int64)
        ok = inside.copy()
        for ax, bit in enumerate(corner):
            pos = lows[ax] + bit
            ok &= (pos >= 0) & (pos < sizes[ax])
            wgt = wgt * (fracs[ax] if bit else 1 - fracs[ax])
            idx += np.clip(pos, 0, sizes[ax] - 1) * strides_flat[ax]
        vals = np.take_along_axis(flat, idx[:, None, :], axis=2)
        out += vals * (wgt * ok)[:, None, :]
    return out


@register("DeformConv", Dynamism.ISDOS, infer=_deform_infer, family=CONV)
def deform_conv(ctx: KernelContext, x: np.ndarray, w: np.ndarray, offset: np.ndarray, b: np.ndarray | None = None,
                mask: np.ndarray | None = None) -> np.ndarray:
    strides, dil, pb, _, outs = _conv_setup(ctx, x, w)
    n_batch, c = x.shape[:2]
    kernel = list(w.shape[2:])
    nsp = len(kernel)
    group = int(ctx.attr("group", 1))
    og = int(ctx.attr("offset_group", 1))
    m, cg = w.shape[0], w.shape[1]
    if og < 1 or c % og:
        raise OpRuntimeError(f"{c} input channels are not divisible by offset_group {og}")
    if group < 1 or c != cg * group or m % group:
        raise OpRuntimeError(f"input has {c} channels, weight {w.shape}: inconsistent with group {group}")
    k_n = int(np.prod(kernel, dtype=np.int64))
    o_n = int(np.prod(outs, dtype=np.int64))
    if offset.shape != (n_batch, og * k_n * nsp, *outs):
        raise OpRuntimeError(f"offset has shape {offset.shape}, expected {(n_batch, og * k_n * nsp, *outs)}")
    if mask is not None and mask.shape != (n_batch, og * k_n, *outs):
        raise OpRuntimeError(f"mask has shape {mask.shape}, expected {(n_batch, og * k_n, *outs)}")
    dt = acc_dtype(x.dtype)
    off = offset.astype(dt).reshape(n_batch, og, k_n, nsp, o_n)
    msk = np.ones((n_batch, og, k_n, o_n), dtype=dt) if mask is None else mask.astype(dt).reshape(n_batch, og, k_n, o_n)
    # base sampling positions: (K, O) per axis
    kgrid = np.indices(kernel).reshape(nsp, k_n)
    ogrid = np.indices(outs).reshape(nsp, o_n)
    base = [(ogrid[ax][None, :] * strides[ax] - pb[ax] + kgrid[ax][:, None] * dil[ax]).astype(dt) for ax in range(nsp)]
    cpg = c // og
    xg = x.astype(dt).reshape(n_batch * og, cpg, *x.shape[2:])
    coords = [(base[ax][None, None] + off[:, :, :, ax, :]).reshape(n_batch * og, k_n * o_n) for ax in range(nsp)]
    samples = linear_sample(xg, coords)  # N*og, cpg, K*O
    samples = samples.reshape(n_batch, og, cpg, k_n, o_n) * msk[:, :, None]
    samples = samples.reshape(n_batch, group, cg, k_n, o_n).transpose(0, 1, 4, 2, 3).reshape(n_batch, group, o_n, cg * k_n)
    mg = m // group
    wm = w.astype(dt).reshape(group, mg, cg * k_n).transpose(0, 2, 1)
    y = np.matmul(samples, wm).transpose(0, 1, 3, 2).reshape(n_batch, m, *outs)
    if b is not None:
        y = y + b.astype(dt).reshape(1, -1, *([1] * nsp))
    return y.astype(x.dtype, copy=False)


# -- CausalConvWithState ---------------------------------------------------------------


def _causal_infer(ctx: InferContext) -> list[Type]:
    tx, tw = tensor_input(ctx, 0), tensor_input(ctx, 1)
    dt = tx.dtype if tx else None
    if tx is None or tx.shape is None:
        return [TensorType(dt, None)] * 2
    if len(tx.shape) != 3:
        raise ShapeInferenceError(f"CausalConvWithState needs a rank-3 input (batch, channels, length), got {tx}")
    k: Dim = None
    if tw is not None and tw.shape is not None and len(tw.shape) == 3 and isinstance(tw.shape[2], int):
        k = tw.shape[2] - 1
    out: list[Type] = [TensorType(dt, tx.shape), TensorType(dt, (tx.shape[0], tx.shape[1], k))]
    return out[: max(ctx.num_outputs, 1)]


@register("CausalConvWithState", Dynamism.ISDOS, infer=_causal_infer, family=CONV)
def causal_conv_with_state(ctx: KernelContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                           past: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim != 3 or w.ndim != 3 or w.shape[0] != x.shape[1] or w.shape[1] != 1:
        raise OpRuntimeError(f"CausalConvWithState needs input (B, C, L) and weight (C, 1, k), got {x.shape} and {w.shape}")
    n_batch, c = x.shape[:2]
    k = w.shape[2]
    if past is None:
        past = np.zeros((n_batch, c, k - 1), dtype=x.dtype)
    elif past.shape != (n_batch, c, k - 1):
        raise OpRuntimeError(f"past_state has shape {past.shape}, expected {(n_batch, c, k - 1)}")
    full = np.concatenate([past.astype(x.dtype), x], axis=2)
    dt = acc_dtype(x.dtype)
    win = sliding_window_view(full.astype(dt), k, axis=2)  # B, C, L, k
    y = np.einsum("bclk,ck->bcl", win, w[:, 0, :].astype(dt))
    if b is not None:
        y = y + b.astype(dt).reshape(1, c, 1)
    act = str(ctx.attr("activation", "none")).lower()
    if act in ("silu", "swish"):
        y = y / (1 + np.exp(-y))
    elif act not in ("none", ""):
        raise OpRuntimeError(f"unsupported activation '{act}' (none, silu, swish)")
    present = full[:, :, full.shape[2] - (k - 1):] if k > 1 else full[:, :, :0]
    return y.astype(x.dtype), np.ascontiguousarray(present)


__all__ = [
    "acc_dtype",
    "auto_pad_of",
    "explicit_pads",
    "ints_attr",
    "linear_sample",
    "out_dim",
    "pad_spatial",
    "scatter_windows",
    "window_geometry",
    "windows",
]
