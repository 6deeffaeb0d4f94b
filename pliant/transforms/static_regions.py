"""Static regions: maximal straight-line runs of ops the native unit compiles become one ``pliant.Static``.

After scheduling, each block is cut into runs of consecutive ops that
``pliant.runtime.region_c`` can compile (known dtypes, every dim resolved by
RDP, an op kind with a C emitter); Constant ops do not break a run (their
values become inputs).  A run of at least ``MIN_OPS`` ops moves into the
region of one ``Static`` op whose operands are the values the run reads from
outside and whose results are the values read after it.  Control flow, EDO
ops and anything else stays on the host and ends a run.  Nested blocks (If
branches, Loop bodies) are cut the same way.
"""

from __future__ import annotations

from pliant.analysis.liveness import reads
from pliant.ir.core import Block, Module, Op, Region, Value
from pliant.runtime.region_c import supports

pass_name = "static-regions"
MIN_OPS = 2
"""Ops a run needs to become a region (a single op gains nothing from it)."""


def static_regions(module: Module) -> int:
    """Make every run into a Static op; returns how many were made."""
    return sum(_block(fn.body) for fn in module.functions.values())


def _is_constant(op: Op) -> bool:
    return op.domain == "" and op.name == "Constant"


def _block(block: Block) -> int:
    made = 0
    for op in list(block.ops):
        if op.domain == "pliant" and op.name in ("Fused", "FusedConv", "Static"):
            continue
        for region in op.regions.values():
            made += _block(region.block)
    runs: list[list[Op]] = [[]]
    for op in list(block.ops):
        if _is_constant(op):
            continue
        if supports(op):
            runs[-1].append(op)
        elif runs[-1]:
            runs.append([])
    for run in runs:
        if len(run) >= MIN_OPS:
            _emit(block, run)
            made += 1
    return made


def _emit(block: Block, run: list[Op]) -> Op:
    members = set(run)
    defined = {r for op in run for r in op.results}
    inputs: list[Value] = []
    seen: set[Value] = set()
    for op in run:
        # NOTE: reads, not operands: a Fused body reads scalar constants its kernel has as literals
        for v in sorted(reads(op), key=lambda v: (op.operands.index(v) if v in op.operands else len(op.operands))):
            if v not in defined and v not in seen:
                seen.add(v)
                inputs.append(v)
    later: set[Value] = set(block.outputs)
    for op in block.ops:
        if op not in members:
            later |= reads(op)
    escaping = [r for op in run for r in op.results if r in later]
    body = Block()
    static = Op("Static", inputs, [v.type for v in escaping], {}, {"body": Region(body)}, domain="pliant",
                label=run[-1].label, result_names=[v.name for v in escaping])
    block.insert(block.ops.index(run[-1]) + 1, static)
    for v, new in zip(escaping, static.results):
        for use in list(v.uses):
            if isinstance(use.user, Op) and _inside(use.user, members):
                continue
            if isinstance(use.user, Op):
                use.user.set_operand(use.index, new)
            else:
                use.user.set_output(use.index, new)
    for op in run:
        block.ops.remove(op)
        body.append(op)
    for v in escaping:
        body.add_output(v)
    return static


def _inside(op: Op, members: set[Op]) -> bool:
    """Whether ``op`` is one of ``members`` or nested in one."""
    cur: Op | None = op
    while cur is not None:
        if cur in members:
            return True
        parent = cur.parent
        cur = parent.parent_op if isinstance(parent, Block) else None
    return False
