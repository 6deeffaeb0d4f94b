"""Image sampling: GridSample (N-D; linear / nearest / cubic), AffineGrid, Col2Im."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim
from pliant.ir.types import TensorType, Type
from pliant.ops.conv import ints_attr, scatter_windows, window_geometry
from pliant.ops.infer import tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

IMAGE = "image"

# -- GridSample ----------------------------------------------------------------------------

_MODES = {"linear": "linear", "bilinear": "linear", "nearest": "nearest", "cubic": "cubic", "bicubic": "cubic"}


def _gridsample_infer(ctx: InferContext) -> list[Type]:
    tx, tg = tensor_input(ctx, 0), tensor_input(ctx, 1)
    dt = tx.dtype if tx else None
    if tg is None or tg.shape is None:
        rank = tx.rank if tx is not None else None
        return [TensorType(dt, None if rank is None else (None,) * rank)]
    if len(tg.shape) < 3:
        raise ShapeInferenceError(f"GridSample grid must have rank >= 3 (N, D1_out.., r), got {tg}")
    n: Dim = tg.shape[0]
    c: Dim = None
    if tx is not None and tx.shape is not None:
        if len(tx.shape) != len(tg.shape):
            raise ShapeInferenceError(f"GridSample: X {tx} and grid {tg} must have the same rank")
        c = tx.shape[1]
        if n is None:
            n = tx.shape[0]
    return [TensorType(dt, (n, c, *tg.shape[1:-1]))]


def _reflect(v: np.ndarray, twice_lo: int, twice_hi: int) -> np.ndarray:
    """Reflect coordinates into [twice_lo/2, twice_hi/2], bouncing off both ends as often as needed."""
    if twice_lo == twice_hi:
        return np.zeros_like(v)
    lo = twice_lo / 2
    span = (twice_hi - twice_lo) / 2
    a = np.abs(v - lo)
    extra = np.fmod(a, span)
    flips = np.floor(a / span)
    return np.where(flips % 2 == 0, extra + lo, span - extra + lo).astype(v.dtype, copy=False)


def _pad_coord(v: np.ndarray, size: int, padding: str, align: bool) -> np.ndarray:
    if padding == "border":
        return np.clip(v, 0, size - 1)
    if padding == "reflection":
        r = _reflect(v, 0, 2 * (size - 1)) if align else _reflect(v, -1, 2 * size - 1)
        return np.clip(r, 0, size - 1)
    return v


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    a = -0.75

    def near(s: Any) -> Any:
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s: Any) -> Any:
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


@register("GridSample", Dynamism.ISDOS, infer=_gridsample_infer, family=IMAGE)
def grid_sample(ctx: KernelContext, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    r = x.ndim - 2
    if r < 1 or grid.ndim != x.ndim or grid.shape[-1] != r or grid.shape[0] != x.shape[0]:
        raise OpRuntimeError(f"GridSample needs X (N, C, D1..Dr) and grid (N, O1..Or, r); got X {x.shape}, grid {grid.shape}")
    mode_name = str(ctx.attr("mode", "linear" if ctx.opset >= 20 else "bilinear"))
    if mode_name not in _MODES:
        raise OpRuntimeError(f"GridSample mode must be linear, nearest or cubic, got '{mode_name}'")
    mode = _MODES[mode_name]
    padding = str(ctx.attr("padding_mode", "zeros"))
    if padding not in ("zeros", "border", "reflection"):
        raise OpRuntimeError(f"GridSample padding_mode must be zeros, border or reflection, got '{padding}'")
    align = bool(ctx.attr("align_corners", 0))
    n, c = x.shape[:2]
    sizes = x.shape[2:]
    out_sp = grid.shape[1:-1]
    cdt = np.float64 if grid.dtype == np.float64 or x.dtype == np.float64 else np.float32
    vdt = np.float64 if x.dtype == np.float64 else np.float32
    g: Any = grid.astype(cdt).reshape(n, -1, r)
    p = g.shape[1]
    flat: Any = x.astype(vdt, copy=False).reshape(n, c, -1)
    plane_strides = [int(np.prod(sizes[a + 1:], dtype=np.int64)) for a in range(r)]
    coords = []
    for a in range(r):
        gv = g[:, :, r - 1 - a]
        size = sizes[a]
        coords.append((gv + 1) / 2 * (size - 1) if align else ((gv + 1) * size - 1) / 2)

    def fetch(idx: Sequence[np.ndarray], weight: np.ndarray) -> np.ndarray:
        ok = np.ones((n, p), dtype=bool)
        lin = np.zeros((n, p), dtype=np.int64)
        for a in range(r):
            ok &= (idx[a] >= 0) & (idx[a] < sizes[a])
            lin += np.clip(idx[a], 0, sizes[a] - 1) * plane_strides[a]
        vals = np.take_along_axis(flat, lin[:, None, :], axis=2)
        return vals * np.where(ok, weight, 0).astype(vdt)[:, None, :]

    out = np.zeros((n, c, p), dtype=vdt)
    if mode == "nearest":
        idx = [np.rint(_pad_coord(coords[a], sizes[a], padding, align)).astype(np.int64) for a in range(r)]
        out = fetch(idx, np.ones((n, p), dtype=vdt))
    elif mode == "linear":
        pc = [_pad_coord(coords[a], sizes[a], padding, align) for a in range(r)]
        lows = [np.floor(v) for v in pc]
        fr = [v - lo for v, lo in zip(pc, lows)]
        lows_i = [lo.astype(np.int64) for lo in lows]
        for corner in np.ndindex(*([2] * r)):
            wgt = np.ones((n, p), dtype=cdt)
            for a, bit in enumerate(corner):
                wgt = wgt * (fr[a] if bit else 1 - fr[a])
            out += fetch([lows_i[a] + corner[a] for a in range(r)], wgt)
    else:
        lows = [np.floor(v) for v in coords]
        ws = [_cubic_weights(v - lo) for v, lo in zip(coords, lows)]
        for taps in np.ndindex(*([4] * r)):
            wgt = np.ones((n, p), dtype=cdt)
            idx = []
            for a, tp in enumerate(taps):
                wgt = wgt * ws[a][tp]
                pos = lows[a] + (tp - 1)
                if padding != "zeros":
                    pos = _pad_coord(pos, sizes[a], padding, align)
                idx.append(pos.astype(np.int64))
            out += fetch(idx, wgt)
    return out.reshape(n, c, *out_sp).astype(x.dtype, copy=False)


# -- AffineGrid ------------------------------------------------------------------------------


def _affinegrid_infer(ctx: InferContext) -> list[Type]:
    tt = tensor_input(ctx, 0)
    dt = tt.dtype if tt else None
    size = ctx.const(1)
    if size is not None:
        sz = [int(v) for v in size.reshape(-1)]
        if len(sz) not in (4, 5):
            raise ShapeInferenceError(f"AffineGrid size must have 4 or 5 entries, got {sz}")
        return [TensorType(dt, (sz[0], *sz[2:], len(sz) - 2))]
    ts = tensor_input(ctx, 1)
    if ts is not None and ts.shape is not None and len(ts.shape) == 1 and ts.shape[0] in (4, 5):
        k = int(ts.shape[0]) - 2  # type: ignore[arg-type]
        n: Dim = tt.shape[0] if tt is not None and tt.shape is not None and len(tt.shape) == 3 else None
        return [TensorType(dt, (n, *([None] * k), k))]
    return [TensorType(dt, None)]


def _base_coords(length: int, align: bool, dt: Any) -> np.ndarray:
    if length == 1:
        return np.zeros(1, dtype=dt) if not align else np.array([-1.0], dtype=dt)
    v = np.linspace(-1.0, 1.0, length)
    if not align:
        v = v * (length - 1) / length
    return v.astype(dt)


@register("AffineGrid", Dynamism.ISVDOS, infer=_affinegrid_infer, family=IMAGE,
          note="output shape is the value of the size input: ISDOS when it is a constant")
def affine_grid(ctx: KernelContext, theta: np.ndarray, size: np.ndarray) -> np.ndarray:
    sz = [int(v) for v in size.reshape(-1)]
    if len(sz) not in (4, 5):
        raise OpRuntimeError(f"AffineGrid size must be (N, C, H, W) or (N, C, D, H, W), got {sz}")
    k = len(sz) - 2
    if theta.shape != (sz[0], k, k + 1):
        raise OpRuntimeError(f"theta must have shape {(sz[0], k, k + 1)} for size {sz}, got {theta.shape}")
    align = bool(ctx.attr("align_corners", 0))
    dt = np.float64 if theta.dtype == np.float64 else np.float32
    spatial = sz[2:]
    axes = [_base_coords(d, align, dt) for d in spatial]  # outermost first (D, H, W)
    mesh = np.meshgrid(*axes, indexing="ij")
    # NOTE: grid coordinates list the innermost axis first: (x, y[, z]).
    base = np.stack([*mesh[::-1], np.ones(spatial, dtype=dt)], axis=-1).reshape(-1, k + 1)
    out = np.einsum("pk,njk->npj", base, theta.astype(dt))
    return out.reshape(sz[0], *spatial, k).astype(theta.dtype, copy=False)


# -- Col2Im -------------------------------------------------------------------------------------


def _col2im_infer(ctx: InferContext) -> list[Type]:
    tx = tensor_input(ctx, 0)
    dt = tx.dtype if tx else None
    img, blk = ctx.const(1), ctx.const(2)
    n: Dim = tx.shape[0] if tx is not None and tx.shape is not None and len(tx.shape) == 3 else None
    c: Dim = None
    if blk is not None and tx is not None and tx.shape is not None and len(tx.shape) == 3 and isinstance(tx.shape[1], int):
        k = int(np.prod(blk))
        if k > 0 and tx.shape[1] % k == 0:
            c = tx.shape[1] // k
    if img is not None:
        return [TensorType(dt, (n, c, *(int(v) for v in img.reshape(-1))))]
    ti = tensor_input(ctx, 1)
    if ti is not None and ti.shape is not None and len(ti.shape) == 1 and isinstance(ti.shape[0], int):
        return [TensorType(dt, (n, c, *([None] * ti.shape[0])))]
    return [TensorType(dt, None)]


@register("Col2Im", Dynamism.ISVDOS, infer=_col2im_infer, family=IMAGE,
          note="output shape is the value of image_shape: ISDOS when it is a constant")
def col2im(ctx: KernelContext, x: np.ndarray, image_shape: np.ndarray, block_shape: np.ndarray) -> np.ndarray:
    img = [int(v) for v in image_shape.reshape(-1)]
    blk = [int(v) for v in block_shape.reshape(-1)]
    r = len(img)
    if len(blk) != r or x.ndim != 3:
        raise OpRuntimeError(f"Col2Im needs input (N, C*prod(block), L) and image_shape/block_shape of equal length; "
                             f"got input {x.shape}, image_shape {img}, block_shape {blk}")
    k = int(np.prod(blk, dtype=np.int64))
    if k <= 0 or x.shape[1] % k:
        raise OpRuntimeError(f"input axis 1 ({x.shape[1]}) is not a multiple of prod(block_shape) = {k}")
    strides = ints_attr(ctx, "strides", r, 1)
    dil = ints_attr(ctx, "dilations", r, 1)
    pads = ctx.attrs.get("pads") or [0] * (2 * r)
    if len(pads) != 2 * r:
        raise OpRuntimeError(f"pads has {len(pads)} values but needs {2 * r}")
    pb, pe = [int(v) for v in pads[:r]], [int(v) for v in pads[r:]]
    _, _, blocks = window_geometry(img, blk, strides, dil, "NOTSET", pb, pe)
    nb = int(np.prod(blocks, dtype=np.int64))
    if x.shape[2] != nb:
        raise OpRuntimeError(f"input has {x.shape[2]} blocks but image_shape {img}, block_shape {blk} and the "
                             f"strides/pads/dilations give {blocks} = {nb}")
    n, c = x.shape[0], x.shape[1] // k
    cols = x.reshape(n, c, *blk, *blocks)
    return np.ascontiguousarray(scatter_windows(cols, (n, c), blk, blocks, strides, dil, pb, img))
