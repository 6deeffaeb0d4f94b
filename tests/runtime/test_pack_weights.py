"""Constant product operands stored as panels (``pliant.transforms.pack_weights``, ``pliant.PackedMatMul``).

The layout is checked element by element against its definition; compiled
models with packed weights against ONNX Runtime, at row counts that take each
of the native product's paths (the small loops, conv.c's GEMM over several K
blocks, a last panel only partly inside the matrix); the reference kernel, the
op's errors, and the cases the pass must leave alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pliant
from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ops.linalg import PACK_PANEL, pack_columns, unpack_columns
from pliant.transforms.pack_weights import pack_weights
from tests.helpers import run_onnxruntime

RNG = np.random.default_rng(33)
N = helper.make_node
F = TensorProto.FLOAT


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.1).astype(np.float32), name)


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
        [helper.make_tensor_value_info(o, F, None) for o in ("a", "g", "h", "ky", "s", "ty", "uy", "v")], inits)
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
    got = exe.run(feeds)
    for name, want in zip(("a", "g", "h", "ky", "s", "ty", "uy", "v"), run_onnxruntime(model, feeds)):
        assert got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=f"{name} at {m} rows")


def test_the_reference_kernel_unpacks() -> None:
    """Interpreted op by op (no native unit), a PackedMatMul unpacks its panels: the same results."""
    model = _products()
    module = pliant.load(model.SerializeToString())
    assert pack_weights(module) == 5
    feeds = {"x3": RNG.standard_normal((1, 4, 64)).astype(np.float32),
             "x": RNG.standard_normal((4, 600)).astype(np.float32)}
    got = pliant.interpret(module, feeds)
    for name, want in zip(("a", "g", "h", "ky", "s", "ty", "uy", "v"), run_onnxruntime(model, feeds)):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=name)


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
