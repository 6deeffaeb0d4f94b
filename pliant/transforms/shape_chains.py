"""Shape-chain elimination: integer values the shape analysis resolved are computed from the input sizes.

Exported models compute shapes at run time, op by op (``Shape -> Gather ->
Unsqueeze -> Concat -> Reshape``).  Where RDP proved a small integer tensor's
elements are expressions of the entry function's input symbols, this pass
replaces its producer by one ``pliant.ShapeExpr`` that reads the inputs'
sizes and evaluates the expressions with compiled integer code (or by a
``Constant`` when the elements are plain numbers); DCE then drops the chain.
"""

from __future__ import annotations

import numpy as np

from pliant.analysis.rdp import ShapeAnalysis
from pliant.ir.core import Block, Module, Op, Value
from pliant.ir.dims import Sym
from pliant.ir.types import TensorType
from pliant.transforms.manager import Pass

pass_name = "shape-chains"
_KEEP = {"Constant", "ShapeExpr"}


def shape_chains(analysis: ShapeAnalysis) -> Pass:
    """The pass for ``analysis`` (run on the module it analysed, before anything else changes it)."""

    def run(module: Module) -> int:
        entry = module.entry
        binders: dict[str, tuple[int, int]] = {}
        for k, arg in enumerate(entry.inputs):
            t = arg.type
            if isinstance(t, TensorType) and t.shape is not None:
                for axis, d in enumerate(t.shape):
                    if isinstance(d, Sym) and d.is_symbol:
                        binders.setdefault(str(d), (k, axis))
        return _block(entry.body, analysis, binders, entry.inputs)

    run.__name__ = "shape_chains"
    run.pass_name = pass_name  # type: ignore[attr-defined]
    return run


def _block(block: Block, analysis: ShapeAnalysis, binders: dict[str, tuple[int, int]], args: list[Value]) -> int:
    replaced = 0
    for op in list(block.ops):
        for region in op.regions.values():
            replaced += _block(region.block, analysis, binders, args)
        if op.name in _KEEP or op.regions or len(op.results) != 1 or not op.results[0].uses:
            continue
        r = op.results[0]
        val = analysis.values.get(r)
        t = r.type
        if val is None or not isinstance(t, TensorType) or t.dtype is None or not t.dtype.is_int \
                or t.shape is None or not all(isinstance(d, int) for d in t.shape):
            continue
        elems = list(val.reshape(-1))
        if any(e is None or (isinstance(e, Sym) and not e.symbols <= set(binders)) for e in elems):
            continue
        shape = tuple(int(d) for d in t.shape)  # type: ignore[arg-type]
        if all(isinstance(e, int) for e in elems):
            value = np.array(elems, dtype=t.dtype.numpy).reshape(shape)
            new = Op("Constant", [], [t], {"value": value}, label=op.label, result_names=[r.name])
        else:
            symbols = sorted(set().union(*(e.symbols for e in elems if isinstance(e, Sym))))
            sources = sorted({binders[s][0] for s in symbols})
            bind: list[int] = []
            for s in symbols:
                k, axis = binders[s]
                bind += [sources.index(k), axis]
            new = Op("ShapeExpr", [args[k] for k in sources], [t],
                     {"exprs": [str(e) for e in elems], "bind": bind, "symbols": symbols,
                      "dtype": t.dtype.value, "shape": list(shape)},
                     domain="pliant", label=op.label, result_names=[r.name])
        block.insert(block.ops.index(op), new)
        r.replace_all_uses_with(new.results[0])
        analysis.values[new.results[0]] = val
        replaced += 1
    return replaced
