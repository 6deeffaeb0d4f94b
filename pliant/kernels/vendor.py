"""Library implementations a kernel can be replaced by: BLAS GEMM through NumPy.

A kernel qualifies when it is one statement ``C(...) +=! A(...) * B(...)`` over
two distinct input tensors of the output's float type, every index a plain
variable used once per tensor, and no ``where``: a tensor contraction.  Plain
and batched matrix products (operands possibly transposed) call ``np.matmul``,
which is BLAS ``sgemm``/``dgemm``; other contractions call ``np.einsum`` with
path optimisation, which reaches BLAS through ``tensordot``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pliant.kernels.check import Role, TypedKernel
from pliant.kernels.ir import Access, Binary, Index, ReduceOp


@dataclass(frozen=True)
class LibraryCall:
    """``fn(inputs, outputs)`` computes the kernel; ``kind`` says which library path."""

    kind: str
    fn: Callable[[list[np.ndarray], list[np.ndarray]], None]


def _plain(a: Access) -> list[str] | None:
    names = [i.name for i in a.indices if isinstance(i, Index)]
    if len(names) != len(a.indices) or len(set(names)) != len(names):
        return None
    return names


def library_call(typed: TypedKernel) -> LibraryCall | None:
    """The library path computing ``typed``, or None when it is not a plain contraction."""
    if len(typed.statements) != 1 or len(typed.by_role(Role.OUTPUT)) != 1:
        return None
    s = typed.statements[0]
    rhs = s.rhs
    if s.op is not ReduceOp.ADD or not s.init or s.where or not isinstance(rhs, Binary) or rhs.op != "*":
        return None
    a, b = rhs.lhs, rhs.rhs
    if not (isinstance(a, Access) and isinstance(b, Access)) or a.tensor == b.tensor:
        return None
    out_t = typed.tensors[s.tensor]
    ta, tb = typed.tensors[a.tensor], typed.tensors[b.tensor]
    if not out_t.dtype.is_float or out_t.dtype.value == "float16" or not (ta.dtype is tb.dtype is out_t.dtype):
        return None
    va, vb = _plain(a), _plain(b)
    if va is None or vb is None:
        return None
    order = [ta.name, tb.name]
    inputs = [t.name for t in typed.by_role(Role.INPUT)]
    pos_a, pos_b = inputs.index(order[0]), inputs.index(order[1])
    vc = list(s.indices)
    matmul = _as_matmul(va, vb, vc)
    if matmul is not None:
        perm_a, perm_b = matmul

        def run_matmul(ins: list[np.ndarray], outs: list[np.ndarray]) -> None:
            np.matmul(ins[pos_a].transpose(perm_a), ins[pos_b].transpose(perm_b), out=outs[0])

        return LibraryCall("numpy.matmul (BLAS gemm)", run_matmul)
    letters = {v: chr(ord("a") + n) for n, v in enumerate(dict.fromkeys(va + vb + vc))}
    if len(letters) > 26:
        return None
    spec = f"{''.join(letters[v] for v in va)},{''.join(letters[v] for v in vb)}->{''.join(letters[v] for v in vc)}"

    def run_einsum(ins: list[np.ndarray], outs: list[np.ndarray]) -> None:
        outs[0][...] = np.einsum(spec, ins[pos_a], ins[pos_b], optimize=True)

    return LibraryCall(f"numpy.einsum('{spec}', optimize=True)", run_einsum)


def _as_matmul(va: list[str], vb: list[str], vc: list[str]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Axis permutations making ``A @ B`` the output, when the contraction is a (batched) matrix product."""
    if len(vc) < 2:
        return None
    *batch, i, j = vc
    shared = [v for v in va if v in vb and v not in vc]
    if len(shared) != 1:
        return None
    (k,) = shared
    if sorted(va) != sorted([*batch, i, k]) or sorted(vb) != sorted([*batch, k, j]):
        return None
    perm_a = tuple(va.index(v) for v in [*batch, i, k])
    perm_b = tuple(vb.index(v) for v in [*batch, k, j])
    return perm_a, perm_b
