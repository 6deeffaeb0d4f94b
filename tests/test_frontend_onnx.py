"""ONNX import: symbols, initializers (external data too), functions, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pliant
from pliant.errors import ModelLoadError, UnsupportedOpError
from pliant.ir import Sym
from tests.helpers import assert_close, assert_round_trips, make_model, run_onnxruntime


def test_dim_params_become_symbols_and_unnamed_dims_fresh_ones() -> None:
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    m = pliant.load(model)
    shape = m.entry.inputs[0].type.shape  # type: ignore[union-attr]
    assert shape is not None
    assert shape[0] == Sym.named("batch") and isinstance(shape[1], Sym) and shape[2] == 4
    assert shape[1] != shape[0]
    assert m.entry.outputs[0].type == m.entry.inputs[0].type
    assert_round_trips(m)


def test_initializers_including_external_data(tmp_path: Path) -> None:
    w = np.arange(4096, dtype=np.float32).reshape(64, 64) / 100
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
        [numpy_helper.from_array(w, "w")],
    )
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    m = pliant.load(path)
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    assert_close(pliant.interpret(m, {"x": x})["y"], x @ w, rtol=1e-5)


def test_model_local_function_matches_onnxruntime() -> None:
    fn = helper.make_function(
        "custom", "Scaled", ["a", "b"], ["c"],
        [helper.make_node("Mul", ["a", "b"], ["ab"]),
         helper.make_node("Constant", [], ["k"], value_float=0.5),
         helper.make_node("Mul", ["ab", "k"], ["half"]),
         helper.make_node("Relu", ["half"], ["c"])],
        [helper.make_opsetid("", 17)],
    )
    model = make_model(
        [helper.make_node("Scaled", ["x", "y"], ["t"], domain="custom"),
         helper.make_node("Scaled", ["t", "x"], ["z"], domain="custom")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N"])],
    )
    model.opset_import.append(helper.make_opsetid("custom", 1))
    model.functions.append(fn)
    m = pliant.load(model)
    assert "custom.Scaled" in m.functions
    assert_round_trips(m)
    rng = np.random.default_rng(0)
    for n in (3, 17):
        feeds = {"x": rng.standard_normal(n).astype(np.float32), "y": rng.standard_normal(n).astype(np.float32)}
        assert_close(pliant.interpret(m, feeds)["z"], run_onnxruntime(model, feeds)[0])


def test_unsupported_ops_are_all_listed() -> None:
    model = make_model(
        [helper.make_node("FancyOp", ["x"], ["a"], name="first", domain="acme"),
         helper.make_node("FancyOp", ["a"], ["b"], name="second", domain="acme"),
         helper.make_node("OtherOp", ["b"], ["y"], name="third", domain="acme")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model.opset_import.append(helper.make_opsetid("acme", 1))
    with pytest.raises(UnsupportedOpError) as e:
        pliant.load(model)
    msg = str(e.value)
    assert "2 operator type(s)" in msg
    assert "acme.FancyOp: 2 node(s), e.g. 'first', 'second'" in msg
    assert "acme.OtherOp: 1 node(s), e.g. 'third'" in msg


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffthis is not a protobuf\x12\x99")
    with pytest.raises(ModelLoadError, match=r"is not .*ONNX model"):
        pliant.load(bad)
    with pytest.raises(ModelLoadError, match="no such file"):
        pliant.load(tmp_path / "absent.onnx")


def test_undefined_input_name_is_reported() -> None:
    model = make_model(
        [helper.make_node("Relu", ["nope"], ["y"], name="r")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(ModelLoadError, match="node 'r' \\(Relu\\) reads 'nope', which no earlier node"):
        pliant.load(model)


def test_subgraph_reads_outer_scope() -> None:
    then = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N"])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["N"])])
    model = make_model(
        [helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
    )
    m = pliant.load(model)
    assert_round_trips(m)
    x = np.arange(3, dtype=np.float32)
    for c in (True, False):
        feeds = {"x": x, "c": np.array(c)}
        assert_close(pliant.interpret(m, feeds)["y"], run_onnxruntime(model, feeds)[0])


def test_declared_value_info_names_a_data_dependent_dim() -> None:
    """A model's own ``value_info`` refines the types pliant infers: NonZero's count, unknown to any shape rule,
    takes the name the model gives it, and the program still computes what ONNX Runtime computes."""
    model = make_model(
        [helper.make_node("NonZero", ["x"], ["i"]), helper.make_node("Transpose", ["i"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
    )
    model.graph.value_info.append(helper.make_tensor_value_info("i", TensorProto.INT64, [1, "nz"]))
    m = pliant.load(model)
    assert m.entry.outputs[0].type.shape == (Sym.named("nz"), 1)  # type: ignore[union-attr]
    x = np.array([0.0, 2.0, 0.0, -1.0, 3.0], np.float32)
    np.testing.assert_array_equal(pliant.interpret(m, {"x": x})["y"], run_onnxruntime(model, {"x": x})[0])
