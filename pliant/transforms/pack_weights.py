"""Constant right operands of products stored as the panels the native product streams.

The native product (conv.c's GEMM, which region units call) reads its right
operand ``B`` (k x n) in panels of a few vector widths of columns, contiguous
over k.  Read from a row-major ``B``, each panel row is a short piece of a
different row: a unit copies every panel into a scratch buffer first, at every
call, and for weights that copy is a pass over all of them.  Where a constant
``B`` is read only as the ``B`` of MatMuls (or of Gemms that are a MatMul
plus C), this pass stores the constant as those panels once
(``pliant.ops.linalg.pack_columns``) and replaces its readers by
``pliant.PackedMatMul``, the same product of the packed operand (followed by
an Add of a Gemm's C).  The row-major original is freed.

Measured on BERT-sized products at 2 threads (64 rows, 768 x 2304 and 3072 x
768 weights) the call takes 0.80-0.85x the time it took packing at every call;
at 256 rows, 0.93x.

Convolution weights get the same treatment: conv.c's turned-around product
(output positions as rows, output channels as the panels' columns; see
``conv.c``'s "weights as B") streams the weights as the ``B`` panels, which a
call used to pack from the (M, C, KH, KW) array every time; so only where a
call would take that product when handed the panels: convolutions of one group
with a window larger than 1x1 (a 1x1 window of stride 1 is a product conv.c
reads in place, unless it has ``POINTWISE_MIN_CHANNELS`` input channels) and
at least ``MIN_CONV_DEPTH`` products per output (C*KH*KW).  Such weights are stored as
``pliant.ops.conv.pack_conv_weights`` lays them out, read by
``pliant.PackedConv``.  On YOLO's convolutions at 160 px (2 threads) a call
took 0.80-0.99x its time before; the model 0.93x at 160 px and 0.94x at 480x640.

3x3 convolutions of stride 1 with at least ``WINOGRAD_MIN_CHANNELS`` input
and output channels store their taps instead (``pliant.ops.conv.pack_winograd_taps``;
PackedConv's "winograd_taps" layout, the weights' own size), and conv.c runs
them as Winograd F(2x2, 3x3), transforming the taps a few output channels at a
time as it goes (the transformed layout, "winograd", is 16/9 the size: SkipNet
held 7.4 MB of weights instead of 4.4, for 0.93-1.07x the time), as 16
products of transformed input tiles: 2.25x fewer
multiply-adds than the direct convolution, with rounding errors of the same
size (the transforms' coefficients are 0, +-1 and +-1/2).  In the models at 2
threads (in-process, alternating rounds, against panels): YOLO 0.87-0.94x
the time, RaNet 0.82-0.94x, SkipNet 0.72-0.85x, blockdrop 0.89-0.99x.  On
AVX-512 conv.c runs the taps of larger images as F(4x4, 3x3) instead, where
its estimate says so (``pliant.runtime.blas_conv.WINOGRAD_4X4``): 4x fewer
multiply-adds than direct.

Like ``gemm-layout`` it changes no shape a caller sees and needs no analysis:
``pliant.compile`` runs it once on the imported model, before the copy kept
for specialised versions, where region units are on (an op-by-op
``PackedMatMul`` unpacks its operand at every call).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.ir.core import Module, Op
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType
from pliant.ops.conv import pack_conv_weights, pack_winograd_taps, pack_winograd_weights
from pliant.ops.linalg import PACK_PANEL, pack_columns
from pliant.transforms.manager import rewrite_matrices

pass_name = "pack-weights"

MIN_SIDE = 32
"""Neither side of a packed weight is shorter: smaller products are not worth a layout of their own."""

MIN_CONV_DEPTH = 9
"""Products per output (C*KH*KW) from which a convolution's weights are packed: one channel's 3x3 window.
Measured at 2 threads against the other paths: 1 -> 64 channels at stride 2 (conformer's first) 0.80x; 3 -> 32
at stride 2 on 128x128 0.84x, on 64x64 at stride 1 0.91x (on 32x32 1.12x: 2 us more); 1x1 windows of stride 2
(ResNet shortcuts) 0.80-0.83x.  In the models, against packing from 128 products only: RaNet 0.96-0.99,
conformer, blockdrop, SkipNet and YOLO 0.98-1.0."""


POINTWISE_MIN_CHANNELS = 64
"""Input channels from which a 1x1 convolution of stride 1 has its weights packed too (taking the turned-around
product, output channels in the vectors' lanes), rather than being the product conv.c reads the input of in place
(output positions in the lanes, a panel of them half empty on few positions).  Chains of 8 at 2 threads, in-process
against ONNX Runtime: 256 -> 256 channels on 5x5 1.32x its time in place, 1.0x packed; on 10x10 1.23x and 1.07x;
64 on 40x40 1.39x and 1.17x; YOLO 0.97-0.99x.  With 32 channels on 64x64, 1.5x in place and 1.66x packed: left in
place."""

WINOGRAD = True
"""Whether 3x3 convolutions of stride 1 (one group, no dilation) of at least WINOGRAD_MIN_CHANNELS input and
output channels run as Winograd F(2x2, 3x3) (PackedConv's "winograd_taps" or "winograd" layout), whose transformed
weights conv.c multiplies by transformed input tiles: 2.25x fewer products than the direct convolution."""

WINOGRAD_TAPS = True
"""Whether those weights are stored as their taps (PackedConv's "winograd_taps", (M, 9, C)) that conv.c transforms
as it runs, rather than transformed ("winograd", (16, M, C), 16/9 the size)."""

WINOGRAD_MIN_CHANNELS = 8
"""Input and output channels from which a 3x3 convolution takes Winograd's layout.  Chains of 8 convolutions
(C -> C channels, ReLU) at 2 threads, time per convolution against the panels, in-process: 16 channels 0.64x on
32x32 and 0.78x on 64x64 (0.68x and 0.72x at 1 thread), 8 channels 0.77-0.78x; blockdrop (ten 16 -> 16) 0.85-0.94x.
At 32 (the value before) the 16-channel ones ran 1.2-1.5x ONNX Runtime's time."""


def pack_weights(module: Module) -> int:
    """Pack the constant ``B`` operands read only by MatMuls and the constant weights read only by convolutions
    that take them packed; returns how many constants changed."""
    return (rewrite_matrices(module, _takes, _pack, min_side=MIN_SIDE)
            + rewrite_matrices(module, _takes_conv, _pack_conv, ndim=4))


def _takes_conv(user: Op) -> bool:
    """Whether ``user`` (reading the constant as its weights) can become a PackedConv: a float32 2-D Conv of one
    group with explicit pads, a window larger than 1x1 (or a stride, or POINTWISE_MIN_CHANNELS input channels),
    at least MIN_CONV_DEPTH products per output."""
    x, w = user.operands[0], user.operands[1]
    tx, tw = (x.type if x is not None else None), (w.type if w is not None else None)
    if user.name != "Conv" or not isinstance(tx, TensorType) or not isinstance(tw, TensorType) \
            or tx.dtype != DType.FLOAT or tx.shape is None or len(tx.shape) != 4 or tw.shape is None:
        return False
    attrs = user.attrs
    if int(attrs.get("group", 1)) != 1 or str(attrs.get("auto_pad", "NOTSET") or "NOTSET") != "NOTSET":  # type: ignore[arg-type]
        return False
    _, c, kh, kw = (int(d) for d in tw.shape)  # type: ignore[arg-type]
    ks: Any = attrs.get("kernel_shape")
    strides: Any = attrs.get("strides") or [1, 1]
    # NOTE: a 1x1 window of stride 1 is a product conv.c reads the input of in place (FLAT): turned around only
    # from POINTWISE_MIN_CHANNELS
    window = kh * kw > 1 or max(int(e) for e in strides) > 1 or c >= POINTWISE_MIN_CHANNELS
    return (not ks or [int(e) for e in ks] == [kh, kw]) and window and c * kh * kw >= MIN_CONV_DEPTH


def _winograd(user: Op, shape: tuple[int, ...]) -> bool:
    """Whether a convolution ``_takes_conv`` accepted, of weights ``shape``, runs as Winograd F(2x2, 3x3)."""
    m, c, kh, kw = shape
    strides: Any = user.attrs.get("strides") or [1, 1]
    dilations: Any = user.attrs.get("dilations") or [1, 1]
    return ((kh, kw) == (3, 3) and all(int(e) == 1 for e in [*strides, *dilations])
            and min(m, c) >= WINOGRAD_MIN_CHANNELS)


def _pack_conv(const: Op, value: np.ndarray, readers: list[Op]) -> None:
    winograd = WINOGRAD and all(_winograd(user, value.shape) for user in readers)
    packed = (pack_winograd_taps(value) if WINOGRAD_TAPS else pack_winograd_weights(value)) if winograd \
        else pack_conv_weights(value)
    const.attrs["value"] = packed
    const.results[0].type = TensorType(DType.FLOAT, packed.shape)
    for user in readers:
        attrs: dict[str, Any] = {k: user.attrs[k] for k in ("strides", "pads", "dilations") if k in user.attrs}
        attrs["weight_shape"] = [int(d) for d in value.shape]
        if winograd:
            attrs["layout"] = "winograd_taps" if WINOGRAD_TAPS else "winograd"
        conv = Op("PackedConv", list(user.operands), [user.results[0].type], attrs, domain="pliant",
                  label=user.label, result_names=[user.results[0].name])
        block = user.parent
        assert block is not None
        block.insert(block.ops.index(user), conv)
        user.results[0].replace_all_uses_with(conv.results[0])
        user.erase()


def _pack(const: Op, value: np.ndarray, readers: list[Op]) -> None:
    k, n = value.shape
    const.attrs["value"] = pack_columns(value)
    const.results[0].type = TensorType(DType.FLOAT, (-(-n // PACK_PANEL), k, PACK_PANEL))
    for user in readers:
        _replace(user, n)


def _takes(user: Op) -> bool:
    """Whether ``user`` (reading the constant as its B) can become a PackedMatMul: a MatMul whose A has rank 2
    or more (a vector A is a product of another kind, one row), or a Gemm that is such a MatMul plus C."""
    a = user.operands[0]
    ta = a.type if a is not None else None
    if not isinstance(ta, TensorType) or ta.shape is None or len(ta.shape) < 2 or ta.dtype != DType.FLOAT:
        return False
    if user.name == "MatMul":
        return True
    if user.name != "Gemm" or len(user.results) != 1:
        return False
    attrs = user.attrs
    return (int(attrs.get("transA", 0)) == 0 and int(attrs.get("transB", 0)) == 0  # type: ignore[arg-type]
            and float(attrs.get("alpha", 1.0)) == 1.0 and float(attrs.get("beta", 1.0)) == 1.0)  # type: ignore[arg-type]


def _replace(user: Op, n: int) -> None:
    """``user`` as a PackedMatMul of the packed constant; a Gemm's C is added after it (an Add: a region unit
    adds a C along the columns in the product's epilogue)."""
    block = user.parent
    assert block is not None
    at = block.ops.index(user)
    result = user.results[0]
    c = user.operands[2] if user.name == "Gemm" and len(user.operands) > 2 else None
    product = Op("PackedMatMul", user.operands[:2], [result.type], {"n": n}, domain="pliant", label=user.label,
                 result_names=[None if c is not None else result.name])
    block.insert(at, product)
    out = product
    if c is not None:
        out = Op("Add", [product.results[0], c], [result.type], label=user.label, result_names=[result.name])
        block.insert(at + 1, out)
    result.replace_all_uses_with(out.results[0])
    user.erase()
