"""Copy a module: new functions, blocks, ops and values; attribute values (constants) are shared.

Passes change a module in place; ``clone_module`` gives them a copy to change
when the original must stay as it was (``pliant.compile`` on a Module).
"""

from __future__ import annotations

from pliant.ir.core import Block, Function, Module, Op, Region, Value


def clone_module(module: Module) -> Module:
    """A structurally equal copy of ``module``.

    >>> from pliant.ir import FunctionBuilder, tensor, DType
    >>> from pliant.ir.equality import module_difference
    >>> fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N"))])
    >>> fb.output("y", fb.op("Relu", [fb.inputs[0]]))
    >>> m = fb.module()
    >>> c = clone_module(m)
    >>> c is not m and module_difference(m, c) is None
    True
    """
    out = Module(dict(module.opsets), main=module.main)
    out.metadata = dict(module.metadata)
    for fn in module.functions.values():
        vmap: dict[Value, Value] = {}
        body = _block(fn.body, vmap)
        copy = Function(fn.name, body, list(fn.result_names))
        out.add_function(copy)
    return out


def _block(block: Block, vmap: dict[Value, Value]) -> Block:
    new = Block([a.type for a in block.args], [a.name for a in block.args])
    for a, b in zip(block.args, new.args):
        vmap[a] = b
    for op in block.ops:
        regions = {k: Region(_block(r.block, vmap)) for k, r in op.regions.items()}
        copy = Op(op.name, [vmap[v] if v is not None else None for v in op.operands], [r.type for r in op.results],
                  dict(op.attrs), regions, domain=op.domain, label=op.label, result_names=[r.name for r in op.results])
        new.append(copy)
        for r, c in zip(op.results, copy.results):
            vmap[r] = c
    for v in block.outputs:
        new.add_output(vmap[v])
    return new
