"""Tensor dimensions: an ``int`` or a symbolic expression over integer symbols.

``Sym`` wraps a sympy expression so that dims are hashable, frozen and print
the same way everywhere.  Arithmetic on dims folds to ``int`` whenever the
result is constant, so code can test ``isinstance(d, int)`` for "known".

Dims are kept in a canonical form (sympy's ``expand``, which also folds
``floor`` and ``Mod`` of integer expressions), so that equal expressions are
equal objects: ``2*(a+b)`` and ``2*a + 2*b`` are the same ``Sym``, and so are
``(4*a)//2`` and ``2*a``.  Every symbol is an integer >= 1.  The ``d_*``
helpers are the dim algebra (+, -, *, floor-div, mod, min, max) with ``None``
(unknown) propagating; ``Facts`` adds what an analysis has proven (a symbol's
divisibility); ``compile_dims`` turns a set of dims into one plain-integer
Python function for fast evaluation.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Union

import sympy

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Sym:
    """A symbolic dimension: an integer-valued sympy expression."""

    expr: sympy.Expr

    @staticmethod
    def named(name: str) -> Sym:
        """The symbol called ``name`` (see ``symbol``)."""
        return Sym(symbol(name))

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(s.name for s in self.expr.free_symbols)  # type: ignore[attr-defined]

    @property
    def is_symbol(self) -> bool:
        return isinstance(self.expr, sympy.Symbol)

    def evaluate(self, env: dict[str, int]) -> int | None:
        """The value under ``env``, or None if a symbol is unbound."""
        subs = {}
        for s in self.expr.free_symbols:
            name = s.name  # type: ignore[attr-defined]
            if name not in env:
                return None
            subs[s] = env[name]
        return int(self.expr.subs(subs))

    def __str__(self) -> str:
        return str(self.expr)


def symbol(name: str) -> sympy.Symbol:
    """The sympy symbol for dim name ``name``.

    A symbol is an integer >= 1, except one whose name starts with ``_``: an
    analysis names the sizes it introduces (a NonZero count, a loop's
    iteration index or count) that way, and those may be 0.
    """
    if name.startswith("_"):
        return sympy.Symbol(name, integer=True, nonnegative=True)
    return sympy.Symbol(name, integer=True, positive=True)


Dim = Union[int, Sym, None]
"""A dimension: a known size, a symbolic expression, or ``None`` (unknown)."""


def sym_dim(expr: sympy.Expr | int) -> int | Sym:
    """Wrap ``expr`` in canonical form, folding constants to ``int``.

    >>> a, b = Sym.named("a").expr, Sym.named("b").expr
    >>> sym_dim(2 * (a + b)) == sym_dim(2 * a + 2 * b)
    True
    >>> str(sym_dim(sympy.floor(4 * a / 2)))
    '2*a'
    """
    if isinstance(expr, int):
        return expr
    expr = canonical(sympy.sympify(expr))
    if expr.is_Integer:
        return int(expr)
    return Sym(expr)


@functools.lru_cache(maxsize=1 << 16)
def canonical(expr: sympy.Expr) -> sympy.Expr:
    """The canonical form of an integer expression (expanded; floor/Mod folded where exact)."""
    if expr.is_Atom:
        return expr
    return sympy.expand(expr)


def dim_expr(d: int | Sym) -> sympy.Expr:
    return sympy.Integer(d) if isinstance(d, int) else d.expr


def parse_dim(text: str) -> Dim:
    """Parse a printed dim: an integer, ``?`` or an expression over symbols."""
    text = text.strip()
    if text == "?":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if _IDENT.match(text):
        return Sym.named(text)
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    local = {n: symbol(n) for n in names}
    local.update({"Max": sympy.Max, "Min": sympy.Min, "floor": sympy.floor, "ceiling": sympy.ceiling, "Mod": sympy.Mod})
    try:
        expr = sympy.parse_expr(text, local_dict=local)
    except (SyntaxError, TypeError, sympy.SympifyError) as e:
        raise ValueError(f"bad dimension expression '{text}': {e}") from None
    return sym_dim(expr)


def format_dim(d: Dim) -> str:
    if d is None:
        return "?"
    return str(d)


def symbol_name_for(param: str) -> str:
    """A valid symbol name for an ONNX ``dim_param`` string."""
    if _IDENT.match(param):
        return param
    name = re.sub(r"[^A-Za-z0-9_]", "_", param)
    if not name or name[0].isdigit():
        name = "s_" + name
    return name


# -- the dim algebra -----------------------------------------------------------
# NOTE: each helper takes the int fast path first: most dims are constants, and
# sympy costs tens of microseconds per operation.


def _e(d: int | Sym) -> sympy.Expr:
    return sympy.Integer(d) if isinstance(d, int) else d.expr


def d_add(a: Dim, b: Dim) -> Dim:
    """``a + b`` (None if either is unknown)."""
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return sym_dim(_e(a) + _e(b))


def d_sub(a: Dim, b: Dim) -> Dim:
    """``a - b``."""
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a - b
    return sym_dim(_e(a) - _e(b))


def d_mul(a: Dim, b: Dim) -> Dim:
    """``a * b``."""
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 0 or b == 0:
        return 0
    return sym_dim(_e(a) * _e(b))


def d_floordiv(a: Dim, b: Dim) -> Dim:
    """``a // b`` rounding toward minus infinity; exact when ``b`` divides ``a``'s polynomial.

    >>> L = Sym.named("L")
    >>> str(d_floordiv(d_mul(L, 6), 3)), str(d_floordiv(L, 2))
    ('2*L', 'floor(L/2)')
    """
    if a is None or b is None or b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    q = sympy.cancel(_e(a) / _e(b))
    if is_integer_polynomial(q):
        return sym_dim(q)
    return sym_dim(sympy.floor(q))


def d_ceildiv(a: Dim, b: Dim) -> Dim:
    """``ceil(a / b)``."""
    if a is None or b is None or b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    q = sympy.cancel(_e(a) / _e(b))
    if is_integer_polynomial(q):
        return sym_dim(q)
    return sym_dim(sympy.ceiling(q))


def d_mod(a: Dim, b: Dim) -> Dim:
    """``a mod b`` with the sign of ``b`` (Python's ``%``)."""
    if a is None or b is None or b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a % b
    if is_integer_polynomial(sympy.cancel(_e(a) / _e(b))):
        return 0
    return sym_dim(sympy.Mod(_e(a), _e(b)))


def d_max(a: Dim, b: Dim) -> Dim:
    """``max(a, b)``; folds when one side is provably the larger."""
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    if a == b or provably_le(b, a):
        return a
    if provably_le(a, b):
        return b
    return sym_dim(sympy.Max(_e(a), _e(b)))


def d_min(a: Dim, b: Dim) -> Dim:
    """``min(a, b)``; folds when one side is provably the smaller."""
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    if a == b or provably_le(a, b):
        return a
    if provably_le(b, a):
        return b
    return sym_dim(sympy.Min(_e(a), _e(b)))


def is_integer_polynomial(e: sympy.Expr) -> bool:
    """Whether ``e`` is a polynomial in its symbols with integer coefficients (an exact integer quotient)."""
    if not e.is_polynomial():
        return False
    try:
        coeffs = sympy.Poly(e, *sorted(e.free_symbols, key=str)).coeffs() if e.free_symbols else [e]
    except sympy.PolynomialError:
        return False
    return all(c.is_Integer for c in coeffs)


@functools.lru_cache(maxsize=1 << 16)
def _nonneg(e: sympy.Expr) -> bool | None:
    """Whether ``e >= 0`` for all symbols >= 1: True, False (proven negative somewhere), or None."""
    if e.is_Integer:
        return int(e) >= 0
    if e.is_polynomial() and e.free_symbols:
        # NOTE: with a symbol s >= 1 (or >= 0), write s = 1 + t (t >= 0): nonnegative coefficients prove e >= 0.
        shifted = sympy.expand(e.subs({s: s + 1 for s in e.free_symbols if s.is_positive}))
        coeffs = sympy.Poly(shifted, *sorted(e.free_symbols, key=str)).coeffs()
        if all(c >= 0 for c in coeffs):
            return True
        if all(c <= 0 for c in coeffs) and any(c < 0 for c in coeffs):
            return False
        return None
    r = e.is_nonnegative
    return None if r is None else bool(r)


def provably_le(a: Dim, b: Dim) -> bool:
    """True only if ``a <= b`` for every value of the symbols (each >= 1, or >= 0, see ``symbol``).

    >>> L = Sym.named("L")
    >>> provably_le(1, L), provably_le(L, d_add(L, 1)), provably_le(L, 4)
    (True, True, False)
    """
    if a is None or b is None:
        return False
    if isinstance(a, int) and isinstance(b, int):
        return a <= b
    return _nonneg(canonical(_e(b) - _e(a))) is True


def dims_equal(a: Dim, b: Dim) -> bool:
    """Whether two dims are provably equal (unknowns are never equal)."""
    if a is None or b is None:
        return False
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return canonical(_e(a) - _e(b)) == 0


def dim_symbols(d: Dim) -> frozenset[str]:
    return d.symbols if isinstance(d, Sym) else frozenset()


def substitute(d: Dim, mapping: dict[str, int | Sym]) -> Dim:
    """``d`` with symbols replaced (symbol name -> dim)."""
    if not isinstance(d, Sym) or not mapping:
        return d
    subs = {s: _e(mapping[s.name]) for s in d.expr.free_symbols if s.name in mapping}  # type: ignore[attr-defined]
    if not subs:
        return d
    return sym_dim(d.expr.xreplace(subs))


@dataclass
class Facts:
    """What an analysis has proven about symbols, used to simplify dims.

    Every symbol is >= 1 without saying so; ``divisible`` records that a
    symbol is a multiple of a number.

    >>> L = Sym.named("L")
    >>> f = Facts(divisible={"L": 4})
    >>> str(f.simplify(d_mul(d_floordiv(L, 4), 4))), f.simplify(d_mod(L, 2))
    ('L', 0)
    """

    divisible: dict[str, int] = field(default_factory=dict)
    nonnegative: set[sympy.Expr] = field(default_factory=set)
    """Expressions known to be >= 0 (every dim of a tensor that exists is)."""
    upper: dict[str, Dim] = field(default_factory=dict)
    """Upper bounds of symbols (a loop's iteration index is at most its trip count - 1)."""

    def le(self, a: Dim, b: Dim) -> bool:
        """``provably_le`` that also uses the bounds: a bounded symbol is replaced by its worst case."""
        if provably_le(a, b):
            return True
        if a is None or b is None or not self.upper:
            return False
        e = canonical(_e(b) - _e(a))
        for _ in range(4):
            bounded = [s for s in e.free_symbols if s.name in self.upper and self.upper[s.name] is not None]  # type: ignore[attr-defined]
            if not bounded:
                break
            s = bounded[0]
            if not e.is_polynomial(s) or sympy.degree(e, s) != 1:
                return False
            c = canonical(e.coeff(s))
            if _nonneg(c) is True:
                e = canonical(e.xreplace({s: 0}))  # NOTE: symbols here are >= 0
            elif _nonneg(-c) is True:
                e = canonical(e.xreplace({s: _e(self.upper[s.name])}))  # type: ignore[attr-defined, arg-type]
            else:
                return False
        return _nonneg(e) is True

    def simplify(self, d: Dim) -> Dim:
        if isinstance(d, Sym) and (self.nonnegative or self.upper) and d.expr.has(sympy.Max, sympy.Min):
            d = sym_dim(d.expr.replace(lambda x: isinstance(x, (sympy.Max, sympy.Min)), self._fold_minmax))
        if not isinstance(d, Sym) or not self.divisible:
            return d
        names = d.symbols & set(self.divisible)
        if not names:
            return d
        # NOTE: write s = k*s' for each s divisible by k, let sympy fold floor/Mod, then map back.
        fwd, back = {}, {}
        for n in names:
            s = symbol(n)
            q = symbol(f"{n}__q")
            fwd[s] = self.divisible[n] * q
            back[q] = s / self.divisible[n]
        e = canonical(d.expr.xreplace(fwd))
        return sym_dim(e.xreplace(back))


    def _fold_minmax(self, m: sympy.Expr) -> sympy.Expr:
        # NOTE: drop an argument that another provably dominates; a constant <= 0 beside a term
        # known to be nonnegative (a dim) is dominated too.
        args = list(m.args)
        is_max = isinstance(m, sympy.Max)
        keep: list[sympy.Expr] = []
        for k, x in enumerate(args):
            dominated = False
            for j, y in enumerate(args):
                if j == k or (j > k and self._le_expr(x, y) and self._le_expr(y, x)):
                    continue
                if is_max and (self._le_expr(x, y) or (x.is_Integer and int(x) <= 0 and y in self.nonnegative)):
                    dominated = True
                elif not is_max and self._le_expr(y, x):
                    dominated = True
                if dominated:
                    break
            if not dominated:
                keep.append(x)
        if not keep:
            keep = [args[0]]
        return (sympy.Max if is_max else sympy.Min)(*keep) if len(keep) > 1 else keep[0]

    def _le_expr(self, a: sympy.Expr, b: sympy.Expr) -> bool:
        return self.le(sym_dim(a), sym_dim(b))

    def note_dims(self, dims: Iterable[Dim]) -> None:
        """Record that these dims (of a tensor that exists) are >= 0."""
        for d in dims:
            if isinstance(d, Sym) and not d.expr.is_Symbol:
                self.nonnegative.add(d.expr)


# -- evaluation ------------------------------------------------------------------


class _PyPrinter:
    """Prints a canonical integer expression as Python integer arithmetic."""

    def __call__(self, e: sympy.Expr) -> str:
        if e.is_Integer:
            return str(int(e))
        if e.is_Symbol:
            return _py_name(e.name)  # type: ignore[attr-defined]
        if e.is_Rational:
            raise ValueError(f"non-integer constant {e} in a dim")
        if isinstance(e, sympy.Add):
            # NOTE: a sum with rational coefficients is an integer overall; scale to a common denominator.
            den = sympy.ilcm(*[sympy.fraction(t.as_coeff_Mul()[0])[1] for t in e.args])
            if den != 1:
                return f"(({self(sympy.expand(e * den))}) // {den})"
            return "(" + " + ".join(self(t) for t in e.args) + ")"
        if isinstance(e, sympy.Mul):
            c, rest = e.as_coeff_Mul()
            num, den = sympy.fraction(c)
            factors = [self(f) for f in sympy.Mul.make_args(rest)]
            body = " * ".join([str(int(num))] * (num != 1) + factors)
            return f"(({body}) // {int(den)})" if den != 1 else f"({body})"
        if isinstance(e, sympy.Pow) and e.exp.is_Integer and int(e.exp) > 0:
            return f"({self(e.base)} ** {int(e.exp)})"
        if isinstance(e, sympy.floor):
            n, d = sympy.fraction(sympy.together(e.args[0]))
            return f"({self(sympy.expand(n))} // {self(sympy.expand(d))})"
        if isinstance(e, sympy.ceiling):
            n, d = sympy.fraction(sympy.together(e.args[0]))
            return f"(-(-{self(sympy.expand(n))} // {self(sympy.expand(d))}))"
        if isinstance(e, sympy.Mod):
            return f"({self(e.args[0])} % {self(e.args[1])})"
        if isinstance(e, (sympy.Max, sympy.Min)):
            fn = "max" if isinstance(e, sympy.Max) else "min"
            return f"{fn}({', '.join(self(a) for a in e.args)})"
        raise ValueError(f"cannot evaluate dim expression {e} ({type(e).__name__})")


def _py_name(name: str) -> str:
    return f"s_{name}"


def compile_dims(dims: Sequence[Dim], symbols: Iterable[str] | None = None) -> Callable[[dict[str, int]], tuple[int | None, ...]]:
    """One Python function computing ``dims`` from a symbol -> value mapping.

    The expressions are simplified once here and compiled to integer
    arithmetic, so evaluating them per call costs a few microseconds.
    Unknown dims (None) evaluate to None; a missing symbol raises KeyError.

    >>> L, P = Sym.named("L"), Sym.named("P")
    >>> f = compile_dims([d_add(L, P), d_floordiv(L, 2), 7, None])
    >>> f({"L": 5, "P": 3})
    (8, 2, 7, None)
    """
    names = set(symbols or ())
    for d in dims:
        names |= dim_symbols(d)
    pr = _PyPrinter()
    parts = ["None" if d is None else str(d) if isinstance(d, int) else pr(d.expr) for d in dims]
    lines = ["def _f(env):"]
    lines += [f"    {_py_name(n)} = env[{n!r}]" for n in sorted(names)]
    lines.append(f"    return ({', '.join(parts)}{',' if len(parts) == 1 else ''})")
    ns: dict[str, object] = {}
    # NOTE: the source is generated above from sympy expressions only
    exec("\n".join(lines), ns)
    return ns["_f"]  # type: ignore[return-value]
