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

from typing import Any

from pliant.analysis.liveness import reads
from pliant.analysis.rdp import ShapeAnalysis
from pliant.ir.core import Block, Function, Module, Op, Region, Value
from pliant.ir.dims import Sym, dim_symbols
from pliant.ir.types import TensorType
from pliant.runtime.region_c import bindable, supports
from pliant.transforms.manager import Pass

pass_name = "static-regions"
MIN_OPS = 2
"""Ops a run needs to become a region (a single op gains nothing from it)."""


def static_regions(analysis: ShapeAnalysis | None = None) -> Pass:
    """The pass; with ``analysis``, a region may bind a symbol to a scalar whose value it is (a loop's
    iteration number) as well as to a size of its inputs or of the entry function's inputs."""

    def run(module: Module) -> int:
        return sum(_block(fn.body, module, analysis) for fn in module.functions.values())

    run.__name__ = "static_regions"
    run.pass_name = pass_name  # type: ignore[attr-defined]
    return run


def _is_constant(op: Op) -> bool:
    return op.domain == "" and op.name == "Constant"


def _block(block: Block, module: Module, analysis: ShapeAnalysis | None) -> int:
    made = 0
    for op in list(block.ops):
        if op.domain == "pliant" and op.name in ("Fused", "FusedConv", "Static"):
            continue
        for region in op.regions.values():
            made += _block(region.block, module, analysis)
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
            _emit(block, run, module, analysis)
            made += 1
    return made


def _emit(block: Block, run: list[Op], module: Module, analysis: ShapeAnalysis | None) -> Op:
    members = set(run)
    defined = {r for op in run for r in op.results}
    inputs: list[Value] = []
    seen: set[Value] = set()
    for op in run:
        # NOTE: reads, not operands: a Fused body reads scalar constants its kernel has as literals; in the
        # order they are read, so the unit's C source (its cache key) is the same in every process
        outer = reads(op)
        ordered = [v for v in op.operands if v is not None]
        for inner in op.walk():
            ordered += [v for v in inner.operands if v is not None and v in outer]
        ordered += sorted(outer - set(ordered), key=lambda v: str(v.name))
        for v in ordered:
            if v not in defined and v not in seen:
                seen.add(v)
                inputs.append(v)
    attrs = _binders(block, run, inputs, module, analysis)
    later: set[Value] = set(block.outputs)
    for op in block.ops:
        if op not in members:
            later |= reads(op)
    escaping = [r for op in run for r in op.results if r in later]
    body = Block()
    static = Op("Static", inputs, [v.type for v in escaping], attrs, {"body": Region(body)}, domain="pliant",
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


def _binders(block: Block, run: list[Op], inputs: list[Value], module: Module,
             analysis: ShapeAnalysis | None) -> dict[str, Any]:
    """Inputs added (to ``inputs``) so that every symbol of the run's dims is bound: an input of the entry
    function with the symbol as a dim, or a scalar whose value it is (``bind_values``/``bind_symbols``)."""
    needed: set[str] = set()
    for op in run:
        for v in [*op.operands, *op.results]:
            t = v.type if v is not None else None
            if isinstance(t, TensorType) and t.shape is not None:
                for d in t.shape:
                    needed |= dim_symbols(d)
    missing = needed - bindable(inputs)
    if not missing:
        return {}
    in_entry = _function_of(block) is module.entry
    values: list[int] = []
    symbols: list[str] = []
    for name in sorted(missing):
        arg = _entry_binder(module, name) if in_entry else None
        if arg is not None:
            if arg not in inputs:
                inputs.append(arg)
            continue
        v = _value_binder(block, run[0], name, analysis)
        if v is not None:
            if v not in inputs:
                inputs.append(v)
            values.append(inputs.index(v))
            symbols.append(name)
    return {"bind_values": values, "bind_symbols": symbols} if values else {}


def _function_of(block: Block) -> Function | None:
    cur: Any = block
    while isinstance(cur, Block):
        parent = cur.parent
        if isinstance(parent, Function):
            return parent
        cur = parent.parent.parent if isinstance(parent, Region) and parent.parent is not None else None
    return None


def _entry_binder(module: Module, name: str) -> Value | None:
    for arg in module.entry.inputs:
        t = arg.type
        if isinstance(t, TensorType) and t.shape is not None and any(
                isinstance(d, Sym) and d.is_symbol and str(d) == name for d in t.shape):
            return arg
    return None


def _value_binder(block: Block, first: Op, name: str, analysis: ShapeAnalysis | None) -> Value | None:
    """A scalar integer in scope before ``first`` whose symbolic value is the symbol ``name``."""
    if analysis is None:
        return None
    candidates = list(block.args) + [r for op in block.ops[:block.ops.index(first)] for r in op.results]
    for v in candidates:
        val = analysis.values.get(v)
        t = v.type
        if val is not None and val.size == 1 and isinstance(t, TensorType) and t.dtype is not None and t.dtype.is_int:
            e = val.reshape(-1)[0]
            if isinstance(e, Sym) and e.is_symbol and str(e) == name:
                return v
    return None


def _inside(op: Op, members: set[Op]) -> bool:
    """Whether ``op`` is one of ``members`` or nested in one."""
    cur: Op | None = op
    while cur is not None:
        if cur in members:
            return True
        parent = cur.parent
        cur = parent.parent_op if isinstance(parent, Block) else None
    return False
