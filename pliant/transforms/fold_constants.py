"""Constant folding: an op whose operands are all constants becomes a constant.

The op's reference kernel computes the value, so folding means exactly what
running would.  Random ops are not folded (each run draws anew), nor ops with
regions, nor results larger than ``MAX_ELEMENTS``, nor results of more than
``MAX_GROWN`` elements that are larger than the op's operands together (a
ConstantOfShape, Expand or Tile): folding would trade a cheap broadcast for a
big constant, kept for the program's life, and once per specialised version.
MoE at 256 tokens had 18 zero-filled 256x256 accumulators folded, 4.7 MB in
each version for what is a memset at run time.
"""

from __future__ import annotations

import numpy as np

from pliant.ir.core import Block, Module, Op
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType
from pliant.ops import registry
from pliant.ops.typing import attrs_with_defaults, constant_value

pass_name = "fold-constants"
MAX_ELEMENTS = 1 << 16
MAX_GROWN = 1 << 10
_NEVER = {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Bernoulli", "Multinomial",
          "Constant", "Dropout"}


def fold_constants(module: Module) -> int:
    """Fold every foldable op (in program order, so chains fold through); returns how many were folded."""
    return sum(_block(module, fn.body) for fn in module.functions.values())


def _block(module: Module, block: Block) -> int:
    folded = 0
    for op in list(block.ops):
        for region in op.regions.values():
            folded += _block(module, region.block)
        if op.regions or op.name in _NEVER or op.domain not in ("", "ai.onnx.ml") or not op.results:
            continue
        values = [constant_value(v) if v is not None else None for v in op.operands]
        if any(v is None and o is not None for v, o in zip(values, op.operands)):
            continue
        out = _evaluate(module, op, values)
        if out is None:
            continue
        for r, x in zip(op.results, out):
            const = Op("Constant", [], [TensorType(DType.from_numpy(x.dtype), tuple(x.shape))], {"value": x},
                       label=op.label, result_names=[r.name])
            block.insert(block.ops.index(op), const)
            r.replace_all_uses_with(const.results[0])
        op.erase()
        folded += 1
    return folded


def _evaluate(module: Module, op: Op, values: list[np.ndarray | None]) -> list[np.ndarray] | None:
    opdef = registry.lookup(op.name, op.domain)
    if opdef is None:
        return None
    opset = module.opset(op.domain)
    ctx = registry.KernelContext(op, attrs_with_defaults(opdef, op.attrs, opset), opset, None)
    try:
        with np.errstate(all="ignore"):
            res = opdef.kernel(ctx, *values)
    except Exception:  # noqa: BLE001 - an op that fails on these constants fails at run time too: leave it there
        return None
    outs = list(res) if isinstance(res, tuple) else [res]
    if len(outs) < len(op.results):
        return None
    arrays = []
    given = sum(v.nbytes for v in values if v is not None)
    for x in outs[: len(op.results)]:
        if isinstance(x, np.generic):
            x = np.asarray(x)
        if not isinstance(x, np.ndarray) or x.dtype.kind in "OUSV" or x.size > MAX_ELEMENTS:
            return None
        if x.size > MAX_GROWN and x.nbytes > given:
            return None
        arrays.append(x)
    return arrays
