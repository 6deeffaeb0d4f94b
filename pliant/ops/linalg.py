"""Linear algebra: MatMul, PackedMatMul (pliant), Gemm, MatMulInteger, Einsum, Det, Trilu, EyeLike."""

from __future__ import annotations

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops.infer import broadcast_shapes, same_as_input, tensor_input
from pliant.ops.numerics import is_float_dtype, work_dtype
from pliant.ops.registry import Dynamism, InferContext, KernelContext, ParamSpec, Schema, register

LINALG = "linalg"






# -- MatMul -------------------------------------------------------------------------

def _known_mismatch(a: Dim, b: Dim) -> bool:
    return isinstance(a, int) and isinstance(b, int) and a != b


def matmul_shape(a: tuple[Dim, ...] | None, b: tuple[Dim, ...] | None, where: str = "") -> tuple[Dim, ...] | None:
    """The result shape of NumPy-style matmul of shapes ``a`` and ``b`` (None: unknown rank)."""
    if a is None or b is None:
        return None
    if len(a) == 0 or len(b) == 0:
        raise ShapeInferenceError(f"{where}MatMul operands must have rank >= 1, got ranks {len(a)} and {len(b)}")
    a2: tuple[Dim, ...] = (1, a[0]) if len(a) == 1 else a
    b2: tuple[Dim, ...] = (b[0], 1) if len(b) == 1 else b
    if _known_mismatch(a2[-1], b2[-2]):
        raise ShapeInferenceError(
            f"{where}MatMul contraction dims differ: {a2[-1]} (last of the first operand) vs {b2[-2]}"
        )
    batch = broadcast_shapes([a2[:-2], b2[:-2]], where)
    assert batch is not None
    out = list(batch)
    if len(a) > 1:
        out.append(a2[-2])
    if len(b) > 1:
        out.append(b2[-1])
    return tuple(out)


def _matmul_infer(ctx: InferContext) -> list[Type]:
    ta, tb = tensor_input(ctx, 0), tensor_input(ctx, 1)
    if ta is None or tb is None:
        return [TensorType(ta.dtype if ta else None, None)]
    return [TensorType(ta.dtype, matmul_shape(ta.shape, tb.shape, f"{ctx.name}: "))]


def _check_matmul(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.ndim == 0 or b.ndim == 0:
        raise OpRuntimeError(f"{what} operands must have rank >= 1, got shapes {list(a.shape)} and {list(b.shape)}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise OpRuntimeError(f"{what} contraction dims differ: shapes {list(a.shape)} and {list(b.shape)}")


def _matmul_backward(ctx: InferContext, results: list[Type]) -> list[tuple[Dim, Dim]]:
    """The contraction dims are equal (no broadcasting there)."""
    ta, tb = tensor_input(ctx, 0), tensor_input(ctx, 1)
    if ta is None or tb is None or not ta.shape or not tb.shape:
        return []
    kb = tb.shape[0] if len(tb.shape) == 1 else tb.shape[-2]
    return [(ta.shape[-1], kb)]


@register("MatMul", Dynamism.ISDOS, family=LINALG, infer=_matmul_infer, backward=_matmul_backward)
def matmul(ctx: KernelContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _check_matmul(a, b, "MatMul")
    w = work_dtype(a.dtype)
    try:
        y = np.matmul(a.astype(w, copy=False), b.astype(w, copy=False))
    except ValueError as e:
        raise OpRuntimeError(f"MatMul of shapes {list(a.shape)} and {list(b.shape)}: {e}") from None
    return np.asarray(y).astype(a.dtype, copy=False)


# -- PackedMatMul ----------------------------------------------------------------------
# ``pliant.PackedMatMul(a, p, n=N)`` is ``MatMul(a, b)`` for a constant ``b`` (k x N) stored as panels of
# PACK_PANEL columns, ``p[j, q, c] = b[q, j * PACK_PANEL + c]`` (zeros past column N): the layout the native
# product streams its right operand in, so a weight is laid out once (``pliant.transforms.pack_weights``)
# instead of copied into panels at every call.

PACK_PANEL = 32
"""Columns per panel of a packed matrix: a multiple of every vector tile conv.c's microkernel computes."""

PACKED_MATMUL_SCHEMA = Schema("PackedMatMul", "pliant", 1, (ParamSpec("A"), ParamSpec("B")), (ParamSpec("Y"),),
                              {"n": None}, frozenset({"n"}))


def pack_columns(b: np.ndarray) -> np.ndarray:
    """``b`` (k x n) as panels of PACK_PANEL columns: shape (ceil(n / PACK_PANEL), k, PACK_PANEL)."""
    k, n = b.shape
    full, rest = divmod(n, PACK_PANEL)
    out = np.zeros((full + (rest > 0), k, PACK_PANEL), b.dtype)
    out[:full] = b[:, : full * PACK_PANEL].reshape(k, full, PACK_PANEL).transpose(1, 0, 2)
    if rest:
        out[full, :, :rest] = b[:, full * PACK_PANEL:]
    return out


def unpack_columns(p: np.ndarray, n: int) -> np.ndarray:
    """The (k x n) matrix whose panels ``p`` are (``pack_columns``'s inverse)."""
    return p.transpose(1, 0, 2).reshape(p.shape[1], -1)[:, :n]


def _packed_b_shape(ctx: InferContext) -> tuple[Dim, Dim] | None:
    tp = tensor_input(ctx, 1)
    n = ctx.attr("n")
    if n is None:
        raise ShapeInferenceError(f"{ctx.name}: PackedMatMul needs the attribute 'n' (the columns of B)")
    if tp is None or tp.shape is None:
        return None
    if len(tp.shape) != 3 or tp.shape[2] != PACK_PANEL or (
            isinstance(tp.shape[0], int) and tp.shape[0] != -(-int(n) // PACK_PANEL)):
        raise ShapeInferenceError(f"{ctx.name}: PackedMatMul's B must be panels of shape "
                                  f"({-(-int(n) // PACK_PANEL)}, k, {PACK_PANEL}) for n={n}, got {list(tp.shape)}")
    return tp.shape[1], int(n)


def _packed_matmul_infer(ctx: InferContext) -> list[Type]:
    ta, sb = tensor_input(ctx, 0), _packed_b_shape(ctx)
    if ta is None or sb is None:
        return [TensorType(ta.dtype if ta else None, None)]
    return [TensorType(ta.dtype, matmul_shape(ta.shape, sb, f"{ctx.name}: "))]


def _packed_matmul_backward(ctx: InferContext, results: list[Type]) -> list[tuple[Dim, Dim]]:
    ta, sb = tensor_input(ctx, 0), _packed_b_shape(ctx)
    if ta is None or sb is None or not ta.shape:
        return []
    return [(ta.shape[-1], sb[0])]


@register("PackedMatMul", Dynamism.ISDOS, domain="pliant", family=LINALG, infer=_packed_matmul_infer,
          backward=_packed_matmul_backward, schema=PACKED_MATMUL_SCHEMA)
def packed_matmul(ctx: KernelContext, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    n = int(ctx.attr("n"))
    if p.ndim != 3 or p.shape[2] != PACK_PANEL or p.shape[0] != -(-n // PACK_PANEL):
        raise OpRuntimeError(f"PackedMatMul: B must be panels of shape ({-(-n // PACK_PANEL)}, k, {PACK_PANEL}) "
                             f"for n={n}, got {list(p.shape)}")
    b = unpack_columns(p, n)
    _check_matmul(a, b, "PackedMatMul")
    return np.matmul(a, b)


# -- Gemm ---------------------------------------------------------------------------

def _gemm_infer(ctx: InferContext) -> list[Type]:
    ta, tb = tensor_input(ctx, 0), tensor_input(ctx, 1)
    dtype = ta.dtype if ta else (tb.dtype if tb else None)
    if ta is None or tb is None or ta.shape is None or tb.shape is None:
        return [TensorType(dtype, (None, None))]
    if len(ta.shape) != 2 or len(tb.shape) != 2:
        raise ShapeInferenceError(f"Gemm operands must be 2-D, got ranks {len(ta.shape)} and {len(tb.shape)}")
    m, ka = (ta.shape[1], ta.shape[0]) if int(ctx.attr("transA", 0)) else ta.shape
    kb, n = (tb.shape[1], tb.shape[0]) if int(ctx.attr("transB", 0)) else tb.shape
    if _known_mismatch(ka, kb):
        raise ShapeInferenceError(f"Gemm contraction dims differ: {ka} vs {kb}")
    return [TensorType(dtype, (m, n))]


def _gemm_backward(ctx: InferContext, results: list[Type]) -> list[tuple[Dim, Dim]]:
    ta, tb = tensor_input(ctx, 0), tensor_input(ctx, 1)
    if ta is None or tb is None or ta.shape is None or tb.shape is None or len(ta.shape) != 2 or len(tb.shape) != 2:
        return []
    ka = ta.shape[0] if int(ctx.attr("transA", 0)) else ta.shape[1]
    kb = tb.shape[1] if int(ctx.attr("transB", 0)) else tb.shape[0]
    return [(ka, kb)]


@register("Gemm", Dynamism.ISDOS, family=LINALG, infer=_gemm_infer, backward=_gemm_backward)
def gemm(ctx: KernelContext, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
    if a.ndim != 2 or b.ndim != 2:
        raise OpRuntimeError(f"Gemm operands must be 2-D, got shapes {list(a.shape)} and {list(b.shape)}")
    if int(ctx.attr("transA", 0)):
        a = a.T
    if int(ctx.attr("transB", 0)):
        b = b.T
    if a.shape[1] != b.shape[0]:
        raise OpRuntimeError(f"Gemm contraction dims differ: A' is {list(a.shape)}, B' is {list(b.shape)}")
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    w = work_dtype(a.dtype)
    if not is_float_dtype(w) and (alpha != 1.0 or (c is not None and beta != 1.0)):
        w = np.dtype(np.float64)
    y = np.matmul(a.astype(w, copy=False), b.astype(w, copy=False))
    if alpha != 1.0:
        y = y * w.type(alpha)
    if c is not None and beta != 0.0:
        try:
            cb = np.broadcast_to(c.astype(w, copy=False), y.shape)
        except ValueError:
            raise OpRuntimeError(f"Gemm: C of shape {list(c.shape)} cannot broadcast to {list(y.shape)}") from None
        y = y + (cb * w.type(beta) if beta != 1.0 else cb)
    return np.asarray(y).astype(a.dtype, copy=False)


# -- MatMulInteger ------------------------------------------------------------------

def _matmul_integer_infer(ctx: InferContext) -> list[Type]:
    ta, tb = tensor_input(ctx, 0), tensor_input(ctx, 1)
    if ta is None or tb is None:
        return [TensorType(DType.INT32, None)]
    return [TensorType(DType.INT32, matmul_shape(ta.shape, tb.shape, f"{ctx.name}: "))]


@register("MatMulInteger", Dynamism.ISDOS, family=LINALG, infer=_matmul_integer_infer)
def matmul_integer(
    ctx: KernelContext, a: np.ndarray, b: np.ndarray, a_zp: np.ndarray | None = None, b_zp: np.ndarray | None = None
) -> np.ndarray:
    _check_matmul(a, b, "MatMulInteger")
    ai = a.astype(np.int32)
    bi = b.astype(np.int32)
    if a_zp is not None:
        z = a_zp.astype(np.int32)
        if z.ndim == 1 and z.size != 1 and a.ndim >= 2:
            # NOTE: a 1-D zero point for A holds one value per row.
            if z.size != a.shape[-2]:
                raise OpRuntimeError(f"MatMulInteger: a_zero_point has {z.size} values but A has {a.shape[-2]} rows")
            z = z.reshape(-1, 1)
        ai = ai - z
    if b_zp is not None:
        z = b_zp.astype(np.int32)
        if z.ndim == 1 and z.size != 1 and z.size != b.shape[-1]:
            raise OpRuntimeError(f"MatMulInteger: b_zero_point has {z.size} values but B has {b.shape[-1]} columns")
        bi = bi - z
    return np.asarray(np.matmul(ai, bi), dtype=np.int32)


# -- Einsum -------------------------------------------------------------------------

@register("Einsum", Dynamism.ISDOS, family=LINALG)
def einsum(ctx: KernelContext, *inputs: np.ndarray) -> np.ndarray:
    eq = str(ctx.attr("equation")).replace(" ", "")
    if not inputs:
        raise OpRuntimeError("Einsum needs at least one input")
    dt = inputs[0].dtype
    w = work_dtype(dt)
    try:
        y = np.einsum(eq, *(x.astype(w, copy=False) for x in inputs))
    except ValueError as e:
        shapes = ", ".join(str(list(x.shape)) for x in inputs)
        raise OpRuntimeError(f"Einsum '{eq}' on shapes {shapes}: {e}") from None
    return np.asarray(y).astype(dt, copy=False)


# -- Det ----------------------------------------------------------------------------

def _det_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    if t is None:
        return [ANY]
    if t.shape is None:
        return [TensorType(t.dtype, None)]
    if len(t.shape) < 2:
        raise ShapeInferenceError(f"Det needs an input of rank >= 2, got rank {len(t.shape)}")
    if _known_mismatch(t.shape[-1], t.shape[-2]):
        raise ShapeInferenceError(f"Det needs square matrices, got {t.shape[-2]} x {t.shape[-1]}")
    return [TensorType(t.dtype, t.shape[:-2])]


@register("Det", Dynamism.ISDOS, family=LINALG, infer=_det_infer)
def det(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise OpRuntimeError(f"Det needs square matrices in the last two axes, got shape {list(x.shape)}")
    w = work_dtype(x.dtype)
    return np.asarray(np.linalg.det(x.astype(w, copy=False))).astype(x.dtype, copy=False)


# -- Trilu --------------------------------------------------------------------------

@register("Trilu", Dynamism.ISDOS, family=LINALG, infer=same_as_input)
def trilu(ctx: KernelContext, x: np.ndarray, k_in: np.ndarray | None = None) -> np.ndarray:
    if x.ndim < 2:
        raise OpRuntimeError(f"Trilu needs an input of rank >= 2, got shape {list(x.shape)}")
    k = 0
    if k_in is not None:
        if k_in.size != 1:
            raise OpRuntimeError(f"Trilu's k must hold one value, got shape {list(k_in.shape)}")
        k = int(k_in.reshape(-1)[0])
    rows, cols = x.shape[-2], x.shape[-1]
    # NOTE: clamp k so that huge values do not build huge index ranges.
    k = max(min(k, cols), -rows)
    i = np.arange(rows).reshape(-1, 1)
    j = np.arange(cols).reshape(1, -1)
    keep = (j - i >= k) if int(ctx.attr("upper", 1)) else (j - i <= k)
    return np.where(keep, x, np.zeros((), dtype=x.dtype)).astype(x.dtype, copy=False)


# -- EyeLike ------------------------------------------------------------------------

def _eyelike_dtype(attr: object, fallback: DType | None) -> DType | None:
    if attr is None:
        return fallback
    return DType.from_onnx(int(attr))  # type: ignore[call-overload]


def _eyelike_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    dtype = _eyelike_dtype(ctx.attrs.get("dtype"), t.dtype if t else None)
    if t is None or t.shape is None:
        return [TensorType(dtype, (None, None))]
    if len(t.shape) != 2:
        raise ShapeInferenceError(f"EyeLike needs a 2-D input, got rank {len(t.shape)}")
    return [TensorType(dtype, t.shape)]


@register("EyeLike", Dynamism.ISDO, family=LINALG, infer=_eyelike_infer)
def eyelike(ctx: KernelContext, x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise OpRuntimeError(f"EyeLike needs a 2-D input, got shape {list(x.shape)}")
    dt = _eyelike_dtype(ctx.attrs.get("dtype"), None)
    npdt = dt.numpy if dt is not None else x.dtype
    return np.eye(x.shape[0], x.shape[1], k=int(ctx.attr("k", 0)), dtype=npdt)
