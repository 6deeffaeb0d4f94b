"""Type checking of kernels: every expression gets a dtype, every tensor a role, dtype and rank.

Rules (C's, with the surprises removed):

- Operands of arithmetic and comparisons are converted to the wider of the two
  types (bool < int32 < int64 < float32 < float64; float16 values compute as
  float32).  Number literals adapt to the other operand (``x * 2`` keeps ``x``'s
  type); alone, an integer literal is int64 and a real one float32.
- Integer ``/`` and ``%`` round toward minus infinity, as in NumPy; integer
  division by zero gives 0.  ``&&``, ``||``, ``!`` and the condition of ``?:``
  take bools.  Index variables and sizes are int64 values.
- A statement may convert its value to a wider kind (bool -> int -> float, any
  width) when storing; float to int needs an explicit cast such as ``int64(x)``.
- ``=`` may not leave an index only on the right (that would be a reduction);
  a statement reads the tensor it writes only at the same indices (no
  recurrences: iterations run in any order), and a reduction not at all;
  ``+=`` without ``!`` needs an earlier statement to have written the tensor;
  tensors are read only after a statement wrote them; inputs are never written.

Where results differ from NumPy: ``min=``/``max=`` reductions and the
``min``/``max``/``fmin``/``fmax`` builtins ignore NaN (NumPy's ``min``/``max``
propagate it), and float reductions may sum in a different order.

The result, ``TypedKernel``, is the kernel with each expression's ``dtype`` set
and explicit ``Cast`` nodes wherever a conversion happens.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from pliant.kernels.builtins import BUILTINS, Kind
from pliant.kernels.errors import TCTypeError
from pliant.kernels.ir import (
    ARITH_OPS,
    COMPARE_OPS,
    LOGIC_OPS,
    Access,
    Binary,
    Call,
    Cast,
    DType,
    Expr,
    Index,
    KernelDef,
    Literal,
    Loc,
    ReduceOp,
    Select,
    Size,
    Statement,
    Unary,
    Where,
    reduction_vars,
    walk,
)


class Role(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"
    TEMP = "temp"


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A tensor of the kernel; ``dims`` are the declared sizes (None: inferred by range inference)."""

    name: str
    dtype: DType
    rank: int
    role: Role
    dims: tuple[str | int, ...] | None


@dataclass(frozen=True)
class TypedKernel:
    """A checked kernel: typed statements, tensors by name (inputs, outputs, temps in that order), sizes."""

    kdef: KernelDef
    tensors: dict[str, TensorInfo]
    sizes: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.kdef.name

    @property
    def statements(self) -> tuple[Statement, ...]:
        return self.kdef.statements

    def by_role(self, role: Role) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.tensors.values() if t.role is role)


def check_kernel(k: KernelDef) -> TypedKernel:
    """Type-check ``k``; raises ``TCTypeError`` at the offending line and column."""
    return _Checker(k).run()


# (dtype, weak): weak types belong to literals and give way to the other operand.
_Ty = tuple[DType, bool]


def _default(t: _Ty) -> DType:
    return t[0]


def _join(a: _Ty, b: _Ty) -> DType:
    """The type both operands convert to."""
    (da, wa), (db, wb) = a, b
    if wa and not wb:
        da, db = db, da
        wa, wb = wb, wa
    if wb and not wa:
        if db.is_float and not da.is_float:
            return DType.FLOAT32
        return da
    return da if da.rank >= db.rank else db


def _retype_literal(e: Literal, to: DType) -> Literal:
    v = e.value
    if to.is_float:
        return Literal(float(v), to, e.loc)
    if to is DType.BOOL:
        return Literal(bool(v), to, e.loc)
    return Literal(int(v), to, e.loc)


def coerce(e: Expr, to: DType) -> Expr:
    """``e`` converted to ``to`` (a compute type): literals are retyped, anything else wrapped in ``Cast``."""
    if e.dtype is to:
        return e
    if isinstance(e, Literal) and not (isinstance(e.value, float) and not to.is_float):
        return _retype_literal(e, to)
    return Cast(to, e, to, e.loc)


def _kind(d: DType) -> int:
    return 0 if d is DType.BOOL else 1 if d.is_int else 2


class _Checker:
    def __init__(self, k: KernelDef) -> None:
        self.k = k
        self.tensors: dict[str, TensorInfo] = {}
        self.written: set[str] = set()
        self.sizes: list[str] = []
        self.out_dtypes: dict[str, DType | None] = {}

    def error(self, message: str, loc: Loc) -> TCTypeError:
        return TCTypeError(message, loc, self.k.source)

    def run(self) -> TypedKernel:
        k = self.k
        for p in k.params:
            for d in p.dims:
                if isinstance(d, str) and d not in self.sizes:
                    self.sizes.append(d)
            self.tensors[p.name] = TensorInfo(p.name, p.dtype, len(p.dims), Role.INPUT, p.dims)
        declared: dict[str, TensorInfo | None] = {}
        self.out_dtypes = {o.name: o.dtype for o in k.outputs}
        for o in k.outputs:
            for d in o.dims or ():
                if isinstance(d, str) and d not in self.sizes:
                    raise self.error(f"size '{d}' of output '{o.name}' is not a size of any input", o.loc)
            if o.dtype is not None and o.dims is not None:
                declared[o.name] = TensorInfo(o.name, o.dtype, len(o.dims), Role.OUTPUT, o.dims)
            else:
                declared[o.name] = None
        if not k.outputs:
            raise self.error(f"kernel '{k.name}' has no outputs: list them after '->', e.g. -> (C)", k.loc)
        outputs = {o.name: o for o in k.outputs}
        stmts = []
        temps: dict[str, TensorInfo] = {}
        for s in k.statements:
            info = self.tensors.get(s.tensor) or declared.get(s.tensor) or temps.get(s.tensor)
            if info is not None and info.role is Role.INPUT:
                raise self.error(f"cannot write input '{s.tensor}': inputs are read-only", s.loc)
            if info is not None and info.rank != len(s.indices):
                raise self.error(
                    f"'{s.tensor}' has rank {info.rank} but is written with {len(s.indices)} indices", s.loc
                )
            typed, info = self.statement(s, info, outputs.get(s.tensor) is not None)
            if s.tensor in outputs:
                declared[s.tensor] = info
            else:
                temps[s.tensor] = info
            self.tensors[s.tensor] = info
            self.written.add(s.tensor)
            stmts.append(typed)
        ordered: dict[str, TensorInfo] = {p.name: self.tensors[p.name] for p in k.params}
        for o in k.outputs:
            if o.name not in self.written:
                raise self.error(f"output '{o.name}' is never written", o.loc)
            ordered[o.name] = self.tensors[o.name]
        ordered.update(temps)
        return TypedKernel(replace(k, statements=tuple(stmts)), ordered, tuple(self.sizes))

    def statement(self, s: Statement, info: TensorInfo | None, is_output: bool) -> tuple[Statement, TensorInfo]:
        red = reduction_vars(s)
        if s.op is ReduceOp.ASSIGN and red:
            raise self.error(
                f"index '{red[0]}' appears only on the right of '=': reduce over it with '+=!', 'max=!' ...",
                s.loc,
            )
        if s.op.is_reduction and not s.init and s.tensor not in self.written:
            raise self.error(
                f"'{s.tensor}' is accumulated with '{s.op.value}' before any statement writes it: "
                f"start it with '{s.op.value}!'",
                s.loc,
            )
        for a in walk(s.rhs):
            if not isinstance(a, Access) or a.tensor != s.tensor:
                continue
            if s.op.is_reduction:
                raise self.error(
                    f"a reduction into '{s.tensor}' may not read '{s.tensor}': write the value to a new tensor first",
                    a.loc,
                )
            if [x.name if isinstance(x, Index) else None for x in a.indices] != list(s.indices):
                raise self.error(
                    f"'{s.tensor}' is read at other indices than it is written (a recurrence): loop iterations run "
                    "in any order; write a scan as a masked reduction, e.g. O(i) +=! (j <= i) ? A(j) : 0.0",
                    a.loc,
                )
        seen_where: set[str] = set()
        used = set(s.indices) | {x.name for x in walk(s.rhs) if isinstance(x, Index)}
        wheres = []
        for w in s.where:
            if w.var not in used:
                raise self.error(f"where-clause names '{w.var}', which the statement does not use", w.loc)
            if w.var in seen_where:
                raise self.error(f"'{w.var}' has two where-clauses", w.loc)
            seen_where.add(w.var)
            wheres.append(Where(w.var, self.bound(w.lo), self.bound(w.hi), w.loc))
        rhs, ty = self.expr(s.rhs)
        store = info.dtype if info is not None else self.out_dtypes.get(s.tensor)
        target = store.compute if store is not None else _default(ty)
        if store is not None and _kind(ty[0]) > _kind(target):
            raise self.error(
                f"'{s.tensor}' holds {store.value} but the value is {ty[0].value}: "
                f"convert it explicitly, e.g. {store.value}(...)",
                s.loc,
            )
        if s.op in (ReduceOp.ADD, ReduceOp.MUL) and target is DType.BOOL:
            raise self.error(f"cannot reduce bools with '{s.op.value}': convert them, e.g. int32(...)", s.loc)
        rhs = coerce(rhs, target)
        if info is None:
            role = Role.OUTPUT if is_output else Role.TEMP
            info = TensorInfo(s.tensor, store or target, len(s.indices), role, None)
        return replace(s, rhs=rhs, where=tuple(wheres)), info

    def bound(self, e: Expr) -> Expr:
        for x in walk(e):
            if isinstance(x, Index | Access):
                raise self.error("where-clause bounds may use sizes and integers only", x.loc)
        typed, ty = self.expr(e)
        if not (ty[0].is_int or (ty[1] and not ty[0].is_float)):
            raise self.error(f"where-clause bound must be an integer, got {ty[0].value}", e.loc)
        return coerce(typed, DType.INT64)

    # --- expressions ---------------------------------------------------------------------------

    def expr(self, e: Expr) -> tuple[Expr, _Ty]:
        if isinstance(e, Literal):
            if isinstance(e.value, bool):
                return replace(e, dtype=DType.BOOL), (DType.BOOL, False)
            d = DType.FLOAT32 if isinstance(e.value, float) else DType.INT64
            return replace(e, dtype=d), (d, True)
        if isinstance(e, Index | Size):
            return replace(e, dtype=DType.INT64), (DType.INT64, False)
        if isinstance(e, Access):
            return self.access(e)
        if isinstance(e, Unary):
            x, t = self.expr(e.operand)
            if e.op == "!":
                self.need_bool(x, "operand of '!'")
                return Unary("!", x, DType.BOOL, e.loc), (DType.BOOL, False)
            d = DType.INT32 if t[0] is DType.BOOL else t[0]
            return Unary(e.op, coerce(x, d), d, e.loc), (d, t[1])
        if isinstance(e, Binary):
            return self.binary(e)
        if isinstance(e, Select):
            c, _ = self.expr(e.cond)
            self.need_bool(c, "condition of '?:'")
            a, ta = self.expr(e.then)
            b, tb = self.expr(e.other)
            d = _join(ta, tb)
            return Select(c, coerce(a, d), coerce(b, d), d, e.loc), (d, ta[1] and tb[1])
        if isinstance(e, Call):
            return self.call(e)
        x, _ = self.expr(e.operand)
        d = e.to.compute
        return Cast(e.to, x, d, e.loc), (d, False)

    def need_bool(self, e: Expr, what: str) -> None:
        if e.dtype is not DType.BOOL:
            assert e.dtype is not None
            raise self.error(f"{what} must be bool, got {e.dtype.value} (compare it, e.g. x != 0)", e.loc)

    def access(self, e: Access) -> tuple[Expr, _Ty]:
        info = self.tensors.get(e.tensor)
        if info is None or (info.role is not Role.INPUT and e.tensor not in self.written):
            raise self.error(f"'{e.tensor}' is read before any statement writes it", e.loc)
        if len(e.indices) != info.rank:
            raise self.error(f"'{e.tensor}' has rank {info.rank} but is read with {len(e.indices)} indices", e.loc)
        indices = []
        for i in e.indices:
            x, t = self.expr(i)
            if not t[0].is_int:
                raise self.error(f"index of '{e.tensor}' must be an integer, got {t[0].value}", i.loc)
            indices.append(coerce(x, DType.INT64))
        d = info.dtype.compute
        return Access(e.tensor, tuple(indices), d, e.loc), (d, False)

    def binary(self, e: Binary) -> tuple[Expr, _Ty]:
        a, ta = self.expr(e.lhs)
        b, tb = self.expr(e.rhs)
        if e.op in LOGIC_OPS:
            self.need_bool(a, f"operand of '{e.op}'")
            self.need_bool(b, f"operand of '{e.op}'")
            return Binary(e.op, a, b, DType.BOOL, e.loc), (DType.BOOL, False)
        d = _join(ta, tb)
        if e.op in COMPARE_OPS:
            return Binary(e.op, coerce(a, d), coerce(b, d), DType.BOOL, e.loc), (DType.BOOL, False)
        assert e.op in ARITH_OPS
        if d is DType.BOOL:
            d = DType.INT32
        return Binary(e.op, coerce(a, d), coerce(b, d), d, e.loc), (d, False)

    def call(self, e: Call) -> tuple[Expr, _Ty]:
        fn = BUILTINS[e.fn]
        if len(e.args) != fn.arity:
            raise self.error(f"{e.fn}() takes {fn.arity} argument(s), got {len(e.args)}", e.loc)
        typed = [self.expr(a) for a in e.args]
        d = typed[0][1]
        for _, t in typed[1:]:
            d = (_join(d, t), d[1] and t[1])
        res = d[0]
        if fn.kind is Kind.FLOAT and not res.is_float:
            res = DType.FLOAT32
        if res is DType.BOOL:
            res = DType.INT32
        args = tuple(coerce(x, res) for x, _ in typed)
        return Call(e.fn, args, res, e.loc), (res, False)
