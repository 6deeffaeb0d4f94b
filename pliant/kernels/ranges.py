"""Range inference: the iteration range of every index variable, and the sizes of written tensors.

As in Tensor Comprehensions, a statement's index variables are bounded by the
reads they index.  Each dim of each read, ``T(.., e, ..)`` with ``e`` affine in
index variables, is a constraint ``0 <= e < dim``.  Inference runs in rounds:
a constraint whose variables are all bounded except one gives that variable
the largest range for which the read stays in bounds whatever the others are;
a variable bounded by several constraints in one round gets their intersection.
So ``O(i) +=! I(i + k) * W(k)`` bounds ``k`` by ``W`` in round one and ``i`` by
``I`` in round two: ``i in 0:N-K+1``.

- ``where v in lo:hi`` fixes a range instead; the left-hand tensor's dims bound
  its indices when they are known (declared outputs, tensors already written).
- Writes never leave a tensor: left-hand ranges are cut to start at 0 and, when
  the tensor's dims are known, to end within them.
- A written tensor's dims are the upper bounds of its left-hand indices in the
  statement that first writes it.  If that statement does not cover the tensor
  (a range not starting at 0), the kernel zero-fills the tensor first.
- A read that inference did not prove in bounds -- possible when a ``where``
  widens a range, which is how zero padding is written, or for index arithmetic
  that is not affine (``i / 2``) -- is guarded: outside the tensor it reads 0.
- An index computed from tensor values (``LUT(I(i, k), j)``) is checked at run
  time and raises ``TCRuntimeError`` when out of range.  A variable bounded only
  by such positions is a compile error asking for a ``where``.

With sizes given (a specialised version), the same inference runs on integers:
everything is exact and guards that concrete sizes prove unnecessary vanish.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import sympy

from pliant.kernels.check import Role, TypedKernel
from pliant.kernels.errors import TCRangeError
from pliant.kernels.ir import (
    Access,
    Binary,
    Cast,
    Expr,
    Index,
    Literal,
    Loc,
    Size,
    Statement,
    Unary,
    format_expr,
    reduction_vars,
    statement_vars,
    walk,
)


def size_symbol(name: str) -> sympy.Symbol:
    """The sympy symbol of size ``name`` (a positive integer)."""
    return sympy.Symbol(name, integer=True, positive=True)


@dataclass(frozen=True, slots=True)
class Range:
    """``lo <= v < hi``."""

    lo: sympy.Expr
    hi: sympy.Expr

    def __str__(self) -> str:
        return f"{self.lo}:{self.hi}"


class Check(enum.Enum):
    """What code generation must do for one dim of one read."""

    NONE = "none"  # proven in bounds
    GUARD = "guard"  # may fall outside: reads 0 there
    DATA = "data"  # computed from tensor values: checked, out of range is a run-time error


@dataclass(frozen=True)
class StmtRanges:
    """Inference results for one statement."""

    stmt: Statement
    ranges: dict[str, Range]
    lhs: tuple[str, ...]
    red: tuple[str, ...]
    checks: dict[Access, tuple[Check, ...]]
    error_codes: dict[tuple[Access, int], int]


@dataclass(frozen=True)
class KernelRanges:
    """Inference results for a kernel: ranges per statement, dims of every tensor."""

    typed: TypedKernel
    dims: dict[str, tuple[sympy.Expr, ...]]
    stmts: tuple[StmtRanges, ...]
    zero_fill: frozenset[str]
    errors: tuple[str, ...]
    sizes: Mapping[str, int] | None

    def describe(self) -> str:
        """The inferred ranges and sizes, one line per statement and tensor."""
        lines = []
        for name, dims in self.dims.items():
            role = self.typed.tensors[name].role.value
            lines.append(f"{role} {name}({', '.join(str(d) for d in dims)})")
        for i, s in enumerate(self.stmts):
            rs = ", ".join(f"{v} in {r}" for v, r in s.ranges.items())
            lines.append(f"statement {i}: {rs}")
        return "\n".join(lines)


def infer_ranges(typed: TypedKernel, sizes: Mapping[str, int] | None = None) -> KernelRanges:
    """Infer ranges for ``typed``: symbolic, or specialised to ``sizes`` (size name -> value)."""
    env: dict[str, sympy.Expr] = {n: size_symbol(n) for n in typed.sizes}
    if sizes is not None:
        env = {n: sympy.Integer(int(sizes[n])) for n in typed.sizes}
    dims: dict[str, tuple[sympy.Expr, ...]] = {}
    for t in typed.tensors.values():
        if t.dims is not None:
            dims[t.name] = tuple(env[d] if isinstance(d, str) else sympy.Integer(d) for d in t.dims)
    stmts = []
    zero_fill: set[str] = set()
    errors: list[str] = []
    first_write: set[str] = set()
    for s in typed.statements:
        sr = _Inference(typed, s, env, dims, errors).run()
        target = dims.get(s.tensor)
        if target is None:
            target = tuple(sr.ranges[v].hi for v in s.indices)
            dims[s.tensor] = target
        if s.tensor not in first_write:
            first_write.add(s.tensor)
            covers = all(_is_zero(sr.ranges[v].lo) and _is_zero(sr.ranges[v].hi - d) for v, d in zip(s.indices, target))
            if not covers:
                zero_fill.add(s.tensor)
        stmts.append(sr)
    ordered = {name: dims[name] for name in typed.tensors}
    return KernelRanges(typed, ordered, tuple(stmts), frozenset(zero_fill), tuple(errors), sizes)


def _is_zero(e: sympy.Expr) -> bool:
    return bool(sympy.simplify(e) == 0)


def _nonneg(e: sympy.Expr) -> bool:
    e = sympy.simplify(e)
    return bool(e.is_nonnegative) or (e.is_number and bool(e >= 0))


@dataclass(frozen=True, slots=True)
class _Affine:
    const: sympy.Expr
    coeffs: dict[str, int]


def affine(e: Expr, env: Mapping[str, sympy.Expr]) -> _Affine | None:
    """``e`` as ``const + sum(c_v * v)`` with integer ``c_v``, or None when it is not affine."""
    if isinstance(e, Literal) and not isinstance(e.value, float):
        return _Affine(sympy.Integer(int(e.value)), {})
    if isinstance(e, Size):
        return _Affine(env[e.name], {})
    if isinstance(e, Index):
        return _Affine(sympy.Integer(0), {e.name: 1})
    if isinstance(e, Cast) and e.to.is_int:
        return affine(e.operand, env)
    if isinstance(e, Unary) and e.op == "-":
        a = affine(e.operand, env)
        return None if a is None else _Affine(-a.const, {v: -c for v, c in a.coeffs.items()})
    if isinstance(e, Binary) and e.op in ("+", "-", "*"):
        a, b = affine(e.lhs, env), affine(e.rhs, env)
        if a is None or b is None:
            return None
        if e.op == "*":
            if a.coeffs and b.coeffs:
                return None
            k, x = (a, b) if not a.coeffs else (b, a)
            if x.coeffs and not k.const.is_Integer:
                return None
            return _Affine(k.const * x.const, {v: int(c * k.const) for v, c in x.coeffs.items() if c * k.const != 0})
        sign = 1 if e.op == "+" else -1
        coeffs = dict(a.coeffs)
        for v, c in b.coeffs.items():
            coeffs[v] = coeffs.get(v, 0) + sign * c
        return _Affine(a.const + sign * b.const, {v: c for v, c in coeffs.items() if c != 0})
    return None


@dataclass(frozen=True, slots=True)
class _Constraint:
    access: Access
    dim: int
    form: _Affine | None
    data: bool
    size: sympy.Expr
    loc: Loc
    lhs: bool = False


class _Inference:
    def __init__(
        self,
        typed: TypedKernel,
        s: Statement,
        env: Mapping[str, sympy.Expr],
        dims: Mapping[str, tuple[sympy.Expr, ...]],
        errors: list[str],
    ) -> None:
        self.typed, self.s, self.env, self.dims, self.errors = typed, s, env, dims, errors

    def error(self, message: str, loc: Loc) -> TCRangeError:
        return TCRangeError(message, loc, self.typed.kdef.source)

    def constraints(self) -> list[_Constraint]:
        out = []
        reads = [(x, False) for x in walk(self.s.rhs) if isinstance(x, Access)]
        if self.s.tensor in self.dims:
            lhs = Access(self.s.tensor, tuple(Index(v) for v in self.s.indices), loc=self.s.loc)
            reads = [(lhs, True), *reads]
        for a, is_lhs in reads:
            dims = self.dims[a.tensor]
            for d, e in enumerate(a.indices):
                data = any(isinstance(x, Access) for x in walk(e))
                form = None if data else affine(e, self.env)
                out.append(_Constraint(a, d, form, data, dims[d], a.loc, is_lhs))
        return out

    def run(self) -> StmtRanges:
        s = self.s
        cons = self.constraints()
        ranges: dict[str, Range] = {}
        for w in s.where:
            lo, hi = affine(w.lo, self.env), affine(w.hi, self.env)
            if lo is None or hi is None or lo.coeffs or hi.coeffs:
                raise self.error(
                    f"the bounds of 'where {w.var} in {format_expr(w.lo)}:{format_expr(w.hi)}' must be sums of "
                    "sizes and integers (no division, products of sizes or index variables); compute the bound "
                    "outside the kernel and pass a tensor of that size",
                    w.loc,
                )
            ranges[w.var] = Range(lo.const, hi.const)
        used: set[int] = set()
        fixed = {w.var for w in s.where}
        # NOTE: reads indexed by a where-bounded variable bound nothing else unless nothing else can:
        # a where clause widening h is zero padding, and must not shrink the filter index kh.
        for allow_fixed in (False, True):
            self.rounds(cons, ranges, used, fixed, allow_fixed)
        for v in statement_vars(s):
            if v not in ranges:
                raise self.unresolved(v, cons)
        checks: dict[Access, list[Check]] = {}
        codes: dict[tuple[Access, int], int] = {}
        for n, c in enumerate(cons):
            if c.lhs:
                continue  # the left-hand side: its indices are bounded by construction
            kinds = checks.setdefault(c.access, [Check.NONE] * len(c.access.indices))
            if c.data:
                kinds[c.dim] = Check.DATA
                if (c.access, c.dim) not in codes:
                    self.errors.append(
                        f"index {c.dim} of {format_expr(c.access)} (line {c.loc.line}) is outside "
                        f"0:{{{c.access.tensor}.{c.dim}}}: the tensor values used as indices are out of range"
                    )
                    codes[(c.access, c.dim)] = len(self.errors)
            elif c.form is None or (n not in used and not self.proven(c.form, c.size, ranges)):
                kinds[c.dim] = Check.GUARD
        # NOTE: writes stay inside the tensor whatever the reads or a where-clause allow.
        lhs_dims = self.dims.get(s.tensor)
        for p, v in enumerate(s.indices):
            r = ranges[v]
            lo = r.lo if _nonneg(r.lo) else sympy.Max(r.lo, 0)
            hi = r.hi
            if lhs_dims is not None and not _nonneg(lhs_dims[p] - r.hi):
                hi = sympy.Min(r.hi, lhs_dims[p])
            ranges[v] = Range(lo, hi)
        red = tuple(reduction_vars(s))
        final = {k: tuple(v) for k, v in checks.items() if any(x is not Check.NONE for x in v)}
        order = {v: ranges[v] for v in (*s.indices, *red)}
        return StmtRanges(s, order, s.indices, red, final, codes)

    def rounds(
        self, cons: list[_Constraint], ranges: dict[str, Range], used: set[int], fixed: set[str], allow_fixed: bool
    ) -> None:
        while True:
            found: dict[str, list[Range]] = {}
            for n, c in enumerate(cons):
                if c.form is None or n in used or (not allow_fixed and fixed & c.form.coeffs.keys()):
                    continue
                unknown = [v for v in c.form.coeffs if v not in ranges]
                if len(unknown) == 1:
                    found.setdefault(unknown[0], []).append(self.solve(c.form, unknown[0], c.size, ranges))
                    used.add(n)
            if not found:
                return
            for v, rs in found.items():
                lo = sympy.Max(*[r.lo for r in rs]) if len(rs) > 1 else rs[0].lo
                hi = sympy.Min(*[r.hi for r in rs]) if len(rs) > 1 else rs[0].hi
                ranges[v] = Range(lo, hi)

    def bounds(self, form: _Affine, ranges: Mapping[str, Range], skip: str | None) -> tuple[sympy.Expr, sympy.Expr]:
        lo = hi = form.const
        for v, c in form.coeffs.items():
            if v == skip:
                continue
            r = ranges[v]
            a, b = c * r.lo, c * (r.hi - 1)
            lo, hi = (lo + a, hi + b) if c > 0 else (lo + b, hi + a)
        return lo, hi

    def solve(self, form: _Affine, v: str, size: sympy.Expr, ranges: Mapping[str, Range]) -> Range:
        """The widest range of ``v`` keeping ``0 <= form < size`` for every value of the other variables."""
        c = form.coeffs[v]
        rmin, rmax = self.bounds(form, ranges, v)
        if c > 0:
            return Range(sympy.ceiling(-rmin / c), sympy.floor((size - 1 - rmax) / c) + 1)
        a = -c
        return Range(sympy.ceiling((rmax - size + 1) / a), sympy.floor(rmin / a) + 1)

    def proven(self, form: _Affine, size: sympy.Expr, ranges: Mapping[str, Range]) -> bool:
        if any(_nonneg(ranges[v].lo - ranges[v].hi) for v in form.coeffs):
            return True  # an empty range never reads
        lo, hi = self.bounds(form, ranges, None)
        return _nonneg(lo) and _nonneg(size - 1 - hi)

    def unresolved(self, v: str, cons: list[_Constraint]) -> TCRangeError:
        s = self.s
        loc = next((x.loc for x in walk(s.rhs) if isinstance(x, Index) and x.name == v), s.loc)
        hint = f"add 'where {v} in lo:hi'"
        data = [c for c in cons if c.data and any(isinstance(x, Index) and x.name == v for x in walk(c.access))]
        multi = [c for c in cons if c.form is not None and v in c.form.coeffs]
        if multi:
            text = format_expr(multi[0].access)
            return self.error(
                f"cannot infer the range of '{v}': every read it indexes ({text}) also depends on another "
                f"index without a range; {hint}",
                loc,
            )
        if data:
            return self.error(
                f"cannot infer the range of '{v}': it only indexes {format_expr(data[0].access)} at a "
                f"data-dependent position; {hint}",
                loc,
            )
        if v in s.indices and self.typed.tensors[s.tensor].role is not Role.INPUT:
            return self.error(
                f"cannot infer the range of '{v}': it appears only on the left-hand side; {hint} "
                f"or declare the sizes of '{s.tensor}' (e.g. -> (float(N, M) {s.tensor}))",
                loc,
            )
        return self.error(f"cannot infer the range of '{v}': no read is indexed by it; {hint}", loc)
