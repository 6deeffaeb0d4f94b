"""``pliant.runtime.native``: each fast path against the reference kernel of its op (and ONNX Runtime
for the window ops) on random inputs, odd sizes, every axis and geometry it claims; its refusals;
no recompilation for new shapes; the error without a C compiler."""

from __future__ import annotations

import ctypes
import math
import mmap
import platform
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from pliant.kernels.errors import CompilerNotFoundError
from pliant.ops import conv as conv_ops
from pliant.ops import elementwise, norm, pool, reduce
from pliant.runtime import blas_conv, native
from tests.helpers import make_model, run_onnxruntime

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh compilation cache for this module, so the first calls compile for real."""
    path = tmp_path_factory.mktemp("pliant-native-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLIANT_CACHE_DIR", str(path))
        yield path


class _Ctx:
    """What a reference kernel asks of its op: attributes, opset, number of outputs."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs, self.opset, self.num_outputs = attrs, 17, 1

    def attr(self, name: str, default: Any = None) -> Any:
        v = self.attrs.get(name)
        return default if v is None else v


def Ctx(**attrs: Any) -> Any:
    """A stand-in for the ``KernelContext`` of one op with ``attrs`` (opset 17, one output)."""
    return _Ctx(attrs)


def f32(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def close(got: np.ndarray, want: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert got.dtype == np.float32 and want.dtype == np.float32, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# --- softmax -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,axis", [((3, 5, 7), -1), ((3, 5, 7), 1), ((3, 5, 7), 0), ((2, 4, 33, 17), 2), ((1, 4, 16, 129), -1)]
)
def test_softmax_and_log_softmax_match_the_reference(shape: tuple[int, ...], axis: int) -> None:
    x = f32(np.random.default_rng(1), *shape, scale=4.0)
    close(native.softmax(x, axis), reduce.softmax(Ctx(axis=axis), x))
    close(native.log_softmax(x, axis), reduce.log_softmax(Ctx(axis=axis), x))


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_non_finite_rows_follow_the_reference(axis: int) -> None:
    x = np.array(
        [[1.0, np.inf, 2.0], [-np.inf, -np.inf, -np.inf], [0.0, np.nan, 1.0], [-np.inf, 3.0, 1e30]], np.float32
    )
    x = x if axis == -1 else np.ascontiguousarray(x.T)
    for fn, ref in ((native.softmax, reduce.softmax), (native.log_softmax, reduce.log_softmax)):
        np.testing.assert_allclose(fn(x, axis), ref(Ctx(axis=axis), x), rtol=RTOL, atol=ATOL, equal_nan=True)


# --- layer normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,axis,pshape",
    [
        ((4, 7, 33), -1, (33,)),
        ((4, 7, 33), 1, (7, 33)),
        ((4, 7, 33), 1, (33,)),  # broadcast along the normalised axes
        ((4, 7, 33), 1, (4, 1, 33)),  # varies over the outer axis too
        ((4, 7, 33), 0, (4, 7, 33)),
        ((3, 300), -1, (1, 300)),
    ],
)
def test_layer_norm_matches_the_reference(shape: tuple[int, ...], axis: int, pshape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    x = f32(rng, *shape, scale=3.0) + 5.0
    scale, bias = f32(rng, *pshape), f32(rng, *pshape)
    ctx = Ctx(axis=axis, epsilon=1e-3)
    close(native.layer_norm(x, scale, bias, axis, 1e-3), norm.layer_normalization(ctx, x, scale, bias))
    close(native.layer_norm(x, scale, None, axis, 1e-3), norm.layer_normalization(ctx, x, scale, None))


# --- erf and GELU ------------------------------------------------------------------------------

SPECIAL = np.array([0.0, -0.0, 1e-30, -1e-7, 0.5, 3.9, -6.0, 12.0, np.inf, -np.inf, np.nan], np.float32)


@pytest.mark.parametrize("shape", [(1001,), (3, 5, 129), (2, 17000)])  # the last runs in parallel
def test_erf_and_gelu_match_the_reference(shape: tuple[int, ...]) -> None:
    x = f32(np.random.default_rng(3), *shape, scale=3.0)
    for v in (x, SPECIAL):
        pairs = [
            (native.erf(v), elementwise.erf(v).astype(np.float32)),
            (native.gelu(v), elementwise._gelu(v, Ctx())),
            (native.gelu(v, "tanh"), elementwise._gelu(v, Ctx(approximate="tanh"))),
        ]
        for got, want in pairs:
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)
    assert native.erf(x).dtype == np.float32 and native.erf(x).shape == shape


@pytest.mark.parametrize("bshape", [(129,), (1, 1, 129), (1,)])
def test_bias_gelu_erf_is_gelu_of_the_sum(bshape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(4)
    x, bias = f32(rng, 2, 5, 129, scale=2.0), f32(rng, *bshape)
    close(native.bias_gelu_erf(x, bias), elementwise._gelu(x + bias, Ctx()))


# --- convolution -------------------------------------------------------------------------------

# (N, C, spatial, M, kernel, strides, pads, dilations, group)
CONVS = [
    (1, 3, (11, 9), 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (2, 6, (10, 7), 4, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2),
    (1, 5, (13, 12), 6, (3, 2), (2, 1), (0, 1, 2, 0), (2, 1), 1),  # asymmetric everything
    (2, 5, (6, 6), 7, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1
    (1, 4, (13, 12), 6, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    (1, 8, (9, 9), 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8),  # depthwise
    (2, 8, (9, 10), 16, (3, 3), (2, 2), (2, 2, 2, 2), (2, 2), 8),  # depthwise, multiplier 2, dilated
    (1, 1, (9, 9), 4, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1),  # one input channel
    (2, 6, (30,), 6, (5,), (1,), (2, 2), (1,), 6),  # 1-D depthwise
    (1, 6, (31,), 4, (3,), (2,), (1, 0), (2,), 1),  # 1-D strided, dilated
    # the GEMM's edges: output channels past the last full tile of rows (8 with AVX-512, 6 with AVX2, 4
    # in C), columns past the last full panel (32, 16, 16), K past the last full block
    (1, 3, (11, 9), 13, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (2, 16, (17, 19), 26, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),  # groups of 13 output channels
    (1, 300, (5, 7), 9, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # K = 2700: six blocks of 512
    (1, 4, (40, 37), 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1 over several column blocks
    (1, 3, (21, 50), 7, (5, 5), (3, 3), (2, 2, 2, 2), (1, 1), 1),  # width stride 3: three phases
    (1, 2, (8, 70), 3, (2, 7), (1, 2), (0, 3, 1, 3), (2, 3), 1),  # wide dilated window, stride 2
    (1, 3, (20, 1), 5, (3, 1), (1, 1), (1, 0, 1, 0), (1, 1), 1),  # one column: 16 output rows a gather step
    (1, 4, (1000,), 6, (3,), (2,), (1, 1), (1,), 1),  # 1-D, long
    (3, 2, (4, 4), 3, (4, 4), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # one output position
    (1, 8, (5, 7), 70, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # 35 columns: threads share the channels
    # 1x1 with 6+ panels of output channels: each tile's columns packed first (99 columns: a partial panel)
    (1, 12, (9, 11), 48, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (2, 600, (5, 7), 47, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # and K past one block
    # Winograd's edges (3x3, stride 1): no padding, asymmetric pads (a last tile half outside), one output
    # position, rows of more than one vector of tiles, enough tile rows for a thread to take whole blocks, or to
    # split into one block a thread
    (1, 9, (6, 5), 11, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (2, 7, (9, 8), 10, (3, 3), (1, 1), (0, 1, 2, 0), (1, 1), 1),
    (1, 5, (1, 1), 3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 3, (5, 70), 17, (3, 3), (1, 1), (1, 2, 1, 1), (1, 1), 1),
    (1, 40, (64, 50), 9, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 8, (13, 40), 10, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # too few tile rows for two blocks a thread
]

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")

# conv.c built other ways than the toolchain's default: (extra flags, flags dropped); the first two only
# where -march=native targets AVX-512 or AVX2 on x86
_BUILDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "avx2": (("-mno-avx512f",), ()),
    "gcc-vectors": (("-mno-avx512f", "-mno-avx2", "-mno-fma"), ()),
    "scalar": (("-DPLIANT_CONV_SCALAR",), ()),
    "no-openmp": ((), ("-fopenmp",)),
}


def _conv_build(name: str) -> Any:
    """conv.c's entry point compiled with the toolchain's flags changed as ``_BUILDS[name]`` says."""
    import dataclasses
    from importlib import resources

    from pliant.kernels import cache
    from pliant.kernels.toolchain import find_toolchain

    tc = find_toolchain()
    extra, dropped = _BUILDS[name]
    x86_only = any(f.startswith("-mno-") for f in extra)
    if (x86_only and not (_X86 and "-march=native" in tc.flags)) or any(f not in tc.flags for f in dropped):
        pytest.skip(f"the '{name}' build needs {'an x86 compiler taking -march=native' if x86_only else dropped}")
    flags = tuple(f for f in tc.flags if f not in dropped) + extra
    source = resources.files("pliant.runtime").joinpath("conv.c").read_text()
    return cache.load(source, dataclasses.replace(tc, flags=flags)).fn


_MODES = ("gather", "direct", "swap", "packed", "panels", "winograd", "taps", "small")


@pytest.fixture(params=["default", *_MODES, *(f"{b}-{m}" for b in _BUILDS for m in _MODES)])
def conv_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The C conv as pliant builds and runs it, and with every boundary exercised: tasks of one column
    panel, K blocks of 5 rows, all threads on every call, each way of feeding the GEMM (gathered patches
    everywhere, the input in place wherever the width stride is 1, or the weights as B wherever there is
    one group, packed at the call), and weights of one group given packed as PackedConv has them (taken as
    B where they fill the panels, else unpacked; or as B wherever: "panels"), and 3x3 windows of stride 1 and one
    group as Winograd F(2x2, 3x3) ("winograd": its transformed weights; "taps": its taps, transformed as it runs),
    and every window of one group, width
    stride 1 or 2 and no dilation as a direct convolution ("small": taken by default for few products per
    output); those also for conv.c's other vector paths (AVX2, GCC's vector extensions, plain C: where "small"
    runs the GEMM paths) and without OpenMP."""
    build, _, mode = str(request.param).rpartition("-")
    if mode in ("packed", "panels", "winograd", "taps"):
        run = blas_conv._run

        def packed_run(x: np.ndarray, w: np.ndarray, *args: Any, group: int, packed: Any = None, **kw: Any) -> None:
            plain = tuple(kw["strides"]) + tuple(kw["dilations"]) == (1, 1, 1, 1)
            if mode == "winograd" and group == 1 and packed is None and w.shape[2:] == (3, 3) and plain:
                w, packed, kw["layout"] = conv_ops.pack_winograd_weights(w), w.shape, "winograd"
            elif mode == "taps" and group == 1 and packed is None and w.shape[2:] == (3, 3) and plain:
                w, packed, kw["layout"] = conv_ops.pack_winograd_taps(w), w.shape, "winograd_taps"
            elif group == 1 and packed is None and mode not in ("winograd", "taps"):
                w, packed = conv_ops.pack_conv_weights(w), w.shape
            run(x, w, *args, group=group, packed=packed, **kw)

        monkeypatch.setattr(blas_conv, "_run", packed_run)
    if mode != "default":
        monkeypatch.setattr(blas_conv, "BLOCK_FLOATS", 64)  # NOTE: 64 // K_BLOCK -> one panel per task
        monkeypatch.setattr(blas_conv, "K_BLOCK", 5)
        monkeypatch.setattr(blas_conv, "PARALLEL_WORK", 0)
        monkeypatch.setattr(blas_conv, "DIRECT_WASTE", -1 if mode == "gather" else 10**9)
        monkeypatch.setattr(blas_conv, "SWAP_POSITIONS", -1 if mode in ("swap", "panels") else 0)
        monkeypatch.setattr(blas_conv, "SMALL_K", 10**6 if mode == "small" else 0)
    if build:
        monkeypatch.setattr(blas_conv, "_FN", [_conv_build(build)])
    return str(request.param)


@pytest.mark.parametrize("case", CONVS, ids=lambda c: f"N{c[0]}C{c[1]}M{c[3]}k{c[4]}s{c[5]}p{c[6]}d{c[7]}g{c[8]}")
def test_conv_matches_the_reference(case: tuple[Any, ...], conv_path: str) -> None:
    n, c, spatial, m, k, s, p, d, g = case
    rng = np.random.default_rng(5)
    depth = c // g * math.prod(k)
    x, w, b = f32(rng, n, c, *spatial), f32(rng, m, c // g, *k, scale=depth**-0.5), f32(rng, m)
    ctx = Ctx(strides=list(s), pads=list(p), dilations=list(d), group=g)
    # NOTE: sums of up to 2700 products (weights scaled to keep them near 1) accumulated in another order
    # than the reference's: atol 1e-4
    close(native.conv(x, w, b, s, p, d, g), conv_ops.conv(ctx, x, w, b), atol=1e-4)
    close(native.conv(x, w, None, s, p, d, g), conv_ops.conv(ctx, x, w), atol=1e-4)


def test_conv_matches_onnxruntime() -> None:
    rng = np.random.default_rng(6)
    x, w, b = f32(rng, 1, 16, 23, 21), f32(rng, 32, 8, 3, 3), f32(rng, 32)
    strides, pads, dilations = [2, 1], [1, 0, 1, 2], [1, 2]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=strides, pads=pads, dilations=dilations, group=2)
    model = make_model(
        [node],
        [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in ("x", "w", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    (want,) = run_onnxruntime(model, {"x": x, "w": w, "b": b})
    close(native.conv(x, w, b, strides, pads, dilations, 2), want, atol=1e-4)


@pytest.mark.parametrize("activation", ["", "Relu", "Clip", "LeakyRelu"])
@pytest.mark.parametrize("residual", [False, True])
def test_conv_epilogue_matches_numpy(activation: str, residual: bool, conv_path: str) -> None:
    rng = np.random.default_rng(8)
    x, w, b = f32(rng, 2, 6, 9, 11), f32(rng, 8, 3, 3, 2), f32(rng, 8)
    x[0, 0, 3, 4] = np.nan  # NOTE: NaN stays NaN through every activation, as in NumPy
    ctx = Ctx(strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], group=2)
    conv = conv_ops.conv(ctx, x, w, b)
    z = f32(rng, *conv.shape) if residual else None
    v = conv + z if z is not None else conv
    want = {"": v, "Relu": np.maximum(v, 0), "Clip": np.clip(v, -0.5, 0.25),
            "LeakyRelu": np.where(v < 0, np.float32(0.1) * v, v)}[activation]
    got = blas_conv.conv2d(x, w, b, z, outs=(conv.shape[2], conv.shape[3]), strides=(2, 1), dilations=(1, 2),
                           pads_begin=(1, 0), group=2, activation=activation, params=(-0.5, 0.25, 0.1))
    assert np.isnan(want).any()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-5)  # NOTE: NaNs where want has them


# each thread keeps work of a call for its next task of the same call (Winograd's transformed input of a small image,
# the turned-around product's padded rows): calls in a row must each read their own input
@pytest.mark.parametrize("layout,stride", [("winograd_taps", 1), ("winograd", 1), ("panels", 2)])
def test_calls_in_a_row_read_their_own_input(layout: str, stride: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blas_conv, "PARALLEL_WORK", 0)  # NOTE: every thread, however small the call
    rng = np.random.default_rng(10)
    w, b = f32(rng, 64, 40, 3, 3, scale=360**-0.5), f32(rng, 64)
    packed = {"winograd_taps": conv_ops.pack_winograd_taps, "winograd": conv_ops.pack_winograd_weights,
              "panels": conv_ops.pack_conv_weights}[layout](w)
    ctx = Ctx(strides=[stride, stride], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
    xs = [f32(rng, 1, 40, 9, 8) for _ in range(3)]
    outs = (9 - 1) // stride + 1, (8 - 1) // stride + 1
    # NOTE: the calls back to back, the references after (a reference may run conv.c too)
    gots = [blas_conv.conv2d(x, packed, b, None, outs=outs, strides=(stride, stride), dilations=(1, 1),
                             pads_begin=(1, 1), group=1, packed=w.shape, layout=layout) for x in [*xs, xs[0]]]
    for x, got in zip([*xs, xs[0]], gots):
        close(got, conv_ops.conv(ctx, x, w, b), atol=1e-4)


# the turned-around product (weights given as panels) on few output positions: tiles of 1 to 8 positions (a
# kernel of each height), tasks that split the panels and share a thread's padded rows, two images
@pytest.mark.parametrize("spatial,stride", [((10, 10), 2), ((5, 6), 2), ((3, 5), 1), ((2, 7), 1), ((1, 5), 1),
                                            ((2, 2), 1), ((1, 3), 1), ((1, 2), 1), ((22, 20), 2)])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("build", ["default", *_BUILDS])
def test_turned_around_product_on_few_positions(spatial: tuple[int, int], stride: int, residual: bool,
                                               build: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if build != "default":
        monkeypatch.setattr(blas_conv, "_FN", [_conv_build(build)])
    monkeypatch.setattr(blas_conv, "PARALLEL_WORK", 0)  # NOTE: every thread, however small the call
    rng = np.random.default_rng(9)
    x, w, b = f32(rng, 2, 24, *spatial), f32(rng, 96, 24, 3, 3, scale=216**-0.5), f32(rng, 96)
    ctx = Ctx(strides=[stride, stride], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
    conv = conv_ops.conv(ctx, x, w, b)
    z = f32(rng, *conv.shape) if residual else None
    want = np.maximum(conv + z if z is not None else conv, 0)
    got = blas_conv.conv2d(x, conv_ops.pack_conv_weights(w), b, z, outs=(conv.shape[2], conv.shape[3]),
                           strides=(stride, stride), dilations=(1, 1), pads_begin=(1, 1), group=1, activation="Relu",
                           packed=w.shape)
    close(got, want, atol=1e-4)

def _guarded(a: np.ndarray, at_end: bool) -> np.ndarray:
    """A copy of ``a`` between two inaccessible pages, ending right at the second (``at_end``) or beginning
    right after the first: a read or write past either end of the data faults."""
    page = mmap.PAGESIZE
    span = max(1, (a.nbytes + page - 1) // page) * page
    buf = mmap.mmap(-1, span + 2 * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    mprotect = ctypes.CDLL(None, use_errno=True).mprotect
    mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for at in (base, base + page + span):
        assert mprotect(at, page, 0) == 0, ctypes.get_errno()  # NOTE: PROT_NONE (0; the mmap module lacks it)
    out = np.frombuffer(buf, a.dtype, a.size, page + (span - a.nbytes if at_end else 0)).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.skipif(platform.system() not in ("Linux", "Darwin"), reason="needs mprotect")
@pytest.mark.parametrize("case", CONVS[10:], ids=lambda c: f"N{c[0]}C{c[1]}M{c[3]}k{c[4]}s{c[5]}")
def test_conv_stays_inside_its_arrays(case: tuple[Any, ...], conv_path: str) -> None:
    """Every array the C conv reads or writes sits against an inaccessible page, at either end."""
    n, c, spatial, m, k, s, p, d, g = case
    if len(spatial) == 1:
        spatial, k, s, p, d = (1, *spatial), (1, *k), (1, *s), (0, p[0], 0, p[1]), (1, *d)
    rng = np.random.default_rng(13)
    x, w, b = f32(rng, n, c, *spatial), f32(rng, m, c // g, *k, scale=0.1), f32(rng, m)
    ctx = Ctx(strides=list(s), pads=list(p), dilations=list(d), group=g)
    want = conv_ops.conv(ctx, x, w, b)
    z = f32(rng, *want.shape)
    for at_end in (True, False):
        y = _guarded(np.zeros_like(want), at_end)
        args = [_guarded(a, at_end) for a in (x, w, b, z)]
        blas_conv._run(*args, y, strides=s, dilations=d, pads_begin=(p[0], p[1]), group=g, activation="Relu",
                       params=(0.0, 0.0, 0.0))
        close(y, np.maximum(want + z, 0), atol=1e-4)


def test_conv_residual_of_another_shape_is_refused() -> None:
    x, w = np.ones((1, 2, 4, 4), np.float32), np.ones((3, 2, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"residual input has shape \(1, 3, 4, 3\), expected \(1, 3, 4, 4\)"):
        blas_conv.conv2d(x, w, None, np.ones((1, 3, 4, 3), np.float32), outs=(4, 4), strides=(1, 1),
                         dilations=(1, 1), pads_begin=(0, 0), group=1)


# --- pooling -----------------------------------------------------------------------------------

# (input shape, kernel, strides, pads, dilations, ceil_mode)
POOLS = [
    ((2, 3, 11, 10), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),
    ((2, 3, 11, 10), (2, 3), (2, 1), (0, 1, 1, 0), (1, 1), True),
    ((1, 4, 12, 13), (3, 3), (2, 2), (1, 1, 1, 1), (2, 2), True),
    ((1, 2, 7, 7), (7, 7), (1, 1), (0, 0, 0, 0), (1, 1), False),
    ((2, 3, 17), (4,), (3,), (2, 1), (1,), True),
]


@pytest.mark.parametrize("case", POOLS, ids=lambda c: f"x{c[0]}k{c[1]}s{c[2]}p{c[3]}d{c[4]}ceil{int(c[5])}")
def test_pooling_matches_the_reference(case: tuple[Any, ...]) -> None:
    shape, k, s, p, d, ceil = case
    x = f32(np.random.default_rng(7), *shape)
    attrs = {"kernel_shape": list(k), "strides": list(s), "pads": list(p), "dilations": list(d), "ceil_mode": int(ceil)}
    close(native.max_pool(x, k, s, p, d, ceil), pool.max_pool(Ctx(**attrs), x))
    for cip in (False, True):
        want = pool.average_pool(Ctx(count_include_pad=int(cip), **attrs), x)
        close(native.average_pool(x, k, s, p, d, ceil, cip), want)


def test_max_pool_ignores_padding_and_propagates_nan() -> None:
    x = -np.ones((1, 1, 3, 3), np.float32)
    assert np.all(native.max_pool(x, [3, 3], [1, 1], [1, 1, 1, 1]) == -1.0)
    x[0, 0, 1, 1] = np.nan
    assert np.isnan(native.max_pool(x, [2, 2], [1, 1])).all()


def test_pooling_matches_onnxruntime() -> None:
    x = f32(np.random.default_rng(8), 1, 5, 14, 15)
    attrs: dict[str, Any] = {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1}
    nodes = [
        helper.make_node("MaxPool", ["x"], ["m"], **attrs),
        helper.make_node("AveragePool", ["x"], ["a"], count_include_pad=1, **attrs),
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
    ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in ("m", "a", "g")],
    )
    m, a, g = run_onnxruntime(model, {"x": x})
    geo = (attrs["kernel_shape"], attrs["strides"], attrs["pads"], None, True)
    close(native.max_pool(x, *geo), m)
    close(native.average_pool(x, *geo, count_include_pad=True), a)
    close(native.global_average_pool(x), g)


@pytest.mark.parametrize("shape", [(2, 3, 17, 9), (1, 5, 1000), (2, 2, 3, 4, 5)])
def test_global_average_pool_matches_the_reference(shape: tuple[int, ...]) -> None:
    x = f32(np.random.default_rng(9), *shape) + 3.0
    close(native.global_average_pool(x), pool.global_average_pool(Ctx(), x))


# --- inputs, refusals, compilation -------------------------------------------------------------


def test_non_contiguous_inputs_are_accepted() -> None:
    x = f32(np.random.default_rng(10), 6, 10, 12)[:, ::2].transpose(0, 2, 1)
    close(native.softmax(x, 1), reduce.softmax(Ctx(axis=1), np.ascontiguousarray(x)))
    close(native.erf(x), elementwise.erf(x).astype(np.float32))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: native.softmax(np.ones(3), -1), "softmax: x must be float32, got float64"),
        (lambda: native.softmax(np.ones((2, 3), np.float32), 2), "axis 2 is out of range for an input of rank 2"),
        (lambda: native.log_softmax(1.0, 0), "must be a NumPy array"),  # type: ignore[arg-type]
        (lambda: native.gelu(np.ones(2, np.float32), "exact"), "approximate must be 'none' or 'tanh', got 'exact'"),
        (
            lambda: native.layer_norm(np.ones((2, 3), np.float32), np.ones(2, np.float32)),
            r"scale of shape \(2,\) does not broadcast to the input \(2, 3\)",
        ),
        (
            lambda: native.bias_gelu_erf(np.ones((2, 3), np.float32), np.ones(2, np.float32)),
            "not a vector along the last axis",
        ),
        (
            lambda: native.conv(np.ones((1, 4, 5, 5), np.float32), np.ones((2, 3, 3, 3), np.float32)),
            "x has 4 channels and w 2 outputs of 3 channels each, which group=1 does not fit",
        ),
        (
            lambda: native.conv(np.ones((1, 1, 2, 2, 2), np.float32), np.ones((1, 1, 1, 1, 1), np.float32)),
            "only 1-D and 2-D convolutions",
        ),
        (
            lambda: native.conv(np.ones((1, 1, 5, 5), np.float32), np.ones((1, 1, 3, 3), np.float32), pads=[1, 1]),
            "pads has 2 values, expected 4",
        ),
        (
            lambda: native.conv(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 3, 3), np.float32)),
            r"does not fit the padded input \(2 \+ 0 \+ 0\) on spatial axis 0",
        ),
        (
            lambda: native.conv(
                np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 1, 1), np.float32), np.ones(2, np.float32)
            ),
            "the bias has 2 values but there are 3 output channels",
        ),
        (lambda: native.max_pool(np.ones((1, 1, 4, 4), np.float32), [2]), r"kernel \[2\] must have 2 values"),
        (lambda: native.global_average_pool(np.ones((2, 3), np.float32)), "rank >= 3"),
        (
            lambda: native.max_pool(np.ones((1, 1, 4, 4), np.float32), [3, 3], None, [1500, 1500, 0, 0]),
            r"pads \[1500, 1500\] too large for the native window kernels",
        ),
    ],
)
def test_unsupported_inputs_raise_a_value_error(call: Any, match: str) -> None:
    with pytest.raises(native.NativeUnsupportedError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)


def test_new_shapes_and_geometries_do_not_recompile(kernel_cache: Path) -> None:
    rng = np.random.default_rng(11)
    native.softmax(f32(rng, 3, 9), -1)
    native.conv(f32(rng, 1, 3, 8, 8), f32(rng, 4, 3, 3, 3), None, [1, 1], [1, 1, 1, 1])
    objects = sorted(kernel_cache.rglob("*.so"))
    native.softmax(f32(rng, 5, 4, 77), -1)
    native.conv(f32(rng, 2, 5, 13, 11), f32(rng, 6, 5, 5, 3), None, [2, 3], [2, 1, 0, 2], [2, 1])
    assert sorted(kernel_cache.rglob("*.so")) == objects


def test_missing_compiler_raises_compiler_not_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    monkeypatch.setenv("PLIANT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_KERNELS", {})
    x = np.ones((2, 3), np.float32)
    for call in (lambda: native.softmax(x, -1), lambda: native.erf(x), lambda: native.layer_norm(x, x[0])):
        with pytest.raises(CompilerNotFoundError, match="no C compiler: looked for '/nonexistent/bin/cc'"):
            call()


def test_calls_from_several_threads_agree() -> None:
    rng = np.random.default_rng(12)
    xs = [f32(rng, 2, 8, 9 + i, 10) for i in range(4)]
    w = f32(rng, 6, 8, 3, 3)
    want = [(reduce.softmax(Ctx(axis=2), x), conv_ops.conv(Ctx(pads=[1, 1, 1, 1]), x, w)) for x in xs]
    got: list[Any] = [None] * len(xs)

    def work(i: int) -> None:
        for _ in range(5):
            got[i] = (native.softmax(xs[i], 2), native.conv(xs[i], w, None, None, [1, 1, 1, 1]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (gs, gc), (ws, wc) in zip(got, want):
        close(gs, ws)
        close(gc, wc, atol=1e-4)
