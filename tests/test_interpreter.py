"""Feed checking and runtime errors of the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import pliant
from pliant.errors import FeedError, OpRuntimeError
from tests.helpers import make_model


def two_input_model() -> pliant.Module:
    return pliant.load(make_model(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 3])],
    ))


def f32(*shape: int) -> np.ndarray:
    return np.ones(shape, np.float32)


def test_feeds_run() -> None:
    out = pliant.interpret(two_input_model(), {"a": f32(2, 3), "b": f32(2, 3)})
    np.testing.assert_array_equal(out["c"], np.full((2, 3), 2, np.float32))


def test_missing_feed() -> None:
    with pytest.raises(FeedError, match=r"missing input\(s\): 'b' \(f32\[N,3\]\)"):
        pliant.interpret(two_input_model(), {"a": f32(2, 3)})


def test_unknown_feed() -> None:
    with pytest.raises(FeedError, match=r"unknown input\(s\) 'z'; the model's inputs are: 'a' \(f32\[N,3\]\), 'b'"):
        pliant.interpret(two_input_model(), {"a": f32(2, 3), "b": f32(2, 3), "z": f32(1)})


def test_wrong_dtype() -> None:
    with pytest.raises(FeedError, match=r"input 'b' has dtype float64 but the model declares float32 .*astype"):
        pliant.interpret(two_input_model(), {"a": f32(2, 3), "b": np.ones((2, 3))})


def test_wrong_rank() -> None:
    with pytest.raises(FeedError, match=r"input 'a' has rank 1 \(shape \(3,\)\) but the model declares rank 2"):
        pliant.interpret(two_input_model(), {"a": f32(3), "b": f32(2, 3)})


def test_dim_contradicts_constant() -> None:
    with pytest.raises(FeedError, match=r"input 'a' has size 4 on axis 1 .* but the model requires 3"):
        pliant.interpret(two_input_model(), {"a": f32(2, 4), "b": f32(2, 3)})


def test_dim_contradicts_bound_symbol() -> None:
    with pytest.raises(FeedError, match=r"input 'b' has size 5 on axis 0 .*symbol 'N' is already bound to 2 by input 'a' axis 0"):
        pliant.interpret(two_input_model(), {"a": f32(2, 3), "b": f32(5, 3)})


def test_runtime_fault_names_node_and_shapes() -> None:
    m = pliant.load(make_model(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    ))
    with pytest.raises(OpRuntimeError, match=r"Reshape node 'bad_reshape'.*float32\[5\], int64\[2\]"):
        pliant.interpret(m, {"x": f32(5), "s": np.array([2, 2], np.int64)})
