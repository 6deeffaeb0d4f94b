"""The kernel IR: what a Tensor-Comprehension-style kernel says, as frozen values.

A kernel (``KernelDef``) has typed tensor parameters whose dims are size
symbols, outputs, and statements.  A statement writes one tensor at plain index
variables from an expression (``Expr``) over tensor reads, index variables,
sizes, literals, operators, builtin calls and casts:

    C(m, n) +=! A(m, k) * B(k, n)      # Statement(tensor="C", indices=("m", "n"),
                                       #           op=ReduceOp.ADD, init=True, rhs=...)

The parser (``pliant.frontends.tc``) builds these with ``dtype=None`` on every
expression; the checker (``pliant.kernels.check``) returns the same tree with
every ``dtype`` filled and explicit ``Cast`` nodes wherever the language's
promotion rules differ from C's, so code generation needs no type rules.

Nodes compare and hash by value (source locations excluded), so equal reads are
one dict key wherever they occur.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Union

import numpy as np


class DType(enum.Enum):
    """An element type of the kernel language; ``value`` is its canonical name."""

    BOOL = "bool"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT16 = "float16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def c_type(self) -> str:
        """The C type that stores one element."""
        return _C_TYPE[self]

    @property
    def numpy(self) -> np.dtype[np.generic]:
        return np.dtype(self.value)

    @property
    def is_float(self) -> bool:
        return self in (DType.FLOAT16, DType.FLOAT32, DType.FLOAT64)

    @property
    def is_int(self) -> bool:
        return self in (DType.INT32, DType.INT64)

    @property
    def rank(self) -> int:
        """Promotion rank: the wider of two operands wins (C's usual conversions)."""
        return _RANK[self]

    @property
    def compute(self) -> DType:
        """The type values have in expressions: float16 is a storage type, computed as float32."""
        return DType.FLOAT32 if self is DType.FLOAT16 else self

    @staticmethod
    def from_numpy(dt: np.dtype[np.generic]) -> DType | None:
        """The kernel type holding NumPy ``dt``, or None when the language has none."""
        return _FROM_NUMPY.get(np.dtype(dt).name)


_C_TYPE = {
    DType.BOOL: "_Bool",
    DType.INT32: "int32_t",
    DType.INT64: "int64_t",
    DType.FLOAT16: "_Float16",
    DType.FLOAT32: "float",
    DType.FLOAT64: "double",
}
_RANK = {DType.BOOL: 0, DType.INT32: 1, DType.INT64: 2, DType.FLOAT16: 3, DType.FLOAT32: 4, DType.FLOAT64: 5}
_FROM_NUMPY = {d.value: d for d in DType}

TYPE_NAMES: dict[str, DType] = {
    "bool": DType.BOOL,
    "int32": DType.INT32,
    "int": DType.INT32,
    "int64": DType.INT64,
    "long": DType.INT64,
    "float16": DType.FLOAT16,
    "half": DType.FLOAT16,
    "float32": DType.FLOAT32,
    "float": DType.FLOAT32,
    "float64": DType.FLOAT64,
    "double": DType.FLOAT64,
}
"""Spellings of element types in kernel source (TC's ``float``/``double`` included)."""


@dataclass(frozen=True, slots=True)
class Loc:
    """A place in kernel source: 1-based line and column, and the length of the text."""

    line: int
    col: int
    length: int = 1


_NOWHERE = Loc(0, 0, 0)


@dataclass(frozen=True, slots=True)
class Literal:
    """A number or ``true``/``false``; ``dtype`` None until checked (literals adapt to their operands)."""

    value: int | float | bool
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Index:
    """An index variable used as a value (an ``int64``)."""

    name: str
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Size:
    """A size symbol used as a value (an ``int64``)."""

    name: str
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Access:
    """A read of ``tensor`` at ``indices`` (empty for a scalar)."""

    tensor: str
    indices: tuple[Expr, ...]
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unary:
    """``-x`` or ``!x``."""

    op: str
    operand: Expr
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Binary:
    """Arithmetic (``+ - * / %``), comparison (``== != < <= > >=``) or logic (``&& ||``)."""

    op: str
    lhs: Expr
    rhs: Expr
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Select:
    """``cond ? then : other``; only the chosen branch is evaluated."""

    cond: Expr
    then: Expr
    other: Expr
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A builtin function (``exp``, ``fmax``, ...; see ``pliant.kernels.builtins``)."""

    fn: str
    args: tuple[Expr, ...]
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Cast:
    """A conversion, written ``float32(x)``, ``int64(x)`` ... or inserted by the checker."""

    to: DType
    operand: Expr
    dtype: DType | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


Expr = Union[Literal, Index, Size, Access, Unary, Binary, Select, Call, Cast]

ARITH_OPS = frozenset({"+", "-", "*", "/", "%"})
COMPARE_OPS = frozenset({"==", "!=", "<", "<=", ">", ">="})
LOGIC_OPS = frozenset({"&&", "||"})


class ReduceOp(enum.Enum):
    """How a statement combines its value with the tensor: ``=``, ``+=``, ``*=``, ``min=``, ``max=``."""

    ASSIGN = "="
    ADD = "+="
    MUL = "*="
    MIN = "min="
    MAX = "max="

    @property
    def is_reduction(self) -> bool:
        return self is not ReduceOp.ASSIGN


@dataclass(frozen=True, slots=True)
class Where:
    """``where var in lo:hi``: the range of ``var`` is fixed to ``lo <= var < hi``."""

    var: str
    lo: Expr
    hi: Expr
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Statement:
    """``tensor(indices) op[!] rhs [where ...]``; ``init`` is the ``!``: start from the identity."""

    tensor: str
    indices: tuple[str, ...]
    op: ReduceOp
    init: bool
    rhs: Expr
    where: tuple[Where, ...] = ()
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Param:
    """An input tensor ``dtype(d0, d1, ...) name``; a dim is a size symbol or a constant."""

    name: str
    dtype: DType
    dims: tuple[str | int, ...]
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class OutputDecl:
    """An output; ``dtype`` and ``dims`` are None when left to inference (``-> (C)``)."""

    name: str
    dtype: DType | None = None
    dims: tuple[str | int, ...] | None = None
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class KernelDef:
    """One ``def``: parameters, outputs and statements, plus the text it came from (for errors)."""

    name: str
    params: tuple[Param, ...]
    outputs: tuple[OutputDecl, ...]
    statements: tuple[Statement, ...]
    source: str = field(default="", compare=False, repr=False)
    loc: Loc = field(default=_NOWHERE, compare=False, repr=False)


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of ``e``."""
    if isinstance(e, Access):
        return e.indices
    if isinstance(e, Unary | Cast):
        return (e.operand,)
    if isinstance(e, Binary):
        return (e.lhs, e.rhs)
    if isinstance(e, Select):
        return (e.cond, e.then, e.other)
    if isinstance(e, Call):
        return e.args
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    """``e`` and all its subexpressions, parents first."""
    yield e
    for c in children(e):
        yield from walk(c)


def index_vars(e: Expr) -> set[str]:
    """The index variables ``e`` mentions, at any depth."""
    return {x.name for x in walk(e) if isinstance(x, Index)}


def statement_vars(s: Statement) -> list[str]:
    """All index variables of ``s`` in order of first mention: left-hand side first."""
    out = list(s.indices)
    for x in walk(s.rhs):
        if isinstance(x, Index) and x.name not in out:
            out.append(x.name)
    return out


def reduction_vars(s: Statement) -> list[str]:
    """Index variables of ``s`` that appear only on the right: the ones it reduces over."""
    return [v for v in statement_vars(s) if v not in s.indices]


def map_children(e: Expr, f: Callable[[Expr], Expr]) -> Expr:
    """``e`` with ``f`` applied to each direct subexpression."""
    if isinstance(e, Access):
        return Access(e.tensor, tuple(f(i) for i in e.indices), e.dtype, e.loc)
    if isinstance(e, Unary):
        return Unary(e.op, f(e.operand), e.dtype, e.loc)
    if isinstance(e, Cast):
        return Cast(e.to, f(e.operand), e.dtype, e.loc)
    if isinstance(e, Binary):
        return Binary(e.op, f(e.lhs), f(e.rhs), e.dtype, e.loc)
    if isinstance(e, Select):
        return Select(f(e.cond), f(e.then), f(e.other), e.dtype, e.loc)
    if isinstance(e, Call):
        return Call(e.fn, tuple(f(a) for a in e.args), e.dtype, e.loc)
    return e


# --- canonical text ---------------------------------------------------------------------------


def format_expr(e: Expr) -> str:
    """Canonical text of ``e``: fully parenthesised, so it reads back to the same tree."""
    if isinstance(e, Literal):
        if isinstance(e.value, bool):
            return "true" if e.value else "false"
        if isinstance(e.value, float):
            return repr(e.value)
        return str(e.value)
    if isinstance(e, Index | Size):
        return e.name
    if isinstance(e, Access):
        return f"{e.tensor}({', '.join(format_expr(i) for i in e.indices)})"
    if isinstance(e, Unary):
        return f"({e.op}{format_expr(e.operand)})"
    if isinstance(e, Binary):
        return f"({format_expr(e.lhs)} {e.op} {format_expr(e.rhs)})"
    if isinstance(e, Select):
        return f"({format_expr(e.cond)} ? {format_expr(e.then)} : {format_expr(e.other)})"
    if isinstance(e, Call):
        return f"{e.fn}({', '.join(format_expr(a) for a in e.args)})"
    return f"{e.to.value}({format_expr(e.operand)})"


def _dims(dims: tuple[str | int, ...]) -> str:
    return ", ".join(str(d) for d in dims)


def format_statement(s: Statement) -> str:
    lhs = f"{s.tensor}({', '.join(s.indices)})"
    op = s.op.value + ("!" if s.init else "")
    text = f"{lhs} {op} {format_expr(s.rhs)}"
    if s.where:
        text += " where " + ", ".join(f"{w.var} in {format_expr(w.lo)}:{format_expr(w.hi)}" for w in s.where)
    return text


def format_kernel(k: KernelDef) -> str:
    """Canonical source of ``k``: independent of spacing and comments (part of every cache key)."""
    params = ", ".join(f"{p.dtype.value}({_dims(p.dims)}) {p.name}" for p in k.params)
    outs = []
    for o in k.outputs:
        if o.dtype is None:
            outs.append(o.name)
        elif o.dims is None:
            outs.append(f"{o.dtype.value} {o.name}")
        else:
            outs.append(f"{o.dtype.value}({_dims(o.dims)}) {o.name}")
    body = "".join(f"  {format_statement(s)}\n" for s in k.statements)
    return f"def {k.name}({params}) -> ({', '.join(outs)}) {{\n{body}}}\n"
