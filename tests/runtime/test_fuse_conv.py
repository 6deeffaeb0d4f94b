"""Conv epilogue fusion (``pliant.transforms.fuse_conv``): what is fused, what is not, and the results
against ONNX Runtime at several input sizes, through the native kernel and through the region."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pliant
from pliant.runtime import native
from tests.helpers import run_onnxruntime

RNG = np.random.default_rng(11)
W1 = (RNG.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32)
B1 = RNG.standard_normal(8).astype(np.float32)
W2 = (RNG.standard_normal((8, 8, 1, 1)) * 0.3).astype(np.float32)


def _model(nodes: list[onnx.NodeProto], extra: list[onnx.TensorProto] | None = None,
           outputs: tuple[str, ...] = ("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(B1, "b1"), numpy_helper.from_array(W2, "w2"),
         *(extra or [])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv(inputs: list[str], out: str, **attrs: Any) -> onnx.NodeProto:
    attrs.setdefault("pads", [1, 1, 1, 1])
    return helper.make_node("Conv", inputs, [out], **attrs)


# name -> (nodes, extra initializers, FusedConv ops expected)
CASES: dict[str, tuple[list[onnx.NodeProto], list[onnx.TensorProto], int]] = {
    "residual-relu": (
        [_conv(["x", "w1", "b1"], "a"), helper.make_node("Relu", ["a"], ["r"]),
         _conv(["r", "w2"], "c", pads=[0, 0, 0, 0]), helper.make_node("Add", ["r", "c"], ["s"]),
         helper.make_node("Relu", ["s"], ["y"])],
        [], 2,
    ),
    "clip": (
        [_conv(["x", "w1", "b1"], "a", strides=[2, 1]), helper.make_node("Clip", ["a", "lo", "hi"], ["y"])],
        [numpy_helper.from_array(np.array(-0.5, np.float32), "lo"), numpy_helper.from_array(np.array(0.7, np.float32), "hi")],
        1,
    ),
    "clip-min-only": (
        [_conv(["x", "w1"], "a", dilations=[2, 2], pads=[2, 1, 2, 1]), helper.make_node("Clip", ["a", "lo"], ["y"])],
        [numpy_helper.from_array(np.array(0.1, np.float32), "lo")],
        1,
    ),
    "leaky": (
        [_conv(["x", "w1", "b1"], "a"), helper.make_node("LeakyRelu", ["a"], ["y"], alpha=0.2)], [], 1,
    ),
    "residual-first": (
        # the residual is the Add's first operand
        [_conv(["x", "w1", "b1"], "a"), _conv(["a", "w2"], "c", pads=[0, 0, 0, 0]),
         helper.make_node("Add", ["a", "c"], ["y"])],
        [], 1,
    ),
    "two-uses": (
        # the conv's result is read twice: its Relu cannot take it over
        [_conv(["x", "w1", "b1"], "a"), helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Add", ["a", "r"], ["y"])],
        [], 0,
    ),
    "broadcast-add": (
        # a bias-like Add that broadcasts is not a residual of the result's shape
        [_conv(["x", "w1"], "a"), helper.make_node("Add", ["a", "bias"], ["y"])],
        [numpy_helper.from_array(RNG.standard_normal((8, 1, 1)).astype(np.float32), "bias")],
        0,
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_fused_conv_matches_onnxruntime(name: str) -> None:
    nodes, extra, expected = CASES[name]
    model = _model(nodes, extra)
    exe = pliant.compile(model.SerializeToString(), verify=True, specialize=False)
    fused = [op for op in exe.module.walk() if op.name == "FusedConv"]
    assert len(fused) == expected
    for shape in [(1, 4, 9, 11), (2, 4, 16, 5)]:
        x = RNG.standard_normal(shape).astype(np.float32)
        (want,) = run_onnxruntime(model, {"x": x})
        got = exe.run({"x": x})["y"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_region_runs_where_the_native_kernel_declines(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, extra, _ = CASES["residual-relu"]
    model = _model(nodes, extra)
    # NOTE: without static regions, which would run the convolutions inside a native unit
    exe = pliant.compile(model.SerializeToString(), specialize=False, regions=False)
    calls = []

    def decline(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise native.NativeUnsupportedError("declined by the test")

    monkeypatch.setattr(native, "conv", decline)
    x = RNG.standard_normal((1, 4, 7, 6)).astype(np.float32)
    (want,) = run_onnxruntime(model, {"x": x})
    np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-4, atol=1e-5)
    assert calls, "the native kernel was not tried"


def test_report_counts_the_fused_convs() -> None:
    nodes, extra, _ = CASES["residual-relu"]
    exe = pliant.compile(_model(nodes, extra).SerializeToString(), specialize=False)
    passes = {p["name"]: p["changes"] for p in exe.report()["passes"]}
    assert passes["fuse-conv"] == 2
