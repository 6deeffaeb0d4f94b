"""Per-iteration overhead of a Loop whose body is tiny (target: under 5 µs per iteration).

    python benchmarks/runtime/bench_loop.py [--iters 20000] [--repeat 7]

The body adds 1 to a carried float32 scalar; the trip count is an input.
Times pliant's compiled model, pliant's reference interpreter and ONNX
Runtime (1 thread) on the same ONNX model; reports per-iteration medians
(the run's time divided by the trip count, a run of 1 iteration subtracted).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper


def build() -> onnx.ModelProto:
    one = helper.make_node("Constant", [], ["one"], value=onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one"))
    body = helper.make_graph(
        [one, helper.make_node("Add", ["x_in", "one"], ["x_out"]), helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [])])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["true"], value=onnx.numpy_helper.from_array(np.array(True), "true")),
         helper.make_node("Loop", ["n", "true", "x0"], ["x"], body=body)],
        "loop", [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                 helper.make_tensor_value_info("x0", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def per_iteration(run: Callable[[int], Any], iters: int, repeat: int) -> float:
    run(2)

    def timed(n: int) -> float:
        t0 = time.perf_counter()
        run(n)
        return time.perf_counter() - t0

    big = statistics.median(timed(iters) for _ in range(repeat))
    small = statistics.median(timed(1) for _ in range(repeat))
    return (big - small) / (iters - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    import pliant

    model = build()
    data = model.SerializeToString()
    x0 = np.array(0.0, np.float32)
    exe = pliant.compile(data)
    module = pliant.load(data)
    rows = [("pliant compiled", per_iteration(lambda n: exe.run({"n": np.array(n), "x0": x0}), args.iters, args.repeat)),
            ("pliant interpreter", per_iteration(lambda n: pliant.interpret(module, {"n": np.array(n), "x0": x0}),
                                                 max(args.iters // 4, 2), args.repeat))]
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        rows.append(("onnxruntime (1 thread)", per_iteration(lambda n: sess.run(None, {"n": np.array(n), "x0": x0}),
                                                             args.iters, args.repeat)))
    except ImportError:
        pass
    print("| system | µs per iteration |\n|---|---|")
    for name, t in rows:
        print(f"| {name} | {t * 1e6:.2f} |")


if __name__ == "__main__":
    main()
