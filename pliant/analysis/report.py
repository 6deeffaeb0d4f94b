"""What ``pliant analyze`` reports: shapes per value, dim shares, symbols, peak memory.

``analysis_json(module, analysis)`` builds the JSON document::

    {"values": {name: {"shape": [1, "L", "?"] | null, "dtype": "float32", "class": "ISDOS"}},
     "summary": {"op_classes": {...}, "dims": {...}, "input_symbols": [...], ...}}

A dim is an int, an expression string over symbols (``"past + seq"``), or
``"?"`` when unknown; a shape of unknown rank is ``null``.  ``class`` is the
dynamism class of the op that produces the value ("input" for function
arguments, "argument" for region arguments).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import sympy

from pliant.analysis.liveness import last_uses
from pliant.analysis.rdp import ShapeAnalysis, iter_values
from pliant.ir.core import Block, Function, Module, Op, Value
from pliant.ir.dims import Dim, Sym, d_add, d_mul, dim_symbols, provably_le
from pliant.ir.types import OptionalType, SequenceType, TensorType, Type
from pliant.ops import registry


def dim_json(d: Dim) -> int | str:
    if d is None:
        return "?"
    if isinstance(d, int):
        return d
    return str(d)


def shape_json(t: Type) -> list[int | str] | None:
    if isinstance(t, (SequenceType, OptionalType)):
        return shape_json(t.elem)
    if not isinstance(t, TensorType) or t.shape is None:
        return None
    return [dim_json(d) for d in t.shape]


def dtype_json(t: Type) -> str | None:
    if isinstance(t, (SequenceType, OptionalType)):
        return dtype_json(t.elem)
    if isinstance(t, TensorType) and t.dtype is not None:
        return str(np.dtype(t.dtype.numpy)) if t.dtype.numpy is not object else "string"
    return None


def value_class(v: Value) -> str:
    op = v.defining_op
    if op is None:
        return "input" if isinstance(v.owner, Block) and isinstance(v.owner.parent, Function) else "argument"
    d = registry.lookup(op.name, op.domain)
    return d.dynamism.value if d is not None else "?"


def classify_dim(d: Dim, input_symbols: set[str]) -> str:
    """'constant', 'symbolic' (an expression of the input symbols), 'data' (needs run-time sizes) or 'unknown'."""
    if d is None:
        return "unknown"
    if isinstance(d, int):
        return "constant"
    return "symbolic" if d.symbols <= input_symbols else "data"


def analysis_json(module: Module, analysis: ShapeAnalysis) -> dict[str, Any]:
    """The JSON document described in the module docstring."""
    inputs = set(analysis.input_symbols)
    values: dict[str, Any] = {}
    shares: Counter[str] = Counter()
    for v in iter_values(module):
        t = v.type
        if isinstance(t, TensorType) and t.shape is not None:
            for d in t.shape:
                shares[classify_dim(d, inputs)] += 1
        elif isinstance(t, TensorType):
            shares["unknown rank"] += 1
        if v.name and v.name not in values:
            values[v.name] = {"shape": shape_json(t), "dtype": dtype_json(t), "class": value_class(v)}
    classes: Counter[str] = Counter()
    for op in module.walk():
        od = registry.lookup(op.name, op.domain)
        classes[od.dynamism.value if od is not None else "?"] += 1
    total = sum(n for k, n in shares.items() if k != "unknown rank") or 1
    peak = peak_memory(module)
    return {
        "values": values,
        "summary": {
            "ops": sum(classes.values()),
            "op_classes": dict(sorted(classes.items())),
            "dims": {k: shares.get(k, 0) for k in ("constant", "symbolic", "data", "unknown", "unknown rank")},
            "dim_shares": {k: round(shares.get(k, 0) / total, 4) for k in ("constant", "symbolic", "data", "unknown")},
            "input_symbols": sorted(inputs),
            "iteration_symbols": sorted(s.name for s in analysis.symbols_of_kind("iteration")),
            "data_symbols": [
                {"name": s.name, "kind": s.kind, "origin": s.origin,
                 "upper": dim_json(s.upper) if s.upper is not None else None}
                for s in analysis.symbols_of_kind("data", "count", "join")
            ],
            "equalities": [f"{a} == {b}" for a, b in analysis.equalities],
            "conflicts": analysis.conflicts,
            "peak_memory_bytes": dim_json(peak.bytes),
            "peak_memory_complete": peak.complete,
            "rounds": analysis.rounds,
            "analysis_seconds": round(analysis.seconds, 4),
        },
    }


# -- peak memory ------------------------------------------------------------------


class Peak:
    """The largest live set of activation tensors, as a dim expression of bytes."""

    def __init__(self, bytes_: Dim, complete: bool) -> None:
        self.bytes = bytes_
        self.complete = complete
        """False when some live tensor had an unknown size (then ``bytes`` is a lower bound)."""


def tensor_bytes(t: Type) -> Dim:
    if not isinstance(t, TensorType) or t.shape is None or t.dtype is None or t.dtype.numpy is object:
        return None
    acc: Dim = int(np.dtype(t.dtype.numpy).itemsize)
    for d in t.shape:
        acc = d_mul(acc, d)
    return acc


def peak_memory(module: Module, order: list[Op] | None = None) -> Peak:
    """The peak of live activation bytes over the entry function in program (or the given) order.

    Constants (weights) are not activations and are left out; inputs count
    while they are used.  A region's own peak is added to what is live around
    the op that owns it.  The result is the max of the candidate live-set
    sizes that no other candidate provably dominates.
    """
    cands, complete = _block_peak(module.entry.body, order)
    return Peak(_max_of(cands), complete)


def _block_peak(block: Block, order: list[Op] | None = None) -> tuple[list[Dim], bool]:
    ops = order if order is not None else block.ops
    last_use = last_uses(ops)
    for v in block.outputs:
        last_use[v] = len(ops)
    live: dict[Value, Dim] = {}
    complete = True
    for v in block.args:
        if v in last_use:
            live[v] = tensor_bytes(v.type)
    cands: list[Dim] = []
    for k, op in enumerate(ops):
        if op.name == "Constant":
            continue
        for r in op.results:
            if r in last_use or not r.uses:
                live[r] = tensor_bytes(r.type)
        inner: list[Dim] = [0]
        for region in op.regions.values():
            sub, ok = _block_peak(region.block)
            complete &= ok
            inner.append(_max_of(sub))
        total: Dim = 0
        for b in live.values():
            if b is None:
                complete = False
                continue
            total = d_add(total, b)
        cands.append(d_add(total, _max_of(inner)))
        for v in list(live):
            if last_use.get(v, -1) <= k and v not in block.outputs:
                del live[v]
    return [c for c in cands if c is not None], complete


_SAMPLES = (1, 7, 64, 512, 4096)


def _max_of(cands: list[Dim]) -> Dim:
    """The max of ``cands``, keeping only candidates that are largest at some sample point and not dominated."""
    uniq = list(dict.fromkeys(c for c in cands if c is not None))
    if not uniq:
        return 0
    ints = [c for c in uniq if isinstance(c, int)]
    syms = [c for c in uniq if isinstance(c, Sym)]
    if not syms:
        return max(ints)
    names = sorted(set().union(*(dim_symbols(c) for c in syms)))
    from pliant.ir.dims import compile_dims

    f = compile_dims(uniq, names)
    keep: set[int] = set()
    for s in _SAMPLES:
        vals = f(dict.fromkeys(names, s))
        best = max(v for v in vals if v is not None)
        keep |= {i for i, v in enumerate(vals) if v == best}
    kept = [uniq[i] for i in sorted(keep)]
    pruned = [c for c in kept if not any(o is not c and provably_le(c, o) and not provably_le(o, c) for o in kept)]
    if len(pruned) == 1:
        return pruned[0]
    # NOTE: the candidates are already pruned; sympy's own Max would compare every pair again, slowly
    return Sym(sympy.Max(*(sympy.Integer(c) if isinstance(c, int) else c.expr for c in pruned), evaluate=False))


def text_report(module: Module, analysis: ShapeAnalysis, doc: dict[str, Any], *, limit: int | None = None) -> str:
    """The human-readable form of ``pliant analyze``."""
    s = doc["summary"]
    lines = [f"analysed {s['ops']} ops in {s['analysis_seconds']:.3f} s ({s['rounds']} round(s))", ""]
    lines.append("op classes: " + ", ".join(f"{k} {v}" for k, v in s["op_classes"].items()))
    dims = s["dims"]
    total = sum(dims[k] for k in ("constant", "symbolic", "data", "unknown")) or 1
    lines.append("dims: " + ", ".join(f"{k} {dims[k]} ({100 * dims[k] / total:.1f}%)"
                                      for k in ("constant", "symbolic", "data", "unknown"))
                 + (f"; {dims['unknown rank']} value(s) of unknown rank" if dims["unknown rank"] else ""))
    lines.append("input symbols: " + (", ".join(s["input_symbols"]) or "(none)"))
    if s["equalities"]:
        lines.append("proven equal: " + "; ".join(s["equalities"]))
    if s["iteration_symbols"]:
        lines.append("loop iteration indices: " + ", ".join(s["iteration_symbols"]))
    for d in s["data_symbols"]:
        bound = f" (<= {d['upper']})" if d["upper"] is not None else ""
        lines.append(f"run-time size {d['name']}{bound}: {d['origin']}")
    peak = s["peak_memory_bytes"]
    lines.append(f"peak activation memory: {peak} bytes" + ("" if s["peak_memory_complete"] else " (lower bound: some sizes unknown)"))
    for c in s["conflicts"]:
        lines.append(f"shape conflict: {c}")
    lines.append("")
    lines.append("values:")
    items = list(doc["values"].items())
    for name, v in items[:limit] if limit else items:
        shape = "*" if v["shape"] is None else "[" + ", ".join(str(d) for d in v["shape"]) + "]"
        lines.append(f"  {name}: {v['dtype'] or '?'}{shape}  {v['class']}")
    if limit and len(items) > limit:
        lines.append(f"  ... {len(items) - limit} more (use --all or --json)")
    return "\n".join(lines) + "\n"
