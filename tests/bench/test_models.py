"""The benchmark suite's models: what their ONNX holds, and that ONNX Runtime and PyTorch agree on them.

The committed exports are checked with ONNX Runtime alone (against the eager
PyTorch outputs the export script stored); with PyTorch installed, every model
is also rebuilt, exported again and compared with eager PyTorch.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from pliant.bench.compare import compare_outputs
from pliant.bench.spec import SuiteModel, count_ops, load_case, load_suite, missing_ops

SUITE_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "models"
SUITE = load_suite(SUITE_DIR)
NAMES = [m.name for m in SUITE]
BY_NAME = {m.name: m for m in SUITE}
MAX_BYTES = 20 * 1024 * 1024
ISSUE_DYNAMISM = {  # every kind of dynamism the suite must cover, and the model that covers it
    "variable sequence length": "bert_encoder",
    "decode step with KV cache": "gpt_decode_step",
    "greedy generation Loop with stop token": "gpt_generate",
    "gated block skipping": "skipnet_resnet",
    "early exit": "early_exit_bert",
    "policy-chosen blocks": "blockdrop_resnet",
    "RNN seq2seq with data-dependent loop": "gru_seq2seq",
    "detector with NMS": "yolo_nms",
    "Conformer on variable-length audio": "conformer",
    "mixture of experts": "moe_transformer",
    "dynamic resolution": "ranet_cnn",
}
CONTROL_FLOW = {"If", "Loop", "Scan"}


def _session(path: Path) -> Any:
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _path_of(model: SuiteModel, outputs: dict[str, Any]) -> str:
    assert model.spec.path_output is not None
    return f"{model.spec.path_output}={np.asarray(outputs[model.spec.path_output]).tolist()}"


def test_suite_covers_the_issue() -> None:
    assert len(SUITE) >= 10
    for kind, name in ISSUE_DYNAMISM.items():
        assert name in BY_NAME, f"no model for {kind}"


@pytest.mark.parametrize("name", NAMES)
def test_export_is_small_and_holds_promised_ops(name: str) -> None:
    model = BY_NAME[name]
    assert model.onnx_path.stat().st_size < MAX_BYTES
    proto = onnx.load(str(model.onnx_path))
    onnx.checker.check_model(proto)
    assert missing_ops(model.spec, proto.graph) == {}
    promised_control = CONTROL_FLOW & set(model.spec.required_ops)
    if model.spec.path_output is not None:
        # a model whose path depends on the data promises the ops that make it so
        assert promised_control or {"NonMaxSuppression", "NonZero"} & set(model.spec.required_ops)
    graph_inputs = {i.name: i for i in proto.graph.input}
    for spec_input in model.spec.inputs:
        dims = graph_inputs[spec_input.name].type.tensor_type.shape.dim
        declared = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        assert declared == list(spec_input.shape), f"{spec_input.name}: ONNX {declared}, spec {list(spec_input.shape)}"


@pytest.mark.parametrize("name", NAMES)
def test_onnxruntime_matches_stored_pytorch_outputs(name: str) -> None:
    model = BY_NAME[name]
    sess = _session(model.onnx_path)
    paths = set()
    for i, case in enumerate(model.spec.cases):
        feeds, reference = load_case(model.reference_path, i, model.spec)  # type: ignore[arg-type]
        got = dict(zip(model.spec.outputs, sess.run(list(model.spec.outputs), feeds)))
        diff = compare_outputs(got, reference, atol=model.spec.atol, rtol=model.spec.rtol)
        assert diff.ok, f"{name} {case.name}: {diff.summary()}"
        if model.spec.path_output is not None:
            assert _path_of(model, got) == case.path
            paths.add(case.path)
    if model.spec.path_output is not None:
        assert len(paths) >= 2, f"{name}: every case takes the same path"
    else:
        assert len({tuple(sorted(c.dims.items())) for c in model.spec.cases}) >= 2


def _torch_module(name: str) -> Any:
    pytest.importorskip("torch", reason="the PyTorch side of the suite needs torch==2.13.0 (pip install 'pliant[bench]')")
    for p in (str(SUITE_DIR),):
        if p not in sys.path:
            sys.path.insert(0, p)
    return importlib.import_module(name)


def _two_different_cases(model: SuiteModel) -> list[int]:
    """The smallest case and the next smallest that takes another path (or has other sizes)."""
    order = sorted(range(len(model.spec.cases)), key=lambda i: sum(model.spec.cases[i].dims.values()))
    first = order[0]
    key = (lambda i: model.spec.cases[i].path) if model.spec.path_output else (lambda i: tuple(model.spec.cases[i].dims.items()))
    second = next(i for i in order[1:] if key(i) != key(first))
    return [first, second]


@pytest.mark.parametrize("name", NAMES)
def test_fresh_export_agrees_with_pytorch(name: str) -> None:
    """Rebuild the PyTorch model, export it again, and compare eager PyTorch with ONNX Runtime on two paths."""
    module = _torch_module(name)
    import torch

    export = importlib.import_module("export")
    model = BY_NAME[name]
    torch.manual_seed(0)
    net = module.build()
    cases = _two_different_cases(model)
    feeds0, _ = load_case(model.reference_path, cases[0], model.spec)  # type: ignore[arg-type]
    proto = export.export_onnx(module, net, model.spec, feeds0)
    assert missing_ops(model.spec, proto.graph) == {}
    assert count_ops(proto.graph) == count_ops(onnx.load(str(model.onnx_path)).graph), "the committed export is stale: re-run export.py"
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    for i in cases:
        feeds, stored = load_case(model.reference_path, i, model.spec)  # type: ignore[arg-type]
        eager = export.run_eager(net, model.spec, feeds)
        same = compare_outputs(eager, stored, atol=model.spec.atol, rtol=model.spec.rtol)
        assert same.ok, f"{name}: eager PyTorch no longer gives the stored outputs (weights changed?): {same.summary()}"
        got = dict(zip(model.spec.outputs, sess.run(list(model.spec.outputs), feeds)))
        diff = compare_outputs(got, eager, atol=model.spec.atol, rtol=model.spec.rtol)
        assert diff.ok, f"{name} {model.spec.cases[i].name}: {diff.summary()}"
