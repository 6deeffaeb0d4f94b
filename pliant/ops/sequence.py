"""Sequences: SequenceConstruct/Empty/Insert/Erase/At/Length, SplitToSequence,
ConcatFromSequence and SequenceMap.

At run time a sequence is a Python list of NumPy arrays; its type is
``SequenceType(elem)``, where ``elem`` describes every element (dims on which
the elements differ are unknown).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, d_add, d_mul, d_sub
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, SequenceType, TensorType, Type
from pliant.ops import symvalue
from pliant.ops.control import join_types
from pliant.ops.infer import normalize_axis
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

SEQUENCE = "sequence"


def _elem_of(t: Type | None) -> Type:
    if isinstance(t, SequenceType):
        return t.elem
    return ANY


def _check_seq(seq: Any, op: str) -> list[Any]:
    if not isinstance(seq, list):
        raise OpRuntimeError(f"{op} expects a sequence as its first input, got {type(seq).__name__}")
    return seq


def _position(pos: np.ndarray, n: int, *, inclusive_end: bool, op: str) -> int:
    """A position input as a non-negative index; ``inclusive_end`` allows ``n`` (insert at the back)."""
    if pos.size != 1:
        raise OpRuntimeError(f"{op}: position must be a scalar, got shape {pos.shape}")
    p = int(pos.reshape(-1)[0])
    hi = n if inclusive_end else n - 1
    if not -n <= p <= hi:
        raise OpRuntimeError(f"{op}: position {p} is out of range [{-n}, {hi}] for a sequence of length {n}")
    return p + n if p < 0 else p


# -- symbolic lengths ---------------------------------------------------------------
# NOTE: the shape analysis tracks a sequence's length as its symbolic value (a 1-element array).


def _length(ctx: InferContext, i: int = 0) -> Dim:
    v = ctx.value(i)
    return v.reshape(-1)[0] if v is not None and v.size == 1 else None  # type: ignore[no-any-return]


def _length_value(n: Dim) -> list[np.ndarray | None]:
    return [None] if n is None else [symvalue.array([n], (1,))]


def _construct_value(ctx: InferContext) -> list[np.ndarray | None]:
    return _length_value(len(ctx.input_types))


def _insert_value(ctx: InferContext) -> list[np.ndarray | None]:
    return _length_value(d_add(_length(ctx), 1))


def _erase_value(ctx: InferContext) -> list[np.ndarray | None]:
    return _length_value(d_sub(_length(ctx), 1))


def _length_op_value(ctx: InferContext) -> list[np.ndarray | None]:
    n = _length(ctx)
    return [None] if n is None else [symvalue.array([n], ())]


# -- SequenceConstruct / SequenceEmpty ------------------------------------------

def _construct_infer(ctx: InferContext) -> list[Type]:
    elem: Type | None = None
    for t in ctx.input_types:
        t = t if t is not None else ANY
        elem = t if elem is None else join_types(elem, t)
    return [SequenceType(elem if elem is not None else ANY)]


@register("SequenceConstruct", Dynamism.ISDOS, infer=_construct_infer, family=SEQUENCE, value=_construct_value)
def sequence_construct(ctx: KernelContext, *tensors: np.ndarray) -> list[np.ndarray]:
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise OpRuntimeError(f"SequenceConstruct: all inputs must have one dtype, got {sorted(str(d) for d in dtypes)}")
    return list(tensors)


def _empty_dtype(ctx: InferContext | KernelContext) -> DType:
    code = ctx.attr("dtype")
    return DType.from_onnx(int(code)) if code is not None else DType.FLOAT


def _empty_infer(ctx: InferContext) -> list[Type]:
    return [SequenceType(TensorType(_empty_dtype(ctx), None))]


@register("SequenceEmpty", Dynamism.ISDO, infer=_empty_infer, family=SEQUENCE, value=lambda ctx: _length_value(0))
def sequence_empty(ctx: KernelContext) -> list[np.ndarray]:
    return []


# -- SequenceInsert / SequenceErase -------------------------------------------------

def _insert_infer(ctx: InferContext) -> list[Type]:
    seq = ctx.input(0)
    t = ctx.input(1) or ANY
    if isinstance(seq, SequenceType):
        elem = seq.elem
        if isinstance(elem, TensorType) and isinstance(t, TensorType) and elem.dtype is not None \
                and t.dtype is not None and elem.dtype != t.dtype:
            raise ShapeInferenceError(f"SequenceInsert: cannot insert a {t} into a {seq}")
        # NOTE: an empty sequence's element type says nothing about shapes; here the element type is
        # joined with the inserted one, which stays sound (the joined type covers both).
        return [SequenceType(join_types(elem, t))]
    return [SequenceType(t)]


@register("SequenceInsert", Dynamism.ISDOS, infer=_insert_infer, family=SEQUENCE, value=_insert_value,
          note="the length follows from the input's; where elements differ in shape, the position value decides "
               "which element lands where")
def sequence_insert(ctx: KernelContext, seq: Any, tensor: np.ndarray, position: np.ndarray | None = None) -> list[Any]:
    seq = _check_seq(seq, "SequenceInsert")
    if seq and seq[0].dtype != tensor.dtype:
        raise OpRuntimeError(f"SequenceInsert: inserting a {tensor.dtype} tensor into a sequence of {seq[0].dtype}")
    out = list(seq)
    if position is None:
        out.append(tensor)
    else:
        out.insert(_position(position, len(seq), inclusive_end=True, op="SequenceInsert"), tensor)
    return out


def _same_seq_infer(ctx: InferContext) -> list[Type]:
    t = ctx.input(0)
    return [t if isinstance(t, SequenceType) else SequenceType(ANY)]


@register("SequenceErase", Dynamism.ISDOS, infer=_same_seq_infer, family=SEQUENCE, value=_erase_value,
          note="the length follows from the input's; the position value decides which element goes")
def sequence_erase(ctx: KernelContext, seq: Any, position: np.ndarray | None = None) -> list[Any]:
    seq = _check_seq(seq, "SequenceErase")
    if not seq:
        raise OpRuntimeError("SequenceErase: cannot erase from an empty sequence")
    out = list(seq)
    k = len(seq) - 1 if position is None else _position(position, len(seq), inclusive_end=False, op="SequenceErase")
    del out[k]
    return out


# -- SequenceAt / SequenceLength --------------------------------------------------------

def _at_infer(ctx: InferContext) -> list[Type]:
    return [_elem_of(ctx.input(0))]


@register("SequenceAt", Dynamism.ISVDOS, infer=_at_infer, family=SEQUENCE,
          note="ISDOS when all elements share a shape; otherwise the position value picks the shape")
def sequence_at(ctx: KernelContext, seq: Any, position: np.ndarray) -> np.ndarray:
    seq = _check_seq(seq, "SequenceAt")
    return seq[_position(position, len(seq), inclusive_end=False, op="SequenceAt")]  # type: ignore[no-any-return]


def _length_infer(ctx: InferContext) -> list[Type]:
    return [TensorType(DType.INT64, ())]


@register("SequenceLength", Dynamism.ISDO, infer=_length_infer, family=SEQUENCE, value=_length_op_value,
          note="the value is the sequence's length, its only 'shape'")
def sequence_length(ctx: KernelContext, seq: Any) -> np.ndarray:
    return np.array(len(_check_seq(seq, "SequenceLength")), dtype=np.int64)


# -- SplitToSequence -------------------------------------------------------------------------

def _split_infer(ctx: InferContext) -> list[Type]:
    t = ctx.input(0)
    if not isinstance(t, TensorType):
        return [SequenceType(TensorType(None, None))]
    if t.shape is None:
        return [SequenceType(TensorType(t.dtype, None))]
    rank = len(t.shape)
    axis = normalize_axis(int(ctx.attr("axis", 0)), rank, "SplitToSequence axis")
    shape = list(t.shape)
    has_split = len(ctx.input_types) > 1 and ctx.input_types[1] is not None
    if not has_split:
        if int(ctx.attr("keepdims", 1)):
            shape[axis] = 1
        else:
            del shape[axis]
        return [SequenceType(TensorType(t.dtype, tuple(shape)))]
    split = ctx.const(1)
    d: Dim = None
    if split is not None:
        if split.ndim == 0:
            s = int(split)
            if s <= 0:
                raise ShapeInferenceError(f"SplitToSequence: split must be positive, got {s}")
            n = t.shape[axis]
            if isinstance(n, int) and n % s == 0:
                d = s
        elif split.ndim == 1:
            vals = {int(v) for v in split}
            if any(v < 0 for v in vals):
                raise ShapeInferenceError(f"SplitToSequence: split entries must be non-negative, got {split.tolist()}")
            n = t.shape[axis]
            if isinstance(n, int) and int(split.sum()) != n:
                raise ShapeInferenceError(
                    f"SplitToSequence: split {split.tolist()} sums to {int(split.sum())}, but axis {axis} has size {n}"
                )
            if len(vals) == 1:
                d = vals.pop()
    shape[axis] = d
    return [SequenceType(TensorType(t.dtype, tuple(shape)))]


@register("SplitToSequence", Dynamism.ISVDOS, infer=_split_infer, family=SEQUENCE,
          note="ISDOS when 'split' is absent or a constant")
def split_to_sequence(ctx: KernelContext, x: np.ndarray, split: np.ndarray | None = None) -> list[np.ndarray]:
    if x.ndim == 0:
        raise OpRuntimeError("SplitToSequence cannot split a scalar")
    axis = int(ctx.attr("axis", 0))
    if not -x.ndim <= axis < x.ndim:
        raise OpRuntimeError(f"SplitToSequence: axis {axis} is out of range for rank {x.ndim}")
    axis %= x.ndim
    n = x.shape[axis]
    if split is None:
        parts = np.split(x, n, axis=axis) if n else []
        if not int(ctx.attr("keepdims", 1)):
            parts = [np.squeeze(p, axis=axis) for p in parts]
        return list(parts)
    if split.ndim == 0:
        s = int(split)
        if s <= 0:
            raise OpRuntimeError(f"SplitToSequence: split must be positive, got {s}")
        bounds = list(range(s, n, s))
    elif split.ndim == 1:
        sizes = [int(v) for v in split]
        if any(v < 0 for v in sizes) or sum(sizes) != n:
            raise OpRuntimeError(
                f"SplitToSequence: split {sizes} must be non-negative and sum to the size {n} of axis {axis}"
            )
        bounds = list(np.cumsum(sizes)[:-1]) if sizes else []
        if not sizes:
            return []
    else:
        raise OpRuntimeError(f"SplitToSequence: split must be a scalar or 1-D, got shape {split.shape}")
    return [np.ascontiguousarray(p) for p in np.split(x, bounds, axis=axis)]


# -- ConcatFromSequence ------------------------------------------------------------------------------

def _concat_infer(ctx: InferContext) -> list[Type]:
    elem = _elem_of(ctx.input(0))
    if not isinstance(elem, TensorType):
        return [TensorType(None, None)]
    if elem.shape is None:
        return [TensorType(elem.dtype, None)]
    new_axis = bool(ctx.attr("new_axis", 0))
    rank = len(elem.shape) + (1 if new_axis else 0)
    axis = normalize_axis(int(ctx.attr("axis")), rank, "ConcatFromSequence axis")
    shape = list(elem.shape)
    n = _length(ctx)
    if new_axis:
        shape.insert(axis, n)
    else:
        # NOTE: all elements share the element type's dims, so the concatenated axis is n times one of them
        shape[axis] = d_mul(n, shape[axis])
    return [TensorType(elem.dtype, tuple(shape))]


@register("ConcatFromSequence", Dynamism.ISDOS, infer=_concat_infer, family=SEQUENCE)
def concat_from_sequence(ctx: KernelContext, seq: Any) -> np.ndarray:
    seq = _check_seq(seq, "ConcatFromSequence")
    if not seq:
        raise OpRuntimeError("ConcatFromSequence: the sequence is empty; there is nothing to concatenate")
    new_axis = bool(ctx.attr("new_axis", 0))
    axis = int(ctx.attr("axis"))
    rank = seq[0].ndim + (1 if new_axis else 0)
    if not -rank <= axis < rank:
        raise OpRuntimeError(f"ConcatFromSequence: axis {axis} is out of range for rank {rank}")
    axis %= rank
    try:
        return np.stack(seq, axis=axis) if new_axis else np.concatenate(seq, axis=axis)
    except ValueError as e:
        shapes = [list(t.shape) for t in seq]
        raise OpRuntimeError(f"ConcatFromSequence: elements of shapes {shapes} do not fit along axis {axis}: {e}") from None


# -- SequenceMap ----------------------------------------------------------------------------------------

def _map_infer(ctx: InferContext) -> list[Type]:
    body = ctx.regions.get("body")
    if body is None:
        return [SequenceType(ANY)] * ctx.num_outputs
    outs = body.block.outputs
    if len(outs) != ctx.num_outputs:
        raise ShapeInferenceError(f"SequenceMap body yields {len(outs)} values but the op has {ctx.num_outputs} outputs")
    return [SequenceType(v.type) for v in outs]


@register("SequenceMap", Dynamism.ISDOS, infer=_map_infer, family=SEQUENCE,
          note="as dynamic as its body: EDO bodies make it EDO")
def sequence_map(ctx: KernelContext, seq: Any, *others: Any) -> Any:
    seq = _check_seq(seq, "SequenceMap")
    n = len(seq)
    for k, o in enumerate(others):
        if isinstance(o, list) and len(o) != n:
            raise OpRuntimeError(f"SequenceMap: input {k + 1} is a sequence of length {len(o)}, the first has {n}")
    n_out = len(ctx.op.regions["body"].block.outputs)
    results: list[list[Any]] = [[] for _ in range(n_out)]
    for i in range(n):
        args = [seq[i], *(o[i] if isinstance(o, list) else o for o in others)]
        for acc, v in zip(results, ctx.run_region("body", args)):
            acc.append(v)
    results = results[: ctx.num_outputs]
    return tuple(results) if ctx.num_outputs != 1 else results[0]
