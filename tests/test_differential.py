"""The interpreter against ONNX Runtime on control-flow models with dynamic dims, at several sizes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pliant
from pliant.demo import build_demo_model
from tests.helpers import assert_close, assert_round_trips, make_model, run_onnxruntime

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def vi(name: str, t: int, shape: list[int | str | None] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, t, shape)


def nested_if_in_loop() -> onnx.ModelProto:
    """Loop over rows of x; per row an If picks x*2 or -x from the row's sum; scan output stacks rows."""
    then = helper.make_graph([helper.make_node("Add", ["row", "row"], ["t"])], "then", [], [vi("t", F, None)])
    other = helper.make_graph([helper.make_node("Neg", ["row"], ["e"])], "else", [], [vi("e", F, None)])
    body = helper.make_graph(
        [
            helper.make_node("Gather", ["x", "i"], ["row"], axis=0),
            helper.make_node("ReduceSum", ["row"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["pos"]),
            helper.make_node("If", ["pos"], ["picked"], then_branch=then, else_branch=other),
            helper.make_node("Add", ["acc_in", "picked"], ["acc_out"]),
            helper.make_node("Identity", ["c"], ["c_out"]),
            helper.make_node("Identity", ["picked"], ["scan"]),
        ],
        "body",
        [vi("i", I64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, []), vi("acc_in", F, ["D"])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), vi("acc_out", F, ["D"]), vi("scan", F, ["D"])],
    )
    return make_model(
        [
            helper.make_node("Shape", ["x"], ["shp"]),
            helper.make_node("Gather", ["shp", "izero"], ["n"], axis=0),
            helper.make_node("Loop", ["n", "", "acc0"], ["acc", "rows"], body=body),
        ],
        [vi("x", F, ["N", "D"]), vi("acc0", F, ["D"])],
        [vi("acc", F, ["D"]), vi("rows", F, ["N", "D"])],
        [numpy_helper.from_array(np.array(0.0, np.float32), "zero"), numpy_helper.from_array(np.array(0, np.int64), "izero")],
    )


def growing_sequence_loop() -> onnx.ModelProto:
    """A Loop appends a growing slice to a sequence each step (KV-cache-like growth); then ConcatFromSequence."""
    body = helper.make_graph(
        [
            helper.make_node("Add", ["i", "one"], ["ip1"]),
            helper.make_node("Unsqueeze", ["ip1", "axes0"], ["end"]),
            helper.make_node("Slice", ["x", "start0", "end", "axes0"], ["prefix"]),
            helper.make_node("ReduceMean", ["prefix", "axes0"], ["m"], keepdims=1),
            helper.make_node("SequenceInsert", ["seq_in", "m"], ["seq_out"]),
            helper.make_node("Concat", ["kv_in", "m"], ["kv_out"], axis=0),
            helper.make_node("Identity", ["c"], ["c_out"]),
        ],
        "body",
        [vi("i", I64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_sequence_value_info("seq_in", F, None), vi("kv_in", F, [None, "D"])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_sequence_value_info("seq_out", F, None), vi("kv_out", F, [None, "D"])],
    )
    return make_model(
        [
            helper.make_node("SequenceEmpty", [], ["seq0"], dtype=F),
            helper.make_node("Loop", ["steps", "", "seq0", "kv0"], ["seq", "kv"], body=body),
            helper.make_node("ConcatFromSequence", ["seq"], ["stacked"], axis=0),
            helper.make_node("SequenceLength", ["seq"], ["count"]),
        ],
        [vi("x", F, ["N", "D"]), vi("steps", I64, []), vi("kv0", F, ["P", "D"])],
        [vi("stacked", F, None), vi("kv", F, None), vi("count", I64, [])],
        [numpy_helper.from_array(np.array(1, np.int64), "one"),
         numpy_helper.from_array(np.array([0], np.int64), "axes0"),
         numpy_helper.from_array(np.array([0], np.int64), "start0")],
        opset=18,
    )


def scan_cumulative() -> onnx.ModelProto:
    """Scan with a running sum over a symbolic-length axis, scanning in reverse."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Tanh", ["s_out"], ["y_t"])],
        "body", [vi("s_in", F, ["D"]), vi("x_t", F, ["D"])], [vi("s_out", F, ["D"]), vi("y_t", F, ["D"])],
    )
    return make_model(
        [helper.make_node("Scan", ["s0", "x"], ["s", "ys"], body=body, num_scan_inputs=1,
                          scan_input_directions=[1], scan_output_axes=[1])],
        [vi("s0", F, ["D"]), vi("x", F, ["T", "D"])],
        [vi("s", F, ["D"]), vi("ys", F, ["D", "T"])],
    )


@pytest.mark.parametrize("n,d", [(1, 3), (4, 3), (9, 5)])
def test_nested_if_in_loop(n: int, d: int) -> None:
    model = nested_if_in_loop()
    m = pliant.load(model)
    assert_round_trips(m)
    rng = np.random.default_rng(n)
    feeds = {"x": rng.standard_normal((n, d)).astype(np.float32), "acc0": np.zeros(d, np.float32)}
    out = pliant.interpret(m, feeds)
    for name, ref in zip(("acc", "rows"), run_onnxruntime(model, feeds)):
        assert_close(out[name], ref)


@pytest.mark.parametrize("steps,n,p", [(1, 4, 0), (3, 4, 2), (6, 10, 1)])
def test_sequence_growing_in_loop(steps: int, n: int, p: int) -> None:
    model = growing_sequence_loop()
    m = pliant.load(model)
    assert_round_trips(m)
    rng = np.random.default_rng(steps)
    feeds = {"x": rng.standard_normal((n, 2)).astype(np.float32), "steps": np.array(steps, np.int64),
             "kv0": rng.standard_normal((p, 2)).astype(np.float32)}
    out = pliant.interpret(m, feeds)
    for name, ref in zip(("stacked", "kv", "count"), run_onnxruntime(model, feeds)):
        assert_close(out[name], ref)


@pytest.mark.parametrize("t,d", [(1, 2), (5, 3), (12, 4)])
def test_scan_reverse_with_symbolic_length(t: int, d: int) -> None:
    model = scan_cumulative()
    m = pliant.load(model)
    assert_round_trips(m)
    rng = np.random.default_rng(t)
    feeds = {"s0": rng.standard_normal(d).astype(np.float32), "x": rng.standard_normal((t, d)).astype(np.float32)}
    out = pliant.interpret(m, feeds)
    for name, ref in zip(("s", "ys"), run_onnxruntime(model, feeds)):
        assert_close(out[name], ref)


@pytest.mark.parametrize("t,threshold", [(2, 100.0), (15, 100.0), (30, 2.5)])
def test_demo_model_with_data_dependent_exit(t: int, threshold: float) -> None:
    model = build_demo_model()
    m = pliant.load(model)
    assert_round_trips(m)
    feeds = {"x": np.random.default_rng(t).standard_normal((t, 8)).astype(np.float32),
             "threshold": np.array(threshold, np.float32)}
    out = pliant.interpret(m, feeds)
    for name, ref in zip(("y", "states", "steps"), run_onnxruntime(model, feeds)):
        assert_close(out[name], ref, rtol=1e-4, atol=1e-5)
