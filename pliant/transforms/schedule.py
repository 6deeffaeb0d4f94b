"""Execution-order planning (SoD²): reorder each block's ops to lower its peak of live memory.

A greedy list scheduler: among the ops whose inputs are ready, run the one
that adds the fewest bytes to what is live (its results minus the inputs it
is the last reader of), ties going to program order.  Sizes are the RDP
shapes evaluated at a sample size for every symbol (the order must be chosen
once for all sizes; a sample that makes symbolic tensors large is the case
that matters).  Every order it makes is topological, so the program means the
same; the pass keeps the original order when the new one does not lower the
estimated peak.
"""

from __future__ import annotations

import heapq

from pliant.analysis.liveness import reads
from pliant.ir.core import Block, Module, Op, Value
from pliant.ir.dims import compile_dims, dim_symbols
from pliant.ir.types import TensorType

pass_name = "schedule"
SAMPLE = 512
"""The size given to every symbol when comparing orders."""


def schedule(module: Module) -> int:
    """Reorder blocks where that lowers the estimated peak; returns how many blocks changed."""
    return sum(_block(fn.body) for fn in module.functions.values())


def _bytes(v: Value) -> int:
    t = v.type
    if not isinstance(t, TensorType) or t.shape is None or t.dtype is None or any(d is None for d in t.shape):
        return 0
    try:
        itemsize = t.dtype.numpy.itemsize
    except TypeError:
        return 0
    names = set().union(*(dim_symbols(d) for d in t.shape)) if t.shape else set()
    dims = compile_dims(list(t.shape), names)({n: SAMPLE for n in names})
    n = itemsize
    for d in dims:
        n *= max(int(d or 0), 0)
    return n


def _peak(order: list[Op], rd: dict[Op, set[Value]], outputs: set[Value], size: dict[Value, int]) -> int:
    last: dict[Value, int] = {}
    for k, op in enumerate(order):
        for v in rd[op]:
            last[v] = k
    live = peak = 0
    for k, op in enumerate(order):
        live += sum(size.get(r, 0) for r in op.results)
        peak = max(peak, live)
        live -= sum(size.get(v, 0) for v in rd[op] if last.get(v) == k and v not in outputs and v in size)
    return peak


def _block(block: Block) -> int:
    changed = 0
    for op in block.ops:
        for region in op.regions.values():
            changed += _block(region.block)
    ops = list(block.ops)
    if len(ops) < 3:
        return changed
    rd = {op: reads(op) for op in ops}
    produced = {r: op for op in ops for r in op.results}
    size = {r: (0 if op.name == "Constant" else _bytes(r)) for r, op in produced.items()}
    deps: dict[Op, set[Op]] = {op: {produced[v] for v in rd[op] if v in produced} for op in ops}
    users: dict[Op, list[Op]] = {op: [] for op in ops}
    for op, ds in deps.items():
        for d in ds:
            users[d].append(op)
    readers: dict[Value, int] = {}
    for op in ops:
        for v in rd[op]:
            readers[v] = readers.get(v, 0) + 1
    outputs = set(block.outputs)
    position = {op: k for k, op in enumerate(ops)}
    waiting = {op: len(ds) for op, ds in deps.items()}
    remaining = dict(readers)

    def cost(op: Op) -> int:
        freed = sum(size.get(v, 0) for v in rd[op] if remaining.get(v) == 1 and v not in outputs and v in size)
        return sum(size.get(r, 0) for r in op.results) - freed

    ready = [(cost(op), position[op], op) for op in ops if waiting[op] == 0]
    heapq.heapify(ready)
    order: list[Op] = []
    while ready:
        _, _, op = heapq.heappop(ready)
        order.append(op)
        for v in rd[op]:
            if v in remaining:
                remaining[v] -= 1
        for u in users[op]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (cost(u), position[u], u))
        # NOTE: costs of ops already in the heap may have dropped (an input's last reader is now them);
        # rebuild the heap cheaply instead of tracking every entry
        ready = [(cost(o), position[o], o) for _, _, o in ready]
        heapq.heapify(ready)
    if len(order) != len(ops) or order == ops or _peak(order, rd, outputs, size) >= _peak(ops, rd, outputs, size):
        return changed
    block.ops[:] = order
    return changed + 1
