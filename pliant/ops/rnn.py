"""Recurrent operators: RNN, GRU, LSTM.

One kernel skeleton serves all three: the time loop is Python, each step is
vectorised over the batch.  ``sequence_lens`` is honoured per batch entry:
steps past a sequence's length leave its state untouched and write zeros to
``Y``; the reverse direction starts at each sequence's own last element.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.dims import Dim
from pliant.ir.types import ANY, TensorType, Type
from pliant.ops.infer import tensor_input
from pliant.ops.registry import Dynamism, InferContext, KernelContext, register

RNN_FAMILY = "rnn"

Act = Callable[[np.ndarray], np.ndarray]

# name -> (uses alpha, uses beta, default alpha, default beta)
_ACT_PARAMS: dict[str, tuple[bool, bool, float, float]] = {
    "relu": (False, False, 0.0, 0.0),
    "tanh": (False, False, 0.0, 0.0),
    "sigmoid": (False, False, 0.0, 0.0),
    "affine": (True, True, 1.0, 0.0),
    "leakyrelu": (True, False, 0.01, 0.0),
    "thresholdedrelu": (True, False, 1.0, 0.0),
    "scaledtanh": (True, True, 1.0, 1.0),
    "hardsigmoid": (True, True, 0.2, 0.5),
    "elu": (True, False, 1.0, 0.0),
    "softsign": (False, False, 0.0, 0.0),
    "softplus": (False, False, 0.0, 0.0),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # NOTE: split by sign so that large |x| neither overflows nor loses precision.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _make_act(name: str, alpha: float, beta: float) -> Act:
    n = name.lower()
    if n == "relu":
        return lambda x: np.maximum(x, 0)
    if n == "tanh":
        return np.tanh
    if n == "sigmoid":
        return _sigmoid
    if n == "affine":
        return lambda x: alpha * x + beta
    if n == "leakyrelu":
        return lambda x: np.where(x >= 0, x, alpha * x)
    if n == "thresholdedrelu":
        return lambda x: np.where(x >= alpha, x, 0)
    if n == "scaledtanh":
        return lambda x: alpha * np.tanh(beta * x)
    if n == "hardsigmoid":
        return lambda x: np.clip(alpha * x + beta, 0, 1)
    if n == "elu":
        return lambda x: np.where(x >= 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))
    if n == "softsign":
        return lambda x: x / (1 + np.abs(x))
    if n == "softplus":
        return lambda x: np.logaddexp(0, x)
    raise OpRuntimeError(f"unknown recurrent activation function '{name}' (known: {', '.join(sorted(_ACT_PARAMS))})")


def _activations(ctx: KernelContext, defaults: list[str], num_dirs: int) -> list[list[Act]]:
    """The activation functions per direction, alpha/beta consumed in order by the functions that take them."""
    # NOTE: only an explicit attribute counts: RNN's schema default lists two functions for one gate.
    names = list(ctx.op.attrs.get("activations", []) or [])  # type: ignore[arg-type]
    per = len(defaults)
    if not names:
        names = defaults * num_dirs
    elif len(names) == per and num_dirs == 2:
        names = names * 2
    if len(names) != per * num_dirs:
        raise OpRuntimeError(f"{ctx.op.name} needs {per * num_dirs} activations for {num_dirs} direction(s), got {names}")
    alphas = list(ctx.attr("activation_alpha", []) or [])
    betas = list(ctx.attr("activation_beta", []) or [])
    fns: list[Act] = []
    for n in names:
        key = n.lower()
        if key not in _ACT_PARAMS:
            raise OpRuntimeError(f"unknown recurrent activation function '{n}' (known: {', '.join(sorted(_ACT_PARAMS))})")
        ua, ub, da, db = _ACT_PARAMS[key]
        a = float(alphas.pop(0)) if ua and alphas else da
        b = float(betas.pop(0)) if ub and betas else db
        fns.append(_make_act(key, a, b))
    return [fns[d * per:(d + 1) * per] for d in range(num_dirs)]


def _num_dirs(direction: str) -> int:
    if direction in ("forward", "reverse"):
        return 1
    if direction == "bidirectional":
        return 2
    raise OpRuntimeError(f"direction must be forward, reverse or bidirectional, got '{direction}'")


def _clipper(ctx: KernelContext) -> Act:
    clip = ctx.attr("clip")
    if clip is None:
        return lambda x: x
    c = float(clip)
    return lambda x: np.clip(x, -c, c)


StepFn = Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]]
"""(projected input x_t @ W^T + Wb [batch, G*hidden], states) -> new states (state 0 is H)."""


def _run_direction(xw: np.ndarray, lens: np.ndarray, reverse: bool, states: list[np.ndarray], step: StepFn) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run one direction over time; ``xw`` is [seq, batch, G*hidden]; returns Y [seq, batch, hidden] and final states."""
    seq, batch = xw.shape[0], xw.shape[1]
    hidden = states[0].shape[-1]
    y = np.zeros((seq, batch, hidden), dtype=states[0].dtype)
    b_idx = np.arange(batch)
    for s in range(seq):
        active = s < lens
        if not active.any():
            break
        t = np.where(active, lens - 1 - s, 0) if reverse else np.full(batch, s)
        new = step(xw[t, b_idx], states)
        m = active[:, None]
        states = [np.where(m, n, o) for n, o in zip(new, states)]
        y[t[active], b_idx[active]] = states[0][active]
    return y, states


def _common(ctx: KernelContext, x: np.ndarray, w: np.ndarray, r: np.ndarray, seq_lens: np.ndarray | None,
            gates: int) -> tuple[np.ndarray, int, int, str, np.ndarray, Any]:
    layout = int(ctx.attr("layout", 0))
    if x.ndim != 3:
        raise OpRuntimeError(f"{ctx.op.name} input X must have rank 3, got shape {x.shape}")
    if layout == 1:
        x = np.swapaxes(x, 0, 1)
    seq, batch = x.shape[0], x.shape[1]
    direction = str(ctx.attr("direction", "forward"))
    nd = _num_dirs(direction)
    hidden = int(ctx.attr("hidden_size", 0) or r.shape[-1])
    if w.shape[0] != nd or w.shape[1] != gates * hidden or w.shape[2] != x.shape[2]:
        raise OpRuntimeError(f"{ctx.op.name} W has shape {w.shape}, expected {(nd, gates * hidden, x.shape[2])}")
    if r.shape != (nd, gates * hidden, hidden):
        raise OpRuntimeError(f"{ctx.op.name} R has shape {r.shape}, expected {(nd, gates * hidden, hidden)}")
    if seq_lens is None:
        lens = np.full(batch, seq, dtype=np.int64)
    else:
        lens = seq_lens.astype(np.int64).reshape(-1)
        if lens.shape[0] != batch or np.any(lens < 0) or np.any(lens > seq):
            raise OpRuntimeError(f"{ctx.op.name} sequence_lens {lens.tolist()} must hold {batch} values in [0, {seq}]")
    cdt = np.float64 if x.dtype == np.float64 else np.float32
    return x.astype(cdt), nd, hidden, direction, lens, cdt


def _state(v: np.ndarray | None, nd: int, batch: int, hidden: int, layout: int, cdt: Any, what: str) -> np.ndarray:
    if v is None:
        return np.zeros((nd, batch, hidden), dtype=cdt)
    s = np.swapaxes(v, 0, 1) if layout == 1 else v
    if s.shape != (nd, batch, hidden):
        raise OpRuntimeError(f"{what} has shape {v.shape}, expected {(nd, batch, hidden)} (layout {layout})")
    return s.astype(cdt)


def _outputs(ctx: KernelContext, ys: list[np.ndarray], finals: list[list[np.ndarray]], dtype: np.dtype[Any]) -> tuple[np.ndarray, ...]:
    layout = int(ctx.attr("layout", 0))
    y = np.stack(ys, axis=1)  # [seq, nd, batch, hidden]
    outs = [y] + [np.stack([f[k] for f in finals], axis=0) for k in range(len(finals[0]))]
    if layout == 1:
        outs = [np.transpose(outs[0], (2, 0, 1, 3))] + [np.swapaxes(o, 0, 1) for o in outs[1:]]
    return tuple(o.astype(dtype) for o in outs)


def _directions(direction: str, nd: int) -> list[bool]:
    return [direction == "reverse"] if nd == 1 else [False, True]


# -- shape rule -----------------------------------------------------------------

def _rnn_infer(ctx: InferContext) -> list[Type]:
    x = tensor_input(ctx, 0)
    r = tensor_input(ctx, 2)
    direction = str(ctx.attr("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ShapeInferenceError(f"{ctx.name}: direction must be forward, reverse or bidirectional, got '{direction}'")
    nd = 2 if direction == "bidirectional" else 1
    hidden: Dim = ctx.attr("hidden_size")
    if hidden is None and r is not None and r.shape is not None and len(r.shape) == 3:
        hidden = r.shape[2]
    dtype = x.dtype if x is not None else None
    if x is None or x.shape is None:
        seq: Dim = None
        batch: Dim = None
    else:
        if len(x.shape) != 3:
            raise ShapeInferenceError(f"{ctx.name}: X must have rank 3, got {x}")
        seq, batch = x.shape[0], x.shape[1]
        if int(ctx.attr("layout", 0)) == 1:
            seq, batch = batch, seq
    if int(ctx.attr("layout", 0)) == 1:
        y = TensorType(dtype, (batch, seq, nd, hidden))
        s = TensorType(dtype, (batch, nd, hidden))
    else:
        y = TensorType(dtype, (seq, nd, batch, hidden))
        s = TensorType(dtype, (nd, batch, hidden))
    out: list[Type] = [y, s, s]
    return out[: ctx.num_outputs] + [ANY] * max(0, ctx.num_outputs - 3)


_NOTE = "sequence_lens values decide which Y rows are zero, never the output shapes"


# -- RNN --------------------------------------------------------------------------

@register("RNN", Dynamism.ISDOS, family=RNN_FAMILY, infer=_rnn_infer, note=_NOTE)
def rnn(ctx: KernelContext, x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None = None,
        seq_lens: np.ndarray | None = None, initial_h: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    dtype = x.dtype
    xs, nd, hidden, direction, lens, cdt = _common(ctx, x, w, r, seq_lens, 1)
    batch = xs.shape[1]
    h0 = _state(initial_h, nd, batch, hidden, int(ctx.attr("layout", 0)), cdt, "initial_h")
    acts = _activations(ctx, ["Tanh"], nd)
    clip = _clipper(ctx)
    ys, finals = [], []
    for d, rev in enumerate(_directions(direction, nd)):
        wd, rd = w[d].astype(cdt), r[d].astype(cdt)
        bias = b[d].astype(cdt).reshape(2, hidden).sum(axis=0) if b is not None else np.zeros(hidden, dtype=cdt)
        xw = xs @ wd.T + bias
        f = acts[d][0]

        def step(xt: np.ndarray, st: list[np.ndarray], rd: np.ndarray = rd, f: Act = f) -> list[np.ndarray]:
            return [f(clip(xt + st[0] @ rd.T))]

        y, fin = _run_direction(xw, lens, rev, [h0[d]], step)
        ys.append(y)
        finals.append(fin)
    return _outputs(ctx, ys, finals, dtype)


# -- GRU --------------------------------------------------------------------------

@register("GRU", Dynamism.ISDOS, family=RNN_FAMILY, infer=_rnn_infer, note=_NOTE)
def gru(ctx: KernelContext, x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None = None,
        seq_lens: np.ndarray | None = None, initial_h: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    dtype = x.dtype
    xs, nd, hidden, direction, lens, cdt = _common(ctx, x, w, r, seq_lens, 3)
    batch = xs.shape[1]
    h0 = _state(initial_h, nd, batch, hidden, int(ctx.attr("layout", 0)), cdt, "initial_h")
    acts = _activations(ctx, ["Sigmoid", "Tanh"], nd)
    clip = _clipper(ctx)
    lbr = bool(ctx.attr("linear_before_reset", 0))
    H = hidden
    ys, finals = [], []
    for d, rev in enumerate(_directions(direction, nd)):
        wd, rd = w[d].astype(cdt), r[d].astype(cdt)
        bb = b[d].astype(cdt) if b is not None else np.zeros(6 * H, dtype=cdt)
        wb, rb = bb[: 3 * H], bb[3 * H:]
        xw = xs @ wd.T + wb
        f, g = acts[d]
        r_zr, r_h = rd[: 2 * H], rd[2 * H:]
        rb_zr, rb_h = rb[: 2 * H], rb[2 * H:]

        def step(xt: np.ndarray, st: list[np.ndarray], r_zr: np.ndarray = r_zr, r_h: np.ndarray = r_h,
                 rb_zr: np.ndarray = rb_zr, rb_h: np.ndarray = rb_h, f: Act = f, g: Act = g) -> list[np.ndarray]:
            h = st[0]
            zr = f(clip(xt[:, : 2 * H] + h @ r_zr.T + rb_zr))
            z, rr = zr[:, :H], zr[:, H:]
            if lbr:
                hh = g(clip(xt[:, 2 * H:] + rr * (h @ r_h.T + rb_h)))
            else:
                hh = g(clip(xt[:, 2 * H:] + (rr * h) @ r_h.T + rb_h))
            return [(1 - z) * hh + z * h]

        y, fin = _run_direction(xw, lens, rev, [h0[d]], step)
        ys.append(y)
        finals.append(fin)
    return _outputs(ctx, ys, finals, dtype)


# -- LSTM -------------------------------------------------------------------------

@register("LSTM", Dynamism.ISDOS, family=RNN_FAMILY, infer=_rnn_infer, note=_NOTE)
def lstm(ctx: KernelContext, x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None = None,
         seq_lens: np.ndarray | None = None, initial_h: np.ndarray | None = None, initial_c: np.ndarray | None = None,
         p: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    dtype = x.dtype
    xs, nd, hidden, direction, lens, cdt = _common(ctx, x, w, r, seq_lens, 4)
    batch = xs.shape[1]
    layout = int(ctx.attr("layout", 0))
    h0 = _state(initial_h, nd, batch, hidden, layout, cdt, "initial_h")
    c0 = _state(initial_c, nd, batch, hidden, layout, cdt, "initial_c")
    acts = _activations(ctx, ["Sigmoid", "Tanh", "Tanh"], nd)
    clip = _clipper(ctx)
    input_forget = bool(ctx.attr("input_forget", 0))
    H = hidden
    if p is not None and p.shape != (nd, 3 * H):
        raise OpRuntimeError(f"LSTM P has shape {p.shape}, expected {(nd, 3 * H)}")
    ys, finals = [], []
    for d, rev in enumerate(_directions(direction, nd)):
        wd, rd = w[d].astype(cdt), r[d].astype(cdt)
        bias = b[d].astype(cdt).reshape(2, 4 * H).sum(axis=0) if b is not None else np.zeros(4 * H, dtype=cdt)
        pd = p[d].astype(cdt) if p is not None else np.zeros(3 * H, dtype=cdt)
        pi, po, pf = pd[:H], pd[H: 2 * H], pd[2 * H:]
        xw = xs @ wd.T + bias
        f, g, h_act = acts[d]

        def step(xt: np.ndarray, st: list[np.ndarray], rd: np.ndarray = rd, pi: np.ndarray = pi, po: np.ndarray = po,
                 pf: np.ndarray = pf, f: Act = f, g: Act = g, h_act: Act = h_act) -> list[np.ndarray]:
            h, c = st
            gates = xt + h @ rd.T
            i = f(clip(gates[:, :H] + pi * c))
            if input_forget:
                fg = 1 - i
            else:
                fg = f(clip(gates[:, 2 * H: 3 * H] + pf * c))
            cc = g(clip(gates[:, 3 * H:]))
            c_new = fg * c + i * cc
            o = f(clip(gates[:, H: 2 * H] + po * c_new))
            return [o * h_act(c_new), c_new]

        y, fin = _run_direction(xw, lens, rev, [h0[d], c0[d]], step)
        ys.append(y)
        finals.append(fin)
    return _outputs(ctx, ys, finals, dtype)
