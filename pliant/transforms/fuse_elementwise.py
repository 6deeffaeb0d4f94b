"""Elementwise fusion: chains of float32 elementwise ops become one ``pliant.Fused`` kernel.

A group grows backwards from an op through producers that are elementwise,
produce exactly the group's output shape, and are used only inside the group;
its other inputs may broadcast, provided every dim is either provably equal to
the output's (RDP's symbolic dims, so the group is valid for every input
size) or the constant 1.  Scalar constants become literals.  The group's
computation is written in the kernel language (one statement, sizes as
run-time arguments: one compiled object for every shape); the ops themselves
move into the Fused op's region, which defines what it means.
"""

from __future__ import annotations

import math

import numpy as np

from pliant.ir.core import Block, Module, Op, Region, Value
from pliant.ir.dims import Dim, dims_equal
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType
from pliant.ops.typing import constant_value

pass_name = "fuse-elementwise"

_UNARY = {"Relu": "fmax({0}, 0.0)", "Sigmoid": "sigmoid({0})", "Tanh": "tanh({0})", "Exp": "exp({0})",
          "Erf": "erf({0})", "Neg": "(-{0})", "Abs": "abs({0})", "Sqrt": "sqrt({0})", "Identity": "{0}"}
_BINARY = {"Add": "({0} + {1})", "Sub": "({0} - {1})", "Mul": "({0} * {1})", "Div": "({0} / {1})"}
MIN_OPS = 2


def fuse_elementwise(module: Module) -> int:
    """Fuse every group of at least ``MIN_OPS`` ops; returns how many groups were made."""
    return sum(_block(fn.body) for fn in module.functions.values())


def _f32(v: Value | None) -> TensorType | None:
    t = v.type if v is not None else None
    if isinstance(t, TensorType) and t.dtype == DType.FLOAT and t.shape is not None and all(d is not None for d in t.shape):
        return t
    return None


def _fusable(op: Op) -> bool:
    if op.domain != "" or op.regions or len(op.results) != 1:
        return False
    if op.name in _UNARY:
        n = 1
    elif op.name in _BINARY:
        n = 2
    else:
        return False
    return len(op.operands) == n and all(_f32(v) is not None for v in op.operands) and _f32(op.results[0]) is not None


def _same_shape(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> bool:
    return len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b))


def _scalar_literal(v: Value) -> str | None:
    c = constant_value(v)
    if c is None or c.size != 1 or c.dtype != np.float32:
        return None
    x = float(c.reshape(-1)[0])
    return repr(x) if math.isfinite(x) else None


def _block(block: Block) -> int:
    made = 0
    for op in list(block.ops):
        for region in op.regions.values():
            made += _block(region.block)
    assigned: set[Op] = set()
    for op in reversed(list(block.ops)):
        if op in assigned or op.parent is not block or not _fusable(op):
            continue
        out_t = _f32(op.results[0])
        assert out_t is not None and out_t.shape is not None
        group = [op]
        members = {op}
        frontier = [op]
        while frontier:
            cur = frontier.pop()
            for v in cur.operands:
                p = v.defining_op if v is not None else None
                if p is None or p in members or p in assigned or p.parent is not block or not _fusable(p):
                    continue
                pt = _f32(p.results[0])
                if pt is None or pt.shape is None or not _same_shape(pt.shape, out_t.shape):
                    continue
                if not all(isinstance(u.user, Op) and u.user in members for u in p.results[0].uses):
                    continue
                group.append(p)
                members.add(p)
                frontier.append(p)
        if len(group) < MIN_OPS:
            continue
        fused = _emit(block, sorted(group, key=block.ops.index), out_t)
        if fused is not None:
            assigned |= members
            made += 1
    return made


def _emit(block: Block, group: list[Op], out_t: TensorType) -> Op | None:
    """Replace ``group`` (in block order, the last op is the output) by a Fused op; None if not expressible."""
    out_shape = out_t.shape
    assert out_shape is not None
    rank = len(out_shape)
    out_ones = [q for q, d in enumerate(out_shape) if d == 1]
    idx = {q: f"i{q}" for q in range(rank) if q not in out_ones}
    members = set(group)
    inputs: list[Value] = []
    decls: list[str] = []
    kept_flat: list[int] = []
    refs: dict[Value, str] = {}

    def ref(v: Value) -> str | None:
        if v in refs:
            return refs[v]
        lit = _scalar_literal(v)
        if lit is not None:
            return lit
        t = _f32(v)
        if t is None or t.shape is None or len(t.shape) > rank:
            return None
        off = rank - len(t.shape)
        kept: list[int] = []
        for p, d in enumerate(t.shape):
            q = p + off
            if dims_equal(d, out_shape[q]) and q not in out_ones:
                kept.append(p)
            elif d != 1:
                return None  # NOTE: a dim that may or may not broadcast: not valid for every input size
        k = len(inputs)
        inputs.append(v)
        decls.append(f"float({','.join(f'D{p + off}' for p in kept)}) X{k}")
        kept_flat.extend([*kept, -1])
        refs[v] = f"X{k}({','.join(idx[p + off] for p in kept)})"
        return refs[v]

    exprs: dict[Value, str] = {}
    for op in group:
        args = []
        for v in op.operands:
            assert v is not None
            if v in exprs:
                args.append(exprs[v])
            else:
                r = ref(v)
                if r is None:
                    return None
                args.append(r)
        table = _UNARY if op.name in _UNARY else _BINARY
        exprs[op.results[0]] = table[op.name].format(*args)
    last = group[-1]
    if not idx:
        return None
    source = (f"def fused({', '.join(decls)}) -> (Y) {{ Y({','.join(idx.values())}) = {exprs[last.results[0]]} }}")
    # the region: the original ops, moved (they read the inputs from the enclosing scope)
    body = Block()
    at = block.ops.index(last)
    fused_op = Op("Fused", list(inputs), [out_t], {"source": source, "kept": kept_flat, "out_ones": out_ones},
                  {"body": Region(body)}, domain="pliant", label=last.label, result_names=[last.results[0].name])
    block.insert(at + 1, fused_op)
    last.results[0].replace_all_uses_with(fused_op.results[0])
    for op in group:
        block.ops.remove(op)
        body.append(op)
    body.add_output(last.results[0])
    assert all(o in members for o in body.ops)
    return fused_op
