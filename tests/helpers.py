"""Shared test helpers: round-trip checks and ONNX model construction."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from pliant.ir.core import Module
from pliant.ir.equality import module_difference
from pliant.ir.parser import parse_module
from pliant.ir.printer import print_module


def assert_round_trips(module: Module) -> None:
    """print -> parse gives an equal module, and printing that gives the same text."""
    text = print_module(module)
    again = parse_module(text)
    diff = module_difference(module, again)
    assert diff is None, f"round trip changed the module: {diff}\n{text}"
    assert print_module(again) == text


def make_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
               initializers: list[onnx.TensorProto] | None = None, opset: int = 17, **kw: Any) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kw)
    model.ir_version = 8
    return model


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return list(sess.run(None, feeds))


def assert_close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e, rtol, atol)
        return
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
