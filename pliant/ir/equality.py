"""Structural equality of modules, reporting the first difference."""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.ir.core import Block, Module, Value


def module_difference(a: Module, b: Module) -> str | None:
    """None if ``a`` and ``b`` are structurally equal, else where they first differ.

    Values are matched by position (operands, results, block arguments), so two
    modules are equal when they compute the same thing the same way: same ops,
    attributes, types, names, regions and function signatures.
    """
    if a.main != b.main:
        return f"entry functions differ: {a.main} vs {b.main}"
    if a.metadata != b.metadata:
        return f"metadata differs: {a.metadata} vs {b.metadata}"
    if a.opsets != b.opsets:
        return f"opsets differ: {a.opsets} vs {b.opsets}"
    if list(a.functions) != list(b.functions):
        return f"functions differ: {list(a.functions)} vs {list(b.functions)}"
    for name in a.functions:
        fa, fb = a.functions[name], b.functions[name]
        if fa.result_names != fb.result_names:
            return f"function {name}: result names differ: {fa.result_names} vs {fb.result_names}"
        diff = _block_difference(fa.body, fb.body, {}, f"function {name}")
        if diff:
            return diff
    return None


def _block_difference(a: Block, b: Block, vmap: dict[Value, Value], where: str) -> str | None:
    if len(a.args) != len(b.args):
        return f"{where}: {len(a.args)} vs {len(b.args)} block arguments"
    for x, y in zip(a.args, b.args):
        d = _value_difference(x, y, where)
        if d:
            return d
        vmap[x] = y
    if len(a.ops) != len(b.ops):
        return f"{where}: {len(a.ops)} vs {len(b.ops)} ops"
    for i, (p, q) in enumerate(zip(a.ops, b.ops)):
        at = f"{where}, op {i} ({p.qualname})"
        if (p.name, p.domain, p.label) != (q.name, q.domain, q.label):
            return f"{at}: op differs: {p.qualname} '{p.label}' vs {q.qualname} '{q.label}'"
        if len(p.operands) != len(q.operands):
            return f"{at}: {len(p.operands)} vs {len(q.operands)} operands"
        for k, (xo, yo) in enumerate(zip(p.operands, q.operands)):
            if (xo is None) != (yo is None) or (xo is not None and vmap.get(xo) is not yo):
                return f"{at}: operand {k} differs"
        if set(p.attrs) != set(q.attrs):
            return f"{at}: attribute names differ: {sorted(p.attrs)} vs {sorted(q.attrs)}"
        for key in p.attrs:
            if not attrs_equal(p.attrs[key], q.attrs[key]):
                return f"{at}: attribute '{key}' differs: {p.attrs[key]!r} vs {q.attrs[key]!r}"
        if len(p.results) != len(q.results):
            return f"{at}: {len(p.results)} vs {len(q.results)} results"
        for x, y in zip(p.results, q.results):
            d = _value_difference(x, y, at)
            if d:
                return d
            vmap[x] = y
        if list(p.regions) != list(q.regions):
            return f"{at}: regions differ: {list(p.regions)} vs {list(q.regions)}"
        for key in p.regions:
            d = _block_difference(p.regions[key].block, q.regions[key].block, vmap, f"{at}, region {key}")
            if d:
                return d
    if len(a.outputs) != len(b.outputs):
        return f"{where}: {len(a.outputs)} vs {len(b.outputs)} outputs"
    for k, (x, y) in enumerate(zip(a.outputs, b.outputs)):
        if vmap.get(x) is not y:
            return f"{where}: output {k} differs"
    return None


def _value_difference(x: Value, y: Value, where: str) -> str | None:
    if x.type != y.type:
        return f"{where}: value {x.name or x.index} has type {x.type} vs {y.type}"
    if x.name != y.name:
        return f"{where}: value names differ: {x.name!r} vs {y.name!r}"
    return None


def attrs_equal(x: Any, y: Any) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            return False
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        if x.dtype == object:
            return bool(np.all(x == y))
        return x.tobytes() == y.tobytes()
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(attrs_equal(p, q) for p, q in zip(x, y))
    if isinstance(x, float) and isinstance(y, float) and x != x and y != y:
        return True
    return type(x) is type(y) and bool(x == y)
