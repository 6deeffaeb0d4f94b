"""Shape operators: Shape, Size, Reshape, Flatten, (Un)Squeeze, Transpose, Concat,
Split, Expand, Tile, Pad, ConstantOfShape, Range, OneHot, DepthToSpace,
SpaceToDepth, CenterCropPad.

Their forward shape rules are symbolic: dims that are sympy expressions flow
through (a Reshape's -1 becomes ``product(input dims) / product(other dims)``,
a Concat's axis the sum of its inputs' dims).  The small dim-arithmetic helpers
here are shared by the indexing and resize families.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, dim_expr, sym_dim
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops.infer import broadcast_shapes, normalize_axis
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

SHAPE = "shape"

# -- helpers shared by the shape, indexing and resize families -----------------


def in_type(ctx: InferContext, i: int) -> TensorType | None:
    t = ctx.input(i)
    return t if isinstance(t, TensorType) else None


def in_shape(ctx: InferContext, i: int) -> tuple[Dim, ...] | None:
    t = in_type(ctx, i)
    return t.shape if t is not None else None


def in_dtype(ctx: InferContext, i: int) -> DType | None:
    t = in_type(ctx, i)
    return t.dtype if t is not None else None


def present(ctx: InferContext, i: int) -> bool:
    """Whether optional input ``i`` is given."""
    return ctx.input(i) is not None


def const_ints(ctx: InferContext, i: int) -> list[int] | None:
    """Input ``i`` as a list of ints when it is a constant, else None."""
    c = ctx.const(i)
    if c is None:
        return None
    return [int(v) for v in np.asarray(c).reshape(-1)]


def ints(x: Any) -> list[int]:
    """A runtime tensor (or attribute list) as a list of Python ints."""
    return [int(v) for v in np.asarray(x).reshape(-1)]


def dmul(*ds: Dim) -> Dim:
    """The product of dims (None if any is unknown)."""
    if any(d is None for d in ds):
        return None
    e: sympy.Expr = sympy.Integer(1)
    for d in ds:
        assert d is not None
        e = e * dim_expr(d)
    return sym_dim(e)


def dadd(*ds: Dim) -> Dim:
    """The sum of dims (None if any is unknown)."""
    if any(d is None for d in ds):
        return None
    e: sympy.Expr = sympy.Integer(0)
    for d in ds:
        assert d is not None
        e = e + dim_expr(d)
    return sym_dim(e)


def ddiv(a: Dim, k: int, what: str) -> Dim:
    """``a / k`` for a dim that must be divisible by ``k``."""
    if a is None:
        return None
    if isinstance(a, int):
        if k == 0 or a % k:
            raise ShapeInferenceError(f"{what}: dim {a} is not divisible by {k}")
        return a // k
    return sym_dim(sympy.cancel(dim_expr(a) / k))


def tensor_result(dtype: DType | None, shape: Sequence[Dim] | None, n: int = 1) -> list[Type]:
    out: list[Type] = [TensorType(dtype, tuple(shape) if shape is not None else None)]
    return out + [ANY] * (n - 1)


def unknown_dims(rank: int) -> tuple[Dim, ...]:
    return tuple(None for _ in range(rank))


def static_rank_of_1d(ctx: InferContext, i: int) -> int | None:
    """The length of 1-D input ``i`` when its type says so."""
    s = in_shape(ctx, i)
    if s is not None and len(s) == 1 and isinstance(s[0], int):
        return s[0]
    return None


def norm_axis_rt(axis: int, rank: int, what: str = "axis") -> int:
    """Normalise an axis at run time (OpRuntimeError when out of range)."""
    if not -rank <= axis < max(rank, 1):
        raise OpRuntimeError(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis + rank if axis < 0 else axis


# -- Shape / Size --------------------------------------------------------------


def _shape_bounds(ctx: InferContext | KernelContext, rank: int) -> tuple[int, int]:
    start = int(ctx.attr("start", 0)) if ctx.opset >= 15 else 0
    end_attr = ctx.attrs.get("end") if ctx.opset >= 15 else None
    end = rank if end_attr is None else int(end_attr)
    if start < 0:
        start += rank
    if end < 0:
        end += rank
    start = min(max(start, 0), rank)
    end = min(max(end, 0), rank)
    return start, end


def _shape_infer(ctx: InferContext) -> list[Type]:
    s = in_shape(ctx, 0)
    if s is None:
        return tensor_result(DType.INT64, (None,))
    start, end = _shape_bounds(ctx, len(s))
    return tensor_result(DType.INT64, (max(end - start, 0),))


@register("Shape", Dynamism.ISDO, infer=_shape_infer, family=SHAPE)
def shape(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    start, end = _shape_bounds(ctx, x.ndim)
    return np.array(x.shape[start:end], dtype=np.int64)


def _size_infer(ctx: InferContext) -> list[Type]:
    return tensor_result(DType.INT64, ())


@register("Size", Dynamism.ISDO, infer=_size_infer, family=SHAPE)
def size(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return np.array(x.size, dtype=np.int64)


# -- Reshape -------------------------------------------------------------------


def _reshape_target(ctx: InferContext | KernelContext, shape_in: Any) -> list[int] | None:
    if ctx.opset < 5:
        attr = ctx.attrs.get("shape")
        return [int(v) for v in attr] if attr is not None else None
    return ints(shape_in) if shape_in is not None else None


def _reshape_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    in_s = t.shape if t else None
    target = _reshape_target(ctx, ctx.const(1)) if ctx.opset >= 5 else _reshape_target(ctx, None)
    if target is None:
        n = static_rank_of_1d(ctx, 1)
        return tensor_result(dtype, unknown_dims(n) if n is not None else None)
    allowzero = int(ctx.attr("allowzero", 0)) if ctx.opset >= 14 else 0
    if target.count(-1) > 1:
        raise ShapeInferenceError(f"Reshape: the target shape {target} has more than one -1")
    if any(v < -1 for v in target):
        raise ShapeInferenceError(f"Reshape: the target shape {target} has a negative size other than -1")
    if allowzero and 0 in target and -1 in target:
        raise ShapeInferenceError(f"Reshape: with allowzero=1 the target shape {target} cannot hold both 0 and -1")
    dims: list[Dim] = []
    for i, v in enumerate(target):
        if v == 0 and not allowzero:
            if in_s is None:
                dims.append(None)
            elif i >= len(in_s):
                raise ShapeInferenceError(
                    f"Reshape: target shape {target} copies dim {i} (a 0) but the input has rank {len(in_s)}"
                )
            else:
                dims.append(in_s[i])
        else:
            dims.append(v)
    if -1 in target:
        k = target.index(-1)
        others = [d for j, d in enumerate(dims) if j != k]
        total = dmul(*in_s) if in_s is not None else None
        known = dmul(*others)
        if total is None or known is None or known == 0:
            dims[k] = None
        elif isinstance(total, int) and isinstance(known, int):
            if total % known:
                raise ShapeInferenceError(
                    f"Reshape: cannot reshape {total} elements (input {list(in_s or ())}) into {target}"
                )
            dims[k] = total // known
        else:
            q = sympy.cancel(dim_expr(total) / dim_expr(known))
            dims[k] = sym_dim(q)
    elif in_s is not None:
        total = dmul(*in_s)
        out_total = dmul(*dims)
        if isinstance(total, int) and isinstance(out_total, int) and total != out_total:
            raise ShapeInferenceError(
                f"Reshape: cannot reshape input of shape {list(in_s)} ({total} elements) into {target} ({out_total})"
            )
    return tensor_result(dtype, dims)


@register("Reshape", Dynamism.ISVDOS, infer=_reshape_infer, family=SHAPE,
          note="ISDOS when the shape input is a constant")
def reshape(ctx: KernelContext, x: np.ndarray, shape_in: np.ndarray | None = None) -> np.ndarray:
    target = _reshape_target(ctx, shape_in)
    if target is None:
        raise OpRuntimeError("Reshape needs a target shape (input 'shape')")
    allowzero = int(ctx.attr("allowzero", 0)) if ctx.opset >= 14 else 0
    out = list(target)
    if target.count(-1) > 1:
        raise OpRuntimeError(f"Reshape: the target shape {target} has more than one -1")
    if not allowzero:
        for i, v in enumerate(target):
            if v == 0:
                if i >= x.ndim:
                    raise OpRuntimeError(f"Reshape: target shape {target} copies dim {i} but the input has shape {list(x.shape)}")
                out[i] = x.shape[i]
    elif 0 in target and -1 in target:
        raise OpRuntimeError(f"Reshape: with allowzero=1 the target shape {target} cannot hold both 0 and -1")
    if -1 in out:
        k = out.index(-1)
        known = math.prod(v for j, v in enumerate(out) if j != k)
        if known == 0 or x.size % known:
            raise OpRuntimeError(f"Reshape: cannot reshape input of shape {list(x.shape)} into {target}")
        out[k] = x.size // known
    if any(v < 0 for v in out) or math.prod(out) != x.size:
        raise OpRuntimeError(
            f"Reshape: cannot reshape input of shape {list(x.shape)} ({x.size} elements) into {target} (resolved {out})"
        )
    return x.reshape(out)


# -- Flatten -------------------------------------------------------------------


def _flatten_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, (None, None))
    r = len(t.shape)
    axis = int(ctx.attr("axis", 1))
    if not -r <= axis <= r:
        raise ShapeInferenceError(f"Flatten: axis {axis} is out of range for rank {r}")
    if axis < 0:
        axis += r
    return tensor_result(dtype, (dmul(*t.shape[:axis]), dmul(*t.shape[axis:])))


@register("Flatten", Dynamism.ISDOS, infer=_flatten_infer, family=SHAPE)
def flatten(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    r = x.ndim
    axis = int(ctx.attr("axis", 1))
    if not -r <= axis <= r:
        raise OpRuntimeError(f"Flatten: axis {axis} is out of range for rank {r}")
    if axis < 0:
        axis += r
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


# -- Squeeze / Unsqueeze ---------------------------------------------------------


def _axes_of(ctx: InferContext | KernelContext, axes_in: Any, since_input: int) -> list[int] | None:
    """Axes from the attribute (opset < since_input) or the input."""
    if ctx.opset < since_input:
        a = ctx.attrs.get("axes")
        return [int(v) for v in a] if a is not None else None
    return ints(axes_in) if axes_in is not None else None


def _squeeze_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if ctx.opset >= 13 and present(ctx, 1) and ctx.const(1) is None:
        n = static_rank_of_1d(ctx, 1)
        if t is not None and t.shape is not None and n is not None:
            return tensor_result(dtype, unknown_dims(len(t.shape) - n))
        return tensor_result(dtype, None)
    axes = _axes_of(ctx, ctx.const(1), 13)
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    s = t.shape
    if axes is None:
        if all(isinstance(d, int) for d in s):
            return tensor_result(dtype, [d for d in s if d != 1])
        return tensor_result(dtype, None)
    norm = {normalize_axis(a, len(s), "Squeeze axis") for a in axes}
    for a in norm:
        if isinstance(s[a], int) and s[a] != 1:
            raise ShapeInferenceError(f"Squeeze: axis {a} has size {s[a]}, not 1 (input shape {list(s)})")
    return tensor_result(dtype, [d for i, d in enumerate(s) if i not in norm])


@register("Squeeze", Dynamism.ISVDOS, infer=_squeeze_infer, family=SHAPE,
          note="ISDOS when the axes are an attribute (opset < 13), absent, or a constant input")
def squeeze(ctx: KernelContext, x: np.ndarray, axes_in: np.ndarray | None = None) -> np.ndarray:
    axes = _axes_of(ctx, axes_in, 13)
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    norm = {norm_axis_rt(a, x.ndim, "Squeeze axis") for a in axes}
    for a in norm:
        if x.shape[a] != 1:
            raise OpRuntimeError(f"Squeeze: axis {a} has size {x.shape[a]}, not 1 (input shape {list(x.shape)})")
    return x.reshape([d for i, d in enumerate(x.shape) if i not in norm])


def _unsqueeze_positions(axes: list[int], out_rank: int, err: type[Exception]) -> set[int]:
    norm: set[int] = set()
    for a in axes:
        if not -out_rank <= a < out_rank:
            raise err(f"Unsqueeze: axis {a} is out of range for an output of rank {out_rank}")
        n = a + out_rank if a < 0 else a
        if n in norm:
            raise err(f"Unsqueeze: axis {a} is repeated in {axes}")
        norm.add(n)
    return norm


def _unsqueeze_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    axes = _axes_of(ctx, ctx.const(1), 13)
    if axes is None:
        n = static_rank_of_1d(ctx, 1) if ctx.opset >= 13 else None
        if t is not None and t.shape is not None and n is not None:
            return tensor_result(dtype, unknown_dims(len(t.shape) + n))
        return tensor_result(dtype, None)
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    out_rank = len(t.shape) + len(axes)
    pos = _unsqueeze_positions(axes, out_rank, ShapeInferenceError)
    it = iter(t.shape)
    return tensor_result(dtype, [1 if i in pos else next(it) for i in range(out_rank)])


@register("Unsqueeze", Dynamism.ISVDOS, infer=_unsqueeze_infer, family=SHAPE,
          note="ISDOS when the axes are an attribute (opset < 13) or a constant input")
def unsqueeze(ctx: KernelContext, x: np.ndarray, axes_in: np.ndarray | None = None) -> np.ndarray:
    axes = _axes_of(ctx, axes_in, 13)
    if axes is None:
        raise OpRuntimeError("Unsqueeze needs axes")
    out_rank = x.ndim + len(axes)
    pos = _unsqueeze_positions(axes, out_rank, OpRuntimeError)
    it = iter(x.shape)
    return x.reshape([1 if i in pos else next(it) for i in range(out_rank)])


# -- Transpose -----------------------------------------------------------------


def _perm(perm: Any, rank: int, err: type[Exception]) -> list[int]:
    if perm is None:
        return list(range(rank))[::-1]
    p = [int(v) for v in perm]
    p = [v + rank if v < 0 else v for v in p]
    if sorted(p) != list(range(rank)):
        raise err(f"Transpose: perm {list(perm)} is not a permutation of the {rank} axes")
    return p


def _transpose_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    perm = ctx.attrs.get("perm")
    if t is None or t.shape is None:
        return tensor_result(dtype, unknown_dims(len(perm)) if perm is not None else None)
    p = _perm(perm, len(t.shape), ShapeInferenceError)
    return tensor_result(dtype, [t.shape[i] for i in p])


@register("Transpose", Dynamism.ISDOS, infer=_transpose_infer, family=SHAPE)
def transpose(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, _perm(ctx.attrs.get("perm"), x.ndim, OpRuntimeError))


# -- Concat --------------------------------------------------------------------


def merge_dims(ds: Sequence[Dim]) -> Dim:
    """The best description of a dim that all of ``ds`` describe (known ints win)."""
    for d in ds:
        if isinstance(d, int):
            return d
    for d in ds:
        if d is not None:
            return d
    return None


def _concat_infer(ctx: InferContext) -> list[Type]:
    types = [ctx.input(i) for i in range(len(ctx.input_types))]
    tts = [t if isinstance(t, TensorType) else None for t in types]
    dtype = next((t.dtype for t in tts if t is not None and t.dtype is not None), None)
    shapes = [t.shape if t is not None else None for t in tts]
    known = [s for s in shapes if s is not None]
    if not known:
        return tensor_result(dtype, None)
    r = len(known[0])
    for s in known:
        if len(s) != r:
            raise ShapeInferenceError(f"Concat: inputs have different ranks ({[len(k) for k in known]})")
    axis = normalize_axis(int(ctx.attr("axis", 1)), r, "Concat axis")
    out: list[Dim] = []
    for i in range(r):
        if i == axis:
            out.append(dadd(*[s[i] if s is not None else None for s in shapes]))
            continue
        col = [s[i] for s in known]
        ints_ = {d for d in col if isinstance(d, int)}
        if len(ints_) > 1:
            raise ShapeInferenceError(f"Concat: inputs differ on axis {i} ({sorted(ints_)}) which is not the concat axis")
        out.append(merge_dims(col))
    return tensor_result(dtype, out)


@register("Concat", Dynamism.ISDOS, infer=_concat_infer, family=SHAPE)
def concat(ctx: KernelContext, *xs: np.ndarray) -> np.ndarray:
    arrs = [x for x in xs if x is not None]
    if not arrs:
        raise OpRuntimeError("Concat needs at least one input")
    r = arrs[0].ndim
    axis = norm_axis_rt(int(ctx.attr("axis", 1)), r, "Concat axis")
    for a in arrs:
        if a.ndim != r:
            raise OpRuntimeError(f"Concat: inputs have different ranks: {[list(b.shape) for b in arrs]}")
    try:
        return np.concatenate(arrs, axis=axis)
    except ValueError as e:
        raise OpRuntimeError(f"Concat on axis {axis}: {e} (shapes {[list(b.shape) for b in arrs]})") from None


# -- Split ---------------------------------------------------------------------


def _split_sizes_given(ctx: InferContext | KernelContext, split_in: Any) -> list[int] | None:
    if ctx.opset >= 13 or (ctx.opset < 2 and split_in is not None):
        return ints(split_in) if split_in is not None else None
    a = ctx.attrs.get("split")
    return [int(v) for v in a] if a is not None and len(a) else None


def _n_split(ctx: InferContext | KernelContext) -> int:
    if ctx.opset >= 18 and ctx.attrs.get("num_outputs") is not None:
        return int(ctx.attrs["num_outputs"])
    return ctx.num_outputs


def _split_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    n = _n_split(ctx)
    explicit = _split_sizes_given(ctx, ctx.const(1) if present(ctx, 1) else None)
    if explicit is None and present(ctx, 1) and (ctx.opset >= 13 or ctx.opset < 2):
        # NOTE: a non-constant split input: the split axis is unknown.
        if t is None or t.shape is None:
            return [TensorType(dtype, None) for _ in range(ctx.num_outputs)]
        axis = normalize_axis(int(ctx.attr("axis", 0)), len(t.shape), "Split axis")
        return [TensorType(dtype, tuple(None if i == axis else d for i, d in enumerate(t.shape)))
                for _ in range(ctx.num_outputs)]
    if t is None or t.shape is None:
        return [TensorType(dtype, None) for _ in range(ctx.num_outputs)]
    s = t.shape
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(s), "Split axis")
    d = s[axis]
    sizes: list[Dim]
    if explicit is not None:
        if len(explicit) != ctx.num_outputs:
            raise ShapeInferenceError(f"Split: {len(explicit)} split sizes {explicit} for {ctx.num_outputs} outputs")
        if isinstance(d, int) and sum(explicit) != d:
            raise ShapeInferenceError(f"Split: sizes {explicit} do not add up to the axis size {d}")
        sizes = list(explicit)
    elif isinstance(d, int):
        try:
            sizes = list(_even_split(d, n, ctx.opset, ShapeInferenceError))
        except ShapeInferenceError:
            # NOTE: left to run time: an untaken If branch may hold such a Split (AffineGrid's function body).
            sizes = [None] * n
    elif d is None:
        sizes = [None] * n
    elif ctx.opset >= 18:
        e = dim_expr(d)
        chunk = sympy.ceiling(e / n)
        sizes = [*([sym_dim(chunk)] * (n - 1)), sym_dim(e - (n - 1) * chunk)]
    else:
        sizes = [sym_dim(sympy.cancel(dim_expr(d) / n)) for _ in range(n)]
    return [TensorType(dtype, tuple(sz if i == axis else x for i, x in enumerate(s))) for sz in sizes]


def _even_split(d: int, n: int, opset: int, err: type[Exception]) -> list[int]:
    if n <= 0:
        raise err(f"Split: cannot split into {n} parts")
    if d % n == 0:
        return [d // n] * n
    if opset < 18:
        raise err(f"Split: axis size {d} is not divisible by the {n} outputs (give 'split' sizes)")
    chunk = -(-d // n)
    last = d - chunk * (n - 1)
    if last < 0:
        raise err(f"Split: cannot split axis size {d} into {n} chunks of {chunk}")
    return [chunk] * (n - 1) + [last]


@register("Split", Dynamism.ISVDOS, infer=_split_infer, family=SHAPE,
          note="ISDOS when the split sizes are an attribute, absent (equal parts), or a constant input")
def split(ctx: KernelContext, x: np.ndarray, split_in: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    axis = norm_axis_rt(int(ctx.attr("axis", 0)), x.ndim, "Split axis")
    d = x.shape[axis]
    sizes = _split_sizes_given(ctx, split_in)
    if sizes is None:
        sizes = _even_split(d, _n_split(ctx), ctx.opset, OpRuntimeError)
    if sum(sizes) != d or any(v < 0 for v in sizes):
        raise OpRuntimeError(f"Split: sizes {sizes} do not add up to the axis size {d} (input shape {list(x.shape)})")
    offsets = np.cumsum([0, *sizes])
    parts = []
    for k in range(len(sizes)):
        sl: list[slice] = [slice(None)] * x.ndim
        sl[axis] = slice(int(offsets[k]), int(offsets[k + 1]))
        parts.append(x[tuple(sl)])
    return tuple(parts)


# -- Expand / Tile -------------------------------------------------------------


def _expand_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    target = const_ints(ctx, 1)
    if target is None:
        n = static_rank_of_1d(ctx, 1)
        if t is not None and t.shape is not None and n is not None:
            return tensor_result(dtype, unknown_dims(max(len(t.shape), n)))
        return tensor_result(dtype, None)
    in_s = t.shape if t is not None else None
    tshape: tuple[Dim, ...] = tuple(target)
    return tensor_result(dtype, broadcast_shapes([in_s, tshape], "Expand: "))


@register("Expand", Dynamism.ISVDOS, infer=_expand_infer, family=SHAPE,
          note="ISDOS when the shape input is a constant")
def expand(ctx: KernelContext, x: np.ndarray, shape_in: np.ndarray) -> np.ndarray:
    target = ints(shape_in)
    try:
        out = np.broadcast_shapes(x.shape, tuple(target))
    except ValueError:
        raise OpRuntimeError(f"Expand: input shape {list(x.shape)} cannot be broadcast with {target}") from None
    return np.array(np.broadcast_to(x, out))


def _tile_reps(ctx: InferContext | KernelContext, rank: int, a: Any, b: Any) -> list[int] | None:
    if ctx.opset < 6:
        if a is None or b is None:
            return None
        tiles, axis = int(np.asarray(a).reshape(-1)[0]), int(np.asarray(b).reshape(-1)[0])
        reps = [1] * rank
        reps[axis] = tiles
        return reps
    return ints(a) if a is not None else None


def _tile_infer(ctx: InferContext) -> list[Type]:
    t = in_type(ctx, 0)
    dtype = t.dtype if t else None
    if t is None or t.shape is None:
        return tensor_result(dtype, None)
    reps = _tile_reps(ctx, len(t.shape), ctx.const(1), ctx.const(2))
    if reps is None:
        return tensor_result(dtype, unknown_dims(len(t.shape)))
    if len(reps) != len(t.shape):
        raise ShapeInferenceError(f"Tile: {len(reps)} repeats {reps} for an input of rank {len(t.shape)}")
    return tensor_result(dtype, [dmul(d, r) for d, r in zip(t.shape, reps)])


@register("Tile", Dynamism.ISVDOS, infer=_tile_infer, family=SHAPE,
          note="ISDOS when the repeats input is a constant")
def tile(ctx: KernelContext, x: np.ndarray, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    reps = _tile_reps(ctx, x.ndim, a, b)
    if reps is None or len(reps) != x.ndim or any(r < 0 for r in reps):
        raise OpRuntimeError(f"Tile: repeats {reps} do not fit an input of shape {list(x.shape)}")
    return np.tile(x, reps)


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


# -- ConstantOfShape / Range -----------------------------------------------------


def _cos_value(attrs: dict[str, Any]) -> np.ndarray:
    v = attrs.get("value")
    if v is None:
        return np.zeros((1,), dtype=np.float32)
    return np.asarray(v)


def _constantofshape_infer(ctx: InferContext) -> list[Type]:
    v = _cos_value(ctx.attrs)
    dtype = DType.from_numpy(v.dtype) if v.dtype != object else DType.STRING
    target = const_ints(ctx, 0)
    if target is None:
        n = static_rank_of_1d(ctx, 0)
        return tensor_result(dtype, unknown_dims(n) if n is not None else None)
    if any(d < 0 for d in target):
        raise ShapeInferenceError(f"ConstantOfShape: negative dims in {target}")
    return tensor_result(dtype, target)


@register("ConstantOfShape", Dynamism.ISVDOS, infer=_constantofshape_infer, family=SHAPE,
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


def _range_infer(ctx: InferContext) -> list[Type]:
    dtype = in_dtype(ctx, 0) or in_dtype(ctx, 1) or in_dtype(ctx, 2)
    cs = [ctx.const(i) for i in range(3)]
    if any(c is None for c in cs):
        return tensor_result(dtype, (None,))
    vals = [np.asarray(c).reshape(-1)[0] for c in cs]
    integral = np.asarray(cs[0]).dtype.kind in "iu"
    try:
        n = _range_count(vals[0], vals[1], vals[2], integral)
    except OpRuntimeError as e:
        raise ShapeInferenceError(str(e)) from None
    return tensor_result(dtype, (n,))


@register("Range", Dynamism.ISVDOS, infer=_range_infer, family=SHAPE,
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
    c = ctx.const(1)
    depth: Dim = int(np.asarray(c).reshape(-1)[0]) if c is not None else None
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
