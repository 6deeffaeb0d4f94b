"""``pliant.Fused``: a group of elementwise ops run as one generated kernel.

The fusion pass (``pliant.transforms.fuse_elementwise``) moves a group of
elementwise ops into the region ``body`` of one ``Fused`` op (the region reads
the group's inputs from the enclosing scope) and records, in ``source``, the
same computation in the kernel language.  The reference kernel runs the
region, so the interpreter's meaning of the op is exactly the original ops';
the compiled runtime runs the generated kernel instead (and the region when no
C compiler is available).

Attributes: ``source`` (kernel-language text, one output), ``kept`` (per
operand, the axes passed to the kernel, as a flat list with -1 ending each
operand: broadcast axes of size 1 are dropped), ``out_ones`` (the output axes
of size 1, dropped from the kernel's output and put back after).
"""

from __future__ import annotations

from typing import Any

from pliant.errors import ShapeInferenceError
from pliant.ir.core import Op
from pliant.ir.types import Type
from pliant.ops.registry import Dynamism, InferContext, KernelContext, ParamSpec, Schema, register

FUSED_SCHEMA = Schema(
    "Fused", "pliant", 1, (ParamSpec("inputs", variadic=True),), (ParamSpec("output"),),
    {"source": None, "kept": None, "out_ones": None}, frozenset({"source", "kept", "out_ones"}),
)


def _infer(ctx: InferContext) -> list[Type]:
    body = ctx.regions.get("body")
    if body is None or len(body.block.outputs) != 1:
        raise ShapeInferenceError("Fused needs a region 'body' yielding one value")
    return [body.block.outputs[0].type]


def _verify(op: Op) -> list[str]:
    """Fused, FusedConv and Static: one region 'body' without arguments, yielding the op's results."""
    if set(op.regions) != {"body"}:
        return [f"has regions {sorted(op.regions)}; a {op.name} op has one region 'body'"]
    b = op.regions["body"].block
    out = []
    if b.args:
        out.append(f"region body takes {len(b.args)} arguments; it reads its inputs from outside")
    if len(b.outputs) != len(op.results):
        out.append(f"region body yields {len(b.outputs)} values for {len(op.results)} results")
    return out


@register("Fused", Dynamism.ISDOS, domain="pliant", infer=_infer, schema=FUSED_SCHEMA, verify=_verify,
          family="control")
def fused(ctx: KernelContext, *inputs: Any) -> Any:
    return ctx.run_region("body", [])[0]


# --- FusedConv ---------------------------------------------------------------------------------

FUSED_CONV_SCHEMA = Schema(
    "FusedConv", "pliant", 1,
    (ParamSpec("X"), ParamSpec("W"), ParamSpec("B", optional=True), ParamSpec("Z", optional=True)),
    (ParamSpec("Y"),),
    {"strides": None, "pads": None, "dilations": None, "group": 1, "activation": "", "activation_params": None,
     "weight_shape": None, "layout": None},
    frozenset({"pads"}),
)
"""A convolution with its epilogue, ``Y = activation(Conv(X, W, B) + Z)``, made by
``pliant.transforms.fuse_conv``.  As for ``Fused``, the region ``body`` holds
the original ops (it defines the op and runs where the native kernel cannot);
the attributes are the convolution's (explicit ``pads``), the activation's op
name ("" for none) and its parameters (Clip's min and max, LeakyRelu's alpha);
``weight_shape`` and ``layout`` where the convolution is a ``pliant.PackedConv`` (W stored in that layout)."""


@register("FusedConv", Dynamism.ISDOS, domain="pliant", infer=_infer, schema=FUSED_CONV_SCHEMA, verify=_verify,
          family="control")
def fused_conv(ctx: KernelContext, *inputs: Any) -> Any:
    return ctx.run_region("body", [])[0]


# --- Static ------------------------------------------------------------------------------------

STATIC_SCHEMA = Schema(
    "Static", "pliant", 1, (ParamSpec("inputs", variadic=True),), (ParamSpec("outputs", variadic=True),), {},
    frozenset(),
)
"""A static region, made by ``pliant.transforms.static_regions``: a straight-line run
of ops whose shapes RDP resolved, compiled as one native unit
(``pliant.runtime.region_c``).  The region ``body`` holds the ops (reading the
operands from the enclosing scope) and yields the op's results; it defines the
op and runs where the native unit cannot."""


def _infer_static(ctx: InferContext) -> list[Type]:
    body = ctx.regions.get("body")
    if body is None:
        raise ShapeInferenceError("Static needs a region 'body'")
    return [v.type for v in body.block.outputs]


@register("Static", Dynamism.ISDOS, domain="pliant", infer=_infer_static, schema=STATIC_SCHEMA, verify=_verify,
          family="control")
def static(ctx: KernelContext, *inputs: Any) -> Any:
    res = ctx.run_region("body", [])
    return tuple(res) if len(res) != 1 else res[0]
