"""Dead code elimination: remove ops none of whose results are used (every op is free of side effects)."""

from __future__ import annotations

from pliant.ir.core import Block, Module

pass_name = "dce"


def dce(module: Module) -> int:
    """Erase unused ops, innermost and last first, until none is left; returns how many were erased."""
    removed = 0
    for fn in module.functions.values():
        removed += _block(fn.body)
    return removed


def _block(block: Block) -> int:
    removed = 0
    changed = True
    while changed:
        changed = False
        for op in reversed(list(block.ops)):
            for region in op.regions.values():
                removed += _block(region.block)
            if all(not r.uses for r in op.results):
                op.erase()
                removed += 1
                changed = True
    return removed
