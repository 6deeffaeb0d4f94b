"""Export the benchmark suite: every model in this directory to ONNX, its reference data and the manifest.

    python benchmarks/models/export.py               # all models
    python benchmarks/models/export.py gpt_generate  # one (the manifest keeps the others)

For each model module (``SPEC``, ``build()``, ``make_feeds(model, case)``):

1. build the PyTorch model (seeded weights) and each case's feeds; run it eagerly;
2. script it (``torch.jit.script``) and export with the TorchScript exporter, so
   Python control flow on tensors becomes real ONNX ``If``/``Loop`` nodes;
   legacy tracing would bake in the one path the example input took;
3. check the export holds the ops its spec promises (through If/Loop bodies);
4. run every case with ONNX Runtime and require it to agree with eager PyTorch,
   and require control-flow models' cases to take at least two different paths;
5. write ``<name>.onnx``, ``<name>.npz`` (feeds and eager outputs per case) and
   the model's entry in ``suite.json``.

Needs ``torch==2.13.0`` and ``onnxruntime``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import io
import json
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # the models' shared helpers, and this checkout's pliant

from pliant.bench.compare import compare_outputs  # noqa: E402
from pliant.bench.spec import SUITE_FILE, SUITE_FORMAT, Case, ModelSpec, count_ops, missing_ops, save_cases  # noqa: E402

MODELS = (
    "bert_encoder",
    "gpt_decode_step",
    "gpt_generate",
    "skipnet_resnet",
    "early_exit_bert",
    "blockdrop_resnet",
    "gru_seq2seq",
    "yolo_nms",
    "conformer",
    "moe_transformer",
    "ranet_cnn",
)
OPSET = 17
MAX_BYTES = 20 * 1024 * 1024


def relax_loop_carried_shapes(graph: onnx.GraphProto) -> int:
    """Make the dims of Loop-carried values symbolic where the body may change them; returns how many.

    The TorchScript exporter declares a loop-carried body input with the shape
    the example input had on entry (e.g. ``tokens: [1, 1]``) even when the body
    grows it. Such a dim is kept only where the body's output declares the same
    constant; elsewhere it becomes a fresh symbol, so a strict importer does not
    reject the second iteration.
    """
    relaxed = 0
    for node in graph.node:
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for body in subgraphs:
                if node.op_type == "Loop":
                    carried = len(body.input) - 2
                    for k in range(carried):
                        vin, vout = body.input[2 + k], body.output[1 + k]
                        din = vin.type.tensor_type.shape.dim
                        dout = vout.type.tensor_type.shape.dim
                        for j, d in enumerate(din):
                            same = j < len(dout) and dout[j].HasField("dim_value") and dout[j].dim_value == d.dim_value
                            if d.HasField("dim_value") and not same:
                                d.Clear()
                                d.dim_param = f"{body.name or 'loop'}_{vin.name}_dim{j}"
                                relaxed += 1
                relaxed += relax_loop_carried_shapes(body)
    return relaxed


def run_eager(model: torch.nn.Module, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    args = [torch.from_numpy(np.ascontiguousarray(feeds[i.name])) for i in spec.inputs]
    with torch.no_grad():
        out = model(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if len(outs) != len(spec.outputs):
        raise RuntimeError(f"{spec.name}: the model returned {len(outs)} outputs, the spec names {len(spec.outputs)}")
    return {name: o.detach().numpy().copy() for name, o in zip(spec.outputs, outs)}


def export_onnx(module: ModuleType, model: torch.nn.Module, spec: ModelSpec, example: dict[str, np.ndarray]) -> onnx.ModelProto:
    scripted = module.script(model) if hasattr(module, "script") else torch.jit.script(model)
    args = tuple(torch.from_numpy(example[i.name]) for i in spec.inputs)
    dynamic_axes = {i.name: {k: d for k, d in enumerate(i.shape) if isinstance(d, str)} for i in spec.inputs}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("error", torch.jit.TracerWarning)  # a traced data-dependent path is a bug here
        torch.onnx.export(
            scripted, args, buf, dynamo=False, opset_version=OPSET,
            input_names=[i.name for i in spec.inputs], output_names=list(spec.outputs),
            dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name = "pliant benchmarks/models/export.py"
    proto.doc_string = f"{spec.title}: {spec.dynamism}. {spec.notes}"
    onnx.helper.set_model_props(proto, {"pliant.bench.model": spec.name, "pliant.bench.torch": torch.__version__})
    relax_loop_carried_shapes(proto.graph)
    onnx.checker.check_model(proto)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    return proto


def describe_path(spec: ModelSpec, outputs: dict[str, np.ndarray]) -> str:
    if spec.path_output is None:
        return ""
    return f"{spec.path_output}={np.asarray(outputs[spec.path_output]).tolist()}"


def export_model(name: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    module = importlib.import_module(name)
    spec: ModelSpec = module.SPEC
    model = module.build()
    feeds = [module.make_feeds(model, c) for c in spec.cases]
    eager = [run_eager(model, spec, f) for f in feeds]
    proto = export_onnx(module, model, spec, feeds[0])

    counts = count_ops(proto.graph)
    missing = missing_ops(spec, proto.graph)
    if missing:
        raise RuntimeError(f"{name}: the export lacks promised ops (op: (promised, found)): {missing}")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    cases: list[Case] = []
    for case, f, ref in zip(spec.cases, feeds, eager):
        got = dict(zip(spec.outputs, sess.run(list(spec.outputs), f)))
        diff = compare_outputs(got, ref, atol=spec.atol, rtol=spec.rtol)
        if not diff.ok:
            raise RuntimeError(f"{name} {case.name}: onnxruntime disagrees with eager PyTorch: {diff.summary()}")
        path = describe_path(spec, ref)
        cases.append(dataclasses.replace(case, path=path))
        print(f"  {name} {case.name}: ok (max diff {diff.max_abs:.2e}) {path}", flush=True)
    if spec.path_output is not None and len({c.path for c in cases}) < 2:
        raise RuntimeError(f"{name}: every case took the same path ({cases[0].path}): choose cases that differ")

    data = proto.SerializeToString()
    if len(data) > MAX_BYTES:
        raise RuntimeError(f"{name}: the export is {len(data) / 2**20:.1f} MiB, over the suite's {MAX_BYTES / 2**20:.0f} MiB limit")
    (HERE / f"{name}.onnx").write_bytes(data)
    save_cases(HERE / f"{name}.npz", feeds, eager)
    spec = dataclasses.replace(spec, cases=tuple(cases))
    print(f"{name}: {len(data) / 1e6:.2f} MB, ops {dict(sorted((op, counts[op]) for op in spec.required_ops))}, "
          f"{sum(counts.values())} nodes, {time.perf_counter() - t0:.1f} s", flush=True)
    return {
        "spec": spec.to_json(),
        "files": {"onnx": f"{name}.onnx", "reference": f"{name}.npz", "source": f"{name}.py"},
        "onnx_bytes": len(data),
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "node_counts": dict(sorted(counts.items())),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help=f"models to export (default: all of {', '.join(MODELS)})")
    args = p.parse_args(argv)
    names = args.models or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; the suite has {', '.join(MODELS)}")
    torch.set_num_threads(2)
    manifest_path = HERE / SUITE_FILE
    entries: dict[str, Any] = {}
    if manifest_path.exists():
        entries = {e["spec"]["name"]: e for e in json.loads(manifest_path.read_text())["models"]}
    for name in names:
        entries[name] = export_model(name)
    manifest = {
        "format": SUITE_FORMAT,
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__, "opset": OPSET},
        "models": [entries[n] for n in MODELS if n in entries],
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(e["onnx_bytes"] for e in manifest["models"])
    print(f"wrote {manifest_path} ({len(manifest['models'])} models, {total / 1e6:.1f} MB of ONNX)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
