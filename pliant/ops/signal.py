"""Signal-processing operators: DFT, STFT, the window generators and MelWeightMatrix.

Complex tensors follow ONNX's convention: a trailing axis of size 2 holds the
real and imaginary parts (size 1 for a real signal).  Transforms run in
complex64 (complex128 for float64 input) and are cast back to the input's element type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pliant.errors import OpRuntimeError
from pliant.ir.dtypes import DType
from pliant.ops.registry import Dynamism, KernelContext, register

SIGNAL = "signal"


def _scalar_int(x: np.ndarray, what: str) -> int:
    a = np.asarray(x)
    if a.size != 1:
        raise OpRuntimeError(f"{what} must be a scalar, got shape {a.shape}")
    return int(a.reshape(-1)[0])


def _to_complex(x: np.ndarray, what: str) -> np.ndarray:
    """The complex values of a [..., 1] (real) or [..., 2] (complex) tensor."""
    if x.ndim < 1 or x.shape[-1] not in (1, 2):
        raise OpRuntimeError(f"{what} must end in an axis of size 1 (real) or 2 (complex), got shape {x.shape}")
    # NOTE: transforms run in the input's precision (complex64 below float64), as NumPy's FFT does.
    ft, ct = (np.float64, np.complex128) if x.dtype == np.float64 else (np.float32, np.complex64)
    xf = x.astype(ft)
    if x.shape[-1] == 1:
        return xf[..., 0].astype(ct)
    out = np.empty(xf.shape[:-1], dtype=ct)
    out.real = xf[..., 0]
    out.imag = xf[..., 1]
    return out


def _from_complex(c: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    return np.stack([c.real, c.imag], axis=-1).astype(dtype)


def _fit_length(c: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Truncate or zero-pad ``c`` along ``axis`` to length ``n``."""
    cur = c.shape[axis]
    if n < cur:
        idx = [slice(None)] * c.ndim
        idx[axis] = slice(0, n)
        return c[tuple(idx)]
    if n > cur:
        pad = [(0, 0)] * c.ndim
        pad[axis] = (0, n - cur)
        return np.pad(c, pad)
    return c


@register("DFT", Dynamism.ISVDOS, family=SIGNAL,
          note="output shape follows the dft_length and (opset 20) axis input values; ISDOS when they are absent or constant")
def dft(ctx: KernelContext, x: np.ndarray, dft_length: np.ndarray | None = None, axis_in: np.ndarray | None = None) -> np.ndarray:
    rank = x.ndim
    if ctx.opset >= 20:
        axis = _scalar_int(axis_in, "DFT axis") if axis_in is not None else -2
    else:
        axis = int(ctx.attr("axis", 1))
    if not (-rank <= axis <= -2 or 0 <= axis <= rank - 2):
        raise OpRuntimeError(f"DFT axis {axis} is out of range [-{rank}, -2] U [0, {rank - 2}] for input shape {x.shape}")
    ax = axis + rank if axis < 0 else axis
    inverse = bool(ctx.attr("inverse", 0))
    onesided = bool(ctx.attr("onesided", 0))
    c = _to_complex(x, "DFT input")
    dim = c.shape[ax]
    if dft_length is not None:
        n = _scalar_int(dft_length, "DFT dft_length")
    elif onesided and inverse:
        n = 2 * (dim - 1)
    else:
        n = dim
    if n < 1:
        raise OpRuntimeError(f"DFT length must be positive, got {n}")
    if onesided and inverse:
        # NOTE: a real input (last axis 1) is read as a spectrum with zero imaginary parts, as ONNX's reference does.
        r = np.fft.irfft(c, n=n, axis=ax)
        return r[..., None].astype(x.dtype)
    # NOTE: RFFT of a complex input keeps the first n // 2 + 1 bins of the full transform (as ONNX's reference does).
    c = _fit_length(c, ax, n)
    y = np.fft.ifft(c, axis=ax) if inverse else np.fft.fft(c, axis=ax)
    if onesided:
        idx = [slice(None)] * y.ndim
        idx[ax] = slice(0, n // 2 + 1)
        y = y[tuple(idx)]
    return _from_complex(y, x.dtype)


@register("STFT", Dynamism.ISVDOS, family=SIGNAL,
          note="frame count and length follow frame_step / frame_length values (ISDOS when they are constants)")
def stft(ctx: KernelContext, signal: np.ndarray, frame_step: np.ndarray, window: np.ndarray | None = None,
         frame_length: np.ndarray | None = None) -> np.ndarray:
    if signal.ndim != 3:
        raise OpRuntimeError(f"STFT signal must have rank 3 [batch, length, 1|2], got shape {signal.shape}")
    c = _to_complex(signal, "STFT signal")
    length = c.shape[1]
    step = _scalar_int(frame_step, "STFT frame_step")
    if window is not None and window.ndim != 1:
        raise OpRuntimeError(f"STFT window must be 1-D, got shape {window.shape}")
    if frame_length is not None:
        flen = _scalar_int(frame_length, "STFT frame_length")
        if window is not None and window.shape[0] != flen:
            raise OpRuntimeError(f"STFT window has length {window.shape[0]} but frame_length is {flen}")
    elif window is not None:
        flen = int(window.shape[0])
    else:
        flen = length
    if step < 1 or flen < 1 or flen > length:
        raise OpRuntimeError(f"STFT needs frame_step >= 1 and 1 <= frame_length <= {length}, got {step} and {flen}")
    onesided = bool(ctx.attr("onesided", 1))
    frames = (length - flen) // step + 1
    idx = np.arange(frames)[:, None] * step + np.arange(flen)[None, :]
    seg = c[:, idx]  # [batch, frames, flen]
    if window is not None:
        seg = seg * window.astype(seg.real.dtype)
    y = np.fft.fft(seg, axis=-1)
    if onesided:
        y = y[..., : flen // 2 + 1]
    return _from_complex(y, signal.dtype)


def _window(ctx: KernelContext, size: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    n = _scalar_int(size, f"{ctx.op.name} size")
    if n < 0:
        raise OpRuntimeError(f"{ctx.op.name} size must be >= 0, got {n}")
    out = DType.from_onnx(int(ctx.attr("output_datatype", 1))).numpy
    periodic = bool(ctx.attr("periodic", 1))
    denom = n if periodic else n - 1
    k = np.arange(n, dtype=np.float64)
    w = np.zeros(n, dtype=np.float64)
    for m, a in enumerate(coeffs):
        w += a * (np.cos(2 * np.pi * m * k / denom) if m and denom else 1.0)
    return w.astype(out)


@register("HannWindow", Dynamism.ISVDOS, family=SIGNAL, note="output length is the value of size")
def hann_window(ctx: KernelContext, size: np.ndarray) -> np.ndarray:
    return _window(ctx, size, (0.5, -0.5))


@register("HammingWindow", Dynamism.ISVDOS, family=SIGNAL, note="output length is the value of size")
def hamming_window(ctx: KernelContext, size: np.ndarray) -> np.ndarray:
    a0 = 25 / 46
    return _window(ctx, size, (a0, -(1 - a0)))


@register("BlackmanWindow", Dynamism.ISVDOS, family=SIGNAL, note="output length is the value of size")
def blackman_window(ctx: KernelContext, size: np.ndarray) -> np.ndarray:
    return _window(ctx, size, (0.42, -0.5, 0.08))


def _hz_to_mel(f: float) -> float:
    return 2595.0 * float(np.log10(1.0 + f / 700.0))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (np.power(10.0, m / 2595.0) - 1.0)


@register("MelWeightMatrix", Dynamism.ISVDOS, family=SIGNAL,
          note="output shape [dft_length // 2 + 1, num_mel_bins] follows input values")
def mel_weight_matrix(ctx: KernelContext, num_mel_bins: np.ndarray, dft_length: np.ndarray, sample_rate: np.ndarray,
                      lower_edge_hertz: np.ndarray, upper_edge_hertz: np.ndarray) -> np.ndarray:
    bins = _scalar_int(num_mel_bins, "num_mel_bins")
    n_fft = _scalar_int(dft_length, "dft_length")
    rate = _scalar_int(sample_rate, "sample_rate")
    lo = float(np.asarray(lower_edge_hertz).reshape(-1)[0])
    hi = float(np.asarray(upper_edge_hertz).reshape(-1)[0])
    if bins < 1 or n_fft < 1 or rate < 1:
        raise OpRuntimeError(f"MelWeightMatrix needs positive num_mel_bins, dft_length, sample_rate; got {bins}, {n_fft}, {rate}")
    if not 0 <= lo < hi:
        raise OpRuntimeError(f"MelWeightMatrix needs 0 <= lower_edge_hertz < upper_edge_hertz, got {lo} and {hi}")
    out = DType.from_onnx(int(ctx.attr("output_datatype", 1))).numpy
    n_spec = n_fft // 2 + 1
    lo_mel, hi_mel = _hz_to_mel(lo), _hz_to_mel(hi)
    # NOTE: ONNX spaces the bin edges by (hi - lo) / (num_mel_bins + 2) mel, as its reference
    # implementation and backend test do; edges are then mapped to DFT bin indices by flooring.
    step = (hi_mel - lo_mel) / (bins + 2)
    edges_hz = _mel_to_hz(np.arange(bins + 2, dtype=np.float64) * step + lo_mel)
    edges = np.floor((n_fft + 1) * edges_hz / rate).astype(np.int64)
    w = np.zeros((n_spec, bins), dtype=np.float64)
    j = np.arange(n_spec)
    for i in range(bins):
        left, center, right = int(edges[i]), int(edges[i + 1]), int(edges[i + 2])
        if center == left:
            if 0 <= center < n_spec:
                w[center, i] = 1.0
        else:
            up = (j >= left) & (j <= center)
            w[up, i] = (j[up] - left) / (center - left)
        if right > center:
            down = (j >= center) & (j < right)
            w[down, i] = (right - j[down]) / (right - center)
    return w.astype(out)
