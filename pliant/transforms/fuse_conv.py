"""Conv epilogue fusion: ``Conv -> [Add residual] -> [activation]`` becomes one ``pliant.FusedConv``.

A ``pliant.PackedConv`` (weights laid out by ``pack_weights``) fuses the same
way; its ``weight_shape`` goes with it into the FusedConv's attributes.

A float32 2-D (or 1-D) convolution whose result has one use takes into its
epilogue an ``Add`` of a tensor of exactly its result's shape (RDP's symbolic
dims, so valid for every input size), then an activation the native kernel
applies (Relu, LeakyRelu, Clip with constant bounds) that is the only use of
what came before.  The bias is already the Conv's.  The native kernel applies
the epilogue to each block of the result while it is in cache (see
``pliant.runtime.blas_conv``) instead of in passes of its own over memory.
The ops move into the FusedConv's region, which defines the op.
"""

from __future__ import annotations

import numpy as np

from pliant.ir.core import Block, Module, Op, Region, Value
from pliant.ir.dims import Dim, dims_equal
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType
from pliant.ops.typing import constant_value

pass_name = "fuse-conv"

_CONV_ATTRS = ("strides", "pads", "dilations", "group", "weight_shape", "layout")


def fuse_conv(module: Module) -> int:
    """Fuse every Conv with the epilogue it has; returns how many FusedConv ops were made."""
    return sum(_block(fn.body) for fn in module.functions.values())


def _block(block: Block) -> int:
    made = 0
    for op in list(block.ops):
        for region in op.regions.values():
            made += _block(region.block)
    for op in list(block.ops):
        if op.parent is block and _is_conv(op) and _convertible(op):
            made += _fuse(block, op)
    return made


def _is_conv(op: Op) -> bool:
    return (op.domain, op.name) in (("", "Conv"), ("pliant", "PackedConv"))


def _f32_shape(v: Value | None) -> tuple[Dim, ...] | None:
    t = v.type if v is not None else None
    if isinstance(t, TensorType) and t.dtype == DType.FLOAT and t.shape is not None and all(d is not None for d in t.shape):
        return tuple(t.shape)
    return None


def _convertible(conv: Op) -> bool:
    """A conv the native kernel runs: float32, 1-D or 2-D, explicit pads."""
    shape = _f32_shape(conv.results[0])
    if shape is None or len(shape) not in (3, 4) or str(conv.attrs.get("auto_pad", "NOTSET")) != "NOTSET":
        return False
    return all(_f32_shape(v) is not None for v in conv.operands if v is not None)


def _only_user(v: Value, block: Block) -> Op | None:
    """The op that is ``v``'s one use, in ``block``; None when ``v`` has other uses or is a block output."""
    if len(v.uses) != 1 or v in block.outputs:
        return None
    user = next(iter(v.uses)).user
    return user if isinstance(user, Op) and user.parent is block and user.domain == "" else None


def _activation(op: Op) -> tuple[str, list[float]] | None:
    """The epilogue activation ``op`` is, with (min, max, alpha); None when it is not one."""
    if op.name == "Relu" and len(op.operands) == 1:
        return "Relu", [0.0, 0.0, 0.0]
    if op.name == "LeakyRelu" and len(op.operands) == 1:
        alpha = op.attrs.get("alpha", 0.01)
        return ("LeakyRelu", [0.0, 0.0, float(alpha)]) if isinstance(alpha, int | float) else None
    if op.name == "Clip":
        bounds = [-np.inf, np.inf]
        for i in (1, 2):
            v = op.operands[i] if i < len(op.operands) else None
            if v is None:
                continue
            c = constant_value(v)
            if c is None or c.size != 1:
                return None
            bounds[i - 1] = float(c.reshape(-1)[0])
        return "Clip", [bounds[0], bounds[1], 0.0]
    return None


def _fuse(block: Block, conv: Op) -> int:
    out = _f32_shape(conv.results[0])
    assert out is not None
    group = [conv]
    z: Value | None = None
    last = conv
    user = _only_user(conv.results[0], block)
    if user is not None and user.name == "Add" and len(user.operands) == 2:
        other = user.operands[1] if user.operands[0] is conv.results[0] else user.operands[0]
        zs = _f32_shape(other)
        if other is not conv.results[0] and zs is not None and len(zs) == len(out) \
                and all(dims_equal(a, b) for a, b in zip(zs, out)) and _f32_shape(user.results[0]) is not None:
            z, last = other, user
            group.append(user)
            user = _only_user(user.results[0], block)
    act = _activation(user) if user is not None else None
    if act is not None and user is not None and _f32_shape(user.results[0]) is not None:
        group.append(user)
        last = user
    if len(group) == 1:
        return 0
    name, params = act if act is not None else ("", [0.0, 0.0, 0.0])
    operands = list(conv.operands[:3]) + [None] * (3 - len(conv.operands[:3])) + [z]
    attrs = {k: conv.attrs[k] for k in _CONV_ATTRS if k in conv.attrs}
    nsp = len(out) - 2
    attrs.setdefault("pads", [0] * (2 * nsp))
    attrs.update(activation=name, activation_params=params)
    body = Block()
    result = last.results[0]
    fused = Op("FusedConv", operands, [result.type], attrs, {"body": Region(body)}, domain="pliant",
               label=last.label, result_names=[result.name])
    block.insert(block.ops.index(last) + 1, fused)
    result.replace_all_uses_with(fused.results[0])
    for op in group:
        block.ops.remove(op)
        body.append(op)
    body.add_output(result)
    return 1
