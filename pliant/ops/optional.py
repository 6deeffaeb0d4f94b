"""Optionals: Optional, OptionalGetElement, OptionalHasElement.

At run time an optional is its value (a tensor or a sequence), or None when empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, OptionalType, SequenceType, TensorType, Type, UnknownType
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

OPTIONAL = "optional"


def _optional_infer(ctx: InferContext) -> list[Type]:
    t = ctx.input(0)
    if t is not None:
        if isinstance(t, OptionalType):
            raise ShapeInferenceError("Optional: the input may not itself be an optional")
        return [OptionalType(t)]
    declared = ctx.attr("type")
    if isinstance(declared, (TensorType, SequenceType)):
        return [OptionalType(declared)]
    if declared is None:
        raise ShapeInferenceError("Optional with no input needs the 'type' attribute to say what it is empty of")
    return [OptionalType(ANY)]


@register("Optional", Dynamism.ISDOS, infer=_optional_infer, family=OPTIONAL,
          note="its value is its input, or empty when there is none")
def optional(ctx: KernelContext, x: Any = None) -> Any:
    return x


def _get_infer(ctx: InferContext) -> list[Type]:
    t = ctx.input(0)
    if isinstance(t, OptionalType):
        return [t.elem]
    if t is None:
        raise ShapeInferenceError("OptionalGetElement needs an input")
    if ctx.opset < 18 and not isinstance(t, UnknownType):
        raise ShapeInferenceError(f"OptionalGetElement (opset {ctx.opset}) needs an optional input, got {t}")
    return [t]


@register("OptionalGetElement", Dynamism.ISDOS, infer=_get_infer, family=OPTIONAL)
def optional_get_element(ctx: KernelContext, x: Any) -> Any:
    if x is None:
        raise OpRuntimeError("OptionalGetElement: the optional is empty; check it with OptionalHasElement first")
    return x


def _has_infer(ctx: InferContext) -> list[Type]:
    return [TensorType(DType.BOOL, ())]


@register("OptionalHasElement", Dynamism.ISDO, infer=_has_infer, family=OPTIONAL,
          note="the value says whether the input is present, which is known wherever the optional's contents are")
def optional_has_element(ctx: KernelContext, x: Any = None) -> np.ndarray:
    return np.array(x is not None)
