"""How long the symbolic shape analysis takes on a large model (the target: under 2 s for 5,000 nodes).

    python benchmarks/shapes/bench_rdp.py [--nodes 5000] [--repeat 5]

Builds a transformer-style ONNX model with dynamic batch B and length L
whose attention reshapes go through the exporter's Shape -> Gather ->
Unsqueeze -> Concat -> Reshape chains, stacking layers until it has at least
``--nodes`` nodes.  Times ``pliant.load`` (import, with its per-op types) and
``pliant.analysis.rdp.analyze`` (RDP to a fixpoint) separately, as medians
over ``--repeat`` runs, each on a fresh import; also times onnx's
``infer_shapes(data_prop=True)`` and onnxruntime's symbolic shape inference
on the same model for reference.  Writes ``benchmarks/results/rdp_speed.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

D, HEADS = 16, 4
RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")


def build(min_nodes: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    count = [0]

    def name(base: str) -> str:
        count[0] += 1
        return f"{base}_{count[0]}"

    def node(op: str, ins: list[str], **attrs: Any) -> str:
        out = name(op.lower())
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def const(values: Any) -> str:
        out = name("c")
        nodes.append(helper.make_node("Constant", [], [out], value=numpy_helper.from_array(np.asarray(values), out)))
        return out

    def weight(*shape: int) -> str:
        n = name("w")
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, n))
        return n

    x = "x"
    while len(nodes) < min_nodes:
        s = node("Shape", [x])
        b = node("Unsqueeze", [node("Gather", [s, const(0)], axis=0), const([0])])
        length = node("Unsqueeze", [node("Gather", [s, const(1)], axis=0), const([0])])
        heads = node("Concat", [b, length, const([HEADS]), const([D // HEADS])], axis=0)
        q, k, v = (node("Add", [node("MatMul", [x, weight(D, D)]), weight(D)]) for _ in range(3))
        q4, k4, v4 = (node("Transpose", [node("Reshape", [t, heads])], perm=[0, 2, 1, 3]) for t in (q, k, v))
        att = node("Softmax", [node("Div", [node("MatMul", [q4, node("Transpose", [k4], perm=[0, 1, 3, 2])]),
                                            const(np.float32(2.0))])], axis=-1)
        merged = node("Reshape", [node("Transpose", [node("MatMul", [att, v4])], perm=[0, 2, 1, 3]),
                                  node("Concat", [b, length, const([D])], axis=0)])
        y = node("Add", [x, node("Add", [node("MatMul", [merged, weight(D, D)]), weight(D)])])
        y = node("LayerNormalization", [y, weight(D), weight(D)], axis=-1)
        h = node("Relu", [node("Add", [node("MatMul", [y, weight(D, 2 * D)]), weight(2 * D)])])
        y2 = node("Add", [y, node("Add", [node("MatMul", [h, weight(2 * D, D)]), weight(D)])])
        x = node("LayerNormalization", [y2, weight(D), weight(D)], axis=-1)
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "L", D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000, help="at least this many nodes (default 5000)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per tool (default 5)")
    ap.add_argument("--no-write", action="store_true", help="only print the table")
    args = ap.parse_args()

    import pliant
    from pliant.analysis.rdp import analyze, iter_values
    from pliant.ir.types import TensorType

    model = build(args.nodes)
    data = model.SerializeToString()
    n_nodes = len(model.graph.node)
    print(f"model: {n_nodes} nodes, {len(model.graph.initializer)} initializers", flush=True)

    load_t = _median_time(lambda: pliant.load(data), args.repeat)
    modules = [pliant.load(data) for _ in range(args.repeat)]
    it = iter(modules)
    rdp_t = _median_time(lambda: analyze(next(it)), args.repeat)
    module = modules[-1]
    dims = [d for v in iter_values(module) if isinstance(v.type, TensorType) and v.type.shape is not None
            for d in v.type.shape]
    resolved = sum(1 for d in dims if d is not None and (isinstance(d, int) or d.symbols <= {"B", "L"}))
    onnx_t = _median_time(lambda: onnx.shape_inference.infer_shapes(model, data_prop=True), args.repeat)
    rows = [("pliant.load (import + per-op types)", load_t), ("pliant RDP analyze", rdp_t),
            ("onnx infer_shapes(data_prop=True)", onnx_t)]
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        rows.append(("onnxruntime symbolic shape inference",
                     _median_time(lambda: SymbolicShapeInference.infer_shapes(onnx.load_from_string(data), auto_merge=True),
                                  max(1, args.repeat // 2))))
    except ImportError:
        pass
    lines = [
        "# Shape analysis time on a large model",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"run {time.strftime('%Y-%m-%d %H:%M')}; `benchmarks/shapes/bench_rdp.py --nodes {args.nodes} --repeat {args.repeat}`.",
        "",
        f"Model: {n_nodes} nodes (transformer-style layers with dynamic B and L, reshapes through "
        f"Shape/Gather/Unsqueeze/Concat chains). RDP resolved {resolved} of {len(dims)} dims "
        f"({100 * resolved / max(len(dims), 1):.1f}%) to constants or expressions of B and L.",
        "",
        "| step | median s | min-max s |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {t[0]:.3f} | {t[1]:.3f}-{t[2]:.3f} |" for label, t in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "rdp_speed.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
