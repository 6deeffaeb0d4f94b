"""How many dims shape inference resolves, measured against what runs: pliant and its peers.

A *tool* is anything that names a shape for the values of an ONNX model:
onnx's own ``infer_shapes(data_prop=True)`` (:func:`onnx_data_prop`),
onnxruntime's symbolic shape inference (:func:`ort_symbolic`) and pliant's
RDP (:func:`pliant_rdp`, through ``pliant.analysis.rdp.analyze_json``). Each
gives :class:`ToolShapes`: per value name a shape of dims that are an int, an
expression text over symbols, or None (unknown).

The yardstick is :class:`ActualShapes`: the reference interpreter's
observations (:mod:`pliant.analysis.trace`) over several input cases, kept
for the values ONNX nodes produce (main graph and subgraphs; initializers and
graph inputs are not counted). :func:`score` counts, over every observed
value's actual dims, which ones a tool *resolves*: an int equal to every
observed size, or an expression whose symbols are all allowed (the model's
input dim_params; for pliant also its loop iteration symbols) that evaluates
to the observed size under each case's input sizes. A tool's dim that
contradicts a run is *wrong*: a soundness bug in that tool.

The tools keep process-wide state (sympy's caches, module globals), so for a
fair comparison :class:`FreshProcesses` runs each tool call in a new process
and :func:`compare_model` takes it as ``fresh=``; the tracing stays in this one.

>>> import numpy as np, onnx, onnx.helper as h
>>> g = h.make_graph([h.make_node("Shape", ["x"], ["s"]), h.make_node("Concat", ["x", "x"], ["y"], axis=0)],
...     "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N"])],
...     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
>>> model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
>>> actual = trace_cases(model, [("N=2", {"x": np.zeros(2, np.float32)}), ("N=5", {"x": np.zeros(5, np.float32)})])
>>> onnx_says = onnx_data_prop(model)
>>> onnx_says.shapes["s"], onnx_says.shapes["y"]   # it does no arithmetic on symbols: 2*N is a fresh name
((1,), ('unk__0',))
>>> s = score(onnx_says, actual)
>>> (s.values, s.dims, s.resolved, s.wrong)
(2, 2, 1, 0)
"""

from __future__ import annotations

import functools
import importlib
import math
import multiprocessing
import numbers
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnx
import sympy
from sympy.parsing.sympy_parser import parse_expr

import pliant
from pliant.analysis.trace import trace_values
from pliant.errors import PliantError
from pliant.ir.core import Module
from pliant.ir.dims import Sym
from pliant.ir.types import TensorType

Dim = int | str | None
"""A tool's dim: an int, an expression text over symbols (``"P + 1"``), or None for unknown."""

Shape = tuple[Dim, ...] | None
"""A tool's shape; None when it does not know the rank (or names no tensor type)."""

Status = Literal["ok", "partial", "failed", "skipped"]

MAX_EXAMPLES = 10
"""Wrong dims described per tool and model: the first (by value name) of each distinct wrong claim."""


@dataclass(frozen=True, slots=True)
class ToolShapes:
    """What one tool says about a model's values.

    ``allowed_symbols``: the symbols an expression may use and still count as
    resolved. ``status``: ``ok``; ``partial`` (the tool stopped early, its
    partial answer is scored); ``failed`` (it crashed, nothing is resolved);
    ``skipped`` (the tool is not available; it is not scored). ``note`` says why.
    """

    tool: str
    shapes: Mapping[str, Shape]
    allowed_symbols: frozenset[str]
    status: Status = "ok"
    note: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ActualShapes:
    """What the runs showed: per value name, the distinct (case index, shape) pairs observed.

    ``bindings[i]`` maps each input symbol to its size in case ``i`` (the
    model's dim_params, and pliant's names for the input dims); ``errors``
    holds one line per case the interpreter could not run (that case is left out).
    """

    cases: tuple[str, ...]
    bindings: tuple[Mapping[str, int], ...]
    values: Mapping[str, frozenset[tuple[int, tuple[int, ...]]]]
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Score:
    """One tool's result on one model.

    ``dims``: the observed values' dims, each value's counted once at its
    actual rank. ``resolved``: those the tool got right (int or allowed
    expression). ``wrong``: those it contradicts (a wrong int, an expression
    that evaluates to another size, or every dim of a value whose rank it gets
    wrong; ``wrong_rank`` counts those values). ``unchecked``: resolved dims
    whose expression could not be evaluated in some case (it uses a loop
    iteration symbol, which runs do not bind).
    """

    values: int
    dims: int
    resolved: int = 0
    wrong: int = 0
    wrong_rank: int = 0
    unchecked: int = 0
    examples: tuple[str, ...] = ()

    @property
    def percent(self) -> float:
        return 100.0 * self.resolved / self.dims if self.dims else 100.0


# -- reading ONNX ---------------------------------------------------------------


def subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every graph nested in it (If branches, Loop and Scan bodies), outer first."""
    stack = [graph]
    while stack:
        g = stack.pop(0)
        yield g
        for node in g.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                stack.extend(a.graphs)


def node_output_names(model: onnx.ModelProto) -> set[str]:
    """The names of all node outputs, in the main graph and all subgraphs."""
    return {o for g in subgraphs(model.graph) for n in g.node for o in n.output if o}


def input_symbols(model: onnx.ModelProto) -> frozenset[str]:
    """The dim_params of the main graph's inputs (inputs that are also initializers excluded)."""
    inits = {t.name for t in model.graph.initializer}
    return frozenset(
        d.dim_param
        for i in model.graph.input
        if i.name not in inits and i.type.WhichOneof("value") == "tensor_type"
        for d in i.type.tensor_type.shape.dim
        if d.HasField("dim_param") and d.dim_param
    )


def shape_of(tp: onnx.TypeProto) -> Shape:
    """A tensor TypeProto's shape as :data:`Shape` (None for no shape or a non-tensor type)."""
    if tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for d in tp.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def declared_shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    """The shape every graph's value_info and outputs declare, by value name (first declaration wins)."""
    out: dict[str, Shape] = {}
    for g in subgraphs(model.graph):
        for vi in list(g.value_info) + list(g.output):
            if vi.name not in out or out[vi.name] is None:
                out[vi.name] = shape_of(vi.type)
    return out


# -- the tools ------------------------------------------------------------------


def onnx_data_prop(model: onnx.ModelProto) -> ToolShapes:
    """``onnx.shape_inference.infer_shapes(model, data_prop=True)``'s shapes."""
    allowed = input_symbols(model)
    start = time.perf_counter()
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # noqa: BLE001 - a peer's crash is a result to report, not ours to raise
        return ToolShapes("onnx-data_prop", {}, allowed, "failed", _one_line(e), time.perf_counter() - start)
    return ToolShapes("onnx-data_prop", declared_shapes(inferred), allowed, seconds=time.perf_counter() - start)


def ort_symbolic(model: onnx.ModelProto, *, guess_output_rank: bool = False) -> ToolShapes:
    """onnxruntime's ``SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=...)``'s shapes.

    When the tool stops with "Incomplete symbolic shape inference" its partial
    model is scored (status ``partial``).
    """
    from onnxruntime.tools import symbolic_shape_infer as ssi

    allowed = input_symbols(model)
    start = time.perf_counter()
    try:
        out, complete = _run_ort_symbolic(ssi, model, guess_output_rank)
    except Exception as e:  # noqa: BLE001 - a peer's crash is a result to report, not ours to raise
        return ToolShapes("ort-symbolic", {}, allowed, "failed", _one_line(e), time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if out is None:
        return ToolShapes("ort-symbolic", {}, allowed, "failed", "the tool returned no model (opset below 7?)", seconds)
    if not complete:
        return ToolShapes("ort-symbolic", declared_shapes(out), allowed, "partial",
                          "Incomplete symbolic shape inference (partial result scored)", seconds)
    return ToolShapes("ort-symbolic", declared_shapes(out), allowed, seconds=seconds)


def _run_ort_symbolic(ssi: Any, model: onnx.ModelProto, guess_output_rank: bool) -> tuple[onnx.ModelProto | None, bool]:
    # NOTE: the same steps as SymbolicShapeInference.infer_shapes, which on an
    # incomplete result saves the partial model to the working directory and
    # raises; here the partial model is kept in memory and scored
    cls = ssi.SymbolicShapeInference
    steps = ("_preprocess", "_infer_impl", "_update_output_from_vi")
    if not all(hasattr(cls, s) for s in steps):
        return cls.infer_shapes(model, auto_merge=True, guess_output_rank=guess_output_rank), True
    opset = ssi.get_opset(model)
    if not opset or opset < 7:
        return None, False
    engine = cls(2**31 - 1, True, guess_output_rank, 0)
    engine._preprocess(model)
    complete = False
    while engine.run_:
        complete = engine._infer_impl()
    engine._update_output_from_vi()
    return engine.out_mp_, bool(complete)


def pliant_rdp(model: onnx.ModelProto) -> ToolShapes:
    """pliant's own shapes, from ``pliant.analysis.rdp.analyze_json`` (status ``skipped`` while it does not exist).

    Allowed symbols: the JSON summary's ``input_symbols`` and ``iteration_symbols``.
    """
    try:
        analyze_json = importlib.import_module("pliant.analysis.rdp").analyze_json
    except (ImportError, AttributeError):
        return ToolShapes("pliant", {}, frozenset(), "skipped", "pliant.analysis.rdp.analyze_json does not exist yet")
    start = time.perf_counter()
    try:
        report = analyze_json(pliant.load(model))
    except Exception as e:  # noqa: BLE001 - reported in the table; the other tools still run
        return ToolShapes("pliant", {}, input_symbols(model), "failed", _one_line(e), time.perf_counter() - start)
    seconds = time.perf_counter() - start
    summary = report.get("summary", {})
    allowed = frozenset(str(s) for s in summary.get("input_symbols", ())) | frozenset(
        str(s) for s in summary.get("iteration_symbols", ()))
    shapes: dict[str, Shape] = {}
    for name, entry in report.get("values", {}).items():
        shape = entry.get("shape")
        shapes[name] = None if shape is None else tuple(_json_dim(d) for d in shape)
    return ToolShapes("pliant", shapes, allowed or input_symbols(model), seconds=seconds)


def _json_dim(d: Any) -> Dim:
    if isinstance(d, bool):
        return None
    if isinstance(d, int):
        return d
    if isinstance(d, str) and d.strip() not in ("", "?"):
        return d
    return None


ToolFn = Callable[[onnx.ModelProto], ToolShapes]

TOOLS: dict[str, ToolFn] = {"onnx-data_prop": onnx_data_prop, "ort-symbolic": ort_symbolic, "pliant": pliant_rdp}
"""Every tool, by the name the tables use."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


# -- one fresh process per analysis ----------------------------------------------


class FreshProcesses:
    """Runs every tool call in a process of its own, started for that call alone.

    The tools keep process-wide state (sympy's caches, module globals in
    onnxruntime's symbolic shape inference, pliant's own), so a tool that runs
    after others in one process can answer differently from the same tool run
    alone. :meth:`run` gives each call a new interpreter (the ``spawn`` start
    method: nothing is inherited from this process, and the pool's
    ``max_tasks_per_child=1`` retires it after the one call) and sends back
    plain data only (:func:`plain`). An answer's ``seconds`` is what the tool
    measured inside that process: starting it and importing the tool are not
    counted. A process that dies (a crash in native code, killed for memory)
    gives a ``failed`` answer that says so, and the next call gets a new pool.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> FreshProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, key: str, fn: ToolFn, model: onnx.ModelProto | bytes) -> ToolShapes:
        """``fn(model)`` in a fresh process, as plain data; ``key`` names the tool in a ``failed`` answer.

        ``fn`` must pickle: a module-level function, or a ``functools.partial`` of one.
        """
        data = model if isinstance(model, bytes) else model.SerializeToString()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1)
        try:
            return self._pool.submit(_run_tool, key, fn, data).result()
        except BrokenProcessPool as e:
            self.close()
            return ToolShapes(key, {}, input_symbols(onnx.load_model_from_string(data)), "failed", _one_line(e))

    def close(self) -> None:
        """Stop the pool's process (a later :meth:`run` starts a new pool)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def run_fresh(key: str, fn: ToolFn, model: onnx.ModelProto | bytes) -> ToolShapes:
    """One call of :meth:`FreshProcesses.run`."""
    with FreshProcesses() as fresh:
        return fresh.run(key, fn, model)


def _run_tool(key: str, fn: ToolFn, data: bytes) -> ToolShapes:
    # NOTE: runs in the fresh process; the tools catch their own crashes, this
    # catches what escapes them (so the parent always gets an answer to score)
    model = onnx.load_model_from_string(data)
    try:
        return plain(fn(model))
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a tool's crash is a result to report
        return ToolShapes(key, {}, input_symbols(model), "failed", _one_line(e))


def plain(answer: ToolShapes) -> ToolShapes:
    """``answer`` holding builtin values only (dims: int, str or None), so it pickles without its tool's modules.

    >>> x = sympy.Symbol("x", integer=True)
    >>> plain(ToolShapes("t", {"a": (sympy.Integer(2), x + 1, np.int64(3), None)}, frozenset({x})))
    ToolShapes(tool='t', shapes={'a': (2, 'x + 1', 3, None)}, allowed_symbols=frozenset({'x'}), status='ok', note='', seconds=0.0)
    """
    shapes = {str(name): None if shape is None else tuple(_plain_dim(d) for d in shape)
              for name, shape in answer.shapes.items()}
    return ToolShapes(str(answer.tool), shapes, frozenset(str(s) for s in answer.allowed_symbols), answer.status,
                      str(answer.note), float(answer.seconds))


def _plain_dim(d: object) -> Dim:
    if d is None or isinstance(d, bool | np.bool_):
        return None
    if isinstance(d, numbers.Integral):
        return int(d)
    return d if isinstance(d, str) else str(d)


# -- the runs -------------------------------------------------------------------


def case_bindings(model: onnx.ModelProto, module: Module, feeds: Mapping[str, Any]) -> dict[str, int]:
    """Each input symbol's size in ``feeds``: the model's dim_params, and pliant's names for the input dims."""
    out: dict[str, int] = {}
    inits = {t.name for t in model.graph.initializer}
    for i in model.graph.input:
        if i.name in inits or i.name not in feeds or i.type.WhichOneof("value") != "tensor_type":
            continue
        shape = np.shape(feeds[i.name])
        for axis, d in enumerate(i.type.tensor_type.shape.dim):
            if d.HasField("dim_param") and d.dim_param and axis < len(shape):
                out.setdefault(d.dim_param, int(shape[axis]))
    for name, v in zip(module.entry.input_names, module.entry.inputs):
        if name not in feeds or not isinstance(v.type, TensorType) or v.type.shape is None:
            continue
        shape = np.shape(feeds[name])
        for axis, d in enumerate(v.type.shape):
            if isinstance(d, Sym) and d.is_symbol and axis < len(shape):
                out.setdefault(str(d), int(shape[axis]))
    return out


def trace_cases(model: onnx.ModelProto, cases: Sequence[tuple[str, Mapping[str, Any]]]) -> ActualShapes:
    """Run ``model`` on each ``(case name, feeds)`` with the tracing interpreter; the node outputs' shapes.

    A case the interpreter cannot run is recorded in ``errors`` and left out.
    """
    module = pliant.load(model)
    wanted = node_output_names(model)
    names: list[str] = []
    bindings: list[Mapping[str, int]] = []
    errors: list[str] = []
    seen: dict[str, set[tuple[int, tuple[int, ...]]]] = {}
    for case_name, feeds in cases:
        try:
            observed = trace_values(module, feeds)
        except PliantError as e:
            errors.append(f"{case_name}: {_one_line(e)}")
            continue
        index = len(names)
        names.append(case_name)
        bindings.append(case_bindings(model, module, feeds))
        for value, obs in observed.items():
            if value in wanted:
                seen.setdefault(value, set()).update((index, o.shape) for o in obs)
    return ActualShapes(tuple(names), tuple(bindings), {k: frozenset(v) for k, v in seen.items()}, tuple(errors))


# -- the metric -----------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FUNCTIONS: dict[str, Any] = {
    "floor": sympy.floor, "ceiling": sympy.ceiling, "ceil": sympy.ceiling, "Max": sympy.Max, "max": sympy.Max,
    "Min": sympy.Min, "min": sympy.Min, "Mod": sympy.Mod, "mod": sympy.Mod, "Abs": sympy.Abs, "abs": sympy.Abs,
}


@functools.lru_cache(maxsize=8192)
def parse_dim(text: str, allowed: frozenset[str]) -> sympy.Expr | None:
    """``text`` as a sympy expression if it only uses ``allowed`` symbols and arithmetic, else None.

    Understands sympy's printing (``floor(H/2 - 1/2) + 1``, ``Max(0, T)``) and
    Python's (``a // 2``, ``a % 2``, ``max(a, b)``).

    >>> parse_dim("P + 1", frozenset({"P"}))
    P + 1
    >>> parse_dim("N // 2", frozenset({"N"}))
    floor(N/2)
    >>> parse_dim("unk__3", frozenset({"N"})) is None
    True
    """
    text = text.strip()
    if text in allowed:
        return sympy.Symbol(text, integer=True)
    local: dict[str, Any] = {}
    for m in _IDENTIFIER.finditer(text):
        name = m.group()
        if name in allowed:
            local[name] = sympy.Symbol(name, integer=True)
        elif name in _FUNCTIONS and text[m.end():].lstrip().startswith("("):
            local[name] = _FUNCTIONS[name]
        else:
            return None
    try:
        expr = parse_expr(text, local_dict=local)
    except Exception:  # noqa: BLE001 - sympy raises many kinds on text it cannot read: that dim is unknown
        return None
    return expr if isinstance(expr, sympy.Expr) else None


def _evaluate(expr: sympy.Expr, bindings: Mapping[str, int]) -> float | None:
    subs = {}
    for s in expr.free_symbols:
        name = str(s)
        if name not in bindings:
            return None
        subs[s] = bindings[name]
    v = expr.subs(subs)
    if not v.is_number:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):  # NOTE: a complex or undefined value (zoo, nan) is no size
        return math.nan


@dataclass
class _Tally:
    resolved: int = 0
    wrong: int = 0
    wrong_rank: int = 0
    unchecked: int = 0
    examples: list[str] = field(default_factory=list)
    _shown: set[str] = field(default_factory=set)

    def example(self, claim: str, text: str) -> None:
        if len(self.examples) < MAX_EXAMPLES and claim not in self._shown:
            self._shown.add(claim)
            self.examples.append(text)


def score(tool: ToolShapes, actual: ActualShapes) -> Score:
    """Count the observed dims ``tool`` resolves and those it gets wrong (see :class:`Score`)."""
    values = dims = 0
    t = _Tally()
    for name in sorted(actual.values):
        obs = actual.values[name]
        ranks = {len(s) for _, s in obs}
        rank = max(ranks)
        values += 1
        dims += rank
        shape = tool.shapes.get(name)
        if shape is None:
            continue
        if ranks != {len(shape)}:
            t.wrong_rank += 1
            t.wrong += rank
            t.example(f"rank {len(shape)}", f"{name}: says rank {len(shape)} {_show(shape)}, ran with rank {sorted(ranks)}")
            continue
        for axis, d in enumerate(shape):
            _judge(name, axis, d, {(case, s[axis]) for case, s in obs}, tool.allowed_symbols, actual, t)
    return Score(values, dims, t.resolved, t.wrong, t.wrong_rank, t.unchecked, tuple(t.examples))


def _judge(name: str, axis: int, d: Dim, sizes: set[tuple[int, int]], allowed: frozenset[str],
           actual: ActualShapes, t: _Tally) -> None:
    if d is None:
        return
    if isinstance(d, int):
        bad = sorted({(s, actual.cases[c]) for c, s in sizes if s != d})
        if bad:
            t.wrong += 1
            t.example(str(d), f"{name} dim {axis}: says {d}, ran {_show_sizes(bad)}")
        else:
            t.resolved += 1
        return
    expr = parse_dim(d, allowed)
    if expr is None:
        return
    unchecked = False
    bad_runs: list[tuple[int, str]] = []
    for case in sorted({c for c, _ in sizes}):
        want = _evaluate(expr, actual.bindings[case])
        if want is None:
            unchecked = True
            continue
        bad_runs.extend((s, actual.cases[c]) for c, s in sizes if c == case and not _same(want, s))
    if bad_runs:
        t.wrong += 1
        t.example(d, f"{name} dim {axis}: says {d!r}, ran {_show_sizes(sorted(set(bad_runs)))}")
        return
    t.resolved += 1
    t.unchecked += unchecked


def _same(want: float, size: int) -> bool:
    return math.isfinite(want) and abs(want - size) <= 1e-9


def _show(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _show_sizes(runs: Sequence[tuple[int, str]]) -> str:
    shown = ", ".join(f"{s} ({case})" for s, case in runs[:3])
    return shown + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")


# -- one model ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelComparison:
    """One model's row: the traced cases, and per tool its answer's status and :class:`Score`."""

    name: str
    actual: ActualShapes
    tools: Mapping[str, ToolShapes]
    scores: Mapping[str, Score]

    @property
    def values(self) -> int:
        return len(self.actual.values)

    @property
    def dims(self) -> int:
        return sum(max(len(s) for _, s in obs) for obs in self.actual.values.values())


def compare_model(name: str, model: onnx.ModelProto, cases: Sequence[tuple[str, Mapping[str, Any]]],
                  tools: Mapping[str, ToolFn] | None = None, *, fresh: FreshProcesses | None = None) -> ModelComparison:
    """Trace ``model`` on ``cases``, run each tool (default: :data:`TOOLS`) and score it.

    With ``fresh``, each tool runs in a process of its own (see
    :class:`FreshProcesses`); without, in this one, one after the other. The
    tracing always runs here. A skipped tool gets no score; a failed one is
    scored on its empty answer.
    """
    actual = trace_cases(model, cases)
    chosen = tools if tools is not None else TOOLS
    if fresh is None:
        answers = {key: fn(model) for key, fn in chosen.items()}
    else:
        data = model.SerializeToString()
        answers = {key: fresh.run(key, fn, data) for key, fn in chosen.items()}
    scores = {key: score(a, actual) for key, a in answers.items() if a.status != "skipped"}
    return ModelComparison(name, actual, answers, scores)
