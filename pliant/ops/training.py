"""Optimizer steps of the ``ai.onnx.preview.training`` domain: Adagrad, Adam, Momentum.

Inputs are ``R, T`` then groups of n tensors each (X..., G..., then the
optimizer's state tensors); outputs are the updated X... then the updated
state groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.types import ANY, Type
from pliant.ops.registry import Dynamism, InferContext, InferFn, KernelContext, register

TRAINING = "training"
DOMAIN = "ai.onnx.preview.training"


def _groups(n_inputs: int, per: int, op: str) -> int:
    rest = n_inputs - 2
    if rest <= 0 or rest % per:
        raise OpRuntimeError(f"{op} takes R, T and {per} groups of equally many tensors; got {n_inputs} inputs")
    return rest // per


def _infer(per: int, out_groups: Sequence[int]) -> InferFn:
    """Outputs have the types of the input groups ``out_groups`` (0: X, 2: first state...)."""

    def rule(ctx: InferContext) -> list[Type]:
        rest = len(ctx.input_types) - 2
        if rest <= 0 or rest % per:
            raise ShapeInferenceError(f"{ctx.name} takes R, T and {per} groups of tensors; got {len(ctx.input_types)} inputs")
        n = rest // per
        out: list[Type] = []
        for g in out_groups:
            out += [t if t is not None else ANY for t in ctx.input_types[2 + g * n : 2 + (g + 1) * n]]
        return out[: ctx.num_outputs] + [ANY] * (ctx.num_outputs - len(out))

    return rule


def _scalar(v: np.ndarray, what: str, op: str) -> float:
    if v.size != 1:
        raise OpRuntimeError(f"{op}: {what} must be a scalar, got shape {v.shape}")
    return float(v.reshape(-1)[0])


def _check_shapes(op: str, *group: np.ndarray) -> None:
    if len({t.shape for t in group}) > 1:
        raise OpRuntimeError(f"{op}: a tensor, its gradient and its state must share a shape, got {[t.shape for t in group]}")


@register("Adagrad", Dynamism.ISDOS, domain=DOMAIN, infer=_infer(3, (0, 2)), family=TRAINING)
def adagrad(ctx: KernelContext, r: np.ndarray, t: np.ndarray, *tensors: np.ndarray) -> tuple[np.ndarray, ...]:
    n = _groups(len(tensors) + 2, 3, "Adagrad")
    rate = _scalar(r, "R", "Adagrad") / (1.0 + _scalar(t, "T", "Adagrad") * float(ctx.attr("decay_factor", 0.0)))
    norm = float(ctx.attr("norm_coefficient", 0.0))
    eps = float(ctx.attr("epsilon", 1e-6))
    xs, hs = [], []
    for i in range(n):
        x, g, h = tensors[i], tensors[n + i], tensors[2 * n + i]
        _check_shapes("Adagrad", x, g, h)
        gr = norm * x.astype(np.float64) + g
        h_new = h + gr * gr
        xs.append((x - rate * gr / (np.sqrt(h_new) + eps)).astype(x.dtype))
        hs.append(h_new.astype(h.dtype))
    return (*xs, *hs)


@register("Adam", Dynamism.ISDOS, domain=DOMAIN, infer=_infer(4, (0, 2, 3)), family=TRAINING)
def adam(ctx: KernelContext, r: np.ndarray, t: np.ndarray, *tensors: np.ndarray) -> tuple[np.ndarray, ...]:
    n = _groups(len(tensors) + 2, 4, "Adam")
    rate, step = _scalar(r, "R", "Adam"), _scalar(t, "T", "Adam")
    alpha, beta = float(ctx.attr("alpha", 0.9)), float(ctx.attr("beta", 0.999))
    norm, norm_post = float(ctx.attr("norm_coefficient", 0.0)), float(ctx.attr("norm_coefficient_post", 0.0))
    eps = float(ctx.attr("epsilon", 1e-6))
    if step > 0:
        rate = rate * math.sqrt(1.0 - beta**step) / (1.0 - alpha**step)
    xs, vs, hs = [], [], []
    for i in range(n):
        x, g, v, h = tensors[i], tensors[n + i], tensors[2 * n + i], tensors[3 * n + i]
        _check_shapes("Adam", x, g, v, h)
        gr = norm * x.astype(np.float64) + g
        v_new = alpha * v + (1.0 - alpha) * gr
        h_new = beta * h + (1.0 - beta) * gr * gr
        x_new = x - rate * v_new / (np.sqrt(h_new) + eps)
        xs.append(((1.0 - norm_post) * x_new).astype(x.dtype))
        vs.append(v_new.astype(v.dtype))
        hs.append(h_new.astype(h.dtype))
    return (*xs, *vs, *hs)


@register("Momentum", Dynamism.ISDOS, domain=DOMAIN, infer=_infer(3, (0, 2)), family=TRAINING)
def momentum(ctx: KernelContext, r: np.ndarray, t: np.ndarray, *tensors: np.ndarray) -> tuple[np.ndarray, ...]:
    n = _groups(len(tensors) + 2, 3, "Momentum")
    rate, step = _scalar(r, "R", "Momentum"), _scalar(t, "T", "Momentum")
    for name in ("alpha", "beta", "mode", "norm_coefficient"):
        if ctx.attrs.get(name) is None:
            raise OpRuntimeError(f"Momentum needs the '{name}' attribute")
    alpha, beta = float(ctx.attrs["alpha"]), float(ctx.attrs["beta"])
    norm = float(ctx.attrs["norm_coefficient"])
    mode = str(ctx.attrs["mode"])
    if mode not in ("standard", "nesterov"):
        raise OpRuntimeError(f"Momentum: mode must be 'standard' or 'nesterov', got {mode!r}")
    beta_adj = beta if step > 0 else 1.0
    xs, vs = [], []
    for i in range(n):
        x, g, v = tensors[i], tensors[n + i], tensors[2 * n + i]
        _check_shapes("Momentum", x, g, v)
        gr = norm * x.astype(np.float64) + g
        v_new = alpha * v + beta_adj * gr
        x_new = x - rate * (gr + alpha * v_new if mode == "nesterov" else v_new)
        xs.append(x_new.astype(x.dtype))
        vs.append(v_new.astype(v.dtype))
    return (*xs, *vs)
