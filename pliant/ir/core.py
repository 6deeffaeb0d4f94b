"""The IR's graph: Value, Op, Block, Region, Function, Module.

SSA values live in blocks.  An op may own named regions (the bodies of
``If``/``Loop``/``Scan``); a region holds one block whose arguments are the
body's inputs and whose ``outputs`` are what it yields.  Ops inside a region
may use any value that dominates the region's owner (outer-scope references).

Use lists are kept right by going through ``Op.set_operand``,
``Block.set_output``, ``Value.replace_all_uses_with`` and ``Op.erase``: never
assign to ``Op.operands`` or ``Block.outputs`` directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from pliant.ir.types import Type

AttrValue = Union[
    int, float, str, np.ndarray, Type, list[int], list[float], list[str], list[np.ndarray], list[Type]
]


@dataclass(frozen=True, slots=True)
class Use:
    """``user`` reads the value as operand ``index`` (an op) or output ``index`` (a block)."""

    user: Op | Block
    index: int


class Value:
    """An SSA value: the result of an op or an argument of a block."""

    __slots__ = ("index", "name", "owner", "type", "uses")

    def __init__(self, type: Type, owner: Op | Block, index: int, name: str | None = None) -> None:
        self.type = type
        self.name = name
        self.owner = owner
        self.index = index
        self.uses: list[Use] = []

    @property
    def defining_op(self) -> Op | None:
        return self.owner if isinstance(self.owner, Op) else None

    def replace_all_uses_with(self, new: Value) -> None:
        for use in list(self.uses):
            if isinstance(use.user, Op):
                use.user.set_operand(use.index, new)
            else:
                use.user.set_output(use.index, new)

    def __repr__(self) -> str:
        return f"<Value {self.name or '%'} : {self.type}>"


class Op:
    """An operation: ``name`` in ``domain`` ('' is ONNX's default domain).

    ``operands`` may hold None for an omitted optional input.  ``label`` is the
    source node's name, used in error messages.
    """

    __slots__ = ("attrs", "domain", "label", "name", "operands", "parent", "regions", "results")

    def __init__(
        self,
        name: str,
        operands: Sequence[Value | None],
        result_types: Sequence[Type],
        attrs: dict[str, AttrValue] | None = None,
        regions: dict[str, Region] | None = None,
        domain: str = "",
        label: str | None = None,
        result_names: Sequence[str | None] | None = None,
    ) -> None:
        self.name = name
        self.domain = domain
        self.attrs: dict[str, AttrValue] = dict(attrs or {})
        self.label = label
        self.parent: Block | None = None
        self.operands: list[Value | None] = []
        for v in operands:
            self.operands.append(v)
            if v is not None:
                v.uses.append(Use(self, len(self.operands) - 1))
        names = list(result_names) if result_names is not None else [None] * len(result_types)
        self.results = [Value(t, self, i, n) for i, (t, n) in enumerate(zip(result_types, names))]
        self.regions: dict[str, Region] = {}
        for key, region in (regions or {}).items():
            self.add_region(key, region)

    @property
    def qualname(self) -> str:
        return f"{self.domain}.{self.name}" if self.domain else self.name

    @property
    def where(self) -> str:
        """How error messages name this op: its type and its source node's name."""
        return f"{self.qualname} node '{self.label}'" if self.label else f"{self.qualname} node"

    def add_region(self, key: str, region: Region) -> None:
        region.parent = self
        self.regions[key] = region

    def set_operand(self, index: int, value: Value | None) -> None:
        old = self.operands[index]
        if old is not None:
            old.uses.remove(Use(self, index))
        self.operands[index] = value
        if value is not None:
            value.uses.append(Use(self, index))

    def erase(self) -> None:
        """Remove this op from its block; its results must be unused."""
        for r in self.results:
            if r.uses:
                raise ValueError(f"cannot erase {self.where}: result {r.index} still has {len(r.uses)} uses")
        for i in range(len(self.operands)):
            self.set_operand(i, None)
        for region in self.regions.values():
            region.block.drop_all_uses()
        if self.parent is not None:
            self.parent.ops.remove(self)
            self.parent = None

    def walk(self) -> Iterator[Op]:
        """This op and every op nested in its regions, outer first."""
        yield self
        for region in self.regions.values():
            yield from region.block.walk()

    def __repr__(self) -> str:
        return f"<Op {self.where}>"


class Block:
    """A list of ops with arguments (inputs) and outputs (what the block yields)."""

    __slots__ = ("args", "ops", "outputs", "parent")

    def __init__(self, arg_types: Sequence[Type] = (), arg_names: Sequence[str | None] | None = None) -> None:
        names = list(arg_names) if arg_names is not None else [None] * len(arg_types)
        self.args = [Value(t, self, i, n) for i, (t, n) in enumerate(zip(arg_types, names))]
        self.ops: list[Op] = []
        self.outputs: list[Value] = []
        self.parent: Region | Function | None = None

    def add_arg(self, type: Type, name: str | None = None) -> Value:
        v = Value(type, self, len(self.args), name)
        self.args.append(v)
        return v

    def append(self, op: Op) -> Op:
        op.parent = self
        self.ops.append(op)
        return op

    def insert(self, index: int, op: Op) -> Op:
        op.parent = self
        self.ops.insert(index, op)
        return op

    def add_output(self, value: Value) -> None:
        self.outputs.append(value)
        value.uses.append(Use(self, len(self.outputs) - 1))

    def set_output(self, index: int, value: Value) -> None:
        self.outputs[index].uses.remove(Use(self, index))
        self.outputs[index] = value
        value.uses.append(Use(self, index))

    def drop_all_uses(self) -> None:
        """Detach every operand and output of this block and its nested ops."""
        for op in self.walk():
            for i in range(len(op.operands)):
                op.set_operand(i, None)
        for i, v in enumerate(self.outputs):
            v.uses.remove(Use(self, i))
        self.outputs = []

    def walk(self) -> Iterator[Op]:
        for op in list(self.ops):
            yield from op.walk()

    @property
    def parent_op(self) -> Op | None:
        return self.parent.parent if isinstance(self.parent, Region) else None


class Region:
    """A body owned by an op; holds exactly one block."""

    __slots__ = ("block", "parent")

    def __init__(self, block: Block | None = None) -> None:
        self.block = block if block is not None else Block()
        self.block.parent = self
        self.parent: Op | None = None


class Function:
    """A named function: its body block's args are its inputs, its outputs its results."""

    __slots__ = ("_result_names", "body", "name", "parent")

    def __init__(self, name: str, body: Block | None = None, result_names: list[str] | None = None) -> None:
        self.name = name
        self.body = body if body is not None else Block()
        self.body.parent = self
        self.parent: Module | None = None
        self._result_names = result_names

    @property
    def result_names(self) -> list[str]:
        """The names callers see the results under (defaults to the output values' names)."""
        if self._result_names is not None:
            return self._result_names
        return [v.name or f"output_{i}" for i, v in enumerate(self.body.outputs)]

    @result_names.setter
    def result_names(self, names: list[str]) -> None:
        self._result_names = list(names)

    @property
    def input_names(self) -> list[str]:
        return [v.name or f"input_{i}" for i, v in enumerate(self.body.args)]

    @property
    def inputs(self) -> list[Value]:
        return self.body.args

    @property
    def outputs(self) -> list[Value]:
        return self.body.outputs

    @property
    def input_types(self) -> list[Type]:
        return [v.type for v in self.body.args]

    @property
    def output_types(self) -> list[Type]:
        return [v.type for v in self.body.outputs]

    def walk(self) -> Iterator[Op]:
        return self.body.walk()


class Module:
    """Functions plus the operator-set versions their ops follow.

    ``main`` names the entry function; ``opsets`` maps a domain ('' for ONNX's
    default domain) to its version.  ``print(module)`` gives the IR text, which
    ``pliant.ir.parse_module`` reads back.
    """

    __slots__ = ("functions", "main", "metadata", "opsets")

    def __init__(self, opsets: dict[str, int] | None = None, main: str = "main") -> None:
        self.functions: dict[str, Function] = {}
        self.main = main
        self.opsets: dict[str, int] = dict(opsets or {})
        self.metadata: dict[str, str] = {}

    def add_function(self, fn: Function) -> Function:
        if fn.name in self.functions:
            raise ValueError(f"module already has a function named '{fn.name}'")
        fn.parent = self
        self.functions[fn.name] = fn
        return fn

    @property
    def entry(self) -> Function:
        try:
            return self.functions[self.main]
        except KeyError:
            raise ValueError(f"module has no entry function '{self.main}'") from None

    def opset(self, domain: str) -> int:
        return self.opsets.get(domain, 1)

    def walk(self) -> Iterator[Op]:
        for fn in self.functions.values():
            yield from fn.walk()

    def __str__(self) -> str:
        from pliant.ir.printer import print_module

        return print_module(self)
