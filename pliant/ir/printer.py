"""The IR's textual form.  ``parse_module(print_module(m))`` gives back an equal module.

Example::

    module @main opset(ai.onnx = 21) {
      func @main(%x: f32[N,4], %c: bool[]) -> (y: f32[N,4]) {
        %r = Relu(%x) : f32[N,4]
        %y = If(%c) : f32[N,4] {
          then_branch() {
            yield %r
          }
          else_branch() {
            %n = Neg(%x) : f32[N,4]
            yield %n
          }
        }
        return %y
      }
    }
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np

from pliant.ir.core import AttrValue, Block, Function, Module, Op, Value
from pliant.ir.dtypes import DType
from pliant.ir.types import OptionalType, SequenceType, TensorType, TupleType, UnknownType

_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
INLINE_LIMIT = 32
"""Tensors with at most this many elements print as a list; larger ones as base64 bytes."""
_INLINE_KINDS = "fiub"


def quote_name(name: str) -> str:
    return name if _BARE.match(name) else json.dumps(name)


def print_module(module: Module, *, elide_tensors: bool = False) -> str:
    """The IR text of ``module``.  ``elide_tensors`` shortens large constants (not parseable)."""
    p = _Printer(elide_tensors)
    opsets = ", ".join(f"{quote_name(d or 'ai.onnx')} = {v}" for d, v in sorted(module.opsets.items()))
    lines = [f"// {k}: {v}" for k, v in sorted(module.metadata.items())]
    lines.append(f"module @{quote_name(module.main)} opset({opsets}) {{")
    for fn in module.functions.values():
        p.function(fn, lines, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"


class _Printer:
    def __init__(self, elide: bool) -> None:
        self.elide = elide
        self.names: dict[Value, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    def name(self, v: Value) -> str:
        n = self.names.get(v)
        if n is not None:
            return n
        if v.name and not v.name.isdigit():
            base = v.name
            text = "%" + quote_name(base)
            k = 1
            while text in self.used:
                text = "%" + quote_name(f"{base}#{k}")
                k += 1
        elif v.name:
            text = "%" + json.dumps(v.name)
        else:
            while f"%{self.counter}" in self.used:
                self.counter += 1
            text = f"%{self.counter}"
            self.counter += 1
        self.used.add(text)
        self.names[v] = text
        return text

    def ref(self, v: Value | None) -> str:
        if v is None:
            return "none"
        if v not in self.names:
            return self.name(v)
        return self.names[v]

    def function(self, fn: Function, lines: list[str], ind: str) -> None:
        self.names, self.used, self.counter = {}, set(), 0
        args = ", ".join(f"{self.name(a)}: {a.type}" for a in fn.inputs)
        results = ", ".join(f"{quote_name(n)}: {v.type}" for n, v in zip(fn.result_names, fn.outputs))
        lines.append(f"{ind}func @{quote_name(fn.name)}({args}) -> ({results}) {{")
        self.ops(fn.body, lines, ind + "  ")
        lines.append(f"{ind}  return {', '.join(self.ref(v) for v in fn.outputs)}".rstrip())
        lines.append(f"{ind}}}")

    def ops(self, block: Block, lines: list[str], ind: str) -> None:
        for op in block.ops:
            self.op(op, lines, ind)

    def op(self, op: Op, lines: list[str], ind: str) -> None:
        res = ", ".join(self.name(r) for r in op.results)
        head = f"{res} = " if op.results else ""
        operands = ", ".join(self.ref(v) for v in op.operands)
        text = f"{ind}{head}{op.qualname}({operands})"
        if op.label is not None:
            text += f" @{json.dumps(op.label)}"
        if op.attrs:
            text += " {" + ", ".join(f"{quote_name(k)} = {self.attr(v)}" for k, v in op.attrs.items()) + "}"
        if len(op.results) == 1:
            text += f" : {op.results[0].type}"
        elif op.results:
            text += " : (" + ", ".join(str(r.type) for r in op.results) + ")"
        if not op.regions:
            lines.append(text)
            return
        lines.append(text + " {")
        for key, region in op.regions.items():
            b = region.block
            args = ", ".join(f"{self.name(a)}: {a.type}" for a in b.args)
            lines.append(f"{ind}  {quote_name(key)}({args}) {{")
            self.ops(b, lines, ind + "    ")
            lines.append(f"{ind}    yield {', '.join(self.ref(v) for v in b.outputs)}".rstrip())
            lines.append(f"{ind}  }}")
        lines.append(f"{ind}}}")

    def attr(self, v: AttrValue) -> str:
        return format_attr(v, self.elide)


def format_attr(v: AttrValue | Any, elide: bool = False) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, np.ndarray):
        return format_tensor(v, elide)
    if isinstance(v, (TensorType, SequenceType, OptionalType, TupleType, UnknownType)):
        return f"type<{v}>"
    if isinstance(v, list):
        return "[" + ", ".join(format_attr(x, elide) for x in v) + "]"
    raise TypeError(f"cannot print attribute value of type {type(v).__name__}")


def _float(x: float) -> str:
    r = repr(float(x))
    return r if any(c in r for c in ".enai") else r + ".0"


def format_tensor(a: np.ndarray, elide: bool = False) -> str:
    dt = DType.from_numpy(a.dtype)
    head = f"dense<{dt.short}[{','.join(str(d) for d in a.shape)}]>"
    if dt == DType.STRING:
        return head + "[" + ", ".join(json.dumps(str(x)) for x in a.reshape(-1)) + "]"
    if a.size <= INLINE_LIMIT and a.dtype.kind in _INLINE_KINDS and a.dtype.isnative:
        flat = a.reshape(-1)
        if a.dtype.kind == "f":
            items = [_float(float(x)) for x in flat]
        elif a.dtype.kind == "b":
            items = ["1" if x else "0" for x in flat]
        else:
            items = [str(int(x)) for x in flat]
        return head + "[" + ", ".join(items) + "]"
    if elide:
        return head + f"<{a.size} elements>"
    data = np.ascontiguousarray(a).tobytes()
    return head + 'b64"' + base64.b64encode(data).decode("ascii") + '"'
