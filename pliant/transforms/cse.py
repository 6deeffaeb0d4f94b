"""Common subexpression elimination: an op identical to an earlier one in the same block reuses its results.

Identical means the same op, domain, attributes and operands, and no
regions; constants are identical when their values are (same dtype, shape
and bytes).  Random ops are never merged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from pliant.ir.core import Block, Module, Op

pass_name = "cse"
_NEVER = {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Bernoulli", "Multinomial"}


def cse(module: Module) -> int:
    """Merge identical ops; returns how many were removed."""
    return sum(_block(fn.body) for fn in module.functions.values())


def _key(op: Op) -> Any:
    return (op.name, op.domain, tuple(id(v) for v in op.operands),
            tuple(sorted((k, _attr_key(v)) for k, v in op.attrs.items())), len(op.results))


def _attr_key(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            return (v.dtype.str, v.shape, repr(v.tolist()))
        # NOTE: a digest, not the bytes: keys of every weight at once would double the model's memory
        return (v.dtype.str, v.shape, hashlib.blake2b(np.ascontiguousarray(v).reshape(-1).view(np.uint8).data).digest())
    if isinstance(v, list):
        return tuple(_attr_key(x) for x in v)
    return repr(v)


def _block(block: Block) -> int:
    seen: dict[Any, Op] = {}
    removed = 0
    for op in list(block.ops):
        for region in op.regions.values():
            removed += _block(region.block)
        if op.regions or op.name in _NEVER:
            continue
        key = _key(op)
        prev = seen.get(key)
        if prev is None:
            seen[key] = op
            continue
        if any(r.type != p.type for r, p in zip(op.results, prev.results)):
            continue
        for r, p in zip(op.results, prev.results):
            r.replace_all_uses_with(p)
        op.erase()
        removed += 1
    return removed
