"""Shared forward shape rules, and the fallback to ONNX's own shape inference.

An op whose ``OpDef.infer`` is None gets ``onnx_fallback``: its node is handed
to ``onnx.shape_inference.infer_node_outputs`` with our input types (symbolic
dims passed as ``dim_param`` text) and constant inputs, and the answer is read
back.  Ops whose shapes matter to later analyses carry their own symbolic rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from pliant.errors import ShapeInferenceError
from pliant.ir.dims import Dim, Sym, d_max, dims_equal
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, OptionalType, SequenceType, TensorType, Type, UnknownType
from pliant.ops.registry import InferContext


def unknown(n: int) -> list[Type]:
    return [ANY] * n


def tensor_input(ctx: InferContext, i: int) -> TensorType | None:
    t = ctx.input(i)
    return t if isinstance(t, TensorType) else None


def same_as_input(ctx: InferContext) -> list[Type]:
    """Output 0 has input 0's type (unary elementwise ops)."""
    t = ctx.input(0)
    return [t if t is not None else ANY] + unknown(ctx.num_outputs - 1)


def broadcast_dim(a: Dim, b: Dim, where: str = "") -> Dim:
    if a == 1:
        return b
    if b == 1:
        return a
    if a is None or b is None:
        known = a if a is not None else b
        # NOTE: an unknown dim against a known one > 1 must be 1 or equal: the result is the known one.
        return known if isinstance(known, int) else None
    if isinstance(a, int) and isinstance(b, int):
        if a != b:
            raise ShapeInferenceError(f"{where}cannot broadcast dims {a} and {b}")
        return a
    if dims_equal(a, b):
        return a
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return d_max(a, b)


def broadcast_shapes(shapes: Sequence[tuple[Dim, ...] | None], where: str = "") -> tuple[Dim, ...] | None:
    """NumPy-style multidirectional broadcast of symbolic shapes (None: unknown rank)."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes if s is not None), default=0)
    out: list[Dim] = [1] * rank
    for s in shapes:
        assert s is not None
        padded: list[Dim] = [*([1] * (rank - len(s))), *s]
        out = [broadcast_dim(a, b, where) for a, b in zip(out, padded)]
    return tuple(out)


def _broadcast(ctx: InferContext, dtype: DType | None) -> list[Type]:
    shapes = []
    for t in ctx.input_types:
        shapes.append(t.shape if isinstance(t, TensorType) else None)
    return [TensorType(dtype, broadcast_shapes(shapes, f"{ctx.name}: "))]


def broadcast(ctx: InferContext) -> list[Type]:
    """Elementwise ops: broadcast the inputs' shapes, dtype of the first input."""
    t0 = tensor_input(ctx, 0)
    return _broadcast(ctx, t0.dtype if t0 else None)


def broadcast_bool(ctx: InferContext) -> list[Type]:
    """Comparisons: broadcast shapes, bool result."""
    return _broadcast(ctx, DType.BOOL)


def onnx_fallback(ctx: InferContext) -> list[Type]:
    """Ask ONNX's shape inference for the output types; unknown where it cannot say."""
    from pliant.frontends.onnx_attrs import attr_to_onnx, tensor_to_onnx, type_from_onnx, type_to_onnx

    try:
        schema = onnx.defs.get_schema(ctx.name, ctx.opset, ctx.domain)
    except onnx.defs.SchemaError:
        return unknown(ctx.num_outputs)
    in_names = [f"i{k}" if t is not None else "" for k, t in enumerate(ctx.input_types)]
    out_names = [f"o{k}" for k in range(ctx.num_outputs)]
    attrs = []
    for k, v in ctx.attrs.items():
        if v is None:
            continue
        try:
            attrs.append(attr_to_onnx(k, v))
        except (TypeError, ValueError):
            return unknown(ctx.num_outputs)
    node = onnx.helper.make_node(ctx.name, in_names, out_names, domain=ctx.domain)
    node.attribute.extend(attrs)
    types = {}
    data = {}
    for idx, t in enumerate(ctx.input_types):
        if t is None:
            continue
        if isinstance(t, UnknownType):
            return unknown(ctx.num_outputs)
        types[f"i{idx}"] = type_to_onnx(t)
        c = ctx.const(idx)
        if c is not None and c.size <= 1 << 16:
            data[f"i{idx}"] = tensor_to_onnx(c, f"i{idx}")
    try:
        opsets = [onnx.helper.make_opsetid(ctx.domain, ctx.opset)]
        if ctx.domain:
            opsets.append(onnx.helper.make_opsetid("", 21))
        outs = onnx.shape_inference.infer_node_outputs(schema, node, types, data, opset_imports=opsets)
    except Exception:  # noqa: BLE001 - ONNX raises many kinds; an unknown type is the honest answer
        return unknown(ctx.num_outputs)
    result: list[Type] = []
    for name in out_names:
        tp = outs.get(name)
        result.append(type_from_onnx(tp) if tp is not None else ANY)
    return result


def element_dtype(t: Type | None) -> DType | None:
    if isinstance(t, TensorType):
        return t.dtype
    if isinstance(t, (SequenceType, OptionalType)):
        return element_dtype(t.elem)
    return None


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeInferenceError(f"{what} {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


__all__ = [
    "Sym",
    "dims_equal",
    "broadcast",
    "broadcast_bool",
    "broadcast_shapes",
    "onnx_fallback",
    "same_as_input",
    "unknown",
]
