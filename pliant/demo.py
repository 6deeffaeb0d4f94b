"""``pliant demo``: import and run a bundled dynamic model at several input sizes.

The bundled model is a small recurrent encoder with an early exit, built here
with ``onnx.helper`` (seeded random weights):

* a ``Loop`` runs one tanh-RNN step per row of ``x`` (sequence length ``T`` is
  symbolic) and stops early once the state's norm passes ``threshold``, so the
  trip count depends on the data;
* an ``If`` then picks one of two output heads from the sign of the final state's mean.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 16
FEATURES = 8


def build_demo_model(seed: int = 0) -> onnx.ModelProto:
    """The demo model: inputs ``x: f32[T,8]`` and ``threshold: f32[]``; outputs ``y``, ``states``, ``steps``."""
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.4).astype(np.float32), name)

    body = helper.make_graph(
        [
            helper.make_node("Gather", ["x", "i"], ["x_i"], axis=0),
            helper.make_node("MatMul", ["x_i", "W"], ["xw"]),
            helper.make_node("MatMul", ["h_in", "U"], ["hu"]),
            helper.make_node("Add", ["xw", "hu"], ["pre"]),
            helper.make_node("Tanh", ["pre"], ["h_out"]),
            helper.make_node("ReduceL2", ["h_out"], ["norm"], keepdims=0),
            helper.make_node("Less", ["norm", "threshold"], ["cond_out"]),
            helper.make_node("Identity", ["h_out"], ["h_scan"]),
        ],
        "rnn_step",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [HIDDEN]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [HIDDEN]),
            helper.make_tensor_value_info("h_scan", TensorProto.FLOAT, [HIDDEN]),
        ],
    )
    then_head = helper.make_graph(
        [helper.make_node("MatMul", ["h_last", "P"], ["p"]), helper.make_node("Relu", ["p"], ["head_pos"])],
        "positive_head", [], [helper.make_tensor_value_info("head_pos", TensorProto.FLOAT, [4])],
    )
    else_head = helper.make_graph(
        [helper.make_node("MatMul", ["h_last", "Q"], ["q"]), helper.make_node("Sigmoid", ["q"], ["head_neg"])],
        "negative_head", [], [helper.make_tensor_value_info("head_neg", TensorProto.FLOAT, [4])],
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "zero"], ["T"], axis=0),
        helper.make_node("Loop", ["T", "true", "h0"], ["h_last", "states"], body=body),
        helper.make_node("Shape", ["states"], ["states_shape"]),
        helper.make_node("Gather", ["states_shape", "zero"], ["steps"], axis=0),
        helper.make_node("ReduceMean", ["h_last"], ["mean"], keepdims=0),
        helper.make_node("Greater", ["mean", "fzero"], ["positive"]),
        helper.make_node("If", ["positive"], ["y"], then_branch=then_head, else_branch=else_head),
    ]
    graph = helper.make_graph(
        nodes,
        "early_exit_rnn",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", FEATURES]),
            helper.make_tensor_value_info("threshold", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("states", TensorProto.FLOAT, ["steps", HIDDEN]),
            helper.make_tensor_value_info("steps", TensorProto.INT64, []),
        ],
        [
            init("W", FEATURES, HIDDEN),
            init("U", HIDDEN, HIDDEN),
            init("P", HIDDEN, 4),
            init("Q", HIDDEN, 4),
            numpy_helper.from_array(np.zeros(HIDDEN, np.float32), "h0"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
            numpy_helper.from_array(np.array(0.0, np.float32), "fzero"),
            numpy_helper.from_array(np.array(True), "true"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pliant-demo")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run_demo(out: Any = print) -> int:
    """Import the demo model, show its IR, run it at several sizes and compare with ONNX Runtime."""
    import pliant
    from pliant.ir.printer import print_module

    model = build_demo_model()
    t0 = time.perf_counter()
    module = pliant.load(model)
    t_load = time.perf_counter() - t0
    n_ops = sum(1 for _ in module.walk())
    out(f"imported '{model.graph.name}' (If + Loop with a data-dependent exit) in {t_load * 1e3:.1f} ms: "
        f"{n_ops} ops, {len(module.entry.inputs)} inputs")
    out("")
    out(print_module(module, elide_tensors=True))
    try:
        import onnxruntime as ort

        session: Any = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except ImportError:
        session = None
        out("(onnxruntime is not installed: outputs are not cross-checked)")
    rng = np.random.default_rng(1)
    failures = 0
    for T, threshold in ((3, 100.0), (12, 100.0), (40, 3.2), (40, -1.0)):
        x = rng.standard_normal((T, FEATURES)).astype(np.float32)
        feeds = {"x": x, "threshold": np.array(threshold, np.float32)}
        t0 = time.perf_counter()
        res = pliant.interpret(module, feeds)
        dt = time.perf_counter() - t0
        line = (f"T={T:3d} threshold={threshold:6.1f}: ran {int(res['steps']):2d} loop steps, "
                f"head={'relu' if _positive(res) else 'sigmoid'}, "
                f"y={np.array2string(res['y'], precision=3)} in {dt * 1e3:.1f} ms")
        if session is not None:
            ref = session.run(None, feeds)
            err = max(float(np.max(np.abs(np.asarray(r, np.float64) - np.asarray(res[n], np.float64)), initial=0.0))
                      for r, n in zip(ref, ("y", "states", "steps")))
            ok = err <= 1e-4
            failures += not ok
            line += f"; onnxruntime max |diff| = {err:.1e} {'ok' if ok else 'MISMATCH'}"
        out(line)
    failures += _suite_demo(out)
    return 1 if failures else 0


def _suite_demo(out: Any) -> int:
    """Run a few models of the benchmark suite when this is a source checkout that has them."""
    from pliant.bench.cli import default_suite_dir
    from pliant.bench.demo import run_suite_demo

    root = default_suite_dir()
    if not (root / "suite.json").exists():
        out("(the benchmark suite's models are not in this installation: run from a source checkout to see them)")
        return 0
    out("")
    out("models from the dynamic model suite (benchmarks/models), compiled and checked against PyTorch's outputs:")
    return run_suite_demo(root, say=out)


def _positive(res: dict[str, Any]) -> bool:
    states = res["states"]
    return bool(states.shape[0] and states[-1].mean() > 0)
