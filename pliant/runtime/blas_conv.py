"""2-D convolution in one native call: GEMM and a fused epilogue (``conv.c``).

``conv2d`` computes ``act(conv(x, w) + b + z)`` for float32 NCHW tensors: the
bias, a residual tensor ``z`` and the activation are applied to each output
tile in the GEMM's registers, instead of in passes of their own.  The GEMM is
``conv.c``'s own (AVX-512, AVX2 + FMA, GCC vector extensions or plain C,
whichever the compiler targets), fed the patches without an im2col matrix:
gathered a block at a time into the panels the microkernel reads, or read in
place from a zero-padded copy of the input (stride 1) or the input itself
(1x1); blocks of output columns (or channels) shared out over OpenMP threads.
It replaced OpenBLAS's ``sgemm`` called from the same C file, which was slower
on almost every benchmark shape (``benchmarks/results/conv.md``) and whose
thread pool competed with OpenMP's for the cores.

``sgemm()`` (the address of the ``sgemm`` NumPy's BLAS exports) is no longer
used here; region units call it only where ``conv.c`` cannot run (they use
``conv.c``'s GEMM for their products: one OpenMP pool, whose threads spin a
moment between regions, instead of two pools that compete for the cores).

Raises ``CompilerNotFoundError`` when there is no C compiler.
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

BLOCK_FLOATS = 1 << 16
"""Patch-panel elements a task gathers at a time (256 KiB per thread; it sets the columns of a task): 64K-1M
floats and K blocks of 256 to 2304 rows timed within noise (+-2%) at 1 thread on the benchmark shapes; the
smaller keeps a block in L2."""

K_BLOCK = 512
"""Patch rows per K block (the product is accumulated in the output over blocks)."""

PARALLEL_WORK = 1 << 18
"""Multiply-adds (N*M*K*OH*OW) from which a call uses all OpenMP threads.  With passive waits a sleeping
OpenMP thread started 30-50 us after the call woke it (2-vCPU machine), which set this at 3M; pliant now lets
a waiting thread spin briefly (``GOMP_SPINCOUNT``), so a warm one starts within microseconds.  Interleaved in
one process (10 rounds, a second conv.c build swapped in; 3M against 1M, 256K, 64K): blockdrop 32 px
0.85 -> 0.58 ms, 8 blocks 1.47 -> 0.95; RaNet 128 px exit@1 0.51 -> 0.47 (256K and 64K; 1M did not help);
YOLO 160 px 1.52 -> 1.38; larger inputs and SkipNet within noise."""

DIRECT_WASTE = 320
"""When the weights meet a zero-padded copy of the input in place (conv.c's DIRECT, width stride 1) instead of
gathered patches: when the percentage of an output row's vector lanes past its end, times the output
channels per group, is at most this.  Measured at 1 thread (best of many calls): 16 channels of 40 columns
(17% lanes wasted) 89 us direct against 93 gathered, 24 columns (25%) 37 against 36; 32 channels of 24
columns 134 against 114; 64 of 40 columns 1307 against 1142; with no lane wasted direct won from 16 to 128
channels (49 against 58 us at 16 channels of 32x32, 2827 against 2881 at 128)."""

SWAP_POSITIONS = 4
"""A convolution of one group, width stride 2 or more and no residual, with at least this many output
positions per output channel (and at least 1024 positions where windows leave the image, 64 where they do not;
K = C*KH*KW >= 128, at most 64 output channels) takes its weights as the product's B, packed once per call, and
reads its patches in place (conv.c's "weights as B"); 0 turns it off."""

SMALL_K = 36
"""A convolution of one group with a window larger than 1x1, width stride 1 or 2 and at most this many products per
output (C*KH*KW: 4 channels of 3x3) runs as a direct convolution, 16 output positions by 16 channels a tile
(conv.c's "few input channels", AVX-512 only), instead of a GEMM whose tiles spent as long on their setup, gather
and stores as on their few multiply-adds; 0 turns it off."""

WINOGRAD_4X4 = -1
"""Winograd convolutions from the taps (PackedConv's "winograd_taps") run as F(4x4, 3x3) instead of F(2x2, 3x3)
(AVX-512 only): -1 where conv.c's estimate of the two calls says so (F(4x4, 3x3) has 4x fewer products than a
direct convolution, against 2.25x, but its transforms cost more, and small images leave its vectors of tiles part
empty); 1 always; 0 never.  Chains of four convolutions of 64 channels, 2 threads: 0.66-0.8x the time from 32x32
to 60x80; 16 channels of 64x64 0.5x."""

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


def wpack_code(layout: str) -> int:
    """conv.c's S_WPACK for weights stored in PackedConv's ``layout``: 1 + its index in ``PACKED_LAYOUTS``."""
    from pliant.ops.conv import PACKED_LAYOUTS

    return 1 + PACKED_LAYOUTS.index(layout)


_NO_PARAMS = np.zeros(3, np.float32)
_SIZES: dict[tuple[Any, ...], Any] = {}
_SIZES_KEPT = 4096
_INT64S = ctypes.c_int64 * 27
_POINTERS = ctypes.c_void_p * 6


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, z: np.ndarray | None, *,
           outs: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int], pads_begin: tuple[int, int],
           group: int, activation: str = "", params: tuple[float, float, float] = (0.0, 0.0, 0.0),
           packed: tuple[int, int, int, int] | None = None, layout: str = "panels") -> np.ndarray:
    """``act(conv(x, w) + b + z)``; x (N, C, H, W), w (M, C/group, KH, KW), b (M,), z (N, M, OH, OW).

    ``packed``: w is the weights of that shape as ``pliant.PackedConv`` stores them in
    ``layout`` ("panels": ``pliant.ops.conv.pack_conv_weights``; "winograd":
    ``pack_winograd_weights``, a 3x3 window of stride 1; one group).  The caller
    has checked the geometry (``outs`` is the output size the window allows);
    arrays are C-contiguous float32 of the shapes above.
    """
    y = np.empty((x.shape[0], (packed or w.shape)[0], outs[0], outs[1]), np.float32)
    _run(x, w, b, z, y, strides=strides, dilations=dilations, pads_begin=pads_begin, group=group,
         activation=activation, params=params, packed=packed, layout=layout)
    return y


def _run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, z: np.ndarray | None, y: np.ndarray, *,
         strides: tuple[int, int], dilations: tuple[int, int], pads_begin: tuple[int, int], group: int,
         activation: str, params: tuple[float, float, float], packed: tuple[int, int, int, int] | None = None,
         layout: str = "panels") -> None:
    """``conv2d`` into ``y`` (N, M, OH, OW), C-contiguous float32."""
    if z is not None and z.shape != y.shape:
        raise ValueError(f"conv: the residual input has shape {z.shape}, expected {y.shape}")
    # NOTE: the sizes depend on the geometry only; a ctypes array of them costs 2 us to build, a look-up 0.3
    ws = packed or w.shape
    wpack = 0 if packed is None else wpack_code(layout)
    key = (*x.shape, *ws, *y.shape[2:], *strides, *dilations, *pads_begin, group, activation, BLOCK_FLOATS,
           K_BLOCK, PARALLEL_WORK, DIRECT_WASTE, SWAP_POSITIONS, wpack, SMALL_K, WINOGRAD_4X4)
    sizes = _SIZES.get(key)
    if sizes is None:
        n, c, h, wd = x.shape
        m, _, kh, kw = ws
        sizes = _INT64S(n, c, h, wd, m, kh, kw, y.shape[2], y.shape[3], strides[0], strides[1], dilations[0],
                        dilations[1], pads_begin[0], pads_begin[1], group, ACTIVATIONS[activation], BLOCK_FLOATS,
                        K_BLOCK, PARALLEL_WORK, DIRECT_WASTE, 0, 0, SWAP_POSITIONS, wpack, SMALL_K, WINOGRAD_4X4)
        if len(_SIZES) < _SIZES_KEPT:
            _SIZES[key] = sizes  # NOTE: read-only in C, so one array serves every thread
    fn = _kernel()
    p = _NO_PARAMS if activation not in ("Clip", "LeakyRelu") else np.array(params, np.float32)
    if b is None and z is None:
        px, pw, py, pp = data_pointers([x, w, y, p])
        pointers = _POINTERS(px, pw, None, None, py, pp)
    else:
        ptrs = data_pointers([x, w, *(a for a in (b, z) if a is not None), y, p])
        ptr_b = ptrs.pop(2) if b is not None else None
        ptr_z = ptrs.pop(2) if z is not None else None
        pointers = _POINTERS(ptrs[0], ptrs[1], ptr_b, ptr_z, ptrs[2], ptrs[3])
    rc = fn(pointers, sizes)
    if rc == -2:
        raise ValueError("conv: conv.c refused the call (packed weights need one group; Winograd's a 3x3 window of "
                         "stride 1 without dilation)")
    if rc != 0:
        raise MemoryError("conv: could not allocate the scratch buffers")
