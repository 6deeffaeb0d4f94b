"""Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Both take scores of shape (N, C, d1, ..., dk) and integer targets of shape
(N, d1, ..., dk).  ``reduction`` is 'none' (the per-element loss, shaped like
the target), 'sum' or 'mean' (a scalar; 'mean' divides by the total weight of
the targets that are not ``ignore_index``).
"""

from __future__ import annotations

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops.infer import tensor_input
from pliant.ops.numerics import work_dtype
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

LOSS = "loss"

_REDUCTIONS = ("none", "sum", "mean")
_NOTE = "the output is a scalar for reduction 'sum'/'mean' and shaped like the target for 'none'"




def _reduction(attr: object) -> str:
    r = str(attr) if attr is not None else "mean"
    if r not in _REDUCTIONS:
        raise OpRuntimeError(f"reduction must be one of {', '.join(_REDUCTIONS)}, got '{r}'")
    return r


def _nll(
    log_p: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str, ignore_index: int | None, op: str
) -> np.ndarray:
    """The negative log-likelihood of ``target`` under ``log_p`` (N, C, d...), in log_p's dtype."""
    if log_p.ndim < 2:
        raise OpRuntimeError(f"{op}: the input must have shape (N, C, d1, ...), got {list(log_p.shape)}")
    n, c = log_p.shape[0], log_p.shape[1]
    want = (n, *log_p.shape[2:])
    if tuple(target.shape) != want:
        raise OpRuntimeError(
            f"{op}: the target must have shape {list(want)} for an input of shape {list(log_p.shape)}, "
            f"got {list(target.shape)}"
        )
    if weight is not None and tuple(weight.shape) != (c,):
        raise OpRuntimeError(f"{op}: the weight must have shape [{c}], got {list(weight.shape)}")
    t = target.astype(np.int64)
    keep = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    bad = keep & ((t < 0) | (t >= c))
    if bad.any():
        raise OpRuntimeError(f"{op}: target value {int(t[bad][0])} is out of range [0, {c}) and is not ignore_index")
    t = np.where(keep, t, 0)
    picked = np.take_along_axis(log_p, np.expand_dims(t, 1), axis=1)[:, 0]
    w = log_p.dtype
    if weight is not None:
        tw = weight.astype(w)[t]
    else:
        tw = np.ones(t.shape, dtype=w)
    tw = np.where(keep, tw, w.type(0))
    loss = -picked * tw
    if reduction == "none":
        return loss
    total = np.sum(loss, dtype=w)
    if reduction == "sum":
        return np.asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / np.sum(tw, dtype=w))


def _loss_infer(ctx: InferContext) -> list[Type]:
    t = tensor_input(ctx, 0)
    tt = tensor_input(ctx, 1)
    dtype = t.dtype if t else None
    red = str(ctx.attr("reduction", "mean"))
    if red not in _REDUCTIONS:
        raise ShapeInferenceError(f"{ctx.name}: reduction must be one of {', '.join(_REDUCTIONS)}, got '{red}'")
    extra: list[Type] = [t if t is not None else ANY] if ctx.num_outputs > 1 else []
    if red != "none":
        return [TensorType(dtype, ()), *extra]
    shape: tuple[Dim, ...] | None = None
    if tt is not None and tt.shape is not None:
        shape = tt.shape
    elif t is not None and t.shape is not None:
        if len(t.shape) < 2:
            raise ShapeInferenceError(f"{ctx.name}: the input must have rank >= 2, got {len(t.shape)}")
        shape = (t.shape[0], *t.shape[2:])
    return [TensorType(dtype, shape), *extra]


def _ignore_index(ctx: KernelContext) -> int | None:
    v = ctx.attrs.get("ignore_index")
    return None if v is None else int(v)  # type: ignore[call-overload]


@register("NegativeLogLikelihoodLoss", Dynamism.ISDOS, family=LOSS, infer=_loss_infer, note=_NOTE)
def nll_loss(ctx: KernelContext, x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    w = work_dtype(x.dtype)
    red = _reduction(ctx.attrs.get("reduction"))
    out = _nll(x.astype(w, copy=False), target, weight, red, _ignore_index(ctx), "NegativeLogLikelihoodLoss")
    return out.astype(x.dtype, copy=False)


def _log_softmax_axis1(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=1, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    s = x - m
    return s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))


@register("SoftmaxCrossEntropyLoss", Dynamism.ISDOS, family=LOSS, infer=_loss_infer, note=_NOTE)
def softmax_cross_entropy_loss(
    ctx: KernelContext, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    if scores.ndim < 2:
        raise OpRuntimeError(f"SoftmaxCrossEntropyLoss: scores must have shape (N, C, d1, ...), got {list(scores.shape)}")
    w = work_dtype(scores.dtype)
    log_p = _log_softmax_axis1(scores.astype(w, copy=False))
    red = _reduction(ctx.attrs.get("reduction"))
    loss = _nll(log_p, labels, weights, red, _ignore_index(ctx), "SoftmaxCrossEntropyLoss")
    return loss.astype(scores.dtype, copy=False), log_p.astype(scores.dtype, copy=False)

