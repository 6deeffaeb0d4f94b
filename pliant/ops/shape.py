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
from pliant.ir.dims import Dim, Sym, d_floordiv, dim_expr, dims_equal, provably_le, sym_dim
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops import symvalue
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


def size_dims(ctx: InferContext, i: int) -> list[Dim] | None:
    """Input ``i`` (a tensor of sizes, as Expand and ConstantOfShape take) as dims.

    Constants, or symbolic values the analysis tracked (``Shape(x)`` is
    ``[N, L]``).  A symbolic element must be provably >= 0 to count (it is a
    size); others are None.
    """
    ds = ctx.dims(i)
    if ds is None:
        return None
    return [d if isinstance(d, int) or (d is not None and provably_le(0, d)) else None for d in ds]


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


def shape_bounds(ctx: InferContext | KernelContext, rank: int) -> tuple[int, int]:
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
    start, end = shape_bounds(ctx, len(s))
    return tensor_result(DType.INT64, (max(end - start, 0),))


@register("Shape", Dynamism.ISDO, infer=_shape_infer, family=SHAPE, value=symvalue.shape_value)
def shape(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    start, end = shape_bounds(ctx, x.ndim)
    return np.array(x.shape[start:end], dtype=np.int64)


def _size_infer(ctx: InferContext) -> list[Type]:
    return tensor_result(DType.INT64, ())


@register("Size", Dynamism.ISDO, infer=_size_infer, family=SHAPE, value=symvalue.size_value)
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
    target: list[Dim] | None
    target = ctx.dims(1) if ctx.opset >= 5 else _reshape_target(ctx, None)  # type: ignore[assignment]
    if target is None:
        n = static_rank_of_1d(ctx, 1)
        return tensor_result(dtype, unknown_dims(n) if n is not None else None)
    allowzero = int(ctx.attr("allowzero", 0)) if ctx.opset >= 14 else 0
    # NOTE: a symbolic element means that size only when it cannot be 0 or -1 at run time, or when
    # it equals the input dim a 0 would copy.
    target = [d if not isinstance(d, Sym) or provably_le(1, d) or (
        not allowzero and in_s is not None and i < len(in_s) and dims_equal(d, in_s[i]))
        else None for i, d in enumerate(target)]
    if None in target:
        # NOTE: an unknown element may be 0 (copy a dim) or -1: only positive known elements are sure.
        return tensor_result(dtype, [d if isinstance(d, Sym) or (isinstance(d, int) and d > 0) else
                                     (in_s[i] if d == 0 and not allowzero and in_s is not None and i < len(in_s) else None)
                                     for i, d in enumerate(target)])
    if target.count(-1) > 1:
        raise ShapeInferenceError(f"Reshape: the target shape {target} has more than one -1")
    if any(isinstance(v, int) and v < -1 for v in target):
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
            # NOTE: a quotient that is not a polynomial is not a dim we can name exactly
            dims[k] = sym_dim(q) if q.is_polynomial() and not q.is_Rational else d_floordiv(total, known)
    elif in_s is not None:
        total = dmul(*in_s)
        out_total = dmul(*dims)
        if isinstance(total, int) and isinstance(out_total, int) and total != out_total:
            raise ShapeInferenceError(
                f"Reshape: cannot reshape input of shape {list(in_s)} ({total} elements) into {target} ({out_total})"
            )
    return tensor_result(dtype, dims)


def _same_size_backward(ctx: InferContext, results: list[Type]) -> list[tuple[Dim, Dim]]:
    """Reshape/Flatten keep the number of elements."""
    t, out = in_type(ctx, 0), results[0] if results else None
    if t is None or t.shape is None or not isinstance(out, TensorType) or out.shape is None:
        return []
    return [(dmul(*t.shape), dmul(*out.shape))]


@register("Reshape", Dynamism.ISVDOS, infer=_reshape_infer, family=SHAPE, value=symvalue.same_elements,
          backward=_same_size_backward,
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


@register("Flatten", Dynamism.ISDOS, infer=_flatten_infer, family=SHAPE, value=symvalue.same_elements,
          backward=_same_size_backward)
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


@register("Squeeze", Dynamism.ISVDOS, infer=_squeeze_infer, family=SHAPE, value=symvalue.same_elements,
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


@register("Unsqueeze", Dynamism.ISVDOS, infer=_unsqueeze_infer, family=SHAPE, value=symvalue.same_elements,
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


def _concat_backward(ctx: InferContext, results: list[Type]) -> list[tuple[Dim, Dim]]:
    """Every input agrees with the result on each axis but the concat axis."""
    out = results[0] if results else None
    if not isinstance(out, TensorType) or out.shape is None:
        return []
    axis = int(ctx.attr("axis", 1))
    r = len(out.shape)
    axis = axis + r if axis < 0 else axis
    eqs: list[tuple[Dim, Dim]] = []
    for t in ctx.input_types:
        if isinstance(t, TensorType) and t.shape is not None and len(t.shape) == r:
            eqs += [(a, b) for i, (a, b) in enumerate(zip(t.shape, out.shape)) if i != axis]
    return eqs


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


@register("Concat", Dynamism.ISDOS, infer=_concat_infer, family=SHAPE, value=symvalue.concat_value,
          backward=_concat_backward)
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
    target = size_dims(ctx, 1)
    if target is None:
        n = static_rank_of_1d(ctx, 1)
        if t is not None and t.shape is not None and n is not None:
            return tensor_result(dtype, unknown_dims(max(len(t.shape), n)))
        return tensor_result(dtype, None)
    in_s = t.shape if t is not None else None
    tshape: tuple[Dim, ...] = tuple(target)
    return tensor_result(dtype, broadcast_shapes([in_s, tshape], "Expand: "))


@register("Expand", Dynamism.ISVDOS, infer=_expand_infer, family=SHAPE, value=symvalue.expand_value,
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
    reps: list[Dim] | None
    if ctx.opset >= 6:
        reps = ctx.dims(1)
    else:
        reps = _tile_reps(ctx, len(t.shape), ctx.const(1), ctx.const(2))  # type: ignore[assignment]
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
