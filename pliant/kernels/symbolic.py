"""Size expressions (sympy, over size symbols) printed as exact integer C or Python.

Range inference produces sums, products, ``floor``/``ceiling`` of quotients
and ``Min``/``Max``.  Both printers keep integer arithmetic exact: a quotient
is printed as a floor division of an integer numerator by an integer
denominator, never through floating point.

>>> import sympy
>>> n, k = sympy.symbols("N K", integer=True, positive=True)
>>> to_py(sympy.floor((n - k) / 2) + 1)
'(1 + ((N + (-K)) // 2))'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy


def _name_default(s: sympy.Symbol) -> str:
    return str(s.name)


class _Printer:
    def __init__(self, name: Callable[[sympy.Symbol], str], c: bool) -> None:
        self.name, self.c = name, c

    def floordiv(self, num: str, den: str) -> str:
        return f"pl_floordiv_i64({num}, {den})" if self.c else f"({num} // {den})"

    def minmax(self, fn: str, args: list[str]) -> str:
        if not self.c:
            return f"{fn}({', '.join(args)})"
        out = args[0]
        for a in args[1:]:
            out = f"pl_{fn}_i64({out}, {a})"
        return out

    def __call__(self, e: sympy.Expr) -> str:
        if e.is_Integer:
            v = int(e)
            text = str(v) if not self.c or -(2**31) < v < 2**31 else f"INT64_C({v})"
            return text if v >= 0 else f"({text})"
        if e.is_Symbol:
            return self.name(e)  # type: ignore[arg-type]
        if isinstance(e, sympy.Add):
            return "(" + " + ".join(self(a) for a in e.args) + ")"
        if isinstance(e, sympy.Mul):
            coeff, rest = e.as_coeff_Mul()
            if not coeff.is_Integer:
                raise ValueError(f"size expression {e} is not integral")
            if coeff == -1:
                return f"(-{self(rest)})"
            parts = ([] if coeff == 1 else [self(coeff)]) + [self(a) for a in sympy.Mul.make_args(rest)]
            return "(" + " * ".join(parts) + ")"
        if isinstance(e, sympy.Pow) and e.exp.is_Integer and int(e.exp) > 0:
            return "(" + " * ".join([self(e.base)] * int(e.exp)) + ")"
        if isinstance(e, sympy.floor | sympy.ceiling):
            num, den = sympy.together(e.args[0]).as_numer_denom()
            if not den.is_Integer:
                raise ValueError(f"size expression {e} divides by a non-constant")
            if isinstance(e, sympy.floor):
                return self(num) if den == 1 else self.floordiv(self(num), str(int(den)))
            return self(num) if den == 1 else f"(-{self.floordiv(self(-num), str(int(den)))})"
        if isinstance(e, sympy.Min | sympy.Max):
            return self.minmax("min" if isinstance(e, sympy.Min) else "max", [self(a) for a in e.args])
        raise ValueError(f"cannot print size expression {e}")


def to_c(e: sympy.Expr, name: Callable[[sympy.Symbol], str] = _name_default) -> str:
    """C text of ``e`` as ``int64_t`` arithmetic (needs the ``pl_*_i64`` helpers)."""
    return _Printer(name, True)(sympy.sympify(e))


def to_py(e: sympy.Expr, name: Callable[[sympy.Symbol], str] = _name_default) -> str:
    """Python text of ``e`` with exact integer arithmetic."""
    return _Printer(name, False)(sympy.sympify(e))


def compile_py(exprs: list[sympy.Expr]) -> Callable[[Mapping[str, int]], tuple[int, ...]]:
    """A fast function ``env -> values of exprs`` (env maps size names to ints)."""
    body = ", ".join(to_py(e, lambda s: f"env[{str(s.name)!r}]") for e in exprs)
    code = f"lambda env: ({body}{',' if len(exprs) == 1 else ''})"
    fn: Callable[[Mapping[str, int]], tuple[int, ...]] = eval(code, {"min": min, "max": max})
    return fn
