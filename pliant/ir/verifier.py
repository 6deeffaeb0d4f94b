"""The verifier: every pass must leave a module it accepts.

It checks that values are defined before use (regions may read values that
dominate their op), that every op is defined and called with an arity its
schema allows, required attributes are present, regions have the arity their
op needs, results agree with the op's shape rule, and calls match callees.
All problems are collected into one ``VerifyError``.
"""

from __future__ import annotations

from pliant.errors import PliantError, VerifyError
from pliant.ir.core import Block, Function, Module, Op, Value
from pliant.ir.types import compatible
from pliant.ops import registry

MAX_REPORTED = 20


def verify_module(module: Module) -> None:
    """Raise ``VerifyError`` listing every problem found in ``module``."""
    problems: list[str] = []
    if module.main not in module.functions:
        problems.append(f"the entry function '{module.main}' does not exist")
    for fn in module.functions.values():
        _Checker(module, fn, problems).block(fn.body, set())
        if len(fn.result_names) != len(fn.outputs):
            problems.append(f"function '{fn.name}' has {len(fn.outputs)} outputs but {len(fn.result_names)} result names")
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise VerifyError(f"the module is not valid ({len(problems)} problem(s)):\n  " + "\n  ".join(shown) + more)


class _Checker:
    def __init__(self, module: Module, fn: Function, problems: list[str]) -> None:
        self.module = module
        self.fn = fn
        self.problems = problems

    def report(self, where: str, msg: str) -> None:
        self.problems.append(f"in function '{self.fn.name}', {where}: {msg}")

    def block(self, block: Block, visible: set[Value]) -> None:
        visible = set(visible) | set(block.args)
        for op in block.ops:
            self.op(op, visible)
            visible.update(op.results)
        for i, v in enumerate(block.outputs):
            if v not in visible:
                self.report("a block", f"output {i} ({_name(v)}) is used before it is defined or is out of scope")

    def op(self, op: Op, visible: set[Value]) -> None:
        for i, v in enumerate(op.operands):
            if v is not None and v not in visible:
                self.report(op.where, f"operand {i} ({_name(v)}) is used before it is defined or is out of scope")
        opdef = registry.lookup(op.name, op.domain)
        if opdef is None:
            self.report(op.where, f"op {op.qualname} is not defined (see `pliant ops` for the supported ops)")
            return
        self.schema(op, opdef)
        if opdef.verify is not None:
            for msg in opdef.verify(op):
                self.report(op.where, msg)
        for region in op.regions.values():
            self.block(region.block, visible)
        self.types(op, opdef)

    def schema(self, op: Op, opdef: registry.OpDef) -> None:
        try:
            schema = opdef.schema(self.module.opset(op.domain))
        except PliantError as e:
            self.report(op.where, str(e))
            return
        n_in = len(op.operands)
        while n_in and op.operands[n_in - 1] is None:
            n_in -= 1
        if not schema.arity_ok(n_in, schema.inputs):
            self.report(op.where, f"has {n_in} inputs; its schema allows {_arity(schema.inputs)}")
        for i, (spec, v) in enumerate(zip(schema.inputs, op.operands)):
            if v is None and not spec.optional and not spec.variadic:
                self.report(op.where, f"required input {i} ('{spec.name}') is missing")
        if not schema.arity_ok(len(op.results), schema.outputs) and op.results:
            self.report(op.where, f"has {len(op.results)} results; its schema allows {_arity(schema.outputs)}")
        for name in schema.required_attrs:
            if name not in op.attrs and name not in op.regions:
                self.report(op.where, f"required attribute '{name}' is missing")

    def types(self, op: Op, opdef: registry.OpDef) -> None:
        if opdef.infer is None:
            return
        from pliant.ops.typing import infer_op_types

        try:
            inferred = infer_op_types(op.name, op.domain, op.operands, op.attrs, self.module.opset(op.domain),
                                      len(op.results), op.regions, self.module)
        except PliantError as e:
            self.report(op.where, f"type error: {e}")
            return
        for r, t in zip(op.results, inferred):
            if not compatible(r.type, t):
                self.report(op.where, f"type mismatch: result {r.index} ({_name(r)}) is declared {r.type} but its inputs give {t}")


def _name(v: Value) -> str:
    return f"%{v.name}" if v.name else f"unnamed value of type {v.type}"


def _arity(params: tuple[registry.ParamSpec, ...]) -> str:
    if params and params[-1].variadic:
        return f"{len(params) - 1} or more"
    lo = sum(1 for p in params if not p.optional)
    return f"{lo}" if lo == len(params) else f"{lo} to {len(params)}"
