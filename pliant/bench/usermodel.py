"""A user's ONNX model as a one-model suite: a spec from its graph, random feeds, reference outputs.

Symbolic dims get their sizes from ``--dim SYM=N[,N...]`` (one case per
combination); inputs may instead come from ``.npy`` files. The reference
outputs are ONNX Runtime's (pliant's interpreter where ONNX Runtime is missing
or fails), computed here once before any system is measured.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pliant.bench.spec import BenchError, Case, InputSpec, ModelSpec, SuiteModel, save_cases


def _input_specs(graph: onnx.GraphProto) -> list[InputSpec]:
    initializers = {t.name for t in graph.initializer}
    specs = []
    for vi in graph.input:
        if vi.name in initializers:
            continue
        if not vi.type.HasField("tensor_type"):
            raise BenchError(f"input '{vi.name}' is not a tensor: pliant bench makes random values only for tensors")
        tt = vi.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        dims: list[int | str] = []
        for k, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(f"{vi.name}_dim{k}")
        specs.append(InputSpec(vi.name, dtype, tuple(dims)))
    return specs


def random_feed(spec: InputSpec, dims: Mapping[str, int], rng: np.random.Generator) -> np.ndarray:
    shape = spec.concrete_shape(dims)
    dt = np.dtype(spec.dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dt)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    raise BenchError(f"input '{spec.name}' has dtype {dt}, for which pliant bench cannot make random values: pass --input")


def reference_outputs(path: Path, feeds: Mapping[str, np.ndarray], outputs: list[str]) -> tuple[dict[str, Any], str]:
    """ONNX Runtime's outputs, else the interpreter's; returns them and the name of who computed them."""
    errors = []
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return dict(zip(outputs, sess.run(outputs, dict(feeds)))), "onnxruntime"
    except Exception as e:  # noqa: BLE001  (fall back to the interpreter, say why if it fails too)
        errors.append(f"onnxruntime: {type(e).__name__}: {str(e).strip()[:200]}")
    try:
        import pliant

        return dict(pliant.interpret(pliant.load(str(path)), feeds)), "pliant interpreter"
    except Exception as e:  # noqa: BLE001
        errors.append(f"pliant: {type(e).__name__}: {str(e).strip()[:200]}")
    raise BenchError(f"no reference outputs for {path}: " + "; ".join(errors))


def prepare_user_model(path: str | Path, work_dir: Path, *, dims: Mapping[str, list[int]], inputs: Mapping[str, Path],
                       seed: int = 0, atol: float = 1e-4, rtol: float = 1e-3) -> tuple[SuiteModel, str]:
    """A one-model suite for the ONNX file ``path`` (feeds and references written under ``work_dir``)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"no such file: '{path}'")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001  (protobuf raises several kinds)
        raise BenchError(f"cannot read '{path}' as an ONNX model: {e}") from None
    specs = _input_specs(proto.graph)
    names = {s.name for s in specs}
    for n in inputs:
        if n not in names:
            raise BenchError(f"--input {n}: the model has no input '{n}' (its inputs: {', '.join(sorted(names))})")
    fixed = {}
    for n, p in inputs.items():
        try:
            fixed[n] = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise BenchError(f"--input {n}: cannot read '{p}' as a .npy file: {e}") from None
    needed = sorted({d for s in specs if s.name not in fixed for d in s.shape if isinstance(d, str)})
    missing = [d for d in needed if d not in dims]
    if missing:
        shapes = "; ".join(f"{s.name}: {list(s.shape)}" for s in specs if s.name not in fixed)
        raise BenchError(f"the model's inputs have symbolic dims ({shapes}): give their sizes with "
                         + " ".join(f"--dim {d}=N[,N...]" for d in missing))
    combos = [dict(zip(needed, values)) for values in itertools.product(*(dims[d] for d in needed))]
    outputs = [o.name for o in proto.graph.output]
    cases, feeds, refs = [], [], []
    reference = ""
    for k, combo in enumerate(combos):
        rng = np.random.default_rng(seed + k)
        f = {s.name: fixed[s.name] if s.name in fixed else random_feed(s, combo, rng) for s in specs}
        out, reference = reference_outputs(path, f, outputs)
        label = " ".join(f"{d}={v}" for d, v in combo.items()) or "fixed"
        cases.append(Case(label, combo))
        feeds.append(f)
        refs.append({k2: v for k2, v in out.items() if isinstance(v, np.ndarray)})
    npz = work_dir / f"{path.stem}.feeds.npz"
    save_cases(npz, feeds, refs)
    spec = ModelSpec(
        name=path.stem, title=f"user model {path.name}", dynamism=", ".join(needed) or "static shapes",
        inputs=tuple(specs), outputs=tuple(outputs), cases=tuple(cases), atol=atol, rtol=rtol,
        notes=f"random inputs (seed {seed}); reference outputs from {reference}",
    )
    return SuiteModel(spec, path.resolve(), npz, None), reference
