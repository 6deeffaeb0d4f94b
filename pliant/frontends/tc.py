"""Lexer and parser of the kernel language (Tensor-Comprehension style) into kernel IR.

Grammar (``#`` and ``//`` start comments; ``;`` between statements is optional)::

    program   := kernel+
    kernel    := 'def' NAME '(' [param {',' param}] ')' '->' '(' [output {',' output}] ')' '{' stmt* '}'
    param     := TYPE ['(' [dim {',' dim}] ')'] NAME          # no parens: a scalar
    output    := [TYPE ['(' [dim {',' dim}] ')']] NAME        # sizes/dtype left out: inferred
    dim       := NAME | INT
    stmt      := NAME ['(' [NAME {',' NAME}] ')'] OP expr ['where' range {',' range}] [';']
    OP        := '=' | '+=' | '*=' | 'min=' | 'max=' , each optionally followed by '!'
    range     := NAME 'in' expr ':' expr
    expr      := or ['?' expr ':' expr]
    or := and {'||' and}    and := cmp {'&&' cmp}    cmp := add [CMP add]
    add := mul {('+'|'-') mul}    mul := unary {('*'|'/'|'%') unary}
    unary     := ('-'|'+'|'!') unary | primary
    primary   := NUMBER | 'true' | 'false' | NAME ['(' [expr {',' expr}] ')'] | '(' expr ')'

A ``NAME(...)`` is a cast when NAME is a type (``float32(x)``), a read when NAME
is a tensor known at that point (a parameter, an output, or a tensor written by
this or an earlier statement), else a builtin call.  A bare NAME is a size
symbol, a scalar tensor, or an index variable, in that order.

>>> (k,) = parse("def add(float(N) A, float(N) B) -> (C) { C(i) = A(i) + B(i) }")
>>> print(format_kernel(k), end="")
def add(float32(N) A, float32(N) B) -> (C) {
  C(i) = (A(i) + B(i))
}
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pliant.kernels.builtins import BUILTINS, builtin_names
from pliant.kernels.errors import TCSyntaxError, TCTypeError
from pliant.kernels.ir import (
    COMPARE_OPS,
    TYPE_NAMES,
    Access,
    Binary,
    Call,
    Cast,
    Expr,
    Index,
    KernelDef,
    Literal,
    Loc,
    OutputDecl,
    Param,
    ReduceOp,
    Select,
    Size,
    Statement,
    Unary,
    Where,
    format_kernel,
)

__all__ = ["format_kernel", "parse"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "name", "int", "float", "op", "eof"
    text: str
    loc: Loc


_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+|\n)
  | (?P<comment>(?:\#|//)[^\n]*)
  | (?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?f?|\d+[eE][+-]?\d+f?|\d+f)
  | (?P<int>\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\+=!|\*=!|->|\+=|\*=|==|!=|<=|>=|&&|\|\||[(){},:;?+\-*/%<>!=])
    """,
    re.VERBOSE,
)


def tokenize(source: str) -> list[Token]:
    """The tokens of ``source``, ending with an ``eof`` token."""
    out: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            loc = Loc(line, pos - line_start + 1)
            raise TCSyntaxError(f"unexpected character {source[pos]!r}", loc, source)
        kind = m.lastgroup or ""
        text = m.group()
        if kind == "space" and text == "\n":
            line, line_start = line + 1, m.end()
        elif kind not in ("space", "comment"):
            out.append(Token(kind, text, Loc(line, pos - line_start + 1, len(text))))
        pos = m.end()
    out.append(Token("eof", "", Loc(line, pos - line_start + 1)))
    return out


def parse(source: str) -> tuple[KernelDef, ...]:
    """Every ``def`` in ``source``, in order; raises ``TCSyntaxError``/``TCTypeError`` with line and column."""
    return _Parser(source).program()


_REDUCE_TEXT = {"=": ReduceOp.ASSIGN, "+=": ReduceOp.ADD, "*=": ReduceOp.MUL, "min": ReduceOp.MIN, "max": ReduceOp.MAX}


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.pos = 0
        self.tensors: set[str] = set()
        self.sizes: set[str] = set()

    # --- token helpers -------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def peek(self, n: int = 1) -> Token:
        return self.tokens[min(self.pos + n, len(self.tokens) - 1)]

    def at(self, text: str) -> bool:
        return self.tok.kind in ("op", "name") and self.tok.text == text

    def advance(self) -> Token:
        t = self.tok
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return t

    def accept(self, text: str) -> Token | None:
        return self.advance() if self.at(text) else None

    def expect(self, text: str, what: str = "") -> Token:
        if self.at(text):
            return self.advance()
        raise self.error(f"expected '{text}'{what} but found {self.describe(self.tok)}")

    def name(self, what: str) -> Token:
        if self.tok.kind != "name" or self.tok.text in ("def", "where", "in"):
            raise self.error(f"expected {what} but found {self.describe(self.tok)}")
        return self.advance()

    def describe(self, t: Token) -> str:
        return "end of input" if t.kind == "eof" else f"'{t.text}'"

    def error(self, message: str, loc: Loc | None = None) -> TCSyntaxError:
        return TCSyntaxError(message, loc or self.tok.loc, self.source)

    # --- declarations --------------------------------------------------------------------------

    def program(self) -> tuple[KernelDef, ...]:
        kernels = []
        while self.tok.kind != "eof":
            kernels.append(self.kernel())
        if not kernels:
            raise self.error("expected 'def' (the source defines no kernel)")
        names = [k.name for k in kernels]
        for i, k in enumerate(kernels):
            if k.name in names[:i]:
                raise TCTypeError(f"kernel '{k.name}' is defined twice", k.loc, self.source)
        return tuple(kernels)

    def kernel(self) -> KernelDef:
        start = self.expect("def", " to start a kernel")
        name = self.name("the kernel name")
        self.tensors, self.sizes = set(), set()
        self.expect("(")
        params: list[Param] = []
        if not self.at(")"):
            params.append(self.param())
            while self.accept(","):
                params.append(self.param())
        self.expect(")")
        self.expect("->", " before the outputs")
        self.expect("(", " around the outputs")
        outputs: list[OutputDecl] = []
        if not self.at(")"):
            outputs.append(self.output())
            while self.accept(","):
                outputs.append(self.output())
        self.expect(")")
        seen: dict[str, Loc] = {}
        for n, loc in [(p.name, p.loc) for p in params] + [(o.name, o.loc) for o in outputs]:
            if n in seen:
                raise TCTypeError(f"'{n}' is declared twice", loc, self.source)
            if n in self.sizes:
                raise TCTypeError(f"'{n}' is both a size and a tensor", loc, self.source)
            seen[n] = loc
        self.tensors = set(seen)
        self.expect("{")
        statements = []
        while not self.at("}"):
            if self.tok.kind == "eof":
                raise self.error("expected '}' to close the kernel body but found end of input")
            statements.append(self.statement())
            while self.accept(";"):
                pass
        self.expect("}")
        loc = Loc(start.loc.line, start.loc.col, 3)
        return KernelDef(name.text, tuple(params), tuple(outputs), tuple(statements), self.source, loc)

    def type_name(self) -> Token:
        t = self.tok
        if t.kind != "name" or t.text not in TYPE_NAMES:
            raise self.error(f"expected a type ({', '.join(TYPE_NAMES)}) but found {self.describe(t)}")
        return self.advance()

    def dims(self) -> tuple[str | int, ...]:
        self.expect("(")
        dims: list[str | int] = []
        while not self.at(")"):
            if dims:
                self.expect(",", " between sizes")
            t = self.advance()
            if t.kind == "int":
                dims.append(int(t.text))
            elif t.kind == "name" and t.text not in TYPE_NAMES:
                dims.append(t.text)
                self.sizes.add(t.text)
            else:
                raise self.error(f"expected a size name or an integer but found {self.describe(t)}", t.loc)
        self.expect(")")
        return tuple(dims)

    def param(self) -> Param:
        ty = self.type_name()
        dims = self.dims() if self.at("(") else ()
        name = self.name("a parameter name")
        return Param(name.text, TYPE_NAMES[ty.text], dims, name.loc)

    def output(self) -> OutputDecl:
        if (
            self.tok.kind == "name"
            and self.tok.text in TYPE_NAMES
            and (self.peek().kind == "name" or self.peek().text == "(")
        ):
            ty = self.type_name()
            dims = self.dims() if self.at("(") else None
            name = self.name("an output name")
            return OutputDecl(name.text, TYPE_NAMES[ty.text], dims, name.loc)
        name = self.name("an output name")
        return OutputDecl(name.text, None, None, name.loc)

    # --- statements ----------------------------------------------------------------------------

    def statement(self) -> Statement:
        lhs = self.name("a statement (a tensor to write)")
        if lhs.text in self.sizes:
            raise self.error(f"'{lhs.text}' is a size, not a tensor: it cannot be assigned", lhs.loc)
        indices: list[str] = []
        if self.accept("("):
            while not self.at(")"):
                if indices:
                    self.expect(",", " between indices")
                t = self.name("an index variable (left-hand indices are plain names)")
                if t.text in self.sizes:
                    raise self.error(f"'{t.text}' is a size; left-hand indices must be index variables", t.loc)
                if t.text in indices:
                    raise self.error(f"index '{t.text}' appears twice on the left-hand side", t.loc)
                indices.append(t.text)
            self.expect(")")
        op, init = self.assign_op()
        self.tensors.add(lhs.text)
        rhs = self.expr()
        where: list[Where] = []
        if self.accept("where"):
            where.append(self.range_clause())
            while self.at(",") and self.peek(2).text == "in":
                self.advance()
                where.append(self.range_clause())
        return Statement(lhs.text, tuple(indices), op, init, rhs, tuple(where), lhs.loc)

    def assign_op(self) -> tuple[ReduceOp, bool]:
        t = self.tok
        if t.kind == "op" and t.text in ("+=!", "*=!"):
            self.advance()
            return _REDUCE_TEXT[t.text[:2]], True
        if t.kind == "op" and t.text in ("=", "+=", "*="):
            self.advance()
        elif t.kind == "name" and t.text in ("min", "max") and self.peek().text == "=":
            self.advance()
            eq = self.advance()
            if eq.loc.col != t.loc.col + 3 or eq.loc.line != t.loc.line:
                raise self.error(f"write '{t.text}=' without a space", t.loc)
        else:
            raise self.error(
                f"expected an assignment (=, +=, *=, min=, max=, or with '!') but found {self.describe(t)}"
            )
        bang = self.tok
        prev_end = self.tokens[self.pos - 1].loc
        if bang.text == "!" and bang.loc.line == prev_end.line and bang.loc.col == prev_end.col + prev_end.length:
            self.advance()
            if t.text == "=":
                raise self.error("'=!' is not an operator: '!' marks a reduction (+=!, *=!, min=!, max=!)", t.loc)
            return _REDUCE_TEXT[t.text], True
        return _REDUCE_TEXT[t.text], False

    def range_clause(self) -> Where:
        var = self.name("an index variable")
        self.expect("in", " (write 'where i in lo:hi')")
        lo = self.logic_or()
        self.expect(":", " between the bounds of the range")
        hi = self.logic_or()
        return Where(var.text, lo, hi, var.loc)

    # --- expressions ---------------------------------------------------------------------------

    def expr(self) -> Expr:
        cond = self.logic_or()
        q = self.accept("?")
        if q is None:
            return cond
        then = self.expr()
        self.expect(":", " in the conditional expression")
        other = self.expr()
        return Select(cond, then, other, loc=q.loc)

    def _binary_chain(self, ops: tuple[str, ...], sub: str) -> Expr:
        lhs: Expr = getattr(self, sub)()
        while self.tok.kind == "op" and self.tok.text in ops:
            op = self.advance()
            rhs = getattr(self, sub)()
            lhs = Binary(op.text, lhs, rhs, loc=op.loc)
        return lhs

    def logic_or(self) -> Expr:
        return self._binary_chain(("||",), "logic_and")

    def logic_and(self) -> Expr:
        return self._binary_chain(("&&",), "compare")

    def compare(self) -> Expr:
        lhs = self.additive()
        if self.tok.kind == "op" and self.tok.text in COMPARE_OPS:
            op = self.advance()
            lhs = Binary(op.text, lhs, self.additive(), loc=op.loc)
            if self.tok.kind == "op" and self.tok.text in COMPARE_OPS:
                raise self.error("comparisons do not chain: write (a < b) && (b < c)")
        return lhs

    def additive(self) -> Expr:
        return self._binary_chain(("+", "-"), "multiplicative")

    def multiplicative(self) -> Expr:
        return self._binary_chain(("*", "/", "%"), "unary")

    def unary(self) -> Expr:
        t = self.tok
        if t.kind == "op" and t.text in ("-", "+", "!"):
            self.advance()
            operand = self.unary()
            if t.text == "+":
                return operand
            if t.text == "-" and isinstance(operand, Literal) and not isinstance(operand.value, bool):
                return Literal(-operand.value, loc=t.loc)
            return Unary(t.text, operand, loc=t.loc)
        return self.primary()

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "int":
            self.advance()
            return Literal(int(t.text), loc=t.loc)
        if t.kind == "float":
            self.advance()
            return Literal(float(t.text.rstrip("f")), loc=t.loc)
        if self.accept("("):
            e = self.expr()
            self.expect(")", " to close the parenthesis")
            return e
        if t.kind != "name" or t.text in ("def", "where", "in"):
            raise self.error(f"expected an expression but found {self.describe(t)}")
        self.advance()
        if t.text in ("true", "false"):
            return Literal(t.text == "true", loc=t.loc)
        if not self.at("("):
            if t.text in self.sizes:
                return Size(t.text, loc=t.loc)
            if t.text in self.tensors:
                return Access(t.text, (), loc=t.loc)
            return Index(t.text, loc=t.loc)
        self.advance()
        args: list[Expr] = []
        while not self.at(")"):
            if args:
                self.expect(",", " between arguments")
            args.append(self.expr())
        self.expect(")", " to close the argument list")
        if t.text in self.tensors:
            return Access(t.text, tuple(args), loc=t.loc)
        if t.text in TYPE_NAMES:
            if len(args) != 1:
                raise TCTypeError(f"cast {t.text}(...) takes 1 argument, got {len(args)}", t.loc, self.source)
            return Cast(TYPE_NAMES[t.text], args[0], loc=t.loc)
        if t.text in BUILTINS:
            return Call(t.text, tuple(args), loc=t.loc)
        raise TCTypeError(
            f"unknown function or tensor '{t.text}': not a builtin ({builtin_names()}), a type, "
            "an input, an output, or a tensor written by an earlier statement",
            t.loc,
            self.source,
        )
