"""Liveness over a block: which values each op reads (its regions' reads of outer values included)."""

from __future__ import annotations

from pliant.ir.core import Op, Value


def reads(op: Op) -> set[Value]:
    """The values ``op`` reads: its operands, and the outer values its regions read or yield."""
    out = {v for v in op.operands if v is not None}
    for region in op.regions.values():
        inner: set[Value] = set(region.block.args)
        for o in region.block.walk():
            inner.update(o.results)
            for r in o.regions.values():
                inner.update(r.block.args)
        for o in region.block.walk():
            out |= {v for v in o.operands if v is not None and v not in inner}
        out |= {v for v in region.block.outputs if v not in inner}
    return out


def last_uses(ops: list[Op]) -> dict[Value, int]:
    """For each value read by ``ops`` (in this order), the index of the last op that reads it."""
    last: dict[Value, int] = {}
    for k, op in enumerate(ops):
        for v in reads(op):
            last[v] = k
    return last
