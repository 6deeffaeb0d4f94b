"""RDP on every model of ONNX's backend node tests: each inferred dim and symbolic value must hold on the
test's own inputs (the node tests exercise every operator's shape rule and value rule)."""

from __future__ import annotations

import warnings

import onnx
import pytest
from onnx.backend.test.case import node as node_cases

import pliant
from pliant.analysis.rdp import analyze
from pliant.analysis.soundness import check_soundness
from pliant.frontends.onnx_attrs import tensor_from_onnx


def _cases() -> list[object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [c for c in node_cases.collect_testcases() if c.model is not None and c.data_sets]


def test_every_backend_node_model_is_sound() -> None:
    checked, failures = 0, []
    for case in _cases():
        model = case.model  # type: ignore[attr-defined]
        try:
            module = pliant.load(model)
        except pliant.PliantError:
            continue  # NOTE: the few models pliant cannot import are listed with the backend tests
        inputs = [tensor_from_onnx(x) if isinstance(x, onnx.TensorProto) else x
                  for x in case.data_sets[0][0]]  # type: ignore[attr-defined]
        inits = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in inits]
        if len(inputs) != len(names):
            continue
        analysis = analyze(module)
        try:
            report = check_soundness(module, analysis, dict(zip(names, inputs)))
        except pliant.PliantError:
            continue  # NOTE: a run the interpreter rejects (an expected failure of the backend tests)
        checked += 1
        failures += [f"{case.name}: {m}" for m in report.mismatches[:3]]  # type: ignore[attr-defined]
    assert not failures, "\n".join(failures[:20])
    assert checked >= 1850


@pytest.mark.parametrize("name", ["test_loop13_seq", "test_sequence_map_add_2_sequences", "test_range_int32_type_negative_delta"])
def test_named_cases_are_present(name: str) -> None:
    assert name in {c.name for c in _cases()}  # type: ignore[attr-defined]
