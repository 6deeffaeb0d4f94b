"""How far a system's outputs are from the reference outputs.

An output matches when its shape agrees and ``|got - ref| <= atol + rtol * max|ref|``
everywhere (integer and boolean outputs must be equal). A shape disagreement —
a different number of detections, a generation that stopped elsewhere — is a
mismatch with an infinite difference, never a silently broadcast comparison.

>>> d = compare_outputs({"y": np.array([1.0, 2.0])}, {"y": np.array([1.0, 2.5])}, atol=1e-4, rtol=1e-3)
>>> d.ok, d.max_abs
(False, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class OutputDiff:
    name: str
    max_abs: float
    max_rel: float
    ok: bool
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Diff:
    outputs: tuple[OutputDiff, ...]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    def summary(self) -> str:
        bad = [o for o in self.outputs if not o.ok]
        if not bad:
            return f"max abs diff {self.max_abs:.3g}"
        return "; ".join(f"{o.name}: {o.problem}" for o in bad)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "max_abs": _finite_or_none(self.max_abs),
            "max_rel": _finite_or_none(self.max_rel),
            "mismatches": {o.name: o.problem for o in self.outputs if not o.ok},
        }


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def compare_output(name: str, got: Any, ref: Any, atol: float, rtol: float) -> OutputDiff:
    if isinstance(ref, list) or isinstance(got, list):
        if not (isinstance(ref, list) and isinstance(got, list)) or len(ref) != len(got):
            return OutputDiff(name, math.inf, math.inf, False, "sequence length or kind differs from the reference")
        parts = [compare_output(f"{name}[{i}]", g, r, atol, rtol) for i, (g, r) in enumerate(zip(got, ref))]
        bad = [p for p in parts if not p.ok]
        return OutputDiff(name, max((p.max_abs for p in parts), default=0.0), max((p.max_rel for p in parts), default=0.0),
                          not bad, bad[0].problem if bad else "")
    g, r = np.asarray(got), np.asarray(ref)
    if g.shape != r.shape:
        return OutputDiff(name, math.inf, math.inf, False, f"shape {list(g.shape)}, reference {list(r.shape)}")
    if r.size == 0:
        return OutputDiff(name, 0.0, 0.0, True)
    if r.dtype.kind in "biu" or g.dtype.kind in "biu":
        differs = int(np.count_nonzero(g.astype(np.int64) != r.astype(np.int64)))
        max_abs = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64))))
        scale = float(np.max(np.abs(r.astype(np.float64)))) or 1.0
        return OutputDiff(name, max_abs, max_abs / scale, differs == 0, f"{differs} of {r.size} values differ (max {max_abs:g})" if differs else "")
    gf, rf = g.astype(np.float64), r.astype(np.float64)
    if not np.array_equal(np.isnan(gf), np.isnan(rf)):
        return OutputDiff(name, math.inf, math.inf, False, "NaN where the reference has none (or the reverse)")
    both = ~np.isnan(rf)
    err = np.abs(gf[both] - rf[both])
    max_abs = float(err.max()) if err.size else 0.0
    scale = float(np.max(np.abs(rf[both]))) if err.size else 0.0
    bound = atol + rtol * scale
    max_rel = max_abs / scale if scale > 0 else max_abs
    ok = max_abs <= bound
    return OutputDiff(name, max_abs, max_rel, ok, "" if ok else f"max abs diff {max_abs:.3g} > {bound:.3g} (atol {atol:g} + rtol {rtol:g} * max|ref| {scale:.3g})")


def compare_outputs(got: Mapping[str, Any], ref: Mapping[str, Any], *, atol: float, rtol: float) -> Diff:
    """Compare every reference output (outputs the reference lacks are not compared)."""
    outs = []
    for name, r in ref.items():
        if name not in got:
            outs.append(OutputDiff(name, math.inf, math.inf, False, "missing from the outputs"))
        else:
            outs.append(compare_output(name, got[name], r, atol, rtol))
    return Diff(tuple(outs))
