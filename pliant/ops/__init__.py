"""Operator definitions, one family per module; importing this registers them all."""

from pliant.ops import (  # noqa: F401
    attention,
    control,
    conv,
    creation,
    detection,
    elementwise,
    fused,
    image,
    indexing,
    layout,
    linalg,
    loss,
    ml,
    norm,
    optional,
    pool,
    quant,
    random,
    reduce,
    resize,
    rnn,
    sequence,
    shape,
    shape_expr,
    signal,
    string,
    training,
)
from pliant.ops.registry import FAMILIES, Dynamism, OpDef, all_ops, get, lookup, register

__all__ = ["FAMILIES", "Dynamism", "OpDef", "all_ops", "get", "lookup", "register"]
