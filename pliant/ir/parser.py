"""Reads the IR text that ``pliant.ir.printer`` writes back into a Module."""

from __future__ import annotations

import base64
import json
import re

import numpy as np

from pliant.errors import IRParseError
from pliant.ir.core import AttrValue, Block, Function, Module, Op, Region, Value
from pliant.ir.dims import Dim, parse_dim
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, OptionalType, SequenceType, TensorType, TupleType, Type

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"-?(?:inf|nan|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def parse_module(text: str) -> Module:
    """Parse IR text; errors name the line and column.

    >>> from pliant.ir import FunctionBuilder, tensor, DType
    >>> fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N"))])
    >>> fb.output("y", fb.op("Relu", [fb.inputs[0]]))
    >>> m = fb.module()
    >>> str(parse_module(str(m))) == str(m)
    True
    """
    return _Parser(text).module()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.scopes: list[dict[str, Value]] = []

    # -- lexing helpers ----------------------------------------------------------
    def error(self, msg: str) -> IRParseError:
        line = self.text.count("\n", 0, self.pos) + 1
        col = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        snippet = self.text[self.pos : self.pos + 30].split("\n")[0]
        return IRParseError(f"line {line}, column {col}: {msg} (at '{snippet}')")

    def skip(self) -> None:
        while True:
            while self.pos < len(self.text) and self.text[self.pos].isspace():
                self.pos += 1
            if self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
                continue
            return

    def peek(self, s: str) -> bool:
        self.skip()
        return self.text.startswith(s, self.pos)

    def accept(self, s: str) -> bool:
        if self.peek(s):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str) -> None:
        if not self.accept(s):
            raise self.error(f"expected '{s}'")

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def name(self) -> str:
        """A bare identifier or a JSON string."""
        self.skip()
        if self.peek('"'):
            return str(json.loads(self.match(_STRING, "a string")))
        return self.match(_IDENT, "a name")

    # -- structure -----------------------------------------------------------------
    def module(self) -> Module:
        metadata: dict[str, str] = {}
        while True:
            m = re.compile(r"[ \t\r\n]*// ([^:\n]+): ([^\n]*)").match(self.text, self.pos)
            if not m:
                break
            metadata[m.group(1)] = m.group(2)
            self.pos = m.end()
        module = self._module_body()
        module.metadata.update(metadata)
        return module

    def _module_body(self) -> Module:
        self.expect("module")
        self.expect("@")
        main = self.name()
        self.expect("opset")
        self.expect("(")
        opsets: dict[str, int] = {}
        while not self.accept(")"):
            dom = self.name()
            self.expect("=")
            opsets["" if dom == "ai.onnx" else dom] = int(self.match(_NUMBER, "a version"))
            self.accept(",")
        m = Module(opsets, main=main)
        self.expect("{")
        while not self.accept("}"):
            m.add_function(self.function())
        self.skip()
        if self.pos != len(self.text):
            raise self.error("unexpected text after the module")
        return m

    def function(self) -> Function:
        self.expect("func")
        self.expect("@")
        fname = self.name()
        self.scopes = [{}]
        block = Block()
        self.block_args(block)
        self.expect("->")
        self.expect("(")
        result_names: list[str] = []
        while not self.accept(")"):
            result_names.append(self.name())
            self.expect(":")
            self.type()
            self.accept(",")
        self.expect("{")
        self.ops(block, "return")
        fn = Function(fname, block, result_names)
        self.expect("}")
        return fn

    def block_args(self, block: Block) -> None:
        self.expect("(")
        while not self.accept(")"):
            key, name = self.value_name()
            self.expect(":")
            v = block.add_arg(self.type(), name)
            self.define(key, v)
            self.accept(",")

    def value_name(self) -> tuple[str, str | None]:
        """The printed key and the value's name (None for a numbered, unnamed value)."""
        self.expect("%")
        if self.peek('"'):
            raw = self.match(_STRING, "a string")
            return "%" + raw, str(json.loads(raw))
        m = re.compile(r"[A-Za-z0-9_.]+").match(self.text, self.pos)
        if not m:
            raise self.error("expected a value name after '%'")
        self.pos = m.end()
        text = m.group(0)
        return "%" + text, None if text.isdigit() else text

    def define(self, key: str, v: Value) -> None:
        self.scopes[-1][key] = v

    def use(self) -> Value | None:
        if self.accept("none"):
            return None
        start = self.pos
        key, _ = self.value_name()
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        self.pos = start
        raise self.error(f"use of undefined value {key}")

    def ops(self, block: Block, terminator: str) -> None:
        while True:
            self.skip()
            if self.accept(terminator):
                outs: list[Value] = []
                self.skip()
                while self.peek("%"):
                    v = self.use()
                    if v is None:
                        raise self.error("a block cannot yield 'none'")
                    outs.append(v)
                    if not self.accept(","):
                        break
                for v in outs:
                    block.add_output(v)
                return
            block.append(self.op())

    def op(self) -> Op:
        results: list[tuple[str, str | None]] = []
        if self.peek("%"):
            while True:
                results.append(self.value_name())
                if not self.accept(","):
                    break
            self.expect("=")
        qual = self.match(_IDENT, "an op name")
        domain, _, name = qual.rpartition(".")
        self.expect("(")
        operands: list[Value | None] = []
        while not self.accept(")"):
            operands.append(self.use())
            self.accept(",")
        label = None
        if self.accept("@"):
            label = str(json.loads(self.match(_STRING, "a node label")))
        attrs: dict[str, AttrValue] = {}
        if self.accept("{"):
            while not self.accept("}"):
                key = self.name()
                self.expect("=")
                attrs[key] = self.attr()
                self.accept(",")
        types: list[Type] = []
        if self.accept(":"):
            if self.peek("(") :
                self.expect("(")
                while not self.accept(")"):
                    types.append(self.type())
                    self.accept(",")
            else:
                types.append(self.type())
        if len(types) != len(results):
            raise self.error(f"op {qual} has {len(results)} results but {len(types)} types")
        regions: dict[str, Region] = {}
        if self.accept("{"):
            while not self.accept("}"):
                key = self.name()
                block = Block()
                self.scopes.append({})
                self.block_args(block)
                self.expect("{")
                self.ops(block, "yield")
                self.expect("}")
                self.scopes.pop()
                regions[key] = Region(block)
        op = Op(name, operands, types, attrs, regions, domain=domain, label=label,
                result_names=[n for _, n in results])
        for (key, _), r in zip(results, op.results):
            self.define(key, r)
        return op

    # -- types and attributes ------------------------------------------------------------
    def type(self) -> Type:
        self.skip()
        if self.accept("any"):
            return ANY
        for kw, ctor in (("seq<", SequenceType), ("opt<", OptionalType)):
            if self.accept(kw):
                t = self.type()
                self.expect(">")
                return ctor(t)
        if self.accept("tuple<"):
            elems: list[Type] = []
            while not self.accept(">"):
                elems.append(self.type())
                self.accept(",")
            return TupleType(tuple(elems))
        dt_text = "?" if self.accept("?") else self.match(re.compile(r"[a-z][a-z0-9]*"), "a dtype")
        try:
            dtype = None if dt_text == "?" else DType.from_short(dt_text)
        except ValueError as e:
            raise self.error(str(e)) from None
        self.expect("[")
        if self.accept("*]"):
            return TensorType(dtype, None)
        return TensorType(dtype, self.dims())

    def dims(self) -> tuple[Dim, ...]:
        depth, start, parts = 0, self.pos, []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in "([":
                depth += 1
            elif c in ")]":
                if depth == 0 and c == "]":
                    parts.append(self.text[start : self.pos])
                    self.pos += 1
                    break
                depth -= 1
            elif c == "," and depth == 0:
                parts.append(self.text[start : self.pos])
                start = self.pos + 1
            self.pos += 1
        else:
            raise self.error("unterminated shape")
        if parts == [""]:
            return ()
        try:
            return tuple(parse_dim(p) for p in parts)
        except ValueError as e:
            raise self.error(str(e)) from None

    def attr(self) -> AttrValue:
        self.skip()
        if self.accept("dense<"):
            return self.tensor()
        if self.accept("type<"):
            t = self.type()
            self.expect(">")
            return t
        if self.peek('"'):
            return str(json.loads(self.match(_STRING, "a string")))
        if self.accept("["):
            items: list[AttrValue] = []
            while not self.accept("]"):
                items.append(self.attr())
                self.accept(",")
            return items  # type: ignore[return-value]
        text = self.match(_NUMBER, "an attribute value")
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        return float(text)

    def tensor(self) -> np.ndarray:
        t = self.type()
        self.expect(">")
        if not isinstance(t, TensorType) or t.dtype is None or t.shape is None:
            raise self.error("a dense tensor needs a dtype and a static shape")
        shape = tuple(int(d) for d in t.shape)  # type: ignore[arg-type]
        dt = t.dtype.numpy
        if self.accept("b64"):
            raw = base64.b64decode(json.loads(self.match(_STRING, "base64 data")))
            return np.frombuffer(raw, dtype=dt).reshape(shape).copy()
        self.expect("[")
        items: list[object] = []
        while not self.accept("]"):
            if self.peek('"'):
                items.append(json.loads(self.match(_STRING, "a string")))
            else:
                text = self.match(_NUMBER, "a number")
                items.append(float(text) if t.dtype.is_float else int(text))
            self.accept(",")
        if t.dtype == DType.STRING:
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            return arr.reshape(shape)
        return np.array(items, dtype=np.float64 if t.dtype.is_float else None).astype(dt).reshape(shape)
