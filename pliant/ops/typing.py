"""Result types of an op: its own shape rule or ONNX's, merged with what the model declares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pliant.ir.core import AttrValue, Region, Value
from pliant.ir.types import ANY, OptionalType, SequenceType, TensorType, TupleType, Type, UnknownType
from pliant.ops import registry
from pliant.ops.infer import onnx_fallback


def attrs_with_defaults(opdef: registry.OpDef, attrs: dict[str, AttrValue], opset: int) -> dict[str, Any]:
    """The op's attributes with the schema's defaults filled in."""
    try:
        schema = opdef.schema(opset)
    except Exception:  # noqa: BLE001 - an op outside ONNX's schemas simply has no defaults
        return dict(attrs)
    merged: dict[str, Any] = {k: v for k, v in schema.attrs.items() if v is not None}
    merged.update(attrs)
    return merged


def constant_value(v: Value | None) -> np.ndarray | None:
    """The value of ``v`` if a Constant op defines it with a tensor ``value``."""
    if v is None:
        return None
    op = v.defining_op
    if op is not None and op.name == "Constant" and op.domain == "":
        val = op.attrs.get("value")
        if isinstance(val, np.ndarray):
            return val
        from pliant.ops.control import constant_attr_value

        return constant_attr_value(op.attrs)
    return None


def infer_op_types(
    name: str,
    domain: str,
    operands: Sequence[Value | None],
    attrs: dict[str, AttrValue],
    opset: int,
    num_outputs: int,
    regions: dict[str, Region] | None = None,
    module: Any = None,
) -> list[Type]:
    """The result types of op ``name`` applied to ``operands`` (ANY where unknown)."""
    opdef = registry.get(name, domain)
    ctx = registry.InferContext(
        name,
        domain,
        [v.type if v is not None else None for v in operands],
        attrs_with_defaults(opdef, attrs, opset),
        opset,
        num_outputs,
        [constant_value(v) for v in operands],
        regions,
        module,
    )
    rule = opdef.infer if opdef.infer is not None else onnx_fallback
    types = list(rule(ctx))
    if len(types) < num_outputs:
        types += [ANY] * (num_outputs - len(types))
    return types[:num_outputs]


def refine(a: Type, b: Type) -> Type:
    """The more precise of two descriptions of the same value (``a`` wins ties)."""
    if isinstance(a, UnknownType):
        return b
    if isinstance(b, UnknownType):
        return a
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        dtype = a.dtype if a.dtype is not None else b.dtype
        if a.shape is None:
            return TensorType(dtype, b.shape)
        if b.shape is None or len(a.shape) != len(b.shape):
            return TensorType(dtype, a.shape)
        # NOTE: a dim ``a`` knows (int or symbolic) wins: ONNX's inference may pin a symbolic dim to a wrong constant
        dims = tuple(x if x is not None else y for x, y in zip(a.shape, b.shape))
        return TensorType(dtype, dims)
    if isinstance(a, SequenceType) and isinstance(b, SequenceType):
        return SequenceType(refine(a.elem, b.elem))
    if isinstance(a, OptionalType) and isinstance(b, OptionalType):
        return OptionalType(refine(a.elem, b.elem))
    if isinstance(a, TupleType) and isinstance(b, TupleType) and len(a.elems) == len(b.elems):
        return TupleType(tuple(refine(x, y) for x, y in zip(a.elems, b.elems)))
    return a
