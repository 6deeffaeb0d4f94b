"""Attention operators: Attention, RotaryEmbedding, LinearAttention, SwiGLU, FlexAttention.

CausalConvWithState is defined with the convolutions (pliant.ops.conv).

Reduced-precision inputs (float16, bfloat16) are computed in float32 and the
results cast back to the ONNX output type; float64 stays float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim, dim_expr, sym_dim
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops.infer import dims_equal, tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

ATTENTION = "attention"


def _cdt(*xs: np.ndarray) -> Any:
    """The dtype arithmetic runs in: float64 if any input is float64, else float32."""
    return np.float64 if any(x.dtype == np.float64 for x in xs) else np.float32


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _masked_softmax(s: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; a row whose entries are all -inf gives zeros (not NaN)."""
    m = np.max(s, axis=-1, keepdims=True)
    empty = np.isneginf(m)
    e = np.exp(s - np.where(empty, 0, m))
    tot = np.sum(e, axis=-1, keepdims=True)
    return np.where(empty, 0, e / np.where(empty, 1, tot))


def _repeat_heads(x: np.ndarray, n_q: int, what: str) -> np.ndarray:
    """Share each KV head with its contiguous group of query heads (GQA / MQA)."""
    n_kv = x.shape[1]
    if n_kv == n_q:
        return x
    if n_kv == 0 or n_q % n_kv:
        raise OpRuntimeError(f"{what}: q_num_heads {n_q} is not a multiple of kv_num_heads {n_kv}")
    return np.repeat(x, n_q // n_kv, axis=1)


def _div(d: Dim, n: int) -> Dim:
    if d is None or n <= 0:
        return None
    if isinstance(d, int):
        return d // n if d % n == 0 else None
    return sym_dim(dim_expr(d) / n)


def _mul(d: Dim, n: int) -> Dim:
    if d is None:
        return None
    return d * n if isinstance(d, int) else sym_dim(dim_expr(d) * n)


def _add(a: Dim, b: Dim) -> Dim:
    if a is None or b is None:
        return None
    return sym_dim(dim_expr(a) + dim_expr(b))


# -- Attention ----------------------------------------------------------------------

def _to_4d(x: np.ndarray, heads: int | None, what: str) -> np.ndarray:
    if x.ndim == 4:
        return x
    if x.ndim != 3:
        raise OpRuntimeError(f"Attention {what} must have rank 3 or 4, got shape {x.shape}")
    if not heads or x.shape[2] % heads:
        raise OpRuntimeError(f"Attention {what} of shape {x.shape} cannot be split into {heads} heads")
    b, s, h = x.shape
    return x.reshape(b, s, heads, h // heads).transpose(0, 2, 1, 3)


def _broadcast_mask(mask: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Pad a mask's last axis to the total sequence length (-inf / False) and broadcast it right-aligned."""
    total = shape[3]
    if mask.ndim == 0 or mask.ndim > 4:
        raise OpRuntimeError(f"Attention attn_mask must have rank 1 to 4, got shape {mask.shape}")
    last = mask.shape[-1]
    if last < total:
        pad = [(0, 0)] * (mask.ndim - 1) + [(0, total - last)]
        fill: Any = False if mask.dtype == np.bool_ else -np.inf
        mask = np.pad(mask, pad, constant_values=fill)
    elif last > total:
        raise OpRuntimeError(f"Attention attn_mask's last axis is {last}, longer than the total sequence length {total}")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise OpRuntimeError(f"Attention attn_mask of shape {mask.shape} does not broadcast to {shape}") from None


def _attention_infer(ctx: InferContext) -> list[Type]:
    q, k, v = tensor_input(ctx, 0), tensor_input(ctx, 1), tensor_input(ctx, 2)
    pk = tensor_input(ctx, 4)
    qh, kvh = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
    dq = q.dtype if q is not None else None
    dk = k.dtype if k is not None else None
    dv = v.dtype if v is not None else None
    if any(t is None or t.shape is None for t in (q, k, v)):
        unknown: list[Type] = [TensorType(dq, None), TensorType(dk, None), TensorType(dv, None), TensorType(dq, None)]
        return unknown[: ctx.num_outputs]
    assert q is not None and k is not None and v is not None and q.shape is not None and k.shape is not None and v.shape is not None
    ranks = {len(q.shape), len(k.shape), len(v.shape)}
    if len(ranks) != 1 or ranks.pop() not in (3, 4):
        raise ShapeInferenceError(f"Attention needs Q, K, V all of rank 3 or all of rank 4, got {q}, {k}, {v}")
    if len(q.shape) == 4:
        b, hq, sq, _ = q.shape
        hkv: Dim = k.shape[1]
        skv = k.shape[2]
        d = k.shape[3]
        vd = v.shape[3]
        y: tuple[Dim, ...] = (b, hq, sq, vd)
    else:
        if not qh or not kvh:
            raise ShapeInferenceError("Attention with 3-D inputs needs the q_num_heads and kv_num_heads attributes")
        b, sq, _ = q.shape
        hq, hkv, skv = int(qh), int(kvh), k.shape[1]
        d = _div(k.shape[2], int(kvh))
        vd = _div(v.shape[2], int(kvh))
        y = (b, sq, _mul(vd, int(qh)))
    past: Dim = 0
    if ctx.input(4) is not None:
        past = pk.shape[2] if pk is not None and pk.shape is not None and len(pk.shape) == 4 else None
    total = _add(past, skv)
    if isinstance(hq, int) and isinstance(hkv, int) and hkv and hq % hkv:
        raise ShapeInferenceError(f"Attention: q_num_heads {hq} is not a multiple of kv_num_heads {hkv}")
    out: list[Type] = [
        TensorType(dq, y),
        TensorType(dk, (b, hkv, total, d)),
        TensorType(dv, (b, hkv, total, vd)),
        TensorType(dq, (b, hq, sq, total)),
    ]
    return out[: ctx.num_outputs]


@register("Attention", Dynamism.ISDOS, family=ATTENTION, infer=_attention_infer,
          note="nonpad_kv_seqlen and mask values only zero out rows, never change shapes")
def attention(ctx: KernelContext, q: np.ndarray, k: np.ndarray, v: np.ndarray, attn_mask: np.ndarray | None = None,
              past_key: np.ndarray | None = None, past_value: np.ndarray | None = None,
              nonpad_kv_seqlen: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    in3d = q.ndim == 3
    if in3d != (k.ndim == 3) or in3d != (v.ndim == 3):
        raise OpRuntimeError(f"Attention needs Q, K, V all 3-D or all 4-D, got shapes {q.shape}, {k.shape}, {v.shape}")
    qh = ctx.attr("q_num_heads")
    kvh = ctx.attr("kv_num_heads")
    q4 = _to_4d(q, qh, "Q")
    k4 = _to_4d(k, kvh, "K")
    v4 = _to_4d(v, kvh, "V")
    if (past_key is None) != (past_value is None):
        raise OpRuntimeError("Attention needs past_key and past_value together")
    past = 0
    if past_key is not None and past_value is not None:
        past = past_key.shape[2]
        k4 = np.concatenate([past_key, k4], axis=2)
        v4 = np.concatenate([past_value, v4], axis=2)
    present_k, present_v = k4, v4
    bsz, hq, sq, dh = q4.shape
    if k4.shape[0] != bsz or k4.shape[3] != dh or v4.shape[:3] != k4.shape[:3]:
        raise OpRuntimeError(f"Attention Q {q4.shape}, K {k4.shape}, V {v4.shape} (as 4-D) do not match")
    total = k4.shape[2]
    # NOTE: the spec runs every step in the input precision (softmax too, unless softmax_precision says otherwise).
    cdt = q.dtype.type
    scale = ctx.attr("scale")
    scale = float(scale) if scale is not None else 1.0 / float(np.sqrt(dh))
    kk = _repeat_heads(k4, hq, "Attention").astype(cdt)
    vv = _repeat_heads(v4, hq, "Attention").astype(cdt)
    # NOTE: Q and K are each scaled by sqrt(scale) before the product, as the spec's diagram does.
    rs = np.sqrt(cdt(scale))
    qk = (q4.astype(cdt) * rs) @ np.swapaxes(kk * rs, -1, -2)
    mode = int(ctx.attr("qk_matmul_output_mode", 0))
    qk_out = qk
    softcap = float(ctx.attr("softcap", 0.0))
    if softcap > 0:
        qk = softcap * np.tanh(qk / softcap)
    if mode == 1:
        qk_out = qk
    shape4 = (bsz, hq, sq, total)
    bias = np.zeros(shape4, dtype=cdt)
    if attn_mask is not None:
        m = _broadcast_mask(attn_mask, shape4)
        bias = bias + (np.where(m, 0, -np.inf).astype(cdt) if m.dtype == np.bool_ else m.astype(cdt))
    # structural constraints: causal frontier, key padding, sliding window
    j = np.arange(total)[None, None, None, :]
    i = np.arange(sq)[None, None, :, None]
    if past_key is not None:
        offset = np.full((bsz, 1, 1, 1), past, dtype=np.int64)
    elif nonpad_kv_seqlen is not None:
        if nonpad_kv_seqlen.shape != (bsz,):
            raise OpRuntimeError(f"Attention nonpad_kv_seqlen must have shape ({bsz},), got {nonpad_kv_seqlen.shape}")
        offset = nonpad_kv_seqlen.astype(np.int64).reshape(bsz, 1, 1, 1) - sq
    else:
        offset = np.zeros((bsz, 1, 1, 1), dtype=np.int64)
    allowed = np.ones((bsz, 1, sq, total), dtype=bool)
    if int(ctx.attr("is_causal", 0)):
        allowed &= j <= i + offset
    if nonpad_kv_seqlen is not None:
        allowed &= j < nonpad_kv_seqlen.astype(np.int64).reshape(bsz, 1, 1, 1)
    left = int(ctx.attr("left_window_size", -1))
    right = int(ctx.attr("right_window_size", -1))
    if left >= 0:
        allowed &= j >= i + offset - left
    if right >= 0:
        allowed &= j <= i + offset + right
    if not allowed.all():
        bias = bias + np.where(allowed, 0, -np.inf).astype(cdt)
    qk = qk + bias
    if mode == 2:
        qk_out = qk
    sp = ctx.attr("softmax_precision")
    sdt = DType.from_onnx(int(sp)).numpy if sp else q.dtype
    probs = _masked_softmax(qk.astype(sdt)).astype(cdt)
    if mode == 3:
        qk_out = probs
    y = probs @ vv
    if in3d:
        y = y.transpose(0, 2, 1, 3).reshape(bsz, sq, hq * vv.shape[3])
    return y.astype(q.dtype), present_k, present_v, qk_out.astype(q.dtype)


# -- RotaryEmbedding ----------------------------------------------------------------

def _same_as_input0(ctx: InferContext) -> list[Type]:
    t = ctx.input(0)
    return [t if t is not None else ANY]


@register("RotaryEmbedding", Dynamism.ISDOS, family=ATTENTION, infer=_same_as_input0)
def rotary_embedding(ctx: KernelContext, x: np.ndarray, cos_cache: np.ndarray, sin_cache: np.ndarray,
                     position_ids: np.ndarray | None = None) -> np.ndarray:
    if x.ndim == 4:
        xs = x.transpose(0, 2, 1, 3)  # [batch, seq, heads, head_size]
    elif x.ndim == 3:
        heads = int(ctx.attr("num_heads", 0) or 0)
        if heads <= 0 or x.shape[2] % heads:
            raise OpRuntimeError(f"RotaryEmbedding of a 3-D input {x.shape} needs num_heads dividing its last axis, got {heads}")
        xs = x.reshape(x.shape[0], x.shape[1], heads, x.shape[2] // heads)
    else:
        raise OpRuntimeError(f"RotaryEmbedding input must have rank 3 or 4, got shape {x.shape}")
    head = xs.shape[3]
    rd = int(ctx.attr("rotary_embedding_dim", 0) or 0) or head
    if rd % 2 or rd > head:
        raise OpRuntimeError(f"RotaryEmbedding rotary_embedding_dim {rd} must be even and at most the head size {head}")
    half = rd // 2
    if position_ids is not None:
        if position_ids.shape != xs.shape[:2]:
            raise OpRuntimeError(f"RotaryEmbedding position_ids has shape {position_ids.shape}, expected {xs.shape[:2]}")
        if position_ids.size and (position_ids.min() < 0 or position_ids.max() >= cos_cache.shape[0]):
            raise OpRuntimeError(f"RotaryEmbedding position_ids must lie in [0, {cos_cache.shape[0]})")
        cos, sin = cos_cache[position_ids], sin_cache[position_ids]
    else:
        cos, sin = cos_cache, sin_cache
    if cos.shape[-1] != half or sin.shape[-1] != half:
        raise OpRuntimeError(f"RotaryEmbedding caches end in {cos.shape[-1]} / {sin.shape[-1]}, expected rotary_embedding_dim/2 = {half}")
    try:
        cos = np.broadcast_to(cos, xs.shape[:2] + (half,))[:, :, None, :]
        sin = np.broadcast_to(sin, xs.shape[:2] + (half,))[:, :, None, :]
    except ValueError:
        raise OpRuntimeError(f"RotaryEmbedding caches of shape {cos_cache.shape} do not fit [batch, seq] = {xs.shape[:2]}") from None
    rot = xs[..., :rd]
    if int(ctx.attr("interleaved", 0)):
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., :half], rot[..., half:]
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    out = np.array(xs, copy=True)
    if int(ctx.attr("interleaved", 0)):
        out[..., 0:rd:2] = real
        out[..., 1:rd:2] = imag
    else:
        out[..., :half] = real
        out[..., half:rd] = imag
    if x.ndim == 4:
        return out.transpose(0, 2, 1, 3).astype(x.dtype)
    return out.reshape(x.shape).astype(x.dtype)


# -- SwiGLU ---------------------------------------------------------------------------

def _swiglu_infer(ctx: InferContext) -> list[Type]:
    a, b = tensor_input(ctx, 0), tensor_input(ctx, 1)
    if a is not None and b is not None and a.shape is not None and b.shape is not None:
        if len(a.shape) != len(b.shape) or any(
            isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(a.shape, b.shape)
        ):
            raise ShapeInferenceError(f"SwiGLU needs A and B of the same shape, got {a} and {b}")
        dims = tuple(x if x is not None and (y is None or dims_equal(x, y)) else y if y is not None else x
                     for x, y in zip(a.shape, b.shape))
        return [TensorType(a.dtype, dims)]
    t = a if a is not None else b
    return [TensorType(t.dtype, t.shape) if t is not None else ANY]


@register("SwiGLU", Dynamism.ISDOS, family=ATTENTION, infer=_swiglu_infer)
def swiglu(ctx: KernelContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape != b.shape:
        raise OpRuntimeError(f"SwiGLU needs A and B of the same shape (no broadcasting), got {a.shape} and {b.shape}")
    cdt = _cdt(a, b)
    af = a.astype(cdt)
    alpha = cdt(float(ctx.attr("alpha", 1.0)))
    return (af * _sigmoid(alpha * af) * b.astype(cdt)).astype(a.dtype)


# -- LinearAttention --------------------------------------------------------------------

def _heads(x: np.ndarray, h: int, what: str) -> np.ndarray:
    """[B, T, H*D] -> [B, T, H, D]."""
    if x.ndim != 3 or x.shape[2] % h:
        raise OpRuntimeError(f"LinearAttention {what} of shape {x.shape} must be [B, T, {h} * d]")
    return x.reshape(x.shape[0], x.shape[1], h, x.shape[2] // h)


@register("LinearAttention", Dynamism.ISDOS, family=ATTENTION)
def linear_attention(ctx: KernelContext, query: np.ndarray, key: np.ndarray, value: np.ndarray,
                     past_state: np.ndarray | None = None, decay: np.ndarray | None = None,
                     beta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    hq = int(ctx.attr("q_num_heads", 0) or 0)
    hkv = int(ctx.attr("kv_num_heads", 0) or 0)
    if hq <= 0 or hkv <= 0 or hq % hkv:
        raise OpRuntimeError(f"LinearAttention needs q_num_heads a positive multiple of kv_num_heads, got {hq} and {hkv}")
    rule = str(ctx.attr("update_rule", "gated_delta"))
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise OpRuntimeError(f"LinearAttention update_rule must be linear, gated, delta or gated_delta, got '{rule}'")
    cdt = np.float32
    q = _heads(query, hq, "query").astype(cdt)
    kk = _heads(key, hkv, "key").astype(cdt)
    vv = _heads(value, hkv, "value").astype(cdt)
    bsz, steps, _, dk = kk.shape
    dv = vv.shape[3]
    if q.shape[:2] != (bsz, steps) or q.shape[3] != dk or vv.shape[:2] != (bsz, steps):
        raise OpRuntimeError(f"LinearAttention query {query.shape}, key {key.shape}, value {value.shape} do not match")
    gated = rule in ("gated", "gated_delta")
    delta = rule in ("delta", "gated_delta")
    g: np.ndarray | None = None
    if gated:
        if decay is None:
            raise OpRuntimeError(f"LinearAttention update_rule '{rule}' needs the decay input")
        if decay.shape == (bsz, steps, hkv * dk):
            g = decay.astype(cdt).reshape(bsz, steps, hkv, dk, 1)
        elif decay.shape == (bsz, steps, hkv):
            g = decay.astype(cdt).reshape(bsz, steps, hkv, 1, 1)
        else:
            raise OpRuntimeError(f"LinearAttention decay has shape {decay.shape}, expected {(bsz, steps, hkv * dk)} or {(bsz, steps, hkv)}")
    bt: np.ndarray | None = None
    if delta:
        if beta is None:
            raise OpRuntimeError(f"LinearAttention update_rule '{rule}' needs the beta input")
        if beta.shape not in ((bsz, steps, hkv), (bsz, steps, 1)):
            raise OpRuntimeError(f"LinearAttention beta has shape {beta.shape}, expected {(bsz, steps, hkv)} or {(bsz, steps, 1)}")
        bt = np.broadcast_to(beta.astype(cdt), (bsz, steps, hkv))[..., None, None]
    if past_state is not None:
        if past_state.shape != (bsz, hkv, dk, dv):
            raise OpRuntimeError(f"LinearAttention past_state has shape {past_state.shape}, expected {(bsz, hkv, dk, dv)}")
        state = past_state.astype(cdt)
    else:
        state = np.zeros((bsz, hkv, dk, dv), dtype=cdt)
    scale = float(ctx.attr("scale", 0.0) or 0.0) or 1.0 / float(np.sqrt(dk))
    group = hq // hkv
    out = np.zeros((bsz, steps, hq, dv), dtype=cdt)
    for t in range(steps):
        kt, vt = kk[:, t], vv[:, t]  # [B, Hkv, dk], [B, Hkv, dv]
        if g is not None:
            state = np.exp(g[:, t]) * state
        if bt is not None:
            pred = np.einsum("bhkv,bhk->bhv", state, kt)
            state = state + bt[:, t] * kt[..., :, None] * (vt - pred)[..., None, :]
        else:
            state = state + kt[..., :, None] * vt[..., None, :]
        full = np.repeat(state, group, axis=1) if group > 1 else state
        out[:, t] = scale * np.einsum("bhk,bhkv->bhv", q[:, t], full)
    sdt = past_state.dtype if past_state is not None else query.dtype
    return out.reshape(bsz, steps, hq * dv).astype(query.dtype), state.astype(sdt)


# -- FlexAttention (ai.onnx.preview) ------------------------------------------------------

def _flex_infer(ctx: InferContext) -> list[Type]:
    q, v = tensor_input(ctx, 0), tensor_input(ctx, 2)
    dt = q.dtype if q is not None else None
    if q is None or v is None or q.shape is None or v.shape is None:
        return [TensorType(dt, None)]
    if len(q.shape) != 4 or len(v.shape) != 4:
        raise ShapeInferenceError(f"FlexAttention needs rank-4 Q, K, V, got {q} and {v}")
    return [TensorType(dt, (q.shape[0], q.shape[1], q.shape[2], v.shape[3]))]


@register("FlexAttention", Dynamism.ISDOS, domain="ai.onnx.preview", family=ATTENTION, infer=_flex_infer,
          note="as dynamic as its score_mod / prob_mod bodies, which must keep their input's shape")
def flex_attention(ctx: KernelContext, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise OpRuntimeError(f"FlexAttention needs rank-4 Q, K, V, got shapes {q.shape}, {k.shape}, {v.shape}")
    bsz, hq, _, dh = q.shape
    if k.shape[0] != bsz or k.shape[3] != dh or v.shape[:3] != k.shape[:3]:
        raise OpRuntimeError(f"FlexAttention Q {q.shape}, K {k.shape}, V {v.shape} do not match")
    sp = ctx.attr("softmax_precision")
    if sp:
        sdt = DType.from_onnx(int(sp)).numpy
    else:
        sdt = np.dtype(np.float64 if q.dtype == np.float64 else np.float32)
    scale = ctx.attr("scale")
    scale = float(scale) if scale is not None else 1.0 / float(np.sqrt(dh))
    kk = _repeat_heads(k, hq, "FlexAttention").astype(sdt)
    vv = _repeat_heads(v, hq, "FlexAttention").astype(sdt)
    scores = (q.astype(sdt) @ np.swapaxes(kk, -1, -2)) * sdt.type(scale)
    regions = ctx.op.regions
    if "score_mod" in regions:
        scores = _run_mod(ctx, "score_mod", scores)
    probs = _masked_softmax(scores).astype(sdt)
    if "prob_mod" in regions:
        probs = _run_mod(ctx, "prob_mod", probs)
    return (probs @ vv).astype(q.dtype)


def _run_mod(ctx: KernelContext, key: str, x: np.ndarray) -> np.ndarray:
    out = ctx.run_region(key, [x])
    if len(out) != 1 or not isinstance(out[0], np.ndarray) or out[0].shape != x.shape:
        got = [getattr(o, "shape", type(o).__name__) for o in out]
        raise OpRuntimeError(f"FlexAttention {key} must return one tensor of shape {x.shape}, got {got}")
    return out[0].astype(x.dtype)
