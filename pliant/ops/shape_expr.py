"""``pliant.ShapeExpr``: integer tensors computed from input sizes by compiled dim arithmetic.

The shape analysis proves that values such as ``Concat(Gather(Shape(x), 0),
[-1, 64])`` are expressions of the input symbols (``[N, -1, 64]``).  The
shape-chain pass replaces each such chain by one ``ShapeExpr`` whose operands
are the values whose sizes bind the symbols; its kernel reads those sizes and
evaluates the expressions with integer code compiled once
(``pliant.ir.dims.compile_dims``), instead of running the chain op by op.

Attributes: ``exprs`` (the elements, as dim text), ``bind`` (per symbol, in
``symbols`` order: the operand index and axis whose size it is), ``symbols``,
``dtype`` (ONNX element type) and ``shape`` of the result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import compile_dims, parse_dim
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType, Type
from pliant.ops import symvalue
from pliant.ops.registry import Dynamism, InferContext, KernelContext, ParamSpec, Schema, register

SHAPE_EXPR_SCHEMA = Schema(
    "ShapeExpr", "pliant", 1, (ParamSpec("sources", variadic=True),), (ParamSpec("value"),),
    {"exprs": None, "bind": None, "symbols": None, "dtype": None, "shape": None},
    frozenset({"exprs", "bind", "symbols", "dtype", "shape"}),
)


def _infer(ctx: InferContext) -> list[Type]:
    shape = ctx.attrs.get("shape")
    dtype = ctx.attrs.get("dtype")
    if shape is None or dtype is None:
        raise ShapeInferenceError("ShapeExpr needs 'shape' and 'dtype' attributes")
    return [TensorType(DType.from_onnx(int(dtype)), tuple(int(d) for d in shape))]


def _value(ctx: InferContext) -> list[np.ndarray | None]:
    exprs = ctx.attrs.get("exprs") or []
    shape = tuple(int(d) for d in ctx.attrs.get("shape") or ())
    return [symvalue.array([parse_dim(str(e)) for e in exprs], shape)]


@functools.lru_cache(maxsize=4096)
def _compiled(exprs: tuple[str, ...], symbols: tuple[str, ...]) -> Callable[[dict[str, int]], tuple[int | None, ...]]:
    return compile_dims([parse_dim(e) for e in exprs], symbols)


@register("ShapeExpr", Dynamism.ISDO, domain="pliant", infer=_infer, value=_value, schema=SHAPE_EXPR_SCHEMA,
          family="shape")
def shape_expr(ctx: KernelContext, *sources: Any) -> np.ndarray:
    symbols = tuple(str(s) for s in ctx.attrs["symbols"])
    bind = [int(b) for b in ctx.attrs["bind"]]
    env: dict[str, int] = {}
    for k, name in enumerate(symbols):
        src, axis = bind[2 * k], bind[2 * k + 1]
        x = sources[src]
        if not isinstance(x, np.ndarray) or axis >= x.ndim:
            raise OpRuntimeError(f"ShapeExpr: symbol {name} is bound to axis {axis} of operand {src}, "
                                 f"which is not a tensor of that rank")
        env[name] = int(x.shape[axis])
    values = _compiled(tuple(str(e) for e in ctx.attrs["exprs"]), symbols)(env)
    dtype = DType.from_onnx(int(ctx.attrs["dtype"])).numpy
    shape = tuple(int(d) for d in ctx.attrs["shape"])
    return np.array(values, dtype=dtype).reshape(shape)
