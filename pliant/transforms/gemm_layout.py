"""Weights of ``Gemm(..., transB=1)`` stored the way the kernels read them: ``B`` transposed once, ``transB=0``.

Exporters write a linear layer as ``Gemm(x, W, transB=1)`` with ``W`` of shape
(out, in).  The native kernels take ``B`` as (k, n) rows: given transposed,
a region unit copies it into a scratch buffer at every call (for MoE's
experts, more time than the product), and the small-product loop reads it
with one dependent chain of adds per output.  Where a constant ``B`` is read
only as the ``B`` of such Gemms, this pass transposes the constant itself
and clears ``transB`` on its readers: the same product, the weights stored
once, in the layout every kernel reads fastest.

It changes no shape a caller sees and needs no analysis, so ``pliant.compile``
runs it once on the imported model, before the copy kept for specialised
versions: every version shares the transposed weights and the originals are
freed.
"""

from __future__ import annotations

import numpy as np

from pliant.ir.core import Module, Op
from pliant.ir.dtypes import DType
from pliant.ir.types import TensorType
from pliant.transforms.manager import rewrite_matrices

pass_name = "gemm-layout"


def gemm_layout(module: Module) -> int:
    """Transpose the constant ``B`` operands of ``transB=1`` Gemms; returns how many constants changed."""
    return rewrite_matrices(module, lambda user: user.name == "Gemm" and user.attrs.get("transB", 0) == 1, _transpose)


def _transpose(const: Op, value: np.ndarray, readers: list[Op]) -> None:
    const.attrs["value"] = np.ascontiguousarray(value.T)
    const.results[0].type = TensorType(DType.FLOAT, (value.shape[1], value.shape[0]))
    for user in readers:
        user.attrs["transB"] = 0
