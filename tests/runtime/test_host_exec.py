"""The block executor (``unit_call.c``'s ``exec_block``): Loops, Ifs and region units run without a return to
Python per step.  Checked against ONNX Runtime, and against the Python path for the errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import pliant
from pliant.runtime import program
from pliant.runtime.unit_call import executor
from tests.helpers import run_onnxruntime

pytestmark = pytest.mark.skipif(executor() is None, reason="the C path does not build here (no compiler or headers)")


@pytest.fixture
def python_path() -> Iterator[None]:
    program.HOST_EXEC = False
    try:
        yield
    finally:
        program.HOST_EXEC = True


def _loop_model() -> onnx.ModelProto:
    """A Loop carrying x, stopping at ``stop`` or ``trips``, with an If on x's sum and a scan output.

    The If's branches read the body's values; the Loop's own trip count and condition are inputs.
    """
    f = TensorProto.FLOAT
    then_g = helper.make_graph([helper.make_node("Sub", ["y", "one"], ["z_then"])], "then", [],
                               [helper.make_tensor_value_info("z_then", f, None)])
    else_g = helper.make_graph([helper.make_node("Mul", ["y", "half"], ["z_else"])], "else", [],
                               [helper.make_tensor_value_info("z_else", f, None)])
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["i_f"], to=f),
            helper.make_node("Mul", ["x_in", "scale"], ["xs"]),
            helper.make_node("Add", ["xs", "i_f"], ["y"]),
            helper.make_node("ReduceSum", ["y"], ["total"], keepdims=0),
            helper.make_node("Greater", ["total", "limit"], ["big"]),
            helper.make_node("If", ["big"], ["z"], then_branch=then_g, else_branch=else_g),
            helper.make_node("Less", ["i", "stop"], ["go"]),
            helper.make_node("Identity", ["z"], ["x_out"]),
            helper.make_node("Relu", ["z"], ["scan"]),
        ],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", f, [2, 3])],
        [helper.make_tensor_value_info("go", TensorProto.BOOL, []), helper.make_tensor_value_info("x_out", f, [2, 3]),
         helper.make_tensor_value_info("scan", f, [2, 3])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["x_final", "scans"], body=body)],
        "loop_if",
        [helper.make_tensor_value_info("trips", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", f, [2, 3]),
         helper.make_tensor_value_info("stop", TensorProto.INT64, []),
         helper.make_tensor_value_info("limit", f, [])],
        [helper.make_tensor_value_info("x_final", f, [2, 3]), helper.make_tensor_value_info("scans", f, ["n", 2, 3])],
        initializer=[helper.make_tensor("scale", f, [], [1.5]), helper.make_tensor("one", f, [], [1.0]),
                     helper.make_tensor("half", f, [], [0.5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _feeds(trips: int, cond: bool, stop: int, limit: float) -> dict[str, Any]:
    x = np.random.default_rng(trips * 7 + stop).standard_normal((2, 3)).astype(np.float32)
    return {"trips": np.array(trips, np.int64), "cond": np.array(cond), "x": x, "stop": np.array(stop, np.int64),
            "limit": np.array(limit, np.float32)}


@pytest.mark.parametrize(("trips", "cond", "stop", "limit"), [
    (6, True, 100, 4.0),  # runs its trip count, both branches taken
    (50, True, 3, 0.0),  # stops on the body's condition after 4 iterations
    (0, True, 10, 0.0),  # no iteration: the carried value passes through, the scan is empty
    (5, False, 10, 0.0),  # the condition is false from the start
    (9, True, 100, 1e9),  # the else branch only
])
def test_loop_with_an_if_matches_onnxruntime(trips: int, cond: bool, stop: int, limit: float) -> None:
    model = _loop_model()
    exe = pliant.compile(model)
    feeds = _feeds(trips, cond, stop, limit)
    want = run_onnxruntime(model, feeds)
    for _ in range(3):  # NOTE: the first call makes the units' plans in Python; the later ones run in C
        got = exe.run(feeds)
        np.testing.assert_allclose(got["x_final"], want[0], rtol=1e-6)
        assert got["scans"].shape == want[1].shape
        np.testing.assert_allclose(got["scans"], want[1], rtol=1e-6)


def test_the_python_path_gives_the_same_results(python_path: None) -> None:
    model = _loop_model()
    exe = pliant.compile(model)
    assert all(b._exec is None for b in exe.program.blocks.values())
    for args in [(6, True, 100, 4.0), (50, True, 3, 0.0), (0, True, 10, 0.0)]:
        feeds = _feeds(*args)
        want = run_onnxruntime(model, feeds)
        got = exe.run(feeds)
        np.testing.assert_allclose(got["x_final"], want[0], rtol=1e-6)
        np.testing.assert_allclose(got["scans"], want[1], rtol=1e-6)


def _failing_model() -> onnx.ModelProto:
    """A Loop whose body reshapes to a shape fed by the caller, inside an If: a wrong shape fails there."""
    f = TensorProto.FLOAT
    then_g = helper.make_graph([helper.make_node("Reshape", ["x_in", "shape"], ["r"], name="bad_reshape"),
                                helper.make_node("ReduceSum", ["r"], ["s"], keepdims=0)], "then", [],
                               [helper.make_tensor_value_info("s", f, None)])
    else_g = helper.make_graph([helper.make_node("ReduceMax", ["x_in"], ["m"], keepdims=0)], "else", [],
                               [helper.make_tensor_value_info("m", f, None)])
    body = helper.make_graph(
        [helper.make_node("Greater", ["i", "from_iter"], ["late"]),
         helper.make_node("If", ["late"], ["v"], then_branch=then_g, else_branch=else_g, name="the_if"),
         helper.make_node("Add", ["x_in", "v"], ["x_out"]),
         helper.make_node("Identity", ["c"], ["c_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", f, [2, 3])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("x_out", f, [2, 3])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "", "x"], ["x_final"], body=body, name="the_loop")],
        "failing",
        [helper.make_tensor_value_info("trips", TensorProto.INT64, []),
         helper.make_tensor_value_info("x", f, [2, 3]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("from_iter", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("x_final", f, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _error(exe: Any, feeds: dict[str, Any]) -> str:
    with pytest.raises(pliant.PliantError) as info:
        exe.run(feeds)
    return str(info.value)


def test_an_error_inside_a_loop_and_an_if_names_the_op_as_the_python_path_does() -> None:
    model = _failing_model()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    good = {"trips": np.array(4, np.int64), "x": x, "shape": np.array([3, 2], np.int64),
            "from_iter": np.array(1, np.int64)}
    bad = dict(good, shape=np.array([4, 2], np.int64))
    exe = pliant.compile(model)
    np.testing.assert_allclose(exe.run(good)["x_final"], run_onnxruntime(model, good)[0], rtol=1e-6)
    message = _error(exe, bad)
    assert "bad_reshape" in message, message
    program.HOST_EXEC = False
    try:
        slow = pliant.compile(model)
        assert _error(slow, bad) == message
    finally:
        program.HOST_EXEC = True
    # NOTE: the If's else branch alone runs (from_iter past the trip count): no error
    late = dict(bad, from_iter=np.array(10, np.int64))
    np.testing.assert_allclose(exe.run(late)["x_final"], run_onnxruntime(model, late)[0], rtol=1e-6)


@pytest.mark.parametrize(("dtype", "shape"), [
    (np.float32, (3, 4, 5)), (np.float64, (7,)), (np.bool_, (2, 3)), (np.int64, (4, 1, 3)), (np.int32, ()),
    (np.uint8, (6, 2)), (np.int8, (0, 3)), (np.float32, (2, 2)),
])
def test_nonzero_in_c_matches_onnxruntime(dtype: Any, shape: tuple[int, ...]) -> None:
    onnx_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["idx"])], "nonzero",
                              [helper.make_tensor_value_info("x", onnx_type, None)],
                              [helper.make_tensor_value_info("idx", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    exe = pliant.compile(model)
    assert [s.code[0] for s in exe.program.body.steps if hasattr(s, "code")] == [program.STEP_NONZERO]
    rng = np.random.default_rng(len(shape))
    x = np.asarray((rng.standard_normal(shape) * 2).round()).astype(dtype)
    if dtype is np.float32 and shape == (2, 2):
        x = np.array([[-0.0, np.nan], [0.0, 1.0]], np.float32)  # negative zero is zero, NaN is not
    want = np.array(np.nonzero(x.reshape(1) if x.ndim == 0 else x), np.int64).reshape(max(x.ndim, 1), -1)
    if dtype not in (np.float64, np.int8):  # NOTE: ONNX Runtime has no NonZero kernel for these two
        np.testing.assert_array_equal(run_onnxruntime(model, {"x": x})[0], want)
    for _ in range(2):
        got = exe.run({"x": x})["idx"]
        assert got.dtype == np.int64 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    # NOTE: a view that is not C-contiguous takes the Python step
    strided = np.asfortranarray(x) if x.ndim > 1 else x
    np.testing.assert_array_equal(exe.run({"x": strided})["idx"], want)


def test_the_feeds_checker_in_c_agrees_with_the_python_one() -> None:
    from pliant.runtime.compiled import _fast_feeds, _feeds_in_order

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["n"])
    out = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Gather", ["x", "y"], ["z"])], "g", [x, y], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    exe = pliant.compile(model)
    spec = exe._feed_spec
    in_c = _feeds_in_order(spec)
    good = {"x": np.zeros((4, 3), np.float32), "y": np.zeros(4, np.int64)}
    cases = [
        good,
        {"y": good["y"], "x": good["x"]},  # another order
        dict(good, x=np.zeros((4, 3), np.float64)),  # dtype
        dict(good, x=np.zeros((4, 3, 1), np.float32)),  # rank
        dict(good, x=np.zeros((4, 2), np.float32)),  # a constant size
        dict(good, y=np.zeros(5, np.int64)),  # the symbol n disagrees
        dict(good, y=np.zeros(4, ">i8")),  # byte order
        dict(good, y=[0, 1, 2, 3]),  # not an array
        {"x": good["x"]},  # missing
        dict(good, w=good["y"]),  # one too many
        {"x": good["x"], "w": good["y"]},  # a wrong name
    ]
    for feeds in cases:
        a, b = in_c(feeds), _fast_feeds(spec, feeds)
        assert (a is None) == (b is None), feeds
        if a is not None and b is not None:
            assert a[1] == b[1] and a[2] == b[2] and all(p is q for p, q in zip(a[0], b[0]))
    assert in_c(good) is not None and in_c(dict(good, y=np.zeros(5, np.int64))) is None
    with pytest.raises(pliant.FeedError, match="n"):
        exe.run(dict(good, y=np.zeros(5, np.int64)))


def test_a_unit_alternating_between_signatures_keeps_the_right_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The executor keeps each unit's last plan by its input sizes: sizes that come and go, and plans evicted
    from the unit's table meanwhile (``MAX_PLANS`` of 2), still give the right answers."""
    from pliant.runtime import region_c

    monkeypatch.setattr(region_c, "MAX_PLANS", 2)
    f = TensorProto.FLOAT
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("ReduceSum", ["r", "axes"], ["y"], keepdims=1)],
        "chain", [helper.make_tensor_value_info("x", f, ["n", "m", 8])],
        [helper.make_tensor_value_info("y", f, None)],
        initializer=[helper.make_tensor("w", f, [8, 5], w.ravel()), helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    exe = pliant.compile(model, specialize=False)
    assert exe.report()["regions"] and all(r["native"] for r in exe.report()["regions"])
    for n, m in [(3, 4), (5, 2), (3, 4), (7, 1), (5, 2), (3, 4), (3, 4), (1, 9), (5, 2)]:
        x = rng.standard_normal((n, m, 8)).astype(np.float32)
        got = exe.run({"x": x})["y"]
        np.testing.assert_allclose(got, np.maximum(x @ w, 0).sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-5)
