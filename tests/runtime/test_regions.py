"""Static regions compiled to one native unit (``pliant.runtime.region_c``) against ONNX Runtime.

Each case is a small graph whose ops all have C emitters, so the whole graph
becomes one unit (checked in the report); it runs at two input sizes (one
compiled unit, two plans).  Then: the fallback paths (a bad Gather index gets
the reference's error), the signature cache, and the report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pliant
from pliant.errors import PliantError
from pliant.ops.typing import constant_value
from pliant.runtime import region_c
from tests.helpers import run_onnxruntime

RNG = np.random.default_rng(21)
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
INT_OUTPUTS = {"am": I64, "an": I64, "ry": I64}


def _const(name: str, value: Any) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return _const(name, (RNG.standard_normal(shape) * 0.2).astype(np.float32))


def _model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, int, list[Any]]], outputs: list[str],
           inits: list[onnx.TensorProto], opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(o, INT_OUTPUTS.get(o, F), None) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


N = helper.make_node
# name -> (nodes, inputs, outputs, initializers, feeds at two sizes)
X = [("x", F, ["B", "L", 8])]
CASES: dict[str, tuple[list[onnx.NodeProto], list[tuple[str, int, list[Any]]], list[str], list[onnx.TensorProto]]] = {
    "elementwise-broadcast": (
        [N("Mul", ["x", "s"], ["a"]), N("Add", ["a", "row"], ["b"]), N("Tanh", ["b"], ["c"]), N("Sigmoid", ["c"], ["d"]),
         N("Erf", ["d"], ["e"]), N("Sub", ["e", "x"], ["f"]), N("Softmax", ["f"], ["y"])],
        X, ["y"], [_const("s", np.float32(1.5)), _w("row", 8)],
    ),
    "where-compare-cast": (
        [N("Greater", ["x", "zero"], ["g"]), N("Neg", ["x"], ["n"]), N("Where", ["g", "x", "n"], ["a"]),
         N("Cast", ["g"], ["gi"], to=I64), N("Cast", ["gi"], ["y2"], to=F), N("Relu", ["a"], ["y"])],
        X, ["y", "y2"], [_const("zero", np.zeros(1, np.float32))],
    ),
    "matmul-softmax-transpose": (
        [N("MatMul", ["x", "w"], ["q"]), N("Transpose", ["q"], ["qt"], perm=[0, 2, 1]), N("MatMul", ["q", "qt"], ["s"]),
         N("Softmax", ["s"], ["p"], axis=-1), N("MatMul", ["p", "q"], ["o"]), N("LogSoftmax", ["o"], ["y"], axis=-1)],
        X, ["y"], [_w("w", 8, 16)],
    ),
    "big-matmul": (
        # past the small-product threshold: conv.c's GEMM from the unit
        [N("MatMul", ["x", "w"], ["a"]), N("MatMul", ["a", "w2"], ["y"])],
        X, ["y"], [_w("w", 8, 512), _w("w2", 512, 512)],
    ),
    "big-products-transposed": (
        # past the threshold with an operand given transposed (scratch transposes) and alpha
        [N("MatMul", ["x", "w"], ["a"]), N("Reshape", ["a", "flat"], ["a2"]),
         N("Gemm", ["a2", "w2", "c"], ["y"], transB=1, alpha=0.5), N("Gemm", ["a2", "a2"], ["y2"], transA=1, alpha=2.0)],
        X, ["y", "y2"], [_w("w", 8, 512), _const("flat", np.array([-1, 512])), _w("w2", 300, 512), _w("c", 300)],
    ),
    "packed-products": (
        # 72 rows of weights against a product of activations: conv.c packs the tile's columns (10 or 13, a
        # partial panel) before the rows meet them
        [N("MatMul", ["x", "w"], ["a"]), N("Reshape", ["a", "flat"], ["a2"]), N("Transpose", ["a2"], ["at"]),
         N("MatMul", ["wbig", "at"], ["y"])],
        X, ["y"], [_w("w", 8, 512), _const("flat", np.array([-1, 512])), _w("wbig", 72, 512)],
    ),
    "transposed-product-blocks": (
        # B given transposed (40 or 52 columns: a full and a partial panel) over two blocks of K (600)
        [N("MatMul", ["x", "w"], ["a"]), N("Reshape", ["a", "flat"], ["a2"]), N("Transpose", ["a2"], ["at"]),
         N("MatMul", ["wbig", "at"], ["y"])],
        X, ["y"], [_w("w", 8, 2400), _const("flat", np.array([-1, 600])), _w("wbig", 16, 600)],
    ),
    "small-products-odd-sizes": (
        # one to thirteen rows, columns and depths that are not multiples of the loops' unrolling (4)
        [N("Gather", ["x", "first"], ["r"], axis=1), N("Gemm", ["r", "w", "c"], ["g"], transB=1),
         N("MatMul", ["g", "w2"], ["y"]), N("MatMul", ["x", "w3"], ["h"]), N("MatMul", ["h", "w4"], ["y2"])],
        X, ["y", "y2"], [_const("first", np.array(0)), _w("w", 7, 8), _w("c", 7), _w("w2", 7, 6), _w("w3", 8, 7),
                         _w("w4", 7, 5)],
    ),
    "gemm-layernorm": (
        [N("Reshape", ["x", "flat"], ["x2"]), N("Gemm", ["x2", "w", "c"], ["g"], transB=1, alpha=0.5, beta=2.0),
         N("LayerNormalization", ["g", "scale", "bias"], ["y"], axis=-1, epsilon=1e-3)],
        X, ["y"], [_const("flat", np.array([-1, 8])), _w("w", 12, 8), _w("c", 12), _w("scale", 12), _w("bias", 12)],
    ),
    "concat-slice-gather": (
        [N("Concat", ["x", "x"], ["c"], axis=2), N("Shape", ["c"], ["sh"]), N("Gather", ["sh", "one"], ["l"], axis=0),
         N("Slice", ["c", "start", "l", "ax"], ["s"]), N("Slice", ["s", "big", "neg", "ax2", "mstep"], ["r"]),
         N("Gather", ["r", "idx"], ["y"], axis=2), N("Relu", ["x"], ["rx"]), N("Gather", ["rx", "first"], ["g0"], axis=0),
         N("Gather", ["rx", "last"], ["g1"], axis=0), N("Sub", ["g0", "g1"], ["y2"])],
        X, ["y", "y2"], [_const("one", np.array([1])), _const("start", np.array([1])), _const("ax", np.array([1])),
                         _const("first", np.array(0)), _const("last", np.array(-1)),
                   _const("big", np.array([100])), _const("neg", np.array([-100])), _const("ax2", np.array([2])),
                   _const("mstep", np.array([-2])), _const("idx", np.array([[0, -1], [2, 1]]))],
    ),
    "range-argmax-reduce": (
        [N("Shape", ["x"], ["sh"]), N("Gather", ["sh", "one"], ["l"], axis=0), N("Range", ["zero", "l", "one"], ["r"]),
         N("ArgMax", ["x"], ["am"], axis=1, keepdims=0), N("ArgMin", ["x"], ["an"], axis=-1, keepdims=1,
                                                              select_last_index=1),
         N("ReduceSum", ["x", "axes"], ["rs"], keepdims=0), N("ReduceMean", ["x", "ax1"], ["rm"], keepdims=1),
         N("ReduceMax", ["x"], ["rx"], keepdims=0), N("ReduceMin", ["x", "ax1"], ["rn"]), N("Add", ["r", "one"], ["ry"])],
        X, ["ry", "am", "an", "rs", "rm", "rx", "rn"],
        [_const("one", np.array(1)), _const("zero", np.array(0)), _const("axes", np.array([0, 2])),
         _const("ax1", np.array([1]))],
    ),
    "expand-constant-of-shape": (
        [N("Shape", ["x"], ["sh"]), N("ConstantOfShape", ["sh"], ["c"], value=_const("v", np.array([0.25], np.float32))),
         N("Expand", ["row", "sh"], ["e"]), N("Add", ["c", "e"], ["a"]), N("Mul", ["a", "x"], ["y"])],
        X, ["y"], [_w("row", 8)],
    ),
    "split-range": (
        [N("Split", ["x"], ["a", "b"], axis=-1, num_outputs=2), N("Split", ["x", "sizes"], ["c", "d", "e"], axis=2),
         N("Shape", ["x"], ["sh"]), N("Gather", ["sh", "one"], ["l"], axis=0), N("Cast", ["l"], ["lf"], to=F),
         N("Range", ["half", "lf", "third"], ["r"]), N("Mul", ["a", "b"], ["y"]), N("Concat", ["e", "c", "d"], ["y2"],
                                                                                   axis=2)],
        X, ["y", "y2", "r"], [_const("sizes", np.array([2, 3, 3])), _const("one", np.array(1)),
                              _const("half", np.float32(0.0)), _const("third", np.float32(1.0))],
    ),
    "conv-fused-conv-pool": (
        [N("Conv", ["img", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["r1"]),
         N("Conv", ["r1", "w2"], ["c2"], pads=[1, 2, 1, 3], strides=[2, 1], dilations=[1, 2]),
         N("Conv", ["r1", "w3"], ["c3"], strides=[2, 1], pads=[0, 0, 0, 1], kernel_shape=[1, 1]), N("Add", ["c2", "c3"], ["s"]),
         N("Relu", ["s"], ["r2"]), N("Conv", ["r2", "w4", "b4"], ["c4"], group=2), N("Clip", ["c4", "lo"], ["k"]),
         N("GlobalAveragePool", ["k"], ["y"])],
        [("img", F, ["B", 3, "H", "W"])], ["y", "r2"],
        [_w("w1", 8, 3, 3, 3), _w("b1", 8), _w("w2", 8, 8, 3, 3), _w("w3", 8, 8, 1, 1), _w("w4", 6, 4, 1, 2),
         _w("b4", 6), _const("lo", np.float32(0.05))],
    ),
    "scatter-elements": (
        [N("Relu", ["x"], ["r"]), N("Shape", ["x"], ["sh"]), N("ConstantOfShape", ["sh"], ["zi"],
                                                                value=_const("v", np.array([0], np.int64))),
         N("Slice", ["zi", "zero1", "two", "ax2"], ["ind"]), N("Slice", ["r", "zero1", "two", "ax2"], ["upd"]),
         N("ScatterElements", ["x", "ind", "upd"], ["s1"], axis=2), N("Add", ["ind", "one"], ["ind1"]),
         N("ScatterElements", ["s1", "ind1", "upd"], ["y"], axis=2, reduction="add"),
         N("ScatterElements", ["y", "neg", "u3"], ["y2"], axis=2, reduction="max")],
        X, ["y", "y2"], [_const("zero1", np.array([0])), _const("two", np.array([2])), _const("ax2", np.array([2])),
                         _const("one", np.array(1)), _const("neg", np.array([[[-1, -3]]])), _w("u3", 1, 1, 2)],
    ),
    "depthwise": (
        [N("Transpose", ["x", ], ["xt"], perm=[0, 2, 1]), N("Conv", ["xt", "dw", "db"], ["c"], group=8, pads=[3, 3]),
         N("Relu", ["c"], ["r"]), N("Conv", ["r", "dw2"], ["c2"], group=8, pads=[1, 2], strides=[2], dilations=[2]),
         N("Add", ["c2", "c2b"], ["y"])],
        X, ["y"], [_w("dw", 8, 1, 7), _w("db", 8), _w("dw2", 16, 1, 3), _w("c2b", 16, 1)],
    ),
    "depthwise-2d-residual": (
        [N("Conv", ["img", "w1"], ["c1"], pads=[1, 1, 1, 1]), N("Conv", ["c1", "dw", "db"], ["c2"], group=4,
                                                                 pads=[1, 1, 1, 1]),
         N("Conv", ["c1", "pw"], ["c3"]), N("Add", ["c2", "c3"], ["s"]), N("LeakyRelu", ["s"], ["y"], alpha=0.1)],
        [("img", F, ["B", 3, "H", "W"])], ["y"],
        [_w("w1", 4, 3, 3, 3), _w("dw", 8, 1, 3, 3), _w("db", 8), _w("pw", 8, 4, 1, 1)],
    ),
}
# transA: (B*L, 8)^T (B*L, 8): the reduced dim is the run-time B*L
CASES["gemm-transposed-a"] = (
    [N("Reshape", ["x", "flat"], ["x2"]), N("Gemm", ["x2", "x2"], ["g"], transA=1), N("Relu", ["g"], ["y"])],
    X, ["y"], [_const("flat", np.array([-1, 8]))],
)
# products followed by a bias Add (added in the product's epilogue, the Add's result in the product's buffer):
# small products (C loops), conv.c's GEMM past the threshold (the bias as one row of z), a bias of shape
# (1, n), and a bias computed in the unit from the input before the product
CASES["bias-epilogue"] = (
    [N("MatMul", ["x", "w"], ["a"]), N("Add", ["a", "c"], ["ab"]), N("MatMul", ["ab", "w2"], ["h"]),
     N("Add", ["c2", "h"], ["hb"]), N("Softmax", ["hb"], ["y"], axis=-1),
     N("Gather", ["x", "zero"], ["x0"], axis=0), N("Gather", ["x0", "zero"], ["row"], axis=0),
     N("MatMul", ["x", "w3"], ["g"]), N("Add", ["g", "row"], ["gb"]), N("LogSoftmax", ["gb"], ["y2"], axis=-1)],
    X, ["y", "y2"], [_w("w", 8, 512), _w("c", 512), _w("w2", 512, 512), _w("c2", 1, 512), _const("zero", np.array(0)),
                     _w("w3", 8, 8)],
)
# Softmaxes of a Mul by a positive scalar take the scale in (the Mul writes nothing): attention's scaled
# scores, a LogSoftmax of 2 * x; a negative scale and a Mul read twice are not taken in
CASES["scaled-softmax"] = (
    [N("MatMul", ["x", "w"], ["q"]), N("Transpose", ["q"], ["qt"], perm=[0, 2, 1]), N("MatMul", ["q", "qt"], ["sc"]),
     N("Mul", ["sc", "scale"], ["ss"]), N("Softmax", ["ss"], ["y"], axis=-1),
     N("Mul", ["two", "x"], ["x2"]), N("LogSoftmax", ["x2"], ["y2"], axis=-1),
     N("Mul", ["x", "neg"], ["xn"]), N("Softmax", ["xn"], ["y3"], axis=-1),
     N("Mul", ["x", "two"], ["xt"]), N("Softmax", ["xt"], ["s4"], axis=-1), N("Add", ["s4", "xt"], ["y4"])],
    X, ["y", "y2", "y3", "y4"], [_w("w", 8, 16), _const("scale", np.float32(0.25)), _const("two", np.float32(2.0)),
                                 _const("neg", np.full((1, 1), -0.5, np.float32))],
)
# Concat pieces computed in the Concat's result (region_c._concat_places): stacked along a first axis of 1s (a
# decoder's caches), through Unsqueeze, nested (p in inner, inner and st in y); read again after the Concat (a);
# left to be copied: an input (x), a piece twice in one Concat (n), one already in another Concat (a),
# and every piece of a Concat whose dims before its axis are not 1s (c1); w's Concat result (c4) takes memory
# when w is computed, not at the Concat: t and t2, computed in between and gone by then, must not overwrite w
CASES["concat-in-place"] = (
    [N("Relu", ["x"], ["a"]), N("Tanh", ["x"], ["b"]), N("Concat", ["a", "b"], ["c1"], axis=2),
     N("Unsqueeze", ["a", "ax0"], ["ua"]), N("Neg", ["x"], ["n"]), N("Unsqueeze", ["n", "ax0"], ["un"]),
     N("Unsqueeze", ["x", "ax0"], ["ux"]), N("Concat", ["ua", "un", "ux", "un"], ["st"], axis=0),
     N("Sigmoid", ["x"], ["p"]), N("Unsqueeze", ["p", "ax0"], ["up"]), N("Concat", ["up", "ua"], ["inner"], axis=0),
     N("Unsqueeze", ["inner", "ax0"], ["ui"]), N("Unsqueeze", ["st", "ax0"], ["us"]),
     N("Concat", ["ui", "us"], ["y"], axis=1), N("Add", ["a", "b"], ["y2"]),
     N("Relu", ["b"], ["w"]), N("Mul", ["b", "b"], ["t"]), N("Neg", ["t"], ["t2"]), N("Sigmoid", ["t2"], ["y3"]),
     N("Unsqueeze", ["w", "ax0"], ["uw"]), N("Concat", ["uw", "ux"], ["c4"], axis=0), N("Abs", ["c4"], ["y4"])],
    X, ["y", "c1", "y2", "y3", "y4"], [_const("ax0", np.array([0]))],
)
# Clip with scalar bounds in the unit: both, only the lower, and a lower bound above the upper (the upper wins)
CASES["clip"] = (
    [N("Clip", ["x", "lo", "hi"], ["a"]), N("Clip", ["x", "lo"], ["b"]), N("Mul", ["a", "b"], ["c"]),
     N("Clip", ["c", "hi", "lo"], ["d"]), N("Add", ["d", "x"], ["y"])],
    X, ["y"], [_const("lo", np.float32(-0.5)), _const("hi", np.float32(0.25))],
)
SIZES = [(2, 5), (1, 13)]


@pytest.mark.parametrize("name", CASES)
def test_region_matches_onnxruntime(name: str) -> None:
    nodes, inputs, outputs, inits = CASES[name]
    model = _model(nodes, inputs, outputs, inits)
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    assert exe.report()["kernels"].get("static") == 1, exe.program.unsupported
    assert [op.name for op in exe.module.entry.body.ops if op.name != "Constant"] == ["Static"]
    for b, n in SIZES:
        name0, shape = (inputs[0][0], (b, n, 8)) if inputs[0][0] == "x" else (inputs[0][0], (b, 3, n + 3, n + 6))
        x = RNG.standard_normal(shape).astype(np.float32)
        want = run_onnxruntime(model, {name0: x})
        got = exe.run({name0: x})
        for o, w in zip(outputs, want):
            assert got[o].dtype == w.dtype and got[o].shape == w.shape, o
            np.testing.assert_allclose(got[o], w, rtol=1e-4, atol=1e-5, err_msg=f"{name} {o} at {(b, n)}")


@pytest.mark.parametrize("name", CASES)
@pytest.mark.filterwarnings("error")  # NOTE: a unit that does not compile (its ops run one by one) fails the test
def test_region_matches_onnxruntime_past_the_parallel_threshold(name: str) -> None:
    """The same at a size whose loops pass PARALLEL_MIN_WORK, where each takes its parallel branch (the small sizes
    above, the serial one: ``region_c._serial_branches``)."""
    nodes, inputs, outputs, inits = CASES[name]
    model = _model(nodes, inputs, outputs, inits)
    exe = pliant.compile(model.SerializeToString(), specialize=False)
    (op,) = [op for op in exe.module.walk() if op.name == "Static"]
    source = region_c.RegionUnit(op).source
    assert '_Pragma("omp parallel for if(' not in source
    shape = (4, 1100, 8) if inputs[0][0] == "x" else (1, 3, 110, 113)
    assert math.prod(shape) >= region_c.PARALLEL_MIN_WORK
    x = RNG.standard_normal(shape).astype(np.float32)
    want = run_onnxruntime(model, {inputs[0][0]: x})
    got = exe.run({inputs[0][0]: x})
    for o, w in zip(outputs, want):
        np.testing.assert_allclose(got[o], w, rtol=1e-4, atol=1e-4, err_msg=f"{name} {o}")


def test_a_bad_gather_index_gets_the_reference_error() -> None:
    model = _model([N("Add", ["x", "x"], ["a"]), N("Gather", ["a", "i"], ["y"], axis=1)],
                   [("x", F, ["B", 4]), ("i", I64, ["K"])], ["y"], [])
    exe = pliant.compile(model.SerializeToString(), specialize=False)
    assert exe.report()["kernels"].get("static") == 1
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(exe.run({"x": x, "i": np.array([3, -4])})["y"], np.full((2, 2), 2, np.float32))
    with pytest.raises(PliantError, match=r"out of range|out of bounds"):
        exe.run({"x": x, "i": np.array([4])})


def test_plans_are_made_once_per_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, inputs, outputs, inits = CASES["elementwise-broadcast"]
    exe = pliant.compile(_model(nodes, inputs, outputs, inits).SerializeToString(), specialize=False)
    made = []
    real = region_c.RegionUnit._plan

    def counting(self: region_c.RegionUnit, xs: Any) -> Any:
        made.append(tuple(x.shape for x in xs))
        return real(self, xs)

    monkeypatch.setattr(region_c.RegionUnit, "_plan", counting)
    for shape in [(2, 3, 8), (2, 3, 8), (4, 1, 8), (2, 3, 8), (4, 1, 8)]:
        exe.run({"x": np.ones(shape, np.float32)})
    assert len(made) == 2


def test_regions_can_be_turned_off() -> None:
    nodes, inputs, outputs, inits = CASES["matmul-softmax-transpose"]
    model = _model(nodes, inputs, outputs, inits).SerializeToString()
    exe = pliant.compile(model, regions=False, specialize=False)
    assert "static" not in exe.report()["kernels"]
    assert "static-regions" not in [p["name"] for p in exe.report()["passes"]]


def test_unit_sources_do_not_depend_on_object_identity() -> None:
    """The C source is the disk cache's key: two compiles of one model (other objects, other addresses) must
    produce the same sources, or a new process would compile every unit again."""
    import os

    from tests.analysis import models as M

    path = os.path.join(M.SUITE, "gpt_decode_step.onnx")
    sources = []
    for _ in range(2):
        exe = pliant.compile(path, specialize=False)
        sources.append(sorted(str(region_c.RegionUnit(op).source) for op in exe.module.walk() if op.name == "Static"))
    assert sources[0] == sources[1] and sources[0]


def test_bias_adds_are_taken_into_the_products() -> None:
    """The bias Adds of CASES["bias-epilogue"] (checked against ONNX Runtime above) cost no pass of their own:
    the unit's source has no loop for them, and each product passes its bias to gemm_t."""
    nodes, inputs, outputs, inits = CASES["bias-epilogue"]
    exe = pliant.compile(_model(nodes, inputs, outputs, inits).SerializeToString(), specialize=False)
    (op,) = [op for op in exe.module.walk() if op.name == "Static"]
    unit = region_c.RegionUnit(op)
    assert len(unit.bias_adds) == 3
    calls = [line for line in str(unit.source).splitlines() if "gemm_t(s," in line]
    assert len(calls) == 3 and not any(line.rstrip().endswith("NULL);") for line in calls)
    region_c.BIAS_EPILOGUE = False
    try:
        assert not region_c.RegionUnit(op).bias_adds
    finally:
        region_c.BIAS_EPILOGUE = True


def test_scaled_softmaxes_take_the_scale_in() -> None:
    """CASES["scaled-softmax"] (checked against ONNX Runtime above): the two Muls by a positive scalar read only by
    a softmax are taken in, and their results are not computed; the other two are."""
    nodes, inputs, outputs, inits = CASES["scaled-softmax"]
    exe = pliant.compile(_model(nodes, inputs, outputs, inits).SerializeToString(), specialize=False)
    (op,) = [op for op in exe.module.walk() if op.name == "Static"]
    unit = region_c.RegionUnit(op)
    assert sorted(c for _, _, c in unit.scaled_softmax.values()) == [0.25, 2.0]
    # NOTE: each loop three times: its parallel branch and its serial one, as a nested function for GCC and inline
    # for other compilers (region_c._serial_branches)
    assert str(unit.source).count("* 0.25f") == 3 and str(unit.source).count("* 2.0f") == 6
    region_c.SCALED_SOFTMAX = False
    try:
        assert not region_c.RegionUnit(op).scaled_softmax
    finally:
        region_c.SCALED_SOFTMAX = True


@pytest.mark.parametrize("name", ["matmul-softmax-transpose", "scaled-softmax"])
def test_batches_of_products_on_one_thread_each_match_onnxruntime(name: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With the threshold at 1, every batch of products (the B of (B, L, L) scores) runs one product per thread."""
    monkeypatch.setattr(region_c, "BATCH_PARALLEL_WORK", 1)
    nodes, inputs, outputs, inits = CASES[name]
    model = _model(nodes, inputs, outputs, inits)
    exe = pliant.compile(model.SerializeToString(), specialize=False)
    assert exe.report()["kernels"].get("static") == 1
    (op,) = [op for op in exe.module.walk() if op.name == "Static"]
    assert "batch_in_parallel(" in str(region_c.RegionUnit(op).source)
    for b in (2, 4, 3):
        x = RNG.standard_normal((b, 40, 8)).astype(np.float32)
        for o, w in zip(outputs, run_onnxruntime(model, {"x": x})):
            np.testing.assert_allclose(exe.run({"x": x})[o], w, rtol=1e-4, atol=1e-5, err_msg=f"{o} at {b}")


def test_a_decoders_step_shares_its_heads_out_and_matches_onnxruntime() -> None:
    """One query row per head against a long cache: few multiply-adds, but past BATCH_PARALLEL_READ elements of
    keys, the heads run one per thread (an even count of them; three heads on two threads stay on one)."""
    model = _model(
        [N("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), N("MatMul", ["q", "kt"], ["s"]), N("Add", ["s", "mask"], ["sm"]),
         N("Softmax", ["sm"], ["p"], axis=-1), N("MatMul", ["p", "v"], ["y"])],
        [("q", F, ["H", 1, 64]), ("k", F, ["H", "P", 64]), ("v", F, ["H", "P", 64]), ("mask", F, [1, 1, "P"])], ["y"], [])
    exe = pliant.compile(model.SerializeToString(), threads=2, specialize=False)
    assert exe.report()["kernels"].get("static") == 1
    for heads, length in [(4, 600), (3, 600), (4, 7)]:
        if (heads, length) == (4, 600):  # NOTE: shared out for what the products read, not for their work
            assert heads * length * 64 >= region_c.BATCH_PARALLEL_READ and heads * length * 64 < region_c.BATCH_PARALLEL_WORK
        feeds = {"q": RNG.standard_normal((heads, 1, 64)).astype(np.float32),
                 "k": RNG.standard_normal((heads, length, 64)).astype(np.float32),
                 "v": RNG.standard_normal((heads, length, 64)).astype(np.float32),
                 "mask": RNG.standard_normal((1, 1, length)).astype(np.float32)}
        (want,) = run_onnxruntime(model, feeds)
        np.testing.assert_allclose(exe.run(feeds)["y"], want, rtol=1e-4, atol=1e-5, err_msg=f"{heads} x {length}")


def test_a_unit_that_does_not_compile_warns_and_runs_its_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    from pliant.kernels.errors import CompileError

    def refuse(self: region_c.RegionUnit) -> None:
        raise CompileError("cc: error: something pliant generated")

    monkeypatch.setattr(region_c.RegionUnit, "load", refuse)
    nodes, inputs, outputs, inits = CASES["matmul-softmax-transpose"]
    model = _model(nodes, inputs, outputs, inits)
    with pytest.warns(RuntimeWarning, match="did not compile, so its ops run one by one.*something pliant generated"):
        exe = pliant.compile(model.SerializeToString(), specialize=False)
    assert exe.report()["regions"][0]["native"] is False
    x = RNG.standard_normal((2, 5, 8)).astype(np.float32)
    np.testing.assert_allclose(exe.run({"x": x})["y"], run_onnxruntime(model, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_report_lists_the_regions() -> None:
    nodes, inputs, outputs, inits = CASES["matmul-softmax-transpose"]
    exe = pliant.compile(_model(nodes, inputs, outputs, inits).SerializeToString(), specialize=False)
    (region,) = exe.report()["regions"]
    assert region["native"] and region["ops"] == 6 and region["outputs"] == 1


def test_units_of_two_models_share_one_arena_without_clobbering() -> None:
    """Every unit in a thread uses the same arena; interleaved calls of two models (each unit's plan putting
    its intermediates at other offsets of other sizes) still match ONNX Runtime, and the arena is one buffer."""
    models = [_model(*CASES[name]) for name in ("matmul-softmax-transpose", "elementwise-broadcast")]
    exes = [pliant.compile(m.SerializeToString(), specialize=False) for m in models]
    sizes = []
    for step in range(6):
        k = step % 2
        x = RNG.standard_normal((2, 3 + 4 * step, 8)).astype(np.float32)
        got = exes[k].run({"x": x})["y"]
        np.testing.assert_allclose(got, run_onnxruntime(models[k], {"x": x})[0], rtol=1e-4, atol=1e-5)
        sizes.append(region_c.arena_bytes())
    assert sizes == sorted(sizes) and sizes[0] > 0, "one buffer for both models' units, which only grows"


@pytest.mark.parametrize("name", ["matmul-softmax-transpose", "small-products-odd-sizes", "where-compare-cast"])
def test_the_python_path_of_units_matches_onnxruntime(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``unit_call.c`` cannot be built (no Python headers, no compiler), units run from Python."""
    from pliant.runtime import unit_call

    monkeypatch.setattr(unit_call, "_STATE", [None])
    calls = []
    real = region_c.RegionUnit._run_python

    def counting(self: region_c.RegionUnit, xs: Any) -> Any:
        assert self._call is None
        calls.append(1)
        return real(self, xs)

    monkeypatch.setattr(region_c.RegionUnit, "_run_python", counting)
    nodes, inputs, outputs, inits = CASES[name]
    model = _model(nodes, inputs, outputs, inits)
    exe = pliant.compile(model.SerializeToString(), specialize=False)
    for b, n in SIZES * 2:
        x = RNG.standard_normal((b, n, 8)).astype(np.float32)
        got = exe.run({"x": x})
        for o, want in zip(outputs, run_onnxruntime(model, {"x": x})):
            np.testing.assert_allclose(got[o], want, rtol=1e-4, atol=1e-5)
    assert len(calls) == 2 * len(SIZES)


def test_the_c_path_declines_inputs_it_does_not_take() -> None:
    """``unit_call.c`` checks every input before native code runs: a non-contiguous array, another dtype, a
    list, another constant array all raise the unit's mismatch (the op then runs op by op), never a wrong read."""
    from pliant.ops.typing import constant_value
    from pliant.runtime import unit_call

    assert unit_call.runner() is not None, unit_call.why_not()
    nodes, inputs, outputs, inits = CASES["matmul-softmax-transpose"]
    model = _model(nodes, inputs, outputs, inits)
    exe = pliant.compile(model.SerializeToString(), specialize=False)
    (op,) = [o for o in exe.module.entry.body.ops if o.name == "Static"]
    unit = region_c.RegionUnit(op)
    unit.load()
    consts = [constant_value(v) if v.defining_op is not None else None for v in op.operands]
    x = RNG.standard_normal((2, 5, 8)).astype(np.float32)

    def xs(first: Any) -> list[Any]:
        return [first if c is None else c for c in consts]

    for _ in range(2):  # NOTE: the first call makes the plan in Python, the second is the C path's
        np.testing.assert_allclose(unit.run(xs(x))[0], run_onnxruntime(model, {"x": x})[0], rtol=1e-4, atol=1e-5)
    assert unit._call is not None and unit._cplans
    for bad in (np.asfortranarray(x), x.astype(np.float64), x.tolist(), x[:, :, ::-1]):
        with pytest.raises(region_c.MISMATCH):
            unit.run(xs(bad))
    swapped = [c if c is None else c.copy() for c in consts]
    with pytest.raises(region_c.MISMATCH, match="constant"):
        unit.run([x if c is None else c for c in swapped])


def _attention_model() -> onnx.ModelProto:
    """Four attentions over x (B, L, 8): scaled scores with the keys' Transpose read in place; unscaled scores
    of keys transposed in memory (their Transpose is read by a ReduceSum too); one whose values are a Transpose
    read in place; and one whose softmax is also an output, which stays unfused."""
    nodes = [N("MatMul", ["x", "wq"], ["q"]), N("MatMul", ["x", "wk"], ["k"]), N("MatMul", ["x", "wv"], ["v"]),
             N("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), N("MatMul", ["q", "kt"], ["s"]),
             N("Mul", ["s", "scale"], ["ss"]), N("Softmax", ["ss"], ["p"], axis=-1), N("MatMul", ["p", "v"], ["y"]),
             N("Transpose", ["v"], ["vt"], perm=[0, 2, 1]), N("ReduceSum", ["vt", "axes"], ["y2s"], keepdims=0),
             N("MatMul", ["k", "vt"], ["s2"]), N("Softmax", ["s2"], ["p2"], axis=2), N("MatMul", ["p2", "q"], ["y2"]),
             N("MatMul", ["k", "kt"], ["s3"]), N("Softmax", ["s3"], ["p3"], axis=-1), N("MatMul", ["p3", "v"], ["y3"]),
             N("Relu", ["vt"], ["rt"]), N("Transpose", ["rt"], ["r"], perm=[0, 2, 1]), N("MatMul", ["v", "kt"], ["s4"]),
             N("Softmax", ["s4"], ["p4"], axis=-1), N("MatMul", ["p4", "r"], ["y4"])]
    inits = [_w("wq", 8, 16), _w("wk", 8, 16), _w("wv", 8, 16), _const("scale", np.float32(0.25)),
             _const("axes", np.array([1]))]
    return _model(nodes, X, ["y", "y2", "y2s", "y3", "p3", "y4"], inits)


# rows: one block, exactly one, a block and a part, several; from 150 rows each thread lays out its keys and
# values as panels first (blocks of 64 rows by 150 keys by 16 reach SMALL_MATMUL), the last one part-empty
@pytest.mark.parametrize("length", [13, 64, 100, 150, 333])
def test_attention_runs_by_blocks_of_rows_and_matches_onnxruntime(length: int) -> None:
    model = _attention_model()
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    assert exe.report()["kernels"].get("static") == 1, exe.program.unsupported
    (op,) = [op for op in exe.module.walk() if op.name == "Static"]
    assert len(region_c.RegionUnit(op).attention) == 3
    assert 64 * 150 * 16 >= region_c.SMALL_MATMUL > 64 * 100 * 16
    x = RNG.standard_normal((2, length, 8)).astype(np.float32)
    got = exe.run({"x": x})
    for name, want in zip(["y", "y2", "y2s", "y3", "p3", "y4"], run_onnxruntime(model, {"x": x})):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=f"{name} at L={length}")


def test_attention_fusion_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(region_c, "ATTENTION_ROWS", 0)
    exe = pliant.compile(_attention_model().SerializeToString(), specialize=False)
    (op,) = [op for op in exe.module.walk() if op.name == "Static"]
    assert not region_c.RegionUnit(op).attention


def test_large_concats_are_copied_in_pieces() -> None:
    """Past CONCAT_PARALLEL elements a unit's Concat copies in pieces over the threads: rows of several pieces
    (a key-value cache along its sequence axis) and one row (along the first axis) land where NumPy puts them."""
    assert 600 * 64 > 2 * region_c.CONCAT_PIECE and 2 * 3 * 601 * 64 > region_c.CONCAT_PARALLEL
    model = _model(
        [N("Concat", ["past", "new"], ["kv"], axis=2), N("Relu", ["kv"], ["y"]),
         N("Concat", ["past", "past"], ["c0"], axis=0), N("Neg", ["c0"], ["y2"])],
        [("past", F, [2, 3, "L", 64]), ("new", F, [2, 3, "T", 64])], ["y", "y2"], [])
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    assert exe.report()["kernels"].get("static") == 1, exe.program.unsupported
    for length, t in [(600, 1), (5, 700)]:
        past = RNG.standard_normal((2, 3, length, 64)).astype(np.float32)
        new = RNG.standard_normal((2, 3, t, 64)).astype(np.float32)
        got = exe.run({"past": past, "new": new})
        np.testing.assert_array_equal(got["y"], np.maximum(np.concatenate([past, new], axis=2), 0))
        np.testing.assert_array_equal(got["y2"], -np.concatenate([past, past], axis=0))


def test_concat_pieces_are_computed_in_place() -> None:
    """In the case above: a, p, st, inner and w in the results they are pieces of, and nothing else; the Concats copy
    only the other pieces; and with the pieces placed, the arena is smaller."""
    nodes, inputs, outputs, inits = CASES["concat-in-place"]
    exe = pliant.compile(_model(nodes, inputs, outputs, inits).SerializeToString(), specialize=False)
    (op,) = [op for op in exe.module.walk() if op.name == "Static"]
    unit = region_c.RegionUnit(op)
    placed = {w.name: o.results[0].name for w, (o, _) in unit.inside.items()}
    # NOTE: a goes into whichever of st and inner the unit's order computes first
    assert placed in ({"a": "st", "p": "inner", "st": "y", "inner": "y", "w": "c4"},
                      {"a": "inner", "p": "inner", "st": "y", "inner": "y", "w": "c4"}), placed
    assert unit.source is not None and unit.source.count("computed in place") == 5
    x = RNG.standard_normal((2, 7, 8)).astype(np.float32)
    xs = [x if v is not None and v.defining_op is None else constant_value(v) for v in unit.inputs]
    placed_arena = unit._plan(xs).arena_bytes
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(region_c, "CONCAT_IN_PLACE", False)
        unplaced = region_c.RegionUnit(op)
    assert not unplaced.inside and placed_arena < unplaced._plan(xs).arena_bytes


def test_a_unit_that_declines_a_call_runs_its_ops_built_on_first_need() -> None:
    """The ops' own steps (and their constants) are built the first time the unit declines a call (here: an
    input in Fortran order), on the caller's registers too; later calls, declined or not, give the same results."""
    nodes, inputs, outputs, inits = CASES["matmul-softmax-transpose"]
    model = _model(nodes, inputs, outputs, inits)
    exe = pliant.compile(model.SerializeToString(), specialize=False)
    kernels = exe.report()["kernels"]
    assert kernels.get("static") == 1 and kernels["fast"] + kernels["native"] == 0
    for k in range(4):
        x = RNG.standard_normal((2, 5, 8)).astype(np.float32)
        feed = np.asfortranarray(x) if k % 2 == 0 else x
        want = run_onnxruntime(model, {"x": x})
        for o, w in zip(outputs, want):
            np.testing.assert_allclose(exe.run({"x": feed})[o], w, rtol=1e-4, atol=1e-5, err_msg=f"call {k} {o}")
    kernels = exe.report()["kernels"]
    assert kernels["fast"] + kernels["native"] > 0  # NOTE: the steps built for the declined calls
