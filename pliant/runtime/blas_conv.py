"""2-D convolution in one native call: im2col, BLAS ``sgemm`` and a fused epilogue (``conv.c``).

``conv2d`` computes ``act(conv(x, w) + b + z)`` for float32 NCHW tensors: the
bias, a residual tensor ``z`` and the activation are applied to each block of
the result while it is still in cache, instead of in passes of their own.
The GEMM is the ``sgemm`` of the BLAS NumPy itself loaded (found through
threadpoolctl), called from C: no Python between the gather, the product and
the epilogue, and no second thread pool to wake (the gather is serial; BLAS
parallelises the product).  This replaced im2col as a generated kernel plus
``np.matmul``, whose OpenMP and BLAS pools handed the two cores back and forth
(e.g. 436 us against 161 us of work for a 16-channel 32x32 3x3 convolution at
2 threads).

Raises ``NativeUnsupportedError`` when no usable ``sgemm`` is found (the caller
then takes the NumPy path) and ``CompilerNotFoundError`` when there is no C
compiler.
"""

from __future__ import annotations

import ctypes
import threading
from importlib import resources
from typing import Any

import numpy as np

from pliant.kernels import cache
from pliant.kernels.compiled import data_pointers
from pliant.kernels.toolchain import find_toolchain

__all__ = ["ACTIVATIONS", "BlasUnavailableError", "conv2d", "sgemm"]

ACTIVATIONS = {"": 0, "Relu": 1, "Clip": 2, "LeakyRelu": 3}
"""Epilogue activations ``conv.c`` applies, by ONNX op name ("" for none)."""

BLOCK_FLOATS = 1 << 18
"""Patch-matrix elements per block (1 MiB): measured against whole-image blocks, this kept the
gathered patches in cache without making the products too small to parallelise."""

_INT32_MAX = 2**31 - 1

# NOTE: ILP64 (64-bit integer) builds first: NumPy's own wheels ship scipy-openblas64
_SYMBOLS = (("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True), ("scipy_cblas_sgemm", False),
            ("cblas_sgemm", False))


class BlasUnavailableError(ValueError):
    """No BLAS with a CBLAS ``sgemm`` entry point is loaded in this process."""


_LOCK = threading.Lock()
_SGEMM: list[tuple[int, bool] | None] = []
_FN: list[Any] = []


def sgemm() -> tuple[int, bool]:
    """The address of NumPy's BLAS ``cblas_sgemm`` and whether it takes 64-bit integers."""
    with _LOCK:
        if not _SGEMM:
            _SGEMM.append(_find_sgemm())
    found = _SGEMM[0]
    if found is None:
        raise BlasUnavailableError("no CBLAS sgemm found in the BLAS libraries NumPy loaded (threadpoolctl sees none)")
    return found


def _find_sgemm() -> tuple[int, bool] | None:
    from threadpoolctl import threadpool_info

    np.dot(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))  # NOTE: BLAS loads lazily in some builds
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for name, ilp64 in _SYMBOLS:
            fn = getattr(lib, name, None)
            if fn is not None:
                return ctypes.cast(fn, ctypes.c_void_p).value or 0, ilp64
    return None


def _kernel() -> Any:
    if not _FN:
        source = resources.files("pliant.runtime").joinpath("conv.c").read_text()
        loaded = cache.load(source, find_toolchain())
        with _LOCK:
            if not _FN:
                _FN.append(loaded.fn)
    return _FN[0]


_NO_PARAMS = np.zeros(3, np.float32)


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, z: np.ndarray | None, *,
           outs: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int], pads_begin: tuple[int, int],
           group: int, activation: str = "", params: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """``act(conv(x, w) + b + z)``; x (N, C, H, W), w (M, C/group, KH, KW), b (M,), z (N, M, OH, OW).

    The caller has checked the geometry (``outs`` is the output size the window
    allows); arrays are C-contiguous float32 of the shapes above.
    """
    address, ilp64 = sgemm()
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh, ow = outs
    if not ilp64 and max(cg * kh * kw, oh * ow, m) > _INT32_MAX:
        raise BlasUnavailableError("conv: the product is too large for a 32-bit BLAS")
    y = np.empty((n, m, oh, ow), np.float32)
    if z is not None and z.shape != y.shape:
        raise ValueError(f"conv: the residual input has shape {z.shape}, expected {y.shape}")
    fn = _kernel()
    ptrs = data_pointers([x, w, *(a for a in (b, z) if a is not None), y])
    ptr_b = ptrs.pop(2) if b is not None else None
    ptr_z = ptrs.pop(2) if z is not None else None
    p = _NO_PARAMS if activation not in ("Clip", "LeakyRelu") else np.array(params, np.float32)
    pointers = (ctypes.c_void_p * 6)(ptrs[0], ptrs[1], ptr_b, ptr_z, ptrs[2], data_pointers([p])[0])
    sizes = (ctypes.c_int64 * 20)(n, c, h, wd, m, kh, kw, oh, ow, strides[0], strides[1], dilations[0], dilations[1],
                                  pads_begin[0], pads_begin[1], group, ACTIVATIONS[activation], address, int(ilp64),
                                  BLOCK_FLOATS)
    if fn(pointers, sizes) != 0:
        raise MemoryError("conv: could not allocate the patch buffer")
    return y
