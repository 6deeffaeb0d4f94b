"""Writing IR by hand.

>>> from pliant.ir import FunctionBuilder, tensor, DType
>>> fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N", 4))])
>>> y = fb.op("Relu", [fb.inputs[0]])
>>> fb.output("y", y)
>>> print(fb.module().entry.output_types[0])
f32[N,4]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pliant.ir.core import AttrValue, Block, Function, Module, Op, Region, Value
from pliant.ir.types import Type
from pliant.ops.typing import infer_op_types


class BlockBuilder:
    """Appends ops to a block, computing result types with each op's shape rule."""

    def __init__(self, block: Block, module: Module) -> None:
        self.block = block
        self._module = module

    def op(
        self,
        name: str,
        operands: Sequence[Value | None],
        attrs: dict[str, AttrValue] | None = None,
        *,
        num_outputs: int = 1,
        regions: dict[str, Region] | None = None,
        domain: str = "",
        names: Sequence[str | None] | None = None,
        types: Sequence[Type] | None = None,
    ) -> Value:
        """Append op ``name``; returns its first result (see ``op_results`` for all)."""
        return self.op_results(name, operands, attrs, num_outputs=num_outputs, regions=regions,
                               domain=domain, names=names, types=types)[0]

    def op_results(
        self,
        name: str,
        operands: Sequence[Value | None],
        attrs: dict[str, AttrValue] | None = None,
        *,
        num_outputs: int = 1,
        regions: dict[str, Region] | None = None,
        domain: str = "",
        names: Sequence[str | None] | None = None,
        types: Sequence[Type] | None = None,
    ) -> list[Value]:
        attrs = dict(attrs or {})
        if types is None:
            types = infer_op_types(name, domain, operands, attrs, self._module.opset(domain), num_outputs,
                                   regions, self._module)
        op = Op(name, operands, types, attrs, regions, domain=domain, result_names=names)
        self.block.append(op)
        return op.results

    def const(self, value: np.ndarray | float | int, name: str | None = None) -> Value:
        arr = np.asarray(value)
        return self.op("Constant", [], {"value": arr}, names=[name])

    def region(self, arg_types: Sequence[Type], body: Callable[[BlockBuilder, list[Value]], Sequence[Value]],
               arg_names: Sequence[str | None] | None = None) -> Region:
        """A region whose block takes ``arg_types`` and yields what ``body`` returns."""
        block = Block(arg_types, arg_names)
        region = Region(block)
        for v in body(BlockBuilder(block, self._module), block.args):
            block.add_output(v)
        return region

    def call(self, fn: Function, args: Sequence[Value]) -> list[Value]:
        """Call ``fn`` (recursion allowed: the callee's result types may be given later)."""
        return self.op_results("Call", args, {"callee": fn.name}, domain="pliant",
                               num_outputs=len(fn.outputs) or len(fn.result_names), types=None)


class FunctionBuilder(BlockBuilder):
    """Builds one function; ``module()`` wraps it (and any others) in a Module."""

    def __init__(self, name: str, inputs: Sequence[tuple[str, Type]], module: Module | None = None,
                 opsets: dict[str, int] | None = None) -> None:
        self.module_ = module if module is not None else Module(opsets or {"": 21}, main=name)
        self.function = Function(name, Block([t for _, t in inputs], [n for n, _ in inputs]))
        self.module_.add_function(self.function)
        super().__init__(self.function.body, self.module_)
        self._names: list[str] = []

    @property
    def inputs(self) -> list[Value]:
        return self.function.inputs

    def output(self, name: str, value: Value) -> None:
        self.function.body.add_output(value)
        self._names.append(name)
        self.function.result_names = list(self._names)

    def module(self) -> Module:
        return self.module_
