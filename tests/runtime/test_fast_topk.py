"""The compiled runtime's TopK (``pliant.runtime.fast``: one pass in C for a small k along the last axis, else
one stable sort) against ONNX Runtime: ties, both directions, every axis, k from 0 to the axis' size; NaN keys
go to the reference kernel."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pliant
from pliant.interpreter import interpret
from tests.helpers import run_onnxruntime


def _model(shape: tuple[int, ...], k: int, axis: int, largest: int, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=axis, largest=largest)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, list(shape))],
                              [helper.make_tensor_value_info("values", dtype, None),
                               helper.make_tensor_value_info("indices", TensorProto.INT64, None)],
                              [numpy_helper.from_array(np.array([k], np.int64), "k")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize(("shape", "k", "axis"), [
    ((64, 8), 2, -1), ((5, 7, 3), 4, 1), ((6, 5, 4), 3, 0), ((10,), 10, 0), ((4, 6), 0, 0), ((3, 9), 1, 1),
    ((4, 6), 0, 1), ((2, 3, 40), 16, 2), ((3, 40), 17, -1),  # C's pass (k <= 16, the last axis), then NumPy's sort
])
def test_topk_matches_onnxruntime_with_ties(shape: tuple[int, ...], k: int, axis: int, largest: int) -> None:
    # NOTE: few distinct values, so that many keys tie: equal values must come in ascending index order
    x = np.random.default_rng(k + len(shape)).integers(-3, 3, size=shape).astype(np.float32)
    model = _model(shape, k, axis, largest)
    want = run_onnxruntime(model, {"x": x})
    exe = pliant.compile(model, specialize=False)
    assert exe.report()["kernels"]["fast"] >= 1
    got = exe.run({"x": x})
    np.testing.assert_array_equal(got["values"], want[0])
    np.testing.assert_array_equal(got["indices"], want[1])


def test_topk_with_nan_keys_runs_the_reference_kernel() -> None:
    x = np.array([[1.0, np.nan, 3.0, 2.0], [np.nan, 0.0, np.nan, -1.0]], np.float32)
    model = _model(x.shape, 2, -1, 1)
    want = interpret(pliant.load(model), {"x": x})
    got = pliant.compile(model, specialize=False).run({"x": x})
    np.testing.assert_array_equal(got["values"], want["values"])
    np.testing.assert_array_equal(got["indices"], want["indices"])


@pytest.mark.parametrize("largest", [True, False])
def test_the_c_pass_keeps_a_stable_order(largest: bool) -> None:
    """topk.c itself, on keys with many ties and signed zeros: NumPy's stable sort's first k, row by row."""
    from pliant.runtime.fast import _topk_native

    native = _topk_native()
    assert native is not None
    x = np.random.default_rng(3).integers(-2, 3, size=(50, 33)).astype(np.float32)
    x[x == 0] = np.where(np.random.default_rng(4).random(int((x == 0).sum())) < 0.5, -0.0, 0.0)
    for k in (1, 5, 16):
        got = native(x, k, largest)
        assert got is not None
        order = np.argsort(-x if largest else x, axis=-1, kind="stable")[:, :k]
        np.testing.assert_array_equal(got[1], order)
        np.testing.assert_array_equal(got[0], np.take_along_axis(x, order, axis=-1))
    x[7, 3] = np.nan
    assert native(x, 3, largest) is None
