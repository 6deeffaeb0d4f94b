"""Check an analysis against a real run: every inferred dim and symbolic value must hold.

``check_soundness(module, analysis, feeds)`` runs the reference interpreter
on ``feeds`` and, after every op and at the start of every block execution,
evaluates the types and symbolic values that ``analyze`` wrote against what
actually happened.  Input symbols are bound from the feeds; a loop's
iteration symbol from its body's iteration argument; every other symbol
(data-dependent sizes, joins, iteration counts) is bound where it is first
observed, in the scope of the block whose executions may change it, and must
agree everywhere after.  Any disagreement is a ``Mismatch``: a bug in a shape
rule or in the analysis, never something to tolerate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from pliant.analysis.rdp import ShapeAnalysis
from pliant.interpreter import Interpreter, check_feeds
from pliant.ir.core import Block, Module, Op, Value
from pliant.ir.dims import Dim, Sym
from pliant.ir.types import OptionalType, SequenceType, TensorType, Type


@dataclass(frozen=True)
class Mismatch:
    """An inferred fact that a run contradicted."""

    where: str
    inferred: str
    actual: str

    def __str__(self) -> str:
        return f"{self.where}: inferred {self.inferred}, actual {self.actual}"


@dataclass
class SoundnessReport:
    mismatches: list[Mismatch]
    checked_dims: int
    checked_elements: int
    unchecked_dims: int
    """Dims whose expression still had unbound symbols when observed."""


def check_soundness(module: Module, analysis: ShapeAnalysis, feeds: Mapping[str, Any]) -> SoundnessReport:
    """Run ``module`` on ``feeds`` and check every type and symbolic value ``analysis`` inferred."""
    checker = _Checker(module, analysis)
    fn = module.entry
    args = check_feeds(fn, feeds)
    checker.run_function(fn, args)
    return SoundnessReport(checker.mismatches, checker.checked_dims, checker.checked_elements, checker.unchecked)


class _Checker(Interpreter):
    def __init__(self, module: Module, analysis: ShapeAnalysis) -> None:
        super().__init__(module)
        self.analysis = analysis
        self.frames: list[dict[Value, Any]]
        self.scopes: list[tuple[Block, dict[str, int]]] = []
        self.mismatches: list[Mismatch] = []
        self.checked_dims = 0
        self.checked_elements = 0
        self.unchecked = 0

    # -- hooks -------------------------------------------------------------------
    def run_block(self, block: Block, args: list[Any]) -> list[Any]:
        self.scopes.append((block, {}))
        try:
            for v, x in zip(block.args, args):
                self._observe(v, x, f"argument {v.name or v.index} of a block")
            return super().run_block(block, args)
        finally:
            self.scopes.pop()

    def _run_op(self, op: Op, env: dict[Value, Any]) -> None:
        super()._run_op(op, env)
        for r in op.results:
            self._observe(r, env.get(r), f"{op.where} result {r.index}" + (f" '{r.name}'" if r.name else ""))

    # -- symbols -----------------------------------------------------------------
    def _lookup(self, name: str) -> int | None:
        for _, env in reversed(self.scopes):
            if name in env:
                return env[name]
        return None

    def _bind(self, name: str, value: int) -> None:
        info = self.analysis.symbols.get(name)
        if info is not None:
            for bound, ok in ((info.upper, lambda b: value <= b), (info.lower, lambda b: value >= b)):
                if bound is None:
                    continue
                b = bound if isinstance(bound, int) else self._eval(bound, None)
                if b is not None:
                    self.checked_dims += 1
                    if not ok(b):
                        self.mismatches.append(Mismatch(f"bound of {name} ({info.origin})",
                                                        f"{'<=' if bound is info.upper else '>='} {bound} = {b}",
                                                        str(value)))
        target = self.scopes[0][1]
        if info is not None and info.scope is not None:
            for block, env in reversed(self.scopes):
                if block is info.scope:
                    target = env
                    break
        target[name] = value

    def _check_dim(self, d: Dim, actual: int, where: str) -> None:
        if d is None:
            return
        if isinstance(d, int):
            self.checked_dims += 1
            if d != actual:
                self.mismatches.append(Mismatch(where, str(d), str(actual)))
            return
        got = self._eval(d, actual)
        if got is None:
            self.unchecked += 1
            return
        self.checked_dims += 1
        if got != actual:
            self.mismatches.append(Mismatch(where, f"{d} = {got} (with {self._env_text(d)})", str(actual)))

    def _eval(self, d: Sym, actual: int | None) -> int | None:
        """``d``'s value under the bindings; an unbound symbol solved from ``actual`` where that is unique."""
        subs: dict[sympy.Symbol, int] = {}
        free: list[sympy.Symbol] = []
        for s in d.expr.free_symbols:
            v = self._lookup(s.name)  # type: ignore[attr-defined]
            if v is None:
                free.append(s)  # type: ignore[arg-type]
            else:
                subs[s] = v  # type: ignore[index]
        e = d.expr.xreplace(subs)
        if not free:
            return int(e)
        if actual is None or len(free) != 1:
            return None
        s = free[0]
        if e.is_polynomial(s) and sympy.degree(e, s) == 1:
            sol = sympy.solve(sympy.Eq(e, actual), s)
            if len(sol) == 1 and sol[0].is_Integer:
                self._bind(s.name, int(sol[0]))
                return actual
        return None

    def _env_text(self, d: Sym) -> str:
        return ", ".join(f"{n}={self._lookup(n)}" for n in sorted(d.symbols))

    # -- observations --------------------------------------------------------------
    def _observe(self, v: Value, x: Any, where: str) -> None:
        self._observe_type(v.type, x, where)
        val = self.analysis.values.get(v)
        if val is not None and isinstance(x, list) and val.size == 1 and val.reshape(-1)[0] is not None:
            n = val.reshape(-1)[0]
            got = n if isinstance(n, int) else self._eval(n, len(x))
            if got is not None:
                self.checked_elements += 1
                if got != len(x):
                    self.mismatches.append(Mismatch(f"{where} length", str(n), str(len(x))))
            return
        if val is not None and isinstance(x, np.ndarray) and x.size == val.size and x.dtype.kind in "iubf":
            for k, (e, a) in enumerate(zip(val.reshape(-1), x.reshape(-1).tolist())):
                if e is None:
                    continue
                if isinstance(e, Sym) and not e.expr.is_integer:
                    continue  # NOTE: an exact rational in a float tensor; compared after rounding below
                a_int = int(a) if float(a).is_integer() else None
                if a_int is None:
                    self.mismatches.append(Mismatch(f"{where} element {k}", str(e), str(a)))
                    continue
                if isinstance(e, int):
                    self.checked_elements += 1
                    if e != a_int:
                        self.mismatches.append(Mismatch(f"{where} element {k}", str(e), str(a_int)))
                    continue
                got = self._eval(e, a_int)
                if got is None:
                    continue
                self.checked_elements += 1
                if got != a_int:
                    self.mismatches.append(Mismatch(f"{where} element {k}", f"{e} = {got} (with {self._env_text(e)})",
                                                    str(a_int)))

    def _observe_type(self, t: Type, x: Any, where: str) -> None:
        if isinstance(t, SequenceType) and isinstance(x, list):
            for k, e in enumerate(x):
                self._observe_type(t.elem, e, f"{where}[{k}]")
            return
        if isinstance(t, OptionalType):
            if x is not None:
                self._observe_type(t.elem, x, where)
            return
        if not isinstance(t, TensorType) or not isinstance(x, np.ndarray):
            return
        if t.dtype is not None and x.dtype.kind not in "OUS" and t.dtype.numpy != x.dtype:
            self.mismatches.append(Mismatch(where, f"dtype {t.dtype.numpy}", f"dtype {x.dtype}"))
        if t.shape is None:
            return
        if len(t.shape) != x.ndim:
            self.mismatches.append(Mismatch(where, f"rank {len(t.shape)} ({t})", f"shape {list(x.shape)}"))
            return
        # NOTE: bare symbols first, so that expressions over them can be evaluated.
        shape = t.shape
        order = sorted(range(x.ndim), key=lambda i: not (isinstance(shape[i], Sym) and shape[i].is_symbol))  # type: ignore[union-attr]
        for i in order:
            self._check_dim(shape[i], int(x.shape[i]), f"{where} ({t}) axis {i}")
