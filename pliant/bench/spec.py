"""What a benchmark model is: its inputs, which dims vary, the cases to run, what its ONNX must contain.

A suite is a directory holding ``suite.json`` (the specs, written by
``benchmarks/models/export.py``) and, per model, ``<name>.onnx`` and
``<name>.npz`` (each case's inputs and PyTorch eager's outputs for them).
Nothing here needs PyTorch: the specs are plain data.

>>> spec = ModelSpec(name="mlp", title="an MLP", dynamism="batch",
...     inputs=(InputSpec("x", "float32", ("N", 8)),), outputs=("y",),
...     cases=(Case("N=4", {"N": 4}),))
>>> ModelSpec.from_json(spec.to_json()) == spec
True
>>> spec.inputs[0].concrete_shape({"N": 4})
(4, 8)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pliant.errors import PliantError

SUITE_FILE = "suite.json"
SUITE_FORMAT = 1


class BenchError(PliantError):
    """A benchmark that cannot be set up as asked (bad arguments, missing files)."""


class SuiteError(BenchError):
    """A missing or malformed benchmark suite or model spec."""


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One model input: ``shape`` holds ints and the names of the dims that vary."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def concrete_shape(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        out = []
        for d in self.shape:
            if isinstance(d, int):
                out.append(d)
            elif d in dims:
                out.append(int(dims[d]))
            else:
                raise SuiteError(f"input '{self.name}' has dim '{d}' but no size was given for it (sizes: {dict(dims)})")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Case:
    """One input size (and, for control-flow models, one path) to benchmark.

    ``target`` says which path the case is chosen to take; ``path`` is what the
    reference run did (the value of the spec's ``path_output``), filled by the
    export script.
    """

    name: str
    dims: Mapping[str, int]
    target: str = ""
    path: str = ""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A benchmark model: inputs, outputs, what varies, cases and the ops its ONNX must contain.

    ``required_ops`` maps an ONNX op type to the least number of nodes of that
    type the export must hold (counted through If/Loop bodies), so a model that
    promises control flow cannot silently be exported as one traced path.
    ``path_output`` names the output that shows which path a run took.
    Outputs are compared with ``|got - ref| <= atol + rtol * max|ref|``.
    """

    name: str
    title: str
    dynamism: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    cases: tuple[Case, ...]
    required_ops: Mapping[str, int] = field(default_factory=dict)
    path_output: str | None = None
    atol: float = 1e-4
    rtol: float = 1e-3
    notes: str = ""

    def case(self, name: str) -> Case:
        for c in self.cases:
            if c.name == name:
                return c
        raise SuiteError(f"model '{self.name}' has no case '{name}' (its cases: {', '.join(c.name for c in self.cases)})")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "dynamism": self.dynamism,
            "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in self.inputs],
            "outputs": list(self.outputs),
            "cases": [{"name": c.name, "dims": dict(c.dims), "target": c.target, "path": c.path} for c in self.cases],
            "required_ops": dict(self.required_ops),
            "path_output": self.path_output,
            "atol": self.atol,
            "rtol": self.rtol,
            "notes": self.notes,
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> ModelSpec:
        try:
            return ModelSpec(
                name=str(d["name"]),
                title=str(d["title"]),
                dynamism=str(d["dynamism"]),
                inputs=tuple(InputSpec(str(i["name"]), str(i["dtype"]), tuple(i["shape"])) for i in d["inputs"]),
                outputs=tuple(str(o) for o in d["outputs"]),
                cases=tuple(
                    Case(str(c["name"]), {str(k): int(v) for k, v in c["dims"].items()}, str(c.get("target", "")), str(c.get("path", "")))
                    for c in d["cases"]
                ),
                required_ops={str(k): int(v) for k, v in d.get("required_ops", {}).items()},
                path_output=d.get("path_output"),
                atol=float(d.get("atol", 1e-4)),
                rtol=float(d.get("rtol", 1e-3)),
                notes=str(d.get("notes", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SuiteError(f"malformed model spec {d.get('name', '?') if isinstance(d, Mapping) else d!r}: {e!r}") from None


@dataclass(frozen=True, slots=True)
class SuiteModel:
    """A spec plus where its files are. ``source`` (the PyTorch definition) may be None for a user model."""

    spec: ModelSpec
    onnx_path: Path
    reference_path: Path | None
    source: Path | None

    @property
    def name(self) -> str:
        return self.spec.name


def count_ops(graph: onnx.GraphProto) -> Counter[str]:
    """Node counts by op type, through the bodies of If, Loop and Scan."""
    counts: Counter[str] = Counter()
    stack = [graph]
    while stack:
        g = stack.pop()
        for node in g.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    stack.append(attr.g)
                stack.extend(attr.graphs)
    return counts


def missing_ops(spec: ModelSpec, graph: onnx.GraphProto) -> dict[str, tuple[int, int]]:
    """The promised ops the graph has too few of: op type -> (promised, found)."""
    counts = count_ops(graph)
    return {op: (n, counts[op]) for op, n in spec.required_ops.items() if counts[op] < n}


def feed_key(case_index: int, name: str) -> str:
    return f"c{case_index}.in.{name}"


def output_key(case_index: int, name: str) -> str:
    return f"c{case_index}.out.{name}"


def save_cases(path: str | Path, feeds: Sequence[Mapping[str, np.ndarray]], outputs: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Write each case's feeds and reference outputs to one compressed ``.npz``."""
    arrays: dict[str, np.ndarray] = {}
    for i, f in enumerate(feeds):
        arrays.update({feed_key(i, k): np.asarray(v) for k, v in f.items()})
    for i, o in enumerate(outputs):
        arrays.update({output_key(i, k): np.asarray(v) for k, v in o.items()})
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def load_case(path: str | Path, case_index: int, spec: ModelSpec) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Case ``case_index``'s feeds and reference outputs from an ``.npz`` written by :func:`save_cases`."""
    with np.load(path, allow_pickle=False) as z:
        try:
            feeds = {i.name: z[feed_key(case_index, i.name)] for i in spec.inputs}
        except KeyError as e:
            raise SuiteError(f"{path}: no feed {e} for case {case_index} of '{spec.name}': re-run the export script") from None
        outs = {o: z[output_key(case_index, o)] for o in spec.outputs if output_key(case_index, o) in z.files}
    return feeds, outs


def load_suite(directory: str | Path, names: Sequence[str] | None = None) -> list[SuiteModel]:
    """The models of the suite in ``directory`` (all, or those in ``names``, in that order)."""
    root = Path(directory)
    manifest = root / SUITE_FILE
    if not manifest.is_file():
        raise SuiteError(f"no {SUITE_FILE} in '{root}': run 'python benchmarks/models/export.py' to build the suite")
    try:
        data = json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise SuiteError(f"{manifest} is not valid JSON: {e}") from None
    if data.get("format") != SUITE_FORMAT:
        raise SuiteError(f"{manifest} has format {data.get('format')!r}, this pliant reads format {SUITE_FORMAT}")
    models = []
    for entry in data["models"]:
        spec = ModelSpec.from_json(entry["spec"])
        files = entry["files"]
        models.append(SuiteModel(spec, root / files["onnx"], root / files["reference"], root / files["source"]))
    if names is None:
        return models
    by_name = {m.name: m for m in models}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SuiteError(f"no model {', '.join(repr(n) for n in unknown)} in the suite (it has: {', '.join(by_name)})")
    return [by_name[n] for n in names]
