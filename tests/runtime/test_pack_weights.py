"""Constant weights stored as panels (``pliant.transforms.pack_weights``, ``pliant.PackedMatMul``,
``pliant.PackedConv``).

The layouts are checked element by element against their definitions;
compiled models with packed weights against ONNX Runtime, at row counts (image
sizes) that take each of the native product's paths (the small loops, conv.c's
GEMM over several K blocks, a last panel only partly inside the matrix); the
reference kernels, the ops' errors, and the cases the pass must leave alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pliant
from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ops.conv import (
    pack_conv_weights,
    pack_winograd_taps,
    pack_winograd_weights,
    unpack_conv_weights,
    unpack_winograd_taps,
    unpack_winograd_weights,
)
from pliant.ops.linalg import PACK_PANEL, pack_columns, unpack_columns
from pliant.transforms.pack_weights import pack_weights
from tests.helpers import run_onnxruntime

RNG = np.random.default_rng(33)
N = helper.make_node
F = TensorProto.FLOAT


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.1).astype(np.float32), name)


def _matches_onnxruntime(got: dict[str, np.ndarray], model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                         outputs: tuple[str, ...], atol: float, where: str = "") -> None:
    for name, want in zip(outputs, run_onnxruntime(model, feeds)):
        assert got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=atol, err_msg=f"{name} {where}")


@pytest.mark.parametrize("n", [1, 31, 32, 33, 100])
def test_panels_hold_the_columns_in_order(n: int) -> None:
    b = RNG.standard_normal((7, n)).astype(np.float32)
    p = pack_columns(b)
    assert p.shape == (-(-n // PACK_PANEL), 7, PACK_PANEL)
    for j in range(p.shape[0]):
        for c in range(PACK_PANEL):
            col = j * PACK_PANEL + c
            want = b[:, col] if col < n else np.zeros(7, np.float32)
            np.testing.assert_array_equal(p[j, :, c], want)
    np.testing.assert_array_equal(unpack_columns(p, n), b)


PRODUCT_OUTPUTS = ("a", "g", "h", "ky", "s", "ty", "uy", "v")


def _products() -> onnx.ModelProto:
    """Five packed weights: a 3-D MatMul, Gemms with a C of shape (n,) and (1, n), MatMuls over two K blocks,
    one with 33 columns (a last panel of one); and three the pass must leave alone: a Gemm with alpha, a
    weight an Add reads too, a weight of 8 columns."""
    nodes = [
        N("MatMul", ["x3", "w1"], ["a"]),                          # (B, M, 64) x (64, 100)
        N("Gemm", ["x", "w2", "bias"], ["g"]),                     # (M, 600) x (600, 48) + (48,)
        N("Gemm", ["x", "w3", "cm"], ["h"]),                       # + a C of shape (1, 40)
        N("MatMul", ["x", "w4"], ["k"]),                           # (M, 600) x (600, 100): two K blocks
        N("Relu", ["k"], ["ky"]),
        N("Gemm", ["x", "w5"], ["s"], alpha=0.5),                  # not packed: alpha
        N("MatMul", ["x", "w6"], ["t"]), N("Add", ["t", "w6b"], ["ty"]),
        N("MatMul", ["x3", "w7"], ["u"]), N("ReduceMean", ["w7"], ["w7m"], axes=[0]),
        N("Add", ["u", "w7m"], ["uy"]),                            # w7 is read by a ReduceMean too: not packed
        N("MatMul", ["x", "w8"], ["v"]),                           # 8 columns: not packed
    ]
    inits = [_w("w1", 64, 100), _w("w2", 600, 48), _w("bias", 48), _w("w3", 600, 40), _w("cm", 1, 40),
             _w("w4", 600, 100), _w("w5", 600, 64), _w("w6", 600, 33), _w("w6b", 33), _w("w7", 64, 64),
             _w("w8", 600, 8)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x3", F, ["B", "M", 64]), helper.make_tensor_value_info("x", F, ["M", 600])],
        [helper.make_tensor_value_info(o, F, None) for o in PRODUCT_OUTPUTS], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# rows: the small loops (1, 3), conv.c's GEMM (5 and more: some tiles of fewer rows than the microkernel's)
@pytest.mark.parametrize("m", [1, 3, 5, 37])
def test_packed_products_match_onnxruntime(m: int) -> None:
    model = _products()
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    assert {p["name"]: p["changes"] for p in exe.report()["passes"]}["pack-weights"] == 5
    packed = [op for op in exe.module.walk() if op.name == "PackedMatMul"]
    assert len(packed) == 5
    for op in packed:  # each in a native unit
        assert op.parent is not None and op.parent.parent_op is not None and op.parent.parent_op.name == "Static"
    feeds = {"x3": RNG.standard_normal((2, m, 64)).astype(np.float32),
             "x": RNG.standard_normal((m, 600)).astype(np.float32)}
    _matches_onnxruntime(exe.run(feeds), model, feeds, PRODUCT_OUTPUTS, 1e-5, f"at {m} rows")


def _few_rows() -> onnx.ModelProto:
    """Products of a few rows by weights large enough to share their panels out over the threads: 1 x 600 x 200
    and more (seven panels, the last one of 8 columns: an uneven split), and A given transposed (a Transpose the
    unit reads through) with a bias."""
    nodes = [N("MatMul", ["x", "w1"], ["y"]), N("Transpose", ["xt"], ["xtt"]), N("MatMul", ["xtt", "w2"], ["gm"]),
             N("Add", ["gm", "bias"], ["g"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, ["M", 600]), helper.make_tensor_value_info("xt", F, [600, "M"])],
        [helper.make_tensor_value_info(o, F, None) for o in ("y", "g")], [_w("w1", 600, 200), _w("w2", 600, 136), _w("bias", 136)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# rows: 1 (one row a pass over each panel), 2-4 (every row a pass), 5 (the small loop past the rows kept together)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_products_of_few_rows_on_several_threads_match_onnxruntime(m: int) -> None:
    from pliant.runtime.region_c import PANELS_PARALLEL_WORK

    assert m * 600 * 136 >= PANELS_PARALLEL_WORK  # the panels are shared out
    model = _few_rows()
    exe = pliant.compile(model.SerializeToString(), threads=2, verify=True, specialize=False)
    assert [op.name for op in exe.module.walk()].count("PackedMatMul") == 2
    x = RNG.standard_normal((m, 600)).astype(np.float32)
    feeds = {"x": x, "xt": np.ascontiguousarray(x.T)}
    for _ in range(3):  # the same panels on the same threads at every call
        _matches_onnxruntime(exe.run(feeds), model, feeds, ("y", "g"), 1e-4, f"at {m} rows")


def _loop_of_products() -> onnx.ModelProto:
    """A Loop whose body reads its weights through Identity copies made outside it (as the TorchScript exporter
    hands a Loop body the module's weights), one of them read by a MatMul outside the loop too; and an
    Identity whose copy is the body's output, which must stay."""
    body = helper.make_graph(
        [N("MatMul", ["h_in", "wi"], ["p"]), N("Tanh", ["p"], ["h_out"]), N("Identity", ["cond"], ["cond_out"]),
         N("Identity", ["wo"], ["wo_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h_in", F, [1, 64])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", F, [1, 64]), helper.make_tensor_value_info("wo_out", F, [64, 64])])
    nodes = [N("Identity", ["w"], ["wi"]), N("Identity", ["w2"], ["wo"]), N("MatMul", ["x", "w"], ["h0"]),
             N("Loop", ["trips", "", "h0"], ["h", "ws"], body=body)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, [1, 64]),
                     helper.make_tensor_value_info("trips", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("h", F, None), helper.make_tensor_value_info("ws", F, None)],
        [_w("w", 64, 64), _w("w2", 64, 64)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_weights_a_loop_reads_through_identities_are_packed() -> None:
    model = _loop_of_products()
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    names = [op.name for op in exe.module.walk()]
    assert names.count("PackedMatMul") == 2 and "MatMul" not in names
    feeds = {"x": RNG.standard_normal((1, 64)).astype(np.float32), "trips": np.array(5, np.int64)}
    _matches_onnxruntime(exe.run(feeds), model, feeds, ("h", "ws"), 1e-5)


def test_the_reference_kernel_unpacks() -> None:
    """Interpreted op by op (no native unit), a PackedMatMul unpacks its panels: the same results."""
    model = _products()
    module = pliant.load(model.SerializeToString())
    assert pack_weights(module) == 5
    feeds = {"x3": RNG.standard_normal((1, 4, 64)).astype(np.float32),
             "x": RNG.standard_normal((4, 600)).astype(np.float32)}
    _matches_onnxruntime(pliant.interpret(module, feeds), model, feeds, PRODUCT_OUTPUTS, 1e-5)


def _packed_module(panels: Any, n: Any) -> pliant.ir.Module:
    from pliant.ir import DType, FunctionBuilder, tensor

    fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "M", 40))])
    attrs = {} if n is None else {"n": n}
    fb.output("y", fb.op("PackedMatMul", [fb.inputs[0], fb.const(panels)], attrs, domain="pliant"))
    return fb.module()


def test_panels_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ShapeInferenceError, match=r"panels of shape \(2, k, 32\) for n=40"):
        _packed_module(np.zeros((1, 40, PACK_PANEL), np.float32), 40)
    with pytest.raises(ShapeInferenceError, match="needs the attribute 'n'"):
        _packed_module(np.zeros((2, 40, PACK_PANEL), np.float32), None)


def test_a_contraction_mismatch_names_both_sides() -> None:
    with pytest.raises(ShapeInferenceError, match="contraction dims differ"):
        _packed_module(np.zeros((2, 39, PACK_PANEL), np.float32), 40)
    module = _packed_module(np.zeros((2, 40, PACK_PANEL), np.float32), 40)
    with pytest.raises(pliant.FeedError, match="input 'x'"):
        pliant.interpret(module, {"x": np.zeros((3, 39), np.float32)})


def test_the_kernel_checks_its_panels() -> None:
    from pliant.ops import registry
    from pliant.ops.linalg import packed_matmul

    module = _packed_module(np.zeros((2, 40, PACK_PANEL), np.float32), 40)
    (op,) = [o for o in module.walk() if o.name == "PackedMatMul"]
    ctx = registry.KernelContext(op, {"n": 40}, 1, None)
    with pytest.raises(OpRuntimeError, match=r"panels of shape \(2, k, 32\)"):
        packed_matmul(ctx, np.zeros((3, 40), np.float32), np.zeros((3, 40, PACK_PANEL), np.float32))
    with pytest.raises(OpRuntimeError, match="contraction dims differ"):
        packed_matmul(ctx, np.zeros((3, 39), np.float32), np.zeros((2, 40, PACK_PANEL), np.float32))


# --- convolutions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [5, 32, 70])
def test_conv_panels_hold_each_output_channels_weights(m: int) -> None:
    w = RNG.standard_normal((m, 6, 3, 2)).astype(np.float32)
    p = pack_conv_weights(w)
    assert p.shape == (-(-m // PACK_PANEL), 36, PACK_PANEL)
    for j in range(p.shape[0]):
        for c in range(PACK_PANEL):
            channel = j * PACK_PANEL + c
            want = w[channel].reshape(-1) if channel < m else np.zeros(36, np.float32)
            np.testing.assert_array_equal(p[j, :, c], want)
    np.testing.assert_array_equal(unpack_conv_weights(p, w.shape), w)


CONV_OUTPUTS = ("r1", "r2", "y3", "y4", "y5", "y6", "y7", "y8", "y9")


def _convs() -> onnx.ModelProto:
    """Six packed weights: a Conv + Relu (36 channels: a last panel of 4), a stride-2 Conv with a residual Add
    (a 1x1 Conv of stride 2) and a Clip, a Conv with no epilogue whose result a TopK reads, a 5x1 window, a
    depth of 8*3*3 = 72; and three the pass must leave alone: a 1x1 Conv of stride 1, two groups, a depth of
    2*2*2 = 8."""
    nodes = [
        N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["r1"]),          # 16*9: packed
        N("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),                   # packed
        N("Conv", ["r1", "w2s"], ["c2s"], strides=[2, 2], kernel_shape=[1, 1]),                     # packed
        N("Add", ["c2", "c2s"], ["s2"]), N("Clip", ["s2", "lo", "hi"], ["r2"]),
        N("Conv", ["r2", "w3"], ["y3"], pads=[1, 2, 1, 2], dilations=[1, 2]),                       # packed
        N("TopK", ["y3", "k"], ["y4", "y4i"], axis=1),
        N("Conv", ["r1", "w5", "b5"], ["c5"], pads=[2, 0, 2, 0]), N("Relu", ["c5"], ["y5"]),        # 5x1: packed
        N("Conv", ["r1", "w6"], ["y6"], group=2, pads=[1, 1, 1, 1]),                                # two groups
        N("Conv", ["x8", "w7"], ["y7"], pads=[1, 1, 1, 1]),                                         # depth 72
        N("Conv", ["x8", "w8"], ["y8"]),                                                            # 1x1: not
        N("Conv", ["x2", "w9"], ["y9"], pads=[1, 1, 0, 0]),                                         # depth 8: not
    ]
    inits = [_w("w1", 36, 16, 3, 3), _w("b1", 36), _w("w2", 40, 36, 3, 3), _w("b2", 40), _w("w2s", 40, 36, 1, 1),
             _w("w3", 24, 40, 3, 3), _w("w5", 20, 36, 5, 1), _w("b5", 20), _w("w6", 8, 18, 3, 3),
             _w("w7", 16, 8, 3, 3), _w("w8", 40, 8, 1, 1), _w("w9", 32, 2, 2, 2),
             numpy_helper.from_array(np.float32(-0.3), "lo"),
             numpy_helper.from_array(np.float32(0.4), "hi"), numpy_helper.from_array(np.array([3]), "k")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, [1, 16, "H", "W"]),
                     helper.make_tensor_value_info("x8", F, [1, 8, "H", "W"]),
                     helper.make_tensor_value_info("x2", F, [1, 2, "H", "W"])],
        [helper.make_tensor_value_info(o, F, None) for o in CONV_OUTPUTS], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv_feeds(h: int, w: int) -> dict[str, np.ndarray]:
    return {"x": RNG.standard_normal((1, 16, h, w)).astype(np.float32),
            "x8": RNG.standard_normal((1, 8, h, w)).astype(np.float32),
            "x2": RNG.standard_normal((1, 2, h, w)).astype(np.float32)}


def _packed_convs(module: pliant.ir.Module) -> list[Any]:
    return [op for op in module.walk() if op.name == "PackedConv"]


# sizes: from a few output positions (a tile of the product partly outside) to thousands (many tasks)
@pytest.mark.parametrize("hw", [(3, 5), (12, 9), (40, 56)])
def test_packed_convs_match_onnxruntime(hw: tuple[int, int]) -> None:
    model = _convs()
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    assert {p["name"]: p["changes"] for p in exe.report()["passes"]}["pack-weights"] == 6
    packed = _packed_convs(exe.module)
    assert len(packed) == 6
    fused = [op for op in exe.module.walk() if op.name == "FusedConv" and op.attrs.get("weight_shape")]
    assert len(fused) == 3  # with Relu, with the residual and Clip, and the 5x1 window with Relu
    feeds = _conv_feeds(*hw)
    _matches_onnxruntime(exe.run(feeds), model, feeds, CONV_OUTPUTS, 1e-4, f"at {hw}")


def test_the_conv_reference_kernel_unpacks() -> None:
    """Interpreted op by op, a PackedConv unpacks its panels: the same results as ONNX Runtime's."""
    model = _convs()
    module = pliant.load(model.SerializeToString())
    assert pack_weights(module) == 6
    assert len(_packed_convs(module)) == 6
    feeds = _conv_feeds(7, 6)
    _matches_onnxruntime(pliant.interpret(module, feeds), model, feeds, CONV_OUTPUTS, 1e-4)


def _packed_conv_module(panels: Any, weight_shape: Any, channels: int = 4, **more: Any) -> pliant.ir.Module:
    from pliant.ir import DType, FunctionBuilder, tensor

    fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, 1, channels, "H", "W"))])
    attrs = ({} if weight_shape is None else {"weight_shape": weight_shape}) | more
    fb.output("y", fb.op("PackedConv", [fb.inputs[0], fb.const(panels)], attrs, domain="pliant"))
    return fb.module()


def test_conv_panels_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ShapeInferenceError, match=r"\(panels\) must have shape \[2, 36, 32\] for weight_shape \[40, 4, 3, 3\]"):
        _packed_conv_module(np.zeros((1, 36, PACK_PANEL), np.float32), [40, 4, 3, 3])
    with pytest.raises(ShapeInferenceError, match="needs 'weight_shape'"):
        _packed_conv_module(np.zeros((2, 36, PACK_PANEL), np.float32), None)
    module = _packed_conv_module(np.zeros((2, 36, PACK_PANEL), np.float32), [40, 4, 3, 3])
    with pytest.raises(pliant.FeedError, match="input 'x'"):
        pliant.interpret(module, {"x": np.zeros((1, 5, 6, 6), np.float32)})


def test_the_conv_kernel_checks_its_panels() -> None:
    from pliant.ops import registry
    from pliant.ops.conv import packed_conv

    module = _packed_conv_module(np.zeros((2, 36, PACK_PANEL), np.float32), [40, 4, 3, 3])
    (op,) = [o for o in module.walk() if o.name == "PackedConv"]
    ctx = registry.KernelContext(op, {"weight_shape": [40, 4, 3, 3]}, 1, None)
    with pytest.raises(OpRuntimeError, match=r"\(panels\) must have shape \[2, 36, 32\]"):
        packed_conv(ctx, np.zeros((1, 4, 5, 5), np.float32), np.zeros((2, 35, PACK_PANEL), np.float32))
    with pytest.raises(OpRuntimeError, match="weight expects 4 per group"):
        packed_conv(ctx, np.zeros((1, 3, 5, 5), np.float32), np.zeros((2, 36, PACK_PANEL), np.float32))


def test_a_packed_conv_outside_units_runs_natively() -> None:
    """Op by op (outside a native unit) a PackedConv is one call into conv.c with its panels, not its unpacking
    reference kernel."""
    from pliant.ops import registry
    from pliant.ops.conv import conv
    from pliant.runtime.fast import fast_kernel

    w = RNG.standard_normal((40, 4, 3, 5)).astype(np.float32)
    attrs = {"weight_shape": [40, 4, 3, 5], "pads": [1, 2, 1, 2], "strides": [2, 1]}
    module = _packed_conv_module(pack_conv_weights(w), attrs["weight_shape"])
    (op,) = _packed_convs(module)
    op.attrs.update(attrs)
    kernel = fast_kernel(op, attrs, 1)
    assert kernel is not None and getattr(kernel, "native", False)
    x, b = RNG.standard_normal((1, 4, 9, 11)).astype(np.float32), RNG.standard_normal(40).astype(np.float32)
    want = conv(registry.KernelContext(op, {k: v for k, v in attrs.items() if k != "weight_shape"}, 1, None), x, w, b)
    np.testing.assert_allclose(kernel(x, pack_conv_weights(w), b), want, rtol=1e-4, atol=1e-4)


# --- Winograd F(2x2, 3x3) ----------------------------------------------------------------------------


@pytest.mark.parametrize("m,c", [(1, 1), (5, 3), (40, 36)])
def test_winograd_weights_are_g_w_g_transposed(m: int, c: int) -> None:
    """The layout is G w G^T per channel pair with Lavin and Gray's G (written out here, not taken from pliant),
    and unpacking gives w back."""
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    w = RNG.standard_normal((m, c, 3, 3)).astype(np.float32)
    u = pack_winograd_weights(w)
    assert u.shape == (16, m, c) and u.dtype == np.float32
    for mm, cc in [(0, 0), (m - 1, c - 1), (m // 2, c // 3)]:
        np.testing.assert_allclose(u[:, mm, cc].reshape(4, 4), g @ w[mm, cc].astype(np.float64) @ g.T, rtol=1e-6,
                                   atol=1e-6)
    np.testing.assert_allclose(unpack_winograd_weights(u, w.shape), w, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(M, C, 3, 3\)"):
        pack_winograd_weights(w[:, :, :2])


def test_winograd_taps_are_each_output_channels_window_by_input_channel() -> None:
    w = RNG.standard_normal((6, 5, 3, 3)).astype(np.float32)
    t = pack_winograd_taps(w)
    assert t.shape == (6, 9, 5) and t.dtype == np.float32 and t.flags.c_contiguous
    for m, kh, kw, c in [(0, 0, 0, 0), (5, 2, 2, 4), (3, 1, 2, 1), (2, 2, 0, 3)]:
        assert t[m, 3 * kh + kw, c] == w[m, c, kh, kw]
    np.testing.assert_array_equal(unpack_winograd_taps(t, w.shape), w)
    with pytest.raises(ValueError, match=r"\(M, C, 3, 3\)"):
        pack_winograd_taps(w[:, :, :2])


def _winograd_convs() -> onnx.ModelProto:
    """Three 3x3 convolutions of stride 1 that take Winograd's layout (with a Relu; with a residual Add, a bias
    and a Clip; with asymmetric pads and no epilogue) and one the pass leaves in panels (4 input channels)."""
    nodes = [
        N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["r1"]),          # 32 -> 40
        N("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),                                   # 40 -> 40
        N("Add", ["c2", "r1"], ["s2"]), N("Clip", ["s2", "lo", "hi"], ["y2"]),
        N("Conv", ["y2", "w3"], ["y3"], pads=[0, 1, 2, 0]),                                         # 40 -> 33
        N("Conv", ["x4", "w4"], ["y4"], pads=[1, 1, 1, 1]),                                        # 4: panels
    ]
    inits = [_w("w1", 40, 32, 3, 3), _w("b1", 40), _w("w2", 40, 40, 3, 3), _w("b2", 40), _w("w3", 33, 40, 3, 3),
             _w("w4", 32, 4, 3, 3), numpy_helper.from_array(np.float32(-0.3), "lo"),
             numpy_helper.from_array(np.float32(0.4), "hi")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, [1, 32, "H", "W"]),
                     helper.make_tensor_value_info("x4", F, [1, 4, "H", "W"])],
        [helper.make_tensor_value_info(o, F, None) for o in WINOGRAD_OUTPUTS], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


WINOGRAD_OUTPUTS = ("r1", "y2", "y3", "y4")


def _winograd_feeds(h: int, w: int) -> dict[str, np.ndarray]:
    return {"x": RNG.standard_normal((1, 32, h, w)).astype(np.float32),
            "x4": RNG.standard_normal((1, 4, h, w)).astype(np.float32)}


# sizes: one output position, odd sizes (a last tile row and column half outside), one tile row of many tiles,
# and enough tile rows that each thread takes whole blocks
@pytest.mark.parametrize("taps", [True, False], ids=["taps", "transformed"])
@pytest.mark.parametrize("hw", [(1, 2), (3, 5), (7, 2), (2, 37), (12, 9), (90, 70)])
def test_winograd_convs_match_onnxruntime(hw: tuple[int, int], taps: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both Winograd layouts: the taps conv.c transforms as it runs (the default) and the transformed weights."""
    from pliant.transforms import pack_weights as pw

    monkeypatch.setattr(pw, "WINOGRAD_TAPS", taps)
    layout = "winograd_taps" if taps else "winograd"
    model = _winograd_convs()
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    layouts = sorted(str(op.attrs.get("layout") or "panels") for op in _packed_convs(exe.module))
    assert layouts == ["panels", layout, layout, layout]
    fused = [op for op in exe.module.walk() if op.name == "FusedConv" and op.attrs.get("layout") == layout]
    assert len(fused) == 2  # with Relu; with the residual and Clip
    feeds = _winograd_feeds(*hw)
    _matches_onnxruntime(exe.run(feeds), model, feeds, WINOGRAD_OUTPUTS, 1e-4, f"at {hw}")


# F(4x4, 3x3) (AVX-512) from the taps, always and where conv.c's estimate takes it: one position, a tile part
# outside the image both ways, exactly one tile, a last tile row and column part outside, one tile row of many
# tiles, and enough tile rows for blocks (whose vectors of tiles span several rows)
@pytest.mark.parametrize("mode", [1, -1], ids=["always", "estimated"])
@pytest.mark.parametrize("hw", [(1, 2), (3, 5), (4, 4), (9, 13), (2, 37), (45, 70)])
def test_winograd_4x4_convs_match_onnxruntime(hw: tuple[int, int], mode: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from pliant.runtime import blas_conv

    monkeypatch.setattr(blas_conv, "WINOGRAD_4X4", mode)
    model = _winograd_convs()
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    feeds = _winograd_feeds(*hw)
    _matches_onnxruntime(exe.run(feeds), model, feeds, WINOGRAD_OUTPUTS, 1e-4, f"at {hw}")


# F(4x4, 3x3) over a batch (its steps shared out image by image, or whole blocks of several images), with a bias
# and a residual
@pytest.mark.parametrize("hw", [(6, 10), (40, 36)])
def test_winograd_4x4_over_a_batch_matches_onnxruntime(hw: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    from pliant.runtime import blas_conv

    monkeypatch.setattr(blas_conv, "WINOGRAD_4X4", 1)
    nodes = [N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), N("Add", ["c1", "x"], ["y1"]),  # 24 -> 24
             N("Conv", ["y1", "w2"], ["y2"], pads=[1, 1, 1, 1])]                                      # 24 -> 20
    inits = [_w("w1", 24, 24, 3, 3), _w("b1", 24), _w("w2", 20, 24, 3, 3)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["N", 24, "H", "W"])],
                              [helper.make_tensor_value_info(o, F, None) for o in ("y1", "y2")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": RNG.standard_normal((3, 24, *hw)).astype(np.float32)}
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    assert [str(op.attrs.get("layout")) for op in _packed_convs(exe.module)] == ["winograd_taps"] * 2
    _matches_onnxruntime(exe.run(feeds), model, feeds, ("y1", "y2"), 1e-4, f"at {hw}")


# few channels: 8 and 16 (fewer output channels than a microkernel tile's rows, 8 -> 12 a run of 4 past them),
# with a residual; sizes from one position to several tile rows and an odd last column
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (32, 32), (33, 20)])
def test_few_channel_winograd_convs_match_onnxruntime(hw: tuple[int, int]) -> None:
    nodes = [N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["r1"]),  # 8 -> 16
             N("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),                            # 16 -> 16
             N("Add", ["c2", "r1"], ["y2"]),
             N("Conv", ["y2", "w3"], ["y3"], pads=[1, 1, 1, 1])]                                  # 16 -> 12
    inits = [_w("w1", 16, 8, 3, 3), _w("b1", 16), _w("w2", 16, 16, 3, 3), _w("b2", 16), _w("w3", 12, 16, 3, 3)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 8, "H", "W"])],
                              [helper.make_tensor_value_info(o, F, None) for o in ("r1", "y2", "y3")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    assert [str(op.attrs.get("layout")) for op in _packed_convs(exe.module)] == ["winograd_taps"] * 3
    feeds = {"x": RNG.standard_normal((1, 8, *hw)).astype(np.float32)}
    _matches_onnxruntime(exe.run(feeds), model, feeds, ("r1", "y2", "y3"), 1e-4, f"at {hw}")


# 1x1 windows of stride 1: packed from POINTWISE_MIN_CHANNELS input channels (with a bias and Relu, with a
# residual, and 25 output channels, less than a panel), left to be read in place below
@pytest.mark.parametrize("hw", [(1, 1), (5, 5), (10, 10), (15, 20)])
def test_pointwise_convs_from_enough_channels_are_packed(hw: tuple[int, int]) -> None:
    from pliant.transforms.pack_weights import POINTWISE_MIN_CHANNELS as C

    nodes = [N("Conv", ["x", "w1", "b1"], ["c1"]), N("Relu", ["c1"], ["r1"]),          # C -> C: packed
             N("Conv", ["r1", "w2"], ["c2"]), N("Add", ["c2", "x"], ["y2"]),         # C -> C, residual: packed
             N("Conv", ["y2", "w3", "b3"], ["y3"]),                                # C -> 25: packed
             N("Conv", ["x32", "w4"], ["y4"])]                                     # C/2 -> C: in place
    inits = [_w("w1", C, C, 1, 1), _w("b1", C), _w("w2", C, C, 1, 1), _w("w3", 25, C, 1, 1), _w("b3", 25),
             _w("w4", C, C // 2, 1, 1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, C, "H", "W"]),
                                           helper.make_tensor_value_info("x32", F, [1, C // 2, "H", "W"])],
                              [helper.make_tensor_value_info(o, F, None) for o in ("r1", "y2", "y3", "y4")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    assert len(_packed_convs(exe.module)) == 3
    feeds = {"x": RNG.standard_normal((1, C, *hw)).astype(np.float32),
             "x32": RNG.standard_normal((1, C // 2, *hw)).astype(np.float32)}
    _matches_onnxruntime(exe.run(feeds), model, feeds, ("r1", "y2", "y3", "y4"), 1e-4, f"at {hw}")


def test_winograd_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from pliant.transforms import pack_weights as pw

    monkeypatch.setattr(pw, "WINOGRAD", False)
    module = pliant.load(_winograd_convs().SerializeToString())
    assert pack_weights(module) == 4
    assert all(op.attrs.get("layout") is None for op in _packed_convs(module))


@pytest.mark.parametrize("taps", [True, False], ids=["taps", "transformed"])
def test_the_winograd_reference_kernel_unpacks(taps: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interpreted op by op, a Winograd PackedConv unpacks its weights: the same results as ONNX Runtime's."""
    from pliant.transforms import pack_weights as pw

    monkeypatch.setattr(pw, "WINOGRAD_TAPS", taps)
    model = _winograd_convs()
    module = pliant.load(model.SerializeToString())
    assert pack_weights(module) == 4
    layout = "winograd_taps" if taps else "winograd"
    assert sum(op.attrs.get("layout") == layout for op in _packed_convs(module)) == 3
    feeds = _winograd_feeds(6, 7)
    _matches_onnxruntime(pliant.interpret(module, feeds), model, feeds, WINOGRAD_OUTPUTS, 1e-4)


def test_winograd_layouts_that_do_not_fit_are_refused() -> None:
    u = np.zeros((16, 40, 4), np.float32)
    with pytest.raises(ShapeInferenceError, match=r"\(winograd\) must have shape \[16, 40, 4\]"):
        _packed_conv_module(np.zeros((16, 4, 40), np.float32), [40, 4, 3, 3], layout="winograd")
    with pytest.raises(ShapeInferenceError, match="3x3 windows of stride 1"):
        _packed_conv_module(u, [40, 4, 3, 3], layout="winograd", strides=[2, 2])
    with pytest.raises(ShapeInferenceError, match="3x3 windows of stride 1"):
        _packed_conv_module(np.zeros((16, 40, 4), np.float32), [40, 4, 5, 5], layout="winograd")
    with pytest.raises(ShapeInferenceError, match="layout must be one of"):
        _packed_conv_module(u, [40, 4, 3, 3], layout="nchw16c")
    with pytest.raises(ShapeInferenceError, match=r"\(winograd_taps\) must have shape \[40, 9, 4\]"):
        _packed_conv_module(np.zeros((40, 4, 9), np.float32), [40, 4, 3, 3], layout="winograd_taps")
    with pytest.raises(ShapeInferenceError, match="winograd_taps layout is for 3x3 windows of stride 1"):
        _packed_conv_module(np.zeros((40, 9, 4), np.float32), [40, 4, 3, 3], layout="winograd_taps", dilations=[2, 2])


@pytest.mark.parametrize("f4", [0, 1], ids=["2x2", "4x4"])
@pytest.mark.parametrize("layout", ["winograd", "winograd_taps"])
def test_a_winograd_conv_outside_units_runs_natively(layout: str, f4: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Op by op a Winograd PackedConv is one call into conv.c with its stored weights (from the taps as F(2x2, 3x3)
    or F(4x4, 3x3))."""
    from pliant.ops import registry
    from pliant.ops.conv import conv
    from pliant.runtime import blas_conv
    from pliant.runtime.fast import fast_kernel

    monkeypatch.setattr(blas_conv, "WINOGRAD_4X4", f4)
    pack = pack_winograd_taps if layout == "winograd_taps" else pack_winograd_weights
    w = RNG.standard_normal((40, 4, 3, 3)).astype(np.float32)
    attrs = {"weight_shape": [40, 4, 3, 3], "pads": [1, 0, 2, 1], "layout": layout}
    module = _packed_conv_module(pack(w), attrs["weight_shape"], layout=layout)
    (op,) = _packed_convs(module)
    op.attrs.update(attrs)
    kernel = fast_kernel(op, attrs, 1)
    assert kernel is not None and getattr(kernel, "native", False)
    x, b = RNG.standard_normal((2, 4, 9, 11)).astype(np.float32), RNG.standard_normal(40).astype(np.float32)
    plain = {k: v for k, v in attrs.items() if k not in ("weight_shape", "layout")}
    want = conv(registry.KernelContext(op, plain, 1, None), x, w, b)
    np.testing.assert_allclose(kernel(x, pack(w), b), want, rtol=1e-4, atol=1e-4)
