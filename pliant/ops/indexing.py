"""Indexing operators: Slice, Gather*, Scatter*, TensorScatter, NonZero,
Compress, Unique, ReverseSequence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, d_add, d_ceildiv, d_max, d_min, d_sub, provably_le
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops import symvalue
from pliant.ops.infer import normalize_axis
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register
from pliant.ops.shape import (
    const_ints,
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

INDEXING = "indexing"

_BIG = 1 << 62
"""Slice bounds at least this large mean 'to the end' (no real dim is this big)."""


# -- Slice ---------------------------------------------------------------------


def slice_params(ctx: InferContext | KernelContext, rank: int, starts: Any, ends: Any, axes: Any, steps: Any,
                  err: type[Exception]) -> list[tuple[int, int, int, int]]:
    """(axis, start, end, step) per sliced axis, from attributes (opset < 10) or inputs."""
    if ctx.opset < 10:
        st = [int(v) for v in ctx.attrs.get("starts") or []]
        en = [int(v) for v in ctx.attrs.get("ends") or []]
        ax_attr = ctx.attrs.get("axes")
        ax = [int(v) for v in ax_attr] if ax_attr is not None else list(range(len(st)))
        sp = [1] * len(st)
    else:
        st, en = ints(starts), ints(ends)
        ax = ints(axes) if axes is not None else list(range(len(st)))
        sp = ints(steps) if steps is not None else [1] * len(st)
    if not len(st) == len(en) == len(ax) == len(sp):
        raise err(f"Slice: starts {st}, ends {en}, axes {ax} and steps {sp} must have the same length")
    out = []
    seen: set[int] = set()
    for a, s, e, p in zip(ax, st, en, sp):
        if not -rank <= a < rank:
            raise err(f"Slice: axis {a} is out of range for rank {rank}")
        a = a + rank if a < 0 else a
        if a in seen:
            raise err(f"Slice: axis {a} is repeated in {ax}")
        seen.add(a)
        if p == 0:
            raise err("Slice: a step is 0")
        out.append((a, s, e, p))
    return out


def _clamped(s: int, e: int, p: int, d: int) -> tuple[int, int]:
    if s < 0:
        s += d
    if e < 0:
        e += d
    if p > 0:
        return min(max(s, 0), d), min(max(e, 0), d)
    return min(max(s, 0), d - 1), min(max(e, -1), d - 1)


def _slice_len(s: int, e: int, p: int, d: int) -> int:
    s, e = _clamped(s, e, p, d)
    return max(0, -((s - e) // p)) if p > 0 else max(0, -((e - s) // -p))


def _slice_dim(d: Dim, s: int, e: int, p: int) -> Dim:
    if d is None:
        return None
    if isinstance(d, int):
        return _slice_len(s, e, p, d)
    return _slice_dim_sym(d, s, e, p)


def _bound(v: Dim, d: Dim, positive_step: bool) -> Dim:
    """A symbolic start/end ``v`` on an axis of size ``d``, clamped as Slice does (None if its sign is unknown)."""
    if v is None or d is None:
        return None
    lo, hi = (0, d) if positive_step else (-1, d_sub(d, 1))
    if isinstance(v, int):
        if v >= _BIG:
            return hi
        if v <= -_BIG:
            return lo
    if provably_le(0, v):
        return d_min(v, hi)
    if provably_le(v, -1):
        return d_max(d_add(d, v), lo)
    return None


def _slice_dim_sym(d: Dim, s: Dim, e: Dim, p: int) -> Dim:
    """The length of a slice whose start or end is symbolic."""
    s_, e_ = _bound(s, d, p > 0), _bound(e, d, p > 0)
    if s_ is None or e_ is None:
        return None
    n = d_ceildiv(d_sub(e_, s_), p) if p > 0 else d_ceildiv(d_sub(s_, e_), -p)
    return d_max(n, 0)


def _symbolic_slice(ctx: InferContext, s: list[Dim]) -> list[Dim] | None:
    """Slice dims when starts/ends are symbolic values and axes/steps are constant (None otherwise)."""
    starts, ends = ctx.dims(1), ctx.dims(2)
    if starts is None or ends is None or len(starts) != len(ends):
        return None
    r = len(s)
    axes = const_ints(ctx, 3) if present(ctx, 3) else list(range(len(starts)))
    steps = const_ints(ctx, 4) if present(ctx, 4) else [1] * len(starts)
    if axes is None or steps is None or len(axes) != len(starts) or len(steps) != len(starts) or 0 in steps:
        return None
    out = list(s)
    for a, st, en, p in zip(axes, starts, ends, steps):
        a = normalize_axis(a, r, "Slice axis")
        out[a] = _slice_dim_sym(s[a], st, en, p)
    return out


def _slice_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    s = list(t.shape)
    r = len(s)
    if ctx.opset >= 10:
        vals = [ctx.const(i) for i in range(1, 5)]
        given = [present(ctx, i) for i in range(1, 5)]
        if any(g and v is None for g, v in zip(given, vals)):
            sym = _symbolic_slice(ctx, s)
            if sym is not None:
                return tensor_result(dtype, sym)
            axes = ctx.const(3) if given[2] else None
            if given[2] and axes is None:
                return tensor_result(dtype, unknown_dims(r))
            if axes is None:
                n = _len_1d(ctx, 1)
                sliced = set(range(n)) if n is not None else set(range(r))
            else:
                sliced = {normalize_axis(a, r, "Slice axis") for a in ints(axes)}
            return tensor_result(dtype, [None if i in sliced else d for i, d in enumerate(s)])
        params = slice_params(ctx, r, vals[0], vals[1], vals[2], vals[3], ShapeInferenceError)
    else:
        params = slice_params(ctx, r, None, None, None, None, ShapeInferenceError)
    for a, st, en, p in params:
        s[a] = _slice_dim(s[a], st, en, p)
    return tensor_result(dtype, s)


def _len_1d(ctx: InferContext, i: int) -> int | None:
    sh = in_shape(ctx, i)
    if sh is not None and len(sh) == 1 and isinstance(sh[0], int):
        return sh[0]
    return None


@register("Slice", Dynamism.ISVDOS, infer=_slice_infer, family=INDEXING, value=symvalue.slice_value,
          note="ISDOS when starts/ends/axes/steps are attributes (opset < 10) or constants")
def slice_(ctx: KernelContext, x: np.ndarray, starts: np.ndarray | None = None, ends: np.ndarray | None = None,
           axes: np.ndarray | None = None, steps: np.ndarray | None = None) -> np.ndarray:
    sl: list[slice] = [slice(None)] * x.ndim
    for a, s, e, p in slice_params(ctx, x.ndim, starts, ends, axes, steps, OpRuntimeError):
        s2, e2 = _clamped(s, e, p, x.shape[a])
        sl[a] = slice(s2, e2 if e2 >= 0 else None, p)
    return np.array(x[tuple(sl)])


# -- Gather ----------------------------------------------------------------------


def _check_indices(idx: np.ndarray, d: int, what: str) -> np.ndarray:
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (idx.min() < -d or idx.max() >= d):
        bad = idx[(idx < -d) | (idx >= d)].reshape(-1)[0]
        raise OpRuntimeError(f"{what}: index {int(bad)} is out of range for an axis of size {d}")
    return np.where(idx < 0, idx + d, idx)


def _gather_infer(ctx: InferContext) -> list[Type]:
    data, ind = in_shape(ctx, 0), in_shape(ctx, 1)
    dtype = in_dtype(ctx, 0)
    if data is None or ind is None:
        return tensor_result(dtype, None)
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(data), "Gather axis")
    return tensor_result(dtype, [*data[:axis], *ind, *data[axis + 1:]])


@register("Gather", Dynamism.ISDOS, infer=_gather_infer, family=INDEXING, value=symvalue.gather_value)
def gather(ctx: KernelContext, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    axis = norm_axis_rt(int(ctx.attr("axis", 0)), x.ndim, "Gather axis")
    idx = _check_indices(indices, x.shape[axis], "Gather")
    return np.take(x, idx, axis=axis)


def _gather_elements_infer(ctx: InferContext) -> list[Type]:
    data, ind = in_shape(ctx, 0), in_shape(ctx, 1)
    dtype = in_dtype(ctx, 0)
    if data is not None and ind is not None and len(data) != len(ind):
        raise ShapeInferenceError(f"GatherElements: data has rank {len(data)} but indices rank {len(ind)}")
    if data is not None:
        normalize_axis(int(ctx.attr("axis", 0)), len(data), "GatherElements axis")
    return tensor_result(dtype, ind)


def _element_index(x: np.ndarray, indices: np.ndarray, axis: int, what: str) -> tuple[np.ndarray, ...]:
    if indices.ndim != x.ndim:
        raise OpRuntimeError(f"{what}: data has rank {x.ndim} but indices rank {indices.ndim}")
    for i, (di, dx) in enumerate(zip(indices.shape, x.shape)):
        if i != axis and di > dx:
            raise OpRuntimeError(f"{what}: indices shape {list(indices.shape)} exceeds data shape {list(x.shape)} on axis {i}")
    idx = _check_indices(indices, x.shape[axis], what)
    grid = list(np.ix_(*[np.arange(n) for n in indices.shape])) if indices.ndim else []
    grid[axis] = idx
    return tuple(grid)


@register("GatherElements", Dynamism.ISDOS, infer=_gather_elements_infer, family=INDEXING)
def gather_elements(ctx: KernelContext, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    axis = norm_axis_rt(int(ctx.attr("axis", 0)), x.ndim, "GatherElements axis")
    return np.array(x[_element_index(x, indices, axis, "GatherElements")])


def _gather_nd_infer(ctx: InferContext) -> list[Type]:
    data, ind = in_shape(ctx, 0), in_shape(ctx, 1)
    dtype = in_dtype(ctx, 0)
    if data is None or ind is None or not ind or not isinstance(ind[-1], int):
        return tensor_result(dtype, None)
    b = int(ctx.attr("batch_dims", 0))
    k = ind[-1]
    if b + k > len(data):
        raise ShapeInferenceError(f"GatherND: batch_dims {b} + index depth {k} exceed the data rank {len(data)}")
    batch = [merge_dims([x, y]) for x, y in zip(data[:b], ind[:b])]
    return tensor_result(dtype, [*batch, *ind[b:-1], *data[b + k:]])


@register("GatherND", Dynamism.ISDOS, infer=_gather_nd_infer, family=INDEXING)
def gather_nd(ctx: KernelContext, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    b = int(ctx.attr("batch_dims", 0)) if ctx.opset >= 12 else 0
    if indices.ndim < 1 or indices.ndim <= b:
        raise OpRuntimeError(f"GatherND: indices of shape {list(indices.shape)} need rank > batch_dims {b}")
    k = indices.shape[-1]
    if x.shape[:b] != indices.shape[:b]:
        raise OpRuntimeError(f"GatherND: batch dims differ: data {list(x.shape)}, indices {list(indices.shape)}")
    if b + k > x.ndim:
        raise OpRuntimeError(f"GatherND: batch_dims {b} + index depth {k} exceed the data rank {x.ndim}")
    nb = math.prod(x.shape[:b])
    rest = x.shape[b + k:]
    out_shape = (*indices.shape[:-1], *rest)
    data = x.reshape((nb, *x.shape[b:]))
    m = math.prod(indices.shape[b:-1])
    idx = indices.reshape(nb, m, k).astype(np.int64)
    cols = [_check_indices(idx[..., j], x.shape[b + j], "GatherND") for j in range(k)]
    bidx = np.arange(nb)[:, None] * np.ones((1, m), dtype=np.int64)
    res = data[(bidx, *cols)]
    return np.array(res).reshape(out_shape)


# -- Scatter ---------------------------------------------------------------------

_UFUNCS: dict[str, Any] = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _reduction(ctx: KernelContext) -> str:
    r = str(ctx.attr("reduction", "none")) if ctx.opset >= 16 else "none"
    if r != "none" and r not in _UFUNCS:
        raise OpRuntimeError(f"unknown reduction '{r}' (none, add, mul, max or min)")
    return r


def _same_as_data(ctx: InferContext) -> list[Type]:
    t = ctx.input(0)
    return [t if t is not None else ANY]


def _scatter_elements(ctx: KernelContext, x: np.ndarray, indices: np.ndarray, updates: np.ndarray,
                      what: str) -> np.ndarray:
    axis = norm_axis_rt(int(ctx.attr("axis", 0)), x.ndim, f"{what} axis")
    if updates.shape != indices.shape:
        raise OpRuntimeError(f"{what}: updates shape {list(updates.shape)} differs from indices shape {list(indices.shape)}")
    where = _element_index(x, indices, axis, what)
    out = np.array(x, copy=True)
    red = _reduction(ctx) if what == "ScatterElements" else "none"
    if red == "none":
        out[where] = updates
    else:
        _UFUNCS[red].at(out, where, updates)
    return out


@register("Scatter", Dynamism.ISDOS, infer=_same_as_data, family=INDEXING)
def scatter(ctx: KernelContext, x: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
    return _scatter_elements(ctx, x, indices, updates, "Scatter")


@register("ScatterElements", Dynamism.ISDOS, infer=_same_as_data, family=INDEXING)
def scatter_elements(ctx: KernelContext, x: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
    return _scatter_elements(ctx, x, indices, updates, "ScatterElements")


@register("ScatterND", Dynamism.ISDOS, infer=_same_as_data, family=INDEXING)
def scatter_nd(ctx: KernelContext, x: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
    if indices.ndim < 1:
        raise OpRuntimeError("ScatterND: indices must have rank >= 1")
    k = indices.shape[-1]
    if k > x.ndim:
        raise OpRuntimeError(f"ScatterND: index depth {k} exceeds the data rank {x.ndim}")
    want = (*indices.shape[:-1], *x.shape[k:])
    if updates.shape != want:
        raise OpRuntimeError(f"ScatterND: updates shape {list(updates.shape)} should be {list(want)}")
    idx = indices.reshape(-1, k).astype(np.int64)
    cols = tuple(_check_indices(idx[:, j], x.shape[j], "ScatterND") for j in range(k))
    upd = updates.reshape((idx.shape[0], *x.shape[k:]))
    out = np.array(x, copy=True)
    red = _reduction(ctx)
    if red == "none":
        out[cols] = upd
    else:
        _UFUNCS[red].at(out, cols, upd)
    return out


@register("TensorScatter", Dynamism.ISDOS, infer=_same_as_data, family=INDEXING)
def tensor_scatter(ctx: KernelContext, past: np.ndarray, update: np.ndarray,
                   write_indices: np.ndarray | None = None) -> np.ndarray:
    axis = norm_axis_rt(int(ctx.attr("axis", -2)), past.ndim, "TensorScatter axis")
    if axis == 0:
        raise OpRuntimeError("TensorScatter: the sequence axis cannot be the batch axis 0")
    mode = str(ctx.attr("mode", "linear"))
    if mode not in ("linear", "circular"):
        raise OpRuntimeError(f"TensorScatter: unknown mode '{mode}' (linear or circular)")
    if update.ndim != past.ndim or any(
        u != p for i, (u, p) in enumerate(zip(update.shape, past.shape)) if i != axis
    ):
        raise OpRuntimeError(
            f"TensorScatter: update shape {list(update.shape)} must match the cache shape {list(past.shape)} "
            f"except on axis {axis}"
        )
    max_len, seq = past.shape[axis], update.shape[axis]
    batch = past.shape[0]
    w = ints(write_indices) if write_indices is not None else [0] * batch
    if len(w) != batch:
        raise OpRuntimeError(f"TensorScatter: {len(w)} write indices for a batch of {batch}")
    out = np.array(past, copy=True)
    o = np.moveaxis(out, axis, 1)
    u = np.moveaxis(update, axis, 1)
    for b in range(batch):
        pos = w[b] + np.arange(seq)
        if mode == "circular":
            pos = pos % max_len
        elif seq and (w[b] < 0 or pos[-1] >= max_len):
            raise OpRuntimeError(
                f"TensorScatter: writing {seq} entries at index {w[b]} overflows the cache length {max_len}"
            )
        o[b, pos] = u[b]
    return out


# -- NonZero / Compress / Unique -------------------------------------------------


def _nonzero_infer(ctx: InferContext) -> list[Type]:
    s = in_shape(ctx, 0)
    rank: Dim = (len(s) if s else 1) if s is not None else None
    return tensor_result(DType.INT64, (rank, None))


@register("NonZero", Dynamism.EDO, infer=_nonzero_infer, family=INDEXING)
def nonzero(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    a = x.reshape(1) if x.ndim == 0 else x
    return np.array(np.nonzero(a), dtype=np.int64).reshape(a.ndim, -1)


def _compress_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    axis = ctx.attrs.get("axis")
    if axis is None:
        return tensor_result(dtype, (None,))
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    a = normalize_axis(int(axis), len(t.shape), "Compress axis")
    return tensor_result(dtype, [None if i == a else d for i, d in enumerate(t.shape)])


@register("Compress", Dynamism.EDO, infer=_compress_infer, family=INDEXING)
def compress(ctx: KernelContext, x: np.ndarray, condition: np.ndarray) -> np.ndarray:
    axis = ctx.attrs.get("axis")
    cond = np.asarray(condition).reshape(-1).astype(bool)
    if axis is None:
        flat = x.reshape(-1)
        n = flat.shape[0]
    else:
        a = norm_axis_rt(int(axis), x.ndim, "Compress axis")
        n = x.shape[a]
    if cond.shape[0] > n and cond[n:].any():
        raise OpRuntimeError(f"Compress: the condition has {cond.shape[0]} entries for an axis of size {n}")
    cond = cond[:n]
    if axis is None:
        return np.compress(cond, flat)
    return np.compress(cond, x, axis=a)


def _unique_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    axis = ctx.attrs.get("axis")
    y: TensorType
    inv: TensorType
    if axis is None:
        y = TensorType(dtype, (None,))
        total = dmul(*t.shape) if t is not None and t.shape is not None else None
        inv = TensorType(DType.INT64, (total,))
    elif t is None or t.shape is None:
        y = TensorType(dtype, None)
        inv = TensorType(DType.INT64, (None,))
    else:
        a = normalize_axis(int(axis), len(t.shape), "Unique axis")
        y = TensorType(dtype, tuple(None if i == a else d for i, d in enumerate(t.shape)))
        inv = TensorType(DType.INT64, (t.shape[a],))
    one = TensorType(DType.INT64, (None,))
    res: list[Type] = [y, one, inv, one]
    return res[: ctx.num_outputs]


def _sort_key(x: np.ndarray) -> np.ndarray:
    """An array with the same order and equalities that np.unique can sort."""
    if x.dtype.kind == "V" or (x.dtype.kind == "f" and x.dtype not in (np.float16, np.float32, np.float64)):
        return x.astype(np.float32)
    return x


@register("Unique", Dynamism.EDO, infer=_unique_infer, family=INDEXING)
def unique(ctx: KernelContext, x: np.ndarray) -> tuple[np.ndarray, ...]:
    axis = ctx.attrs.get("axis")
    keep_sorted = int(ctx.attr("sorted", 1))
    if axis is None:
        items = x.reshape(-1)
        key = _sort_key(items)
        _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
        a = 0
        src = items
    else:
        a = norm_axis_rt(int(axis), x.ndim, "Unique axis")
        src = np.moveaxis(x, a, 0)
        rows = _sort_key(src.reshape(src.shape[0], -1))
        if src.shape[0] == 0:
            first = inverse = counts = np.zeros((0,), dtype=np.int64)
        else:
            _, first, inverse, counts = np.unique(rows, axis=0, return_index=True, return_inverse=True,
                                                  return_counts=True)
    first = first.astype(np.int64).reshape(-1)
    inverse = inverse.astype(np.int64).reshape(-1)
    counts = counts.astype(np.int64).reshape(-1)
    if not keep_sorted:
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.shape[0])
        first, counts, inverse = first[order], counts[order], rank[inverse]
    y = np.take(src, first, axis=0)
    if axis is not None:
        y = np.moveaxis(y, 0, a)
    return y, first, inverse, counts


# -- ReverseSequence -------------------------------------------------------------


def _reverse_sequence_infer(ctx: InferContext) -> list[Type]:
    t = ctx.input(0)
    return [t if t is not None else ANY]


@register("ReverseSequence", Dynamism.ISDOS, infer=_reverse_sequence_infer, family=INDEXING)
def reverse_sequence(ctx: KernelContext, x: np.ndarray, seq_lens: np.ndarray) -> np.ndarray:
    b_axis = norm_axis_rt(int(ctx.attr("batch_axis", 1)), x.ndim, "ReverseSequence batch_axis")
    t_axis = norm_axis_rt(int(ctx.attr("time_axis", 0)), x.ndim, "ReverseSequence time_axis")
    if b_axis == t_axis:
        raise OpRuntimeError(f"ReverseSequence: batch_axis and time_axis are both {b_axis}")
    lens = ints(seq_lens)
    if len(lens) != x.shape[b_axis]:
        raise OpRuntimeError(f"ReverseSequence: {len(lens)} sequence lengths for a batch of {x.shape[b_axis]}")
    out = np.array(x, copy=True)
    for i, n in enumerate(lens):
        if not 0 <= n <= x.shape[t_axis]:
            raise OpRuntimeError(f"ReverseSequence: length {n} is out of range for a time axis of size {x.shape[t_axis]}")
        if n == 0:
            continue
        dst: list[Any] = [slice(None)] * x.ndim
        src: list[Any] = [slice(None)] * x.ndim
        dst[b_axis] = src[b_axis] = i
        dst[t_axis] = slice(0, n)
        src[t_axis] = slice(n - 1, None, -1)
        out[tuple(dst)] = x[tuple(src)]
    return out


__all__ = ["const_ints"]
