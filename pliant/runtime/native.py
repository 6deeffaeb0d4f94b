"""Float32 fast paths for the ops that dominate the model suite: softmax, normalisation, erf/GELU, conv, pooling.

Each function takes float32 NumPy arrays (one not in C order is copied first) and
returns a new array with the meaning of the ONNX operator (opset 13+), as the
reference kernels in ``pliant.ops`` compute it.  The work runs in kernels written
in the kernel language (``pliant.tc``): each is compiled on first use in its
*generic* version -- every size is a run-time argument, so one compiled object
serves every shape and a new shape never recompiles -- cached on disk by the
kernel layer and kept in this process.  Loops are vectorised and, past a work
threshold, run in parallel with OpenMP (``OMP_NUM_THREADS`` threads).  A
convolution other than a depthwise one is one call into ``conv.c`` (through
``pliant.runtime.blas_conv``): patches gathered into packed panels, its own
GEMM and the epilogue.  Each choice is commented where it is made.

Errors, so that a caller can fall back to the reference kernel:

- ``NativeUnsupportedError`` (a ``ValueError``): inputs this module does not
  handle (another dtype, an unsupported rank) or that the operator rejects
  (shapes that do not fit).  The message says which.
- ``pliant.kernels.errors.CompilerNotFoundError`` (a ``TCError``, not a
  ``ValueError``): a kernel had to be compiled and there is no working C
  compiler (``$CC``, default ``cc``).  A caller that must work without one
  catches it (or ``TCError``) as well.

>>> import numpy as np
>>> from pliant.runtime import native
>>> native.softmax(np.array([[0.0, 1.0]], np.float32), axis=-1).round(4)
array([[0.2689, 0.7311]], dtype=float32)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pliant import tc
from pliant.errors import OpRuntimeError
from pliant.kernels.lower import PARALLEL_MIN_WORK
from pliant.ops.conv import window_geometry
from pliant.runtime import blas_conv

__all__ = [
    "NativeUnsupportedError",
    "average_pool",
    "bias_gelu_erf",
    "conv",
    "erf",
    "gelu",
    "global_average_pool",
    "layer_norm",
    "log_softmax",
    "max_pool",
    "softmax",
]


class NativeUnsupportedError(ValueError):
    """The native path does not handle these inputs; the reference kernel should run instead."""


# --- the kernels -------------------------------------------------------------------------------
#
# NOTE: the kernel language takes sizes only from the shapes of its inputs (and a `where` range cannot
# divide, so an output size cannot be derived in the kernel), so a window's geometry -- output size,
# kernel size, strides and dilations, begin pads + 1 (sizes are positive) -- travels as the *shapes* of
# tiny inputs the kernels never read: O(OH,OW), K(KH,KW), S(SH,SW,DH,DW), P(PT,PL).  One compiled object
# then serves every geometry as well as every shape.  Reads outside the input are guarded by the kernel
# layer (they read 0, which is zero padding); max pooling tests the bounds itself.

_GEOMETRY = "float(OH,OW) O, float(KH,KW) K, float(SH,SW,DH,DW) S, float(PT,PL) P"
_IH = "oh*SH + kh*DH + 1 - PT"
_IW = "ow*SW + kw*DW + 1 - PL"
_WINDOW = "oh in 0:OH, ow in 0:OW, kh in 0:KH, kw in 0:KW"


def _s(*order: tuple[str, ...], parallel: str = "auto") -> tc.Schedule:
    return tc.Schedule(order=tuple(order), parallel=parallel)


def _layer_norm_source(scale: str, bias: str) -> str:
    """LayerNormalization over the rows of X(N,C); scale and bias per column (``vec``) or per element (``full``)."""
    index = {"vec": "(c)", "full": "(n,c)"}
    shape = {"vec": "(C)", "full": "(N,C)"}
    params = f"float{shape[scale]} G" + ("" if bias == "none" else f", float{shape[bias]} B")
    tail = "" if bias == "none" else f" + B{index[bias]}"
    return f"""def layer_norm_{scale}_{bias}(float(N,C) X, {params}, float eps) -> (Y) {{
  s(n) +=! float64(X(n,c))
  mean(n) = float32(s(n) / C)
  v(n) +=! float64((X(n,c) - mean(n)) * (X(n,c) - mean(n)))
  inv(n) = float32(1.0 / sqrt(v(n) / C + eps))
  Y(n,c) = (X(n,c) - mean(n)) * inv(n) * G{index[scale]}{tail}
}}"""


_NC = ("n", "c")
_ELEMENTWISE = {
    "erf": "erf(X(i))",
    "gelu_erf": "0.5 * X(i) * (1.0 + erf(X(i) * 0.7071067811865476))",
    "gelu_tanh": "0.5 * X(i) * (1.0 + tanh(0.7978845608028654 * (X(i) + 0.044715 * X(i) * X(i) * X(i))))",
}
# NOTE: a 1-D loop that is both parallel and vector becomes `omp parallel for simd if(work >= threshold)`,
# and an OpenMP `if` without a modifier applies to `simd` too: below the threshold the loop runs scalar
# (7 ns per erf instead of 0.7).  So small inputs take a variant with `parallel="none"` (plain `omp simd`).
_SERIAL_BELOW = PARALLEL_MIN_WORK
_SOURCES: dict[str, tuple[str, tc.Schedule]] = {
    # softmax along the last axis of X(N,M); a non-finite row maximum is replaced by 0, as the reference does.
    # Y holds the exponentials, then is scaled in place by 1/sum (measured: 20% faster than a temporary and
    # a division; 1 ulp from the reference's division)
    "softmax_rows": (
        """def softmax_rows(float(N,M) X) -> (Y) {
  mx(n) max=! X(n,m)
  c(n) = (mx(n) - mx(n) == 0.0) ? mx(n) : 0.0
  Y(n,m) = exp(X(n,m) - c(n))
  s(n) +=! Y(n,m)
  r(n) = 1.0 / s(n)
  Y(n,m) = Y(n,m) * r(n)
}""",
        _s(("n", "m"), ("n",), ("n", "m"), ("n", "m"), ("n",), ("n", "m")),
    ),
    "log_softmax_rows": (
        """def log_softmax_rows(float(N,M) X) -> (Y) {
  mx(n) max=! X(n,m)
  c(n) = (mx(n) - mx(n) == 0.0) ? mx(n) : 0.0
  s(n) +=! exp(X(n,m) - c(n))
  lg(n) = log(s(n))
  Y(n,m) = X(n,m) - c(n) - lg(n)
}""",
        _s(("n", "m"), ("n",), ("n", "m"), ("n",), ("n", "m")),
    ),
    # softmax along the middle axis of X(A,M,B), vectorised along B
    "softmax_mid": (
        """def softmax_mid(float(A,M,B) X) -> (Y) {
  mx(a,b) max=! X(a,m,b)
  c(a,b) = (mx(a,b) - mx(a,b) == 0.0) ? mx(a,b) : 0.0
  Y(a,m,b) = exp(X(a,m,b) - c(a,b))
  s(a,b) +=! Y(a,m,b)
  r(a,b) = 1.0 / s(a,b)
  Y(a,m,b) = Y(a,m,b) * r(a,b)
}""",
        _s(("a", "m", "b"), ("a", "b"), ("a", "m", "b"), ("a", "m", "b"), ("a", "b"), ("a", "m", "b")),
    ),
    "log_softmax_mid": (
        """def log_softmax_mid(float(A,M,B) X) -> (Y) {
  mx(a,b) max=! X(a,m,b)
  c(a,b) = (mx(a,b) - mx(a,b) == 0.0) ? mx(a,b) : 0.0
  s(a,b) +=! exp(X(a,m,b) - c(a,b))
  lg(a,b) = log(s(a,b))
  Y(a,m,b) = X(a,m,b) - c(a,b) - lg(a,b)
}""",
        _s(("a", "m", "b"), ("a", "b"), ("a", "m", "b"), ("a", "b"), ("a", "m", "b")),
    ),
    **{
        f"layer_norm_{sc}_{bi}": (_layer_norm_source(sc, bi), _s(_NC, ("n",), _NC, ("n",), _NC))
        for sc in ("vec", "full")
        for bi in ("none", "vec", "full")
    },
    **{
        f"{name}{suffix}": (f"def {name}(float(N) X) -> (Y) {{ Y(i) = {body} }}", tc.Schedule(parallel=parallel))
        for name, body in _ELEMENTWISE.items()
        for suffix, parallel in (("", "auto"), ("_serial", "none"))
    },
    "bias_gelu_erf": (
        """def bias_gelu_erf(float(R,C) X, float(C) Bias) -> (Y) {
  Y(r,c) = (X(r,c) + Bias(c)) * 0.5 * (1.0 + erf((X(r,c) + Bias(c)) * 0.7071067811865476))
}""",
        _s(("r", "c")),
    ),
    # one input channel per group (depthwise, any channel multiplier J): a direct convolution
    "conv_depthwise": (
        f"""def conv_depthwise(float(N,G,H,W) X, float(G,J,KH,KW) Wt, float(OH,OW) O, float(SH,SW,DH,DW) S,
                   float(PT,PL) P) -> (Y) {{
  Y(n,g,j,oh,ow) +=! X(n, g, {_IH}, {_IW}) * Wt(g,j,kh,kw) where oh in 0:OH, ow in 0:OW
}}""",
        _s(("n", "g", "j", "oh", "kh", "kw", "ow"), parallel="g"),
    ),
    # separable: the window's maximum along W for every input row, then along H.  1e999 is infinity (a
    # literal, not a scalar input, keeps the selects free of loads, so they vectorise).  The loop order of
    # the first pass depends on the stride: measured, strided reads want the window loop innermost.
    **{
        name: (
            f"""def {name}(float(R,H,W) X, {_GEOMETRY}) -> (Y) {{
  T(r,h,ow) max=! ({_IW} >= 0 && {_IW} < W) ? X(r, h, {_IW}) : -1e999 where h in 0:H, ow in 0:OW, kw in 0:KW
  Y(r,oh,ow) max=! ({_IH} >= 0 && {_IH} < H) ? T(r, {_IH}, ow) : -1e999 where oh in 0:OH, ow in 0:OW, kh in 0:KH
}}""",
            _s(first, ("r", "oh", "kh", "ow")),
        )
        for name, first in (("max_pool", ("r", "h", "kw", "ow")), ("max_pool_strided", ("r", "h", "ow", "kw")))
    },
    # separable sums; Cnt(OH,OW): how many window elements count at each output position (it also carries OH, OW)
    "average_pool": (
        f"""def average_pool(float(R,H,W) X, float(OH,OW) Cnt, float(KH,KW) K, float(SH,SW,DH,DW) S,
                 float(PT,PL) P) -> (Y) {{
  T(r,h,ow) +=! X(r, h, {_IW}) where h in 0:H, ow in 0:OW, kw in 0:KW
  U(r,oh,ow) +=! T(r, {_IH}, ow) where oh in 0:OH, ow in 0:OW, kh in 0:KH
  Y(r,oh,ow) = U(r,oh,ow) / Cnt(oh,ow)
}}""",
        _s(("r", "h", "kw", "ow"), ("r", "oh", "kh", "ow"), ("r", "oh", "ow")),
    ),
    # serial: its inputs are small (channels x a final feature map), and waking a second thread cost more
    # than it saved at 2 threads (0.10 ms against 0.02 for [1,128,24,24])
    "global_average_pool": (
        """def global_average_pool(float(R,J) X) -> (Y) {
  T(r) +=! float64(X(r,j))
  Y(r) = float32(T(r) / J)
}""",
        _s(("r", "j"), ("r",), parallel="none"),
    ),
}

_LOCK = threading.Lock()
_KERNELS: dict[str, tc.Kernel] = {}


def _kernel(name: str) -> tc.Kernel:
    """The kernel ``name`` of ``_SOURCES``, checked on first use (it compiles on its first call)."""
    k = _KERNELS.get(name)
    if k is None:
        with _LOCK:
            k = _KERNELS.get(name)
            if k is None:
                source, schedule = _SOURCES[name]
                k = _KERNELS[name] = tc.define(source, schedule=schedule)
    return k


# --- argument checks ---------------------------------------------------------------------------


def _f32(x: Any, what: str, fn: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 array; raises ``NativeUnsupportedError`` for anything else."""
    if not isinstance(x, np.ndarray):
        raise NativeUnsupportedError(f"{fn}: {what} must be a NumPy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise NativeUnsupportedError(f"{fn}: {what} must be float32, got {x.dtype}")
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _axis(axis: int, rank: int, fn: str) -> int:
    if rank == 0:
        raise NativeUnsupportedError(f"{fn}: the input must have rank >= 1, got a scalar")
    if not -rank <= axis < rank:
        raise NativeUnsupportedError(f"{fn}: axis {axis} is out of range for an input of rank {rank}")
    return axis + rank if axis < 0 else axis


def _ints(v: Sequence[int] | None, n: int, default: int, what: str, fn: str, low: int) -> list[int]:
    """An attribute of ``n`` ints (``default`` everywhere when None or empty), each at least ``low``."""
    if v is None or len(v) == 0:
        return [default] * n
    out = [int(e) for e in v]
    if len(out) != n:
        raise NativeUnsupportedError(f"{fn}: {what} has {len(out)} values, expected {n}")
    if min(out) < low:
        raise NativeUnsupportedError(f"{fn}: {what} must be >= {low}, got {out}")
    return out


# --- softmax -----------------------------------------------------------------------------------


def _softmax_like(x: Any, axis: int, fn: str) -> np.ndarray:
    x = _f32(x, "x", fn)
    a = _axis(int(axis), x.ndim, fn)
    if x.size == 0:
        return np.empty_like(x)
    outer, m, inner = math.prod(x.shape[:a]), x.shape[a], math.prod(x.shape[a + 1 :])
    if inner == 1:
        y = _kernel(f"{fn}_rows")(x.reshape(outer, m))
    else:
        y = _kernel(f"{fn}_mid")(x.reshape(outer, m, inner))
    return y.reshape(x.shape)  # type: ignore[no-any-return]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """ONNX Softmax (opset 13): ``exp(x - max) / sum(exp(x - max))`` along ``axis``."""
    return _softmax_like(x, axis, "softmax")


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """ONNX LogSoftmax (opset 13): ``x - max - log(sum(exp(x - max)))`` along ``axis``."""
    return _softmax_like(x, axis, "log_softmax")


# --- normalisation -----------------------------------------------------------------------------


def _norm_param(p: Any, shape: tuple[int, ...], axis: int, what: str) -> tuple[str, np.ndarray]:
    """A LayerNormalization scale or bias as a (C,) vector when it varies only over the normalised
    axes, else as an (N, C) array.  It must broadcast to the input's ``shape`` (unidirectionally)."""
    p = _f32(p, what, "layer_norm")
    if p.shape == shape[axis:]:  # the usual case, quickly
        return "vec", p.reshape(-1)
    try:
        ok = np.broadcast_shapes(p.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise NativeUnsupportedError(f"layer_norm: {what} of shape {p.shape} does not broadcast to the input {shape}")
    lead = p.ndim - (len(shape) - axis)  # how many of p's dims lie over the outer (not normalised) axes
    if lead <= 0 or all(d == 1 for d in p.shape[:lead]):
        vec = np.broadcast_to(p.reshape(p.shape[max(lead, 0) :]), shape[axis:])
        return "vec", np.ascontiguousarray(vec).reshape(-1)
    return "full", np.ascontiguousarray(np.broadcast_to(p, shape)).reshape(math.prod(shape[:axis]), -1)


def layer_norm(
    x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None = None, axis: int = -1, epsilon: float = 1e-5
) -> np.ndarray:
    """ONNX LayerNormalization's first output: ``(x - mean) / sqrt(var + epsilon) * scale + bias``.

    Mean and variance run over the axes ``axis..rank-1`` (sums in float64);
    ``scale`` and ``bias`` broadcast to ``x`` (usually they have the normalised shape).
    """
    x = _f32(x, "x", "layer_norm")
    a = _axis(int(axis), x.ndim, "layer_norm")
    sk, s = _norm_param(scale, x.shape, a, "scale")
    bk, b = ("none", None) if bias is None else _norm_param(bias, x.shape, a, "bias")
    if x.size == 0:
        return np.empty_like(x)
    rows = x.reshape(math.prod(x.shape[:a]), -1)
    params = [s] if b is None else [s, b]
    return _kernel(f"layer_norm_{sk}_{bk}")(rows, *params, np.float32(epsilon)).reshape(x.shape)  # type: ignore[no-any-return]


# --- erf and GELU ------------------------------------------------------------------------------


def _elementwise(name: str, x: Any, fn: str) -> np.ndarray:
    x = _f32(x, "x", fn)
    if x.size == 0:
        return np.empty_like(x)
    kernel = _kernel(name if x.size >= _SERIAL_BELOW else f"{name}_serial")
    return kernel(x.reshape(-1)).reshape(x.shape)  # type: ignore[no-any-return]


def erf(x: np.ndarray) -> np.ndarray:
    """ONNX Erf, elementwise (glibc's vectorised ``erff`` where the C library has libmvec)."""
    return _elementwise("erf", x, "erf")


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """ONNX Gelu: ``0.5 x (1 + erf(x / sqrt 2))``; with ``approximate="tanh"``,
    ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``."""
    if approximate == "none":
        return _elementwise("gelu_erf", x, "gelu")
    if approximate == "tanh":
        return _elementwise("gelu_tanh", x, "gelu")
    raise NativeUnsupportedError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def bias_gelu_erf(x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``t * 0.5 * (1 + erf(t / sqrt 2))`` with ``t = x + bias``: the exported GELU after a linear layer.

    ``bias`` is a vector along the last axis of ``x`` (any shape with that many
    values in its last dim and ones elsewhere), or a single value.
    """
    x = _f32(x, "x", "bias_gelu_erf")
    bias = _f32(bias, "bias", "bias_gelu_erf")
    if x.ndim == 0:
        raise NativeUnsupportedError("bias_gelu_erf: x must have rank >= 1, got a scalar")
    c = x.shape[-1]
    if bias.ndim > x.ndim or not (bias.size == 1 or (bias.shape[-1] == c and bias.size == c)):
        raise NativeUnsupportedError(
            f"bias_gelu_erf: bias of shape {bias.shape} is not a vector along the last axis of x {x.shape}"
        )
    if x.size == 0:
        return np.empty_like(x)
    vec = np.ascontiguousarray(np.broadcast_to(bias.reshape(-1), (c,)))
    return _kernel("bias_gelu_erf")(x.reshape(-1, c), vec).reshape(x.shape)  # type: ignore[no-any-return]


# --- windows: convolution and pooling ----------------------------------------------------------

_MAX_CARRIER = 1 << 20
"""Elements of a geometry input past which the geometry is refused (a carrier must stay tiny)."""


@dataclass(frozen=True, slots=True)
class _Window:
    """Per-axis window geometry of a 2-D problem (a 1-D one is lifted to height 1)."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    pads_begin: list[int]
    pads_end: list[int]
    outs: list[int]

    def lifted(self) -> _Window:
        """The 1-D geometry as 2-D: a leading axis of size 1, window 1, no padding."""
        return _Window(
            [1, *self.kernel], [1, *self.strides], [1, *self.dilations], [0, *self.pads_begin],
            [0, *self.pads_end], [1, *self.outs],
        )  # fmt: skip

    def carriers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The geometry inputs O, K, S, P of the window kernels: arrays whose shapes are the values."""
        st, dil, pb = self.strides, self.dilations, self.pads_begin
        if math.prod(st) * math.prod(dil) > _MAX_CARRIER or (pb[0] + 1) * (pb[1] + 1) > _MAX_CARRIER:
            raise NativeUnsupportedError(
                f"strides {st}, dilations {dil} or pads {pb} too large for the native window kernels"
            )
        return (
            np.empty(tuple(self.outs), np.float32),
            np.empty(tuple(self.kernel), np.float32),
            np.empty((st[0], st[1], dil[0], dil[1]), np.float32),
            np.empty((pb[0] + 1, pb[1] + 1), np.float32),
        )


def conv(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    strides: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    group: int = 1,
    z: np.ndarray | None = None,
    activation: str = "",
    params: tuple[float, float, float] = (0.0, 0.0, 0.0),
    weight_shape: Sequence[int] | None = None,
    layout: str = "panels",
) -> np.ndarray:
    """ONNX Conv, NCW or NCHW, with explicit ``pads`` (begin..., end...; ``auto_pad`` resolved by the caller).

    ``weight_shape`` (M, C, KH, KW): ``w`` is those weights as ``pliant.PackedConv``
    stores them in ``layout`` ("panels", "winograd" or "winograd_taps"; a 2-D convolution of one group).

    Depthwise (one input channel per group, any channel multiplier) runs a direct
    kernel; any other convolution is one call into ``conv.c`` (``blas_conv.conv2d``).

    With an epilogue (``pliant.FusedConv``): ``activation(conv + z)``, ``z`` a
    tensor of the result's shape (a residual), ``activation`` one of
    ``blas_conv.ACTIVATIONS`` with ``params`` = (Clip's min, Clip's max,
    LeakyRelu's alpha); applied to each block of the result in cache where the
    product runs in C.
    """
    fn = "conv"
    if activation not in blas_conv.ACTIVATIONS:
        raise NativeUnsupportedError(f"conv: no epilogue activation {activation!r}; "
                                     f"expected one of {sorted(blas_conv.ACTIVATIONS)}")
    x, w = _f32(x, "x", fn), _f32(w, "w", fn)
    packed: tuple[int, int, int, int] | None = None
    if weight_shape is not None:
        from pliant.ops.conv import PACKED_LAYOUTS, WINOGRAD_LAYOUTS, packed_array_shape

        m, cg, kh, kw = packed = (int(weight_shape[0]), int(weight_shape[1]), int(weight_shape[2]), int(weight_shape[3]))
        if layout not in PACKED_LAYOUTS:
            raise NativeUnsupportedError(f"conv: no packed layout {layout!r}; expected one of {list(PACKED_LAYOUTS)}")
        want = packed_array_shape(layout, packed)
        if x.ndim != 4 or int(group) != 1 or w.shape != want or (layout in WINOGRAD_LAYOUTS and (kh, kw) != (3, 3)):
            raise NativeUnsupportedError(
                f"conv: packed weights {w.shape} of a {list(packed)} convolution of group {group} on x {x.shape}: "
                f"only 2-D convolutions of one group, {layout} of shape {want}"
                + (" and a 3x3 window" if layout in WINOGRAD_LAYOUTS else ""))
        w_shape: tuple[int, ...] = packed
    else:
        w_shape = w.shape
    if x.ndim not in (3, 4) or len(w_shape) != x.ndim:
        raise NativeUnsupportedError(
            f"conv: only 1-D and 2-D convolutions (x of rank 3 or 4, w of the same rank), got x {x.shape}, w {w.shape}"
        )
    nsp = x.ndim - 2
    n, c, m, cg = x.shape[0], x.shape[1], w_shape[0], w_shape[1]
    group = int(group)
    if group < 1 or cg * group != c or m % group:
        raise NativeUnsupportedError(
            f"conv: x has {c} channels and w {m} outputs of {cg} channels each, which group={group} does not fit"
        )
    if b is not None:
        b = _f32(b, "b", fn)
        if b.size != m:
            raise NativeUnsupportedError(f"conv: the bias has {b.size} values but there are {m} output channels")
    kernel = list(w_shape[2:])
    st = _ints(strides, nsp, 1, "strides", fn, 1)
    dil = _ints(dilations, nsp, 1, "dilations", fn, 1)
    pp = _ints(pads, 2 * nsp, 0, "pads", fn, 0)
    if packed is not None and layout in WINOGRAD_LAYOUTS and st + dil != [1] * 4:
        raise NativeUnsupportedError(f"conv: Winograd weights need stride 1 without dilation, got strides {st}, "
                                     f"dilations {dil}")
    outs = []
    for i in range(nsp):
        span = x.shape[2 + i] + pp[i] + pp[nsp + i] - dil[i] * (kernel[i] - 1) - 1
        if span < 0 or kernel[i] == 0:
            raise NativeUnsupportedError(
                f"conv: the window (kernel {kernel[i]}, dilation {dil[i]}) does not fit the padded input "
                f"({x.shape[2 + i]} + {pp[i]} + {pp[nsp + i]}) on spatial axis {i}"
            )
        outs.append(span // st[i] + 1)
    win = _Window(kernel, st, dil, pp[:nsp], pp[nsp:], outs)
    if z is not None:
        z = _f32(z, "z", fn)
        if z.shape != (n, m, *outs):
            raise NativeUnsupportedError(f"conv: the residual input has shape {z.shape}, expected {(n, m, *outs)}")
    if nsp == 1:
        x, w, win = x.reshape(n, c, 1, -1), w.reshape(m, cg, 1, -1), win.lifted()
        z = z.reshape(n, m, 1, -1) if z is not None else None
    if n * m * math.prod(outs) == 0:
        return np.empty((n, m, *outs), np.float32)
    if cg == 0:
        y = np.zeros((n, m, *win.outs), np.float32)
    elif cg == 1 and group > 1:
        o, _, s, p = win.carriers()
        xk = x.reshape(n, group, *x.shape[2:])
        wk = w.reshape(group, m // group, *win.kernel)
        y = _kernel("conv_depthwise")(xk, wk, o, s, p).reshape(n, m, *win.outs)
    else:
        # one native call: patches, product, bias, residual and activation (see blas_conv)
        y = blas_conv.conv2d(x, w, b, z, outs=(win.outs[0], win.outs[1]), strides=(win.strides[0], win.strides[1]),
                             dilations=(win.dilations[0], win.dilations[1]),
                             pads_begin=(win.pads_begin[0], win.pads_begin[1]), group=group,
                             activation=activation, params=params, packed=packed, layout=layout)
        return y if y.shape == (n, m, *outs) else y.reshape(n, m, *outs)
    if b is not None:
        y += b.reshape(1, m, 1, 1)
    if z is not None:
        y += z
    _activate(y, activation, params)
    return y.reshape(n, m, *outs)


def _activate(y: np.ndarray, activation: str, params: tuple[float, float, float]) -> None:
    """An epilogue's activation, in place, as ``conv.c`` applies it."""
    if activation == "Relu":
        np.maximum(y, np.float32(0), out=y)
    elif activation == "Clip":
        np.clip(y, np.float32(params[0]), np.float32(params[1]), out=y)
    elif activation == "LeakyRelu":
        np.multiply(y, np.where(y < 0, np.float32(params[2]), np.float32(1)), out=y)


@dataclass(frozen=True, slots=True)
class _Pool:
    """A pooling problem: x as (R = N*C, H, W), its 2-D window, and the shape of the result."""

    x: np.ndarray
    win: _Window
    shape: tuple[int, ...]

    @staticmethod
    def of(
        x: Any,
        kernel: Sequence[int],
        strides: Sequence[int] | None,
        pads: Sequence[int] | None,
        dilations: Sequence[int] | None,
        ceil_mode: bool,
        fn: str,
    ) -> _Pool:
        x = _f32(x, "x", fn)
        if x.ndim not in (3, 4):
            raise NativeUnsupportedError(f"{fn}: only 1-D and 2-D pooling (x of rank 3 or 4), got x {x.shape}")
        nsp = x.ndim - 2
        if len(kernel) != nsp:
            raise NativeUnsupportedError(f"{fn}: kernel {list(kernel)} must have {nsp} values")
        k = _ints(kernel, nsp, 1, "kernel", fn, 1)
        st = _ints(strides, nsp, 1, "strides", fn, 1)
        dil = _ints(dilations, nsp, 1, "dilations", fn, 1)
        pp = _ints(pads, 2 * nsp, 0, "pads", fn, 0)
        try:
            # NOTE: the ops' own geometry, so ceil_mode's last window follows the reference exactly
            pb, _, outs = window_geometry(x.shape[2:], k, st, dil, "NOTSET", pp[:nsp], pp[nsp:], bool(ceil_mode))
        except OpRuntimeError as e:
            raise NativeUnsupportedError(f"{fn}: {e}") from None
        win = _Window(k, st, dil, pb, pp[nsp:], outs)
        rows = x.reshape(x.shape[0] * x.shape[1], *([1] * (2 - nsp)), *x.shape[2:])
        return _Pool(rows, win.lifted() if nsp == 1 else win, (*x.shape[:2], *outs))


def max_pool(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    ceil_mode: bool = False,
) -> np.ndarray:
    """ONNX MaxPool's first output, 1-D or 2-D (padding never wins; NaN propagates as in NumPy)."""
    p = _Pool.of(x, kernel, strides, pads, dilations, ceil_mode, "max_pool")
    if math.prod(p.shape) == 0:
        return np.empty(p.shape, np.float32)
    y = _kernel("max_pool" if p.win.strides[1] == 1 else "max_pool_strided")(p.x, *p.win.carriers())
    return y.reshape(p.shape)  # type: ignore[no-any-return]


def average_pool(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    ceil_mode: bool = False,
    count_include_pad: bool = False,
) -> np.ndarray:
    """ONNX AveragePool, 1-D or 2-D: each window's sum over the elements that count -- the input's,
    and with ``count_include_pad`` the declared padding's too (never ``ceil_mode``'s overhang)."""
    p = _Pool.of(x, kernel, strides, pads, dilations, ceil_mode, "average_pool")
    if math.prod(p.shape) == 0:
        return np.empty(p.shape, np.float32)
    win, counts = p.win, []
    for i, size in enumerate(p.x.shape[1:]):
        lo, hi = (-win.pads_begin[i], size + win.pads_end[i]) if count_include_pad else (0, size)
        starts = np.arange(win.outs[i]) * win.strides[i] - win.pads_begin[i]
        pos = starts[:, None] + np.arange(win.kernel[i])[None, :] * win.dilations[i]
        counts.append(((pos >= lo) & (pos < hi)).sum(axis=1))
    cnt = np.maximum(np.outer(counts[0], counts[1]), 1).astype(np.float32)
    _, k, s, pb = win.carriers()
    return _kernel("average_pool")(p.x, cnt, k, s, pb).reshape(p.shape)  # type: ignore[no-any-return]


def global_average_pool(x: np.ndarray) -> np.ndarray:
    """ONNX GlobalAveragePool: the mean over every spatial axis (summed in float64), kept as size-1 axes."""
    x = _f32(x, "x", "global_average_pool")
    if x.ndim < 3:
        raise NativeUnsupportedError(f"global_average_pool: x must have rank >= 3 (N, C, spatial...), got {x.shape}")
    shape = (*x.shape[:2], *([1] * (x.ndim - 2)))
    rows, cols = x.shape[0] * x.shape[1], math.prod(x.shape[2:])
    if rows == 0:
        return np.empty(shape, np.float32)
    if cols == 0:
        return np.full(shape, np.nan, np.float32)
    return _kernel("global_average_pool")(x.reshape(rows, cols)).reshape(shape)  # type: ignore[no-any-return]
