"""Small ONNX models for the shape-analysis tests, built with onnx.helper, and their feeds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.helpers import make_model

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "shapes")
SUITE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "benchmarks", "models")
SUITE_MODELS = ["bert_encoder", "gpt_decode_step", "gpt_generate", "skipnet_resnet", "early_exit_bert",
                "blockdrop_resnet", "gru_seq2seq", "yolo_nms", "conformer", "moe_transformer", "ranet_cnn"]


def _const(name: str, values: Any, dtype: Any = np.int64) -> onnx.NodeProto:
    arr = np.asarray(values, dtype=dtype)
    return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(arr, name))


def loop_grow() -> onnx.ModelProto:
    """A Loop over N (the length of ``y``) appending two rows to ``acc`` (P rows to start) per iteration.

    Outputs: the grown tensor (P + 2*N rows) and the stacked per-iteration shapes of ``acc`` ([N, 2]).
    """
    body = helper.make_graph(
        [
            _const("two_rows", np.ones((2, 4)), np.float32),
            helper.make_node("Concat", ["acc_in", "two_rows"], ["acc_out"], axis=0),
            helper.make_node("Shape", ["acc_in"], ["acc_shape"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("acc_shape", TensorProto.INT64, None)],
    )
    nodes = [
        helper.make_node("Shape", ["y"], ["y_shape"]),
        _const("zero", 0),
        helper.make_node("Gather", ["y_shape", "zero"], ["n"], axis=0),
        _const("true", True, np.bool_),
        helper.make_node("Loop", ["n", "true", "x"], ["grown", "shapes"], body=body),
    ]
    return make_model(nodes,
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["P", 4]),
                       helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
                      [helper.make_tensor_value_info("grown", TensorProto.FLOAT, None),
                       helper.make_tensor_value_info("shapes", TensorProto.INT64, None)])


def loop_grow_feeds() -> Iterator[dict[str, Any]]:
    for p, n in [(1, 1), (3, 4), (5, 0), (2, 7)]:
        yield {"x": np.zeros((p, 4), np.float32), "y": np.zeros(n, np.float32)}


def if_disagree() -> onnx.ModelProto:
    """An If whose then branch doubles the rows of ``x`` (2N) and whose else branch keeps them (N)."""
    then_g = helper.make_graph([helper.make_node("Concat", ["x", "x"], ["t_out"], axis=0)], "then", [],
                               [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Relu", ["x"], ["e_out"])], "else", [],
                               [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("If", ["flag"], ["y"], then_branch=then_g, else_branch=else_g),
             helper.make_node("Shape", ["y"], ["y_shape"])]
    return make_model(nodes,
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
                       helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                       helper.make_tensor_value_info("y_shape", TensorProto.INT64, None)])


def if_disagree_feeds() -> Iterator[dict[str, Any]]:
    for n in (1, 3, 6):
        for flag in (True, False):
            yield {"x": np.ones((n, 8), np.float32), "flag": np.array(flag)}


def nonzero() -> onnx.ModelProto:
    """NonZero of ``x > 0``, the positions transposed, and the selected values gathered."""
    nodes = [
        _const("zero", 0.0, np.float32),
        helper.make_node("Greater", ["x", "zero"], ["pos"]),
        helper.make_node("NonZero", ["pos"], ["idx"]),
        helper.make_node("Transpose", ["idx"], ["idx_t"], perm=[1, 0]),
        helper.make_node("GatherND", ["x", "idx_t"], ["vals"]),
        helper.make_node("Shape", ["vals"], ["count"]),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
                      [helper.make_tensor_value_info("vals", TensorProto.FLOAT, None),
                       helper.make_tensor_value_info("count", TensorProto.INT64, None)])


def nonzero_feeds() -> Iterator[dict[str, Any]]:
    rng = np.random.default_rng(0)
    for n, m in [(2, 3), (4, 5), (1, 7)]:
        yield {"x": rng.standard_normal((n, m)).astype(np.float32)}
    yield {"x": -np.ones((3, 3), np.float32)}  # nothing selected: a count of 0


def matmul_unify() -> onnx.ModelProto:
    """MatMul of a[N, K1] and b[K2, M]: the analysis proves K1 == K2."""
    return make_model([helper.make_node("MatMul", ["a", "b"], ["c"])],
                      [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "K1"]),
                       helper.make_tensor_value_info("b", TensorProto.FLOAT, ["K2", "M"])],
                      [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])


def reshape_backward() -> onnx.ModelProto:
    """Reshape of x[n, 3] to a 1-D shape given at run time: backward propagation proves the length is 3*n."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("Relu", ["flat"], ["y"])]
    return make_model(nodes,
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
                       helper.make_tensor_value_info("shape", TensorProto.INT64, [1])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])


def encoder_feeds() -> Iterator[dict[str, Any]]:
    rng = np.random.default_rng(1)
    for b, length in [(1, 3), (2, 9), (3, 17)]:
        yield {"ids": rng.integers(0, 50, (b, length)).astype(np.int64)}


def gpt_step_feeds() -> Iterator[dict[str, Any]]:
    rng = np.random.default_rng(2)
    for b, s, p in [(1, 1, 4), (2, 3, 9), (3, 5, 20)]:
        yield {"ids": rng.integers(0, 50, (b, s)).astype(np.int64),
               "past_k": rng.standard_normal((b, 4, p, 8)).astype(np.float32),
               "past_v": rng.standard_normal((b, 4, p, 8)).astype(np.float32)}


def suite_cases(name: str) -> list[tuple[str, dict[str, Any]]]:
    """The stored input cases of a suite model (benchmarks/models/<name>.npz)."""
    data = np.load(os.path.join(SUITE, f"{name}.npz"))
    cases = sorted({k.split(".")[0] for k in data.files if ".in." in k})
    return [(c, {k.split(".", 2)[2]: data[k] for k in data.files if k.startswith(c + ".in.")}) for c in cases]
