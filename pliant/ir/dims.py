"""Tensor dimensions: an ``int`` or a symbolic expression over integer symbols.

``Sym`` wraps a sympy expression so that dims are hashable, frozen and print
the same way everywhere.  Arithmetic on dims folds to ``int`` whenever the
result is constant, so code can test ``isinstance(d, int)`` for "known".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

import sympy

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Sym:
    """A symbolic dimension: an integer-valued sympy expression."""

    expr: sympy.Expr

    @staticmethod
    def named(name: str) -> Sym:
        """The symbol called ``name`` (symbols are positive integers)."""
        return Sym(sympy.Symbol(name, integer=True, positive=True))

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


Dim = Union[int, Sym, None]
"""A dimension: a known size, a symbolic expression, or ``None`` (unknown)."""


def sym_dim(expr: sympy.Expr | int) -> int | Sym:
    """Wrap ``expr``, folding constants to ``int``."""
    if isinstance(expr, int):
        return expr
    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return int(expr)
    return Sym(expr)


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
    local = {n: sympy.Symbol(n, integer=True, positive=True) for n in names}
    local.update({"Max": sympy.Max, "Min": sympy.Min, "floor": sympy.floor, "Mod": sympy.Mod})
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
