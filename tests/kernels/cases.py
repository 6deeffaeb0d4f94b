"""The kernel table: each case is kernel source, a NumPy reference, and sizes to run it at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pliant.kernels.cli import random_inputs

Arrays = list[Any]


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    ref: Callable[..., Any]
    sizes: tuple[dict[str, int], ...]
    make: Callable[[dict[str, int], np.random.Generator], Arrays] | None = None
    rtol: float = 2e-4
    extra: dict[str, Any] = field(default_factory=dict)


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _conv(x: np.ndarray, w: np.ndarray, stride: int = 1) -> np.ndarray:
    """NCHW x FCkk -> NFhw, no padding."""
    kh, kw = w.shape[2:]
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,fcij->nfhw", win, w)


def _layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: np.ndarray) -> np.ndarray:
    m = x.mean(axis=1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _erf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return np.vectorize(erf)(x.astype(np.float64))


def _grouped(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    n, _, h, wd = x.shape
    g, _, c, kh, kw = w.shape
    xg = x.reshape(n, g, c, h, wd)
    win = sliding_window_view(xg, (kh, kw), axis=(3, 4))
    return np.einsum("ngchwij,gfcij->ngfhw", win, w)


CASES: list[Case] = [
    Case(
        "matmul",
        "def matmul(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }",
        lambda a, b: a @ b,
        ({"M": 37, "K": 29, "N": 41}, {"M": 8, "K": 64, "N": 3}),
    ),
    Case(
        "batched_matmul",
        "def bmm(float(B,M,K) X, float(B,K,N) Y) -> (Z) { Z(b,m,n) +=! X(b,m,k) * Y(b,k,n) }",
        lambda x, y: x @ y,
        ({"B": 3, "M": 17, "K": 9, "N": 21}, {"B": 1, "M": 4, "K": 33, "N": 8}),
    ),
    Case(
        "tensordot",
        "def tdot(float(I,K,L) A, float(K,L,J) B) -> (C) { C(i,j) +=! A(i,k,l) * B(k,l,j) }",
        lambda a, b: np.tensordot(a, b, axes=([1, 2], [0, 1])),
        ({"I": 7, "K": 5, "L": 6, "J": 9}, {"I": 16, "K": 3, "L": 2, "J": 5}),
    ),
    Case(
        "conv2d_stride2",
        """def conv(float(N,C,H,W) I, float(F,C,KH,KW) Wt) -> (O) {
             O(n,f,h,w) +=! I(n,c,2*h+kh,2*w+kw) * Wt(f,c,kh,kw)
           }""",
        lambda x, w: _conv(x, w, 2),
        (
            {"N": 2, "C": 3, "H": 11, "W": 9, "F": 4, "KH": 3, "KW": 3},
            {"N": 1, "C": 2, "H": 8, "W": 8, "F": 3, "KH": 2, "KW": 1},
        ),
    ),
    Case(
        "conv2d_pad_where",
        """def convpad(float(N,C,H,W) I, float(F,C,KH,KW) Wt) -> (O) {
             O(n,f,h,w) +=! I(n,c,h+kh-1,w+kw-1) * Wt(f,c,kh,kw) where h in 0:H, w in 0:W
           }""",
        lambda x, w: _conv(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), w),
        (
            {"N": 2, "C": 3, "H": 7, "W": 6, "F": 2, "KH": 3, "KW": 3},
            {"N": 1, "C": 4, "H": 5, "W": 9, "F": 5, "KH": 3, "KW": 3},
        ),
    ),
    Case(
        "conv2d_groups",
        """def gconv(float(N,CI,H,W) I, float(G,F,C,KH,KW) Wt) -> (O) {
             O(n,g,f,h,w) +=! I(n,g*C+c,h+kh,w+kw) * Wt(g,f,c,kh,kw)
           }""",
        _grouped,
        (
            {"N": 2, "CI": 6, "H": 6, "W": 7, "G": 2, "F": 3, "C": 3, "KH": 3, "KW": 2},
            {"N": 1, "CI": 4, "H": 5, "W": 5, "G": 4, "F": 2, "C": 1, "KH": 2, "KW": 2},
        ),
    ),
    Case(
        "depthwise_conv",
        """def dw(float(N,C,H,W) I, float(C,KH,KW) Wt) -> (O) {
             O(n,c,h,w) +=! I(n,c,h+kh,w+kw) * Wt(c,kh,kw)
           }""",
        lambda x, w: np.einsum("nchwij,cij->nchw", sliding_window_view(x, w.shape[1:], axis=(2, 3)), w),
        ({"N": 2, "C": 5, "H": 9, "W": 8, "KH": 3, "KW": 3}, {"N": 1, "C": 3, "H": 12, "W": 4, "KH": 5, "KW": 1}),
    ),
    Case(
        "maxpool2x2",
        """def maxpool(float(N,C,H,W) I) -> (O) {
             O(n,c,h,w) max=! I(n,c,2*h+kh,2*w+kw) where kh in 0:2, kw in 0:2
           }""",
        lambda x: sliding_window_view(x, (2, 2), axis=(2, 3))[:, :, ::2, ::2].max(axis=(4, 5)),
        ({"N": 2, "C": 3, "H": 8, "W": 9}, {"N": 1, "C": 2, "H": 5, "W": 4}),
    ),
    Case(
        "avgpool3x3",
        """def avgpool(float(N,C,H,W) I) -> (O) {
             S(n,c,h,w) +=! I(n,c,h+kh,w+kw) where kh in 0:3, kw in 0:3
             O(n,c,h,w) = S(n,c,h,w) / 9.0
           }""",
        lambda x: sliding_window_view(x, (3, 3), axis=(2, 3)).mean(axis=(4, 5)),
        ({"N": 2, "C": 3, "H": 7, "W": 8}, {"N": 1, "C": 1, "H": 3, "W": 3}),
    ),
    Case(
        "batchnorm_inference",
        """def bn(float(N,C,H,W) X, float(C) Mean, float(C) Var, float(C) G, float(C) B, float eps) -> (Y) {
             Y(n,c,h,w) = (X(n,c,h,w) - Mean(c)) * rsqrt(Var(c) + eps) * G(c) + B(c)
           }""",
        lambda x, m, v, g, b, eps: (
            (x - m[:, None, None]) / np.sqrt(v[:, None, None] + eps) * g[:, None, None] + b[:, None, None]
        ),
        ({"N": 2, "C": 3, "H": 5, "W": 4}, {"N": 4, "C": 16, "H": 3, "W": 9}),
        make=lambda s, r: [
            _f32(r, s["N"], s["C"], s["H"], s["W"]),
            _f32(r, s["C"]),
            np.abs(_f32(r, s["C"])) + 0.5,
            _f32(r, s["C"]),
            _f32(r, s["C"]),
            np.float32(1e-5),
        ],
    ),
    Case(
        "layernorm",
        """def layernorm(float(N,C) X, float(C) G, float(C) B, float eps) -> (Y) {
             mean(n) +=! X(n,c) / C
             xc(n,c) = X(n,c) - mean(n)
             var(n) +=! xc(n,c) * xc(n,c) / C
             Y(n,c) = xc(n,c) * rsqrt(var(n) + eps) * G(c) + B(c)
           }""",
        _layernorm,
        ({"N": 13, "C": 33}, {"N": 300, "C": 130}),
        make=lambda s, r: [_f32(r, s["N"], s["C"]), _f32(r, s["C"]), _f32(r, s["C"]), np.float32(1e-5)],
        rtol=1e-3,
    ),
    Case(
        "softmax",
        """def softmax(float(N,M) X) -> (Y) {
             mx(n) max=! X(n,m)
             e(n,m) = exp(X(n,m) - mx(n))
             s(n) +=! e(n,m)
             Y(n,m) = e(n,m) / s(n)
           }""",
        _softmax,
        ({"N": 9, "M": 31}, {"N": 257, "M": 200}),
    ),
    Case(
        "log_softmax",
        """def log_softmax(float(N,M) X) -> (Y) {
             mx(n) max=! X(n,m)
             s(n) +=! exp(X(n,m) - mx(n))
             Y(n,m) = X(n,m) - mx(n) - log(s(n))
           }""",
        lambda x: np.log(_softmax(x)),
        ({"N": 5, "M": 17}, {"N": 64, "M": 600}),
        rtol=1e-3,
    ),
    Case(
        "gelu",
        "def gelu(float(N,M) X) -> (Y) { Y(i,j) = 0.5 * X(i,j) * (1.0 + erf(X(i,j) * 0.7071067811865476)) }",
        lambda x: 0.5 * x * (1.0 + _erf(x * 0.7071067811865476)),
        ({"N": 3, "M": 50}, {"N": 40, "M": 1000}),
    ),
    Case(
        "embedding",
        "def embed(float(V,D) E, int64(B,L) I) -> (O) { O(b,l,d) = E(I(b,l), d) }",
        lambda e, i: e[i],
        ({"V": 11, "D": 6, "B": 3, "L": 4}, {"V": 100, "D": 33, "B": 2, "L": 9}),
        make=lambda s, r: [_f32(r, s["V"], s["D"]), r.integers(0, s["V"], (s["B"], s["L"]), dtype=np.int64)],
    ),
    Case(
        "argmin",
        """def argmin(float(N,M) A) -> (mn, idx) {
             mn(i) min=! A(i,j)
             idx(i) min=! (A(i,j) == mn(i)) ? j : M
           }""",
        lambda a: (a.min(axis=1), a.argmin(axis=1)),
        ({"N": 6, "M": 13}, {"N": 50, "M": 70}),
    ),
    Case(
        "permute",
        "def permute(float(A,B,C) X) -> (Y) { Y(c,a,b) = X(a,b,c) }",
        lambda x: np.transpose(x, (2, 0, 1)),
        ({"A": 3, "B": 4, "C": 5}, {"A": 8, "B": 1, "C": 33}),
    ),
    Case(
        "broadcast_add",
        "def badd(float(N,M) A, float(M) B) -> (C) { C(i,j) = A(i,j) + B(j) }",
        lambda a, b: a + b,
        ({"N": 4, "M": 7}, {"N": 300, "M": 129}),
    ),
    Case(
        "sum_axis1",
        "def sum1(float(I,J,K) A) -> (S) { S(i,k) +=! A(i,j,k) }",
        lambda a: a.sum(axis=1),
        ({"I": 3, "J": 5, "K": 7}, {"I": 9, "J": 40, "K": 130}),
    ),
    Case(
        "max_axis0",
        "def max0(float(I,J) A) -> (M) { M(j) max=! A(i,j) }",
        lambda a: a.max(axis=0),
        ({"I": 5, "J": 3}, {"I": 200, "J": 190}),
    ),
    Case(
        "mean_last",
        "def mean(float(N,M) A) -> (O) { S(i) +=! A(i,j)\n O(i) = S(i) / M }",
        lambda a: a.mean(axis=1),
        ({"N": 5, "M": 8}, {"N": 64, "M": 999}),
    ),
    Case(
        "cumsum_masked",
        "def cumsum(float(N) A) -> (O) { O(i) +=! (j <= i) ? A(j) : 0.0 where i in 0:N }",
        lambda a: np.cumsum(a),
        ({"N": 9}, {"N": 257}),
        rtol=1e-3,
    ),
    Case(
        "mlp_bias_relu",
        """def mlp(float(B,I) X, float(O,I) W, float(O) Bias) -> (Y) {
             H(b,o) +=! X(b,i) * W(o,i)
             Y(b,o) = fmax(H(b,o) + Bias(o), 0.0)
           }""",
        lambda x, w, b: np.maximum(x @ w.T + b, 0),
        ({"B": 5, "I": 12, "O": 7}, {"B": 33, "I": 64, "O": 48}),
    ),
    Case(
        "stencil_conv1d",
        "def conv1d(float(N) I, float(K) W) -> (O) { O(i) +=! I(i+k) * W(k) }",
        lambda x, w: np.convolve(x, w[::-1], mode="valid"),
        ({"N": 10, "K": 3}, {"N": 1000, "K": 7}),
    ),
    Case(
        "dot_scalar",
        "def dot(float(N) A, float(N) B) -> (s) { s +=! A(i) * B(i) }",
        lambda a, b: np.float32(a @ b),
        ({"N": 7}, {"N": 4097}),
        rtol=1e-3,
    ),
    Case(
        "float64_exp",
        "def expd(double(N,M) X) -> (Y) { Y(i,j) = exp(X(i,j)) * 2.0 - X(i,j) }",
        lambda x: np.exp(x) * 2.0 - x,
        ({"N": 3, "M": 4}, {"N": 17, "M": 100}),
        make=lambda s, r: [r.standard_normal((s["N"], s["M"]))],
        rtol=1e-12,
    ),
    Case(
        "int32_floordiv",
        "def intops(int32(N) A, int32(N) B) -> (C) { C(i) = A(i) * 3 + A(i) / B(i) - A(i) % B(i) }",
        lambda a, b: a * 3 + np.floor_divide(a, b) - np.mod(a, b),
        ({"N": 11}, {"N": 100}),
        make=lambda s, r: [
            r.integers(-50, 50, s["N"], dtype=np.int32),
            np.where(r.random(s["N"]) < 0.5, -1, 1).astype(np.int32) * r.integers(1, 7, s["N"], dtype=np.int32),
        ],
    ),
    Case(
        "bool_mask",
        "def mask(float(N) A, float(N) B) -> (M) { M(i) = A(i) > B(i) && !(A(i) < 0.0) }",
        lambda a, b: (a > b) & ~(a < 0),
        ({"N": 9}, {"N": 300}),
    ),
    Case(
        "float16_io",
        "def half(float16(N) X, float(N) Z) -> (float16(N) Y) { Y(i) = X(i) * 2.0 + Z(i) }",
        lambda x, z: (x.astype(np.float32) * 2 + z).astype(np.float16),
        ({"N": 9}, {"N": 100}),
        make=lambda s, r: [r.standard_normal(s["N"]).astype(np.float16), _f32(r, s["N"])],
        rtol=2e-3,
    ),
    Case(
        "axpy_scalar",
        "def axpy(float a, float(N) X, float(N) Z) -> (Y) { Y(i) = a * X(i) + Z(i) }",
        lambda a, x, z: a * x + z,
        ({"N": 5}, {"N": 40000}),
        make=lambda s, r: [np.float32(1.5), _f32(r, s["N"]), _f32(r, s["N"])],
    ),
    Case(
        "shift_right",
        "def shift(float(N) A) -> (O) { O(i) = A(i-1) }",
        lambda a: np.concatenate([[0], a]).astype(np.float32),
        ({"N": 6}, {"N": 100}),
    ),
    Case(
        "upsample_nearest",
        "def up(float(N,M) A) -> (O) { O(i,j) = A(i/2, j/2) where i in 0:2*N, j in 0:2*M }",
        lambda a: a.repeat(2, axis=0).repeat(2, axis=1),
        ({"N": 3, "M": 4}, {"N": 20, "M": 9}),
    ),
    Case(
        "global_min",
        "def gmin(float(N,M) A) -> (m) { m min=! A(i,j) }",
        lambda a: np.float32(a.min()),
        ({"N": 3, "M": 7}, {"N": 100, "M": 100}),
    ),
    Case(
        "row_product",
        "def prod(float(N,M) A) -> (P) { P(i) *=! A(i,j) }",
        lambda a: a.prod(axis=1),
        ({"N": 4, "M": 6}, {"N": 30, "M": 20}),
        make=lambda s, r: [(1.0 + 0.1 * r.standard_normal((s["N"], s["M"]))).astype(np.float32)],
        rtol=1e-3,
    ),
    Case(
        "int64_index_values",
        "def iota(int64(N,M) A) -> (O) { O(i,j) = A(i,j) * i + j - N }",
        lambda a: a * np.arange(a.shape[0])[:, None] + np.arange(a.shape[1]) - a.shape[0],
        ({"N": 3, "M": 5}, {"N": 50, "M": 40}),
    ),
]


def make_inputs(case: Case, kernel: Any, sizes: dict[str, int], seed: int) -> Arrays:
    """Random inputs for ``kernel`` at ``sizes`` (the case's own generator when it has one)."""
    rng = np.random.default_rng(seed)
    if case.make is not None:
        return case.make(sizes, rng)
    return random_inputs(kernel, sizes, rng, int_range=(-10, 10))
