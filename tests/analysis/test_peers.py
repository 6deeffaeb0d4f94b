"""The shape tracer and the resolved-dims metric, on small hand-built models (the suite runs in benchmarks/shapes)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import pliant
from pliant.analysis import peers
from pliant.analysis.trace import Observation, trace_values
from pliant.bench.spec import save_cases
from tests.helpers import make_model


def grow_loop_model() -> onnx.ModelProto:
    """y = x followed by M ones, built by a Loop that appends one element per iteration."""
    body = h.make_graph(
        [
            h.make_node("Constant", [], ["one"], value=h.make_tensor("one", T.FLOAT, [1], [1.0])),
            h.make_node("Concat", ["acc", "one"], ["grown"], axis=0),
            h.make_node("Shape", ["grown"], ["grown_shape"]),
            h.make_node("Identity", ["cond"], ["cond_out"]),
        ],
        "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond", T.BOOL, []),
         h.make_tensor_value_info("acc", T.FLOAT, None)],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("grown", T.FLOAT, None)],
    )
    nodes = [
        h.make_node("Constant", [], ["true"], value=h.make_tensor("true", T.BOOL, [], [True])),
        h.make_node("Loop", ["M", "true", "x"], ["y"], body=body),
        h.make_node("Relu", ["y"], ["z"]),
    ]
    return make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["N"]), h.make_tensor_value_info("M", T.INT64, [])],
                      [h.make_tensor_value_info("z", T.FLOAT, None)])


def loop_feeds(n: int, m: int) -> dict[str, np.ndarray]:
    return {"x": np.zeros(n, np.float32), "M": np.array(m, np.int64)}


def test_tracer_observes_loop_body_values_once_per_iteration() -> None:
    obs = trace_values(pliant.load(grow_loop_model()), loop_feeds(2, 3))
    assert obs["grown"] == [Observation((3,)), Observation((4,)), Observation((5,))]
    assert obs["grown_shape"] == [Observation((1,), (3,)), Observation((1,), (4,)), Observation((1,), (5,))]
    assert obs["y"] == obs["z"] == [Observation((5,))]
    assert obs["true"] == [Observation((), None)]  # bool: no value recorded
    assert "x" not in obs and "acc" not in obs  # graph and body inputs are not op results


def test_tracer_records_small_int_values_only() -> None:
    model = make_model(
        [h.make_node("Shape", ["x"], ["s"]), h.make_node("Range", ["zero", "n", "step"], ["idx"]),
         h.make_node("Cast", ["s"], ["s32"], to=T.INT32)],
        [h.make_tensor_value_info("x", T.FLOAT, ["A", "B"]), h.make_tensor_value_info("n", T.INT64, [])],
        [h.make_tensor_value_info("idx", T.INT64, None)],
        [h.make_tensor("zero", T.INT64, [], [0]), h.make_tensor("step", T.INT64, [], [1])],
    )
    obs = trace_values(pliant.load(model), {"x": np.zeros((2, 5), np.float32), "n": np.array(65, np.int64)})
    assert obs["s"] == [Observation((2,), (2, 5))] and obs["s32"] == [Observation((2,), (2, 5))]
    assert obs["idx"] == [Observation((65,), None)]  # 65 elements: data, not a shape


def test_metric_on_a_loop_checks_every_iteration() -> None:
    model = grow_loop_model()
    actual = peers.trace_cases(model, [("N=2", loop_feeds(2, 3)), ("N=4", loop_feeds(4, 3)), ("N=5", loop_feeds(5, 1))])
    assert actual.bindings == ({"N": 2}, {"N": 4}, {"N": 5})
    assert set(actual.values) == {"true", "y", "z", "one", "grown", "grown_shape", "cond_out"}
    tool = peers.ToolShapes("hand", {
        "grown": ("N",),             # wrong: it grows each iteration
        "y": ("N + 3",),             # wrong in the M=1 case
        "z": ("N + i",),             # 'i' is not an allowed symbol: unresolved
        "grown_shape": (1,),         # right
        "one": (1, 1),               # wrong rank
    }, frozenset({"N"}))
    s = peers.score(tool, actual)
    assert (s.values, s.dims) == (7, 5)
    assert (s.resolved, s.wrong, s.wrong_rank, s.unchecked) == (1, 3, 1, 0)
    assert any("grown dim 0: says 'N'" in e for e in s.examples)
    # NOTE: an iteration symbol counts as resolved for pliant, but no run binds it, so it stays unchecked
    it = peers.score(peers.ToolShapes("it", {"grown": ("N + it + 1",)}, frozenset({"N", "it"})), actual)
    assert (it.resolved, it.wrong, it.unchecked) == (1, 0, 1)


def small_shape_model() -> onnx.ModelProto:
    nodes = [
        h.make_node("Relu", ["x"], ["a"]),                      # [N, 4]
        h.make_node("Shape", ["x"], ["s"]),                     # [2]
        h.make_node("Concat", ["x", "x"], ["c"], axis=0),       # [2N, 4]
        h.make_node("Gather", ["s", "zero"], ["n"], axis=0),    # []
        h.make_node("Unsqueeze", ["n", "axes"], ["u"]),         # [1]
        h.make_node("ConstantOfShape", ["s"], ["k"]),           # [N, 4] from the value of s
        h.make_node("Reshape", ["x", "flat"], ["r"]),           # [4N]
    ]
    return make_model(
        nodes, [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
        [h.make_tensor_value_info(o, T.FLOAT, None) for o in ("a", "c", "k", "r")],
        [h.make_tensor("zero", T.INT64, [], [0]), h.make_tensor("axes", T.INT64, [1], [0]),
         h.make_tensor("flat", T.INT64, [1], [-1])],
    )


def small_cases() -> list[tuple[str, dict[str, np.ndarray]]]:
    return [(f"N={n}", {"x": np.zeros((n, 4), np.float32)}) for n in (1, 3, 8)]


def test_metric_matches_what_onnx_data_prop_resolves() -> None:
    model = small_shape_model()
    actual = peers.trace_cases(model, small_cases())
    onnx_says = peers.onnx_data_prop(model)
    assert onnx_says.status == "ok" and onnx_says.allowed_symbols == {"N"}
    # by hand: data_prop carries Shape's value into ConstantOfShape, but does no arithmetic on N
    # (2N and 4N become fresh names), so it resolves a 2, s 1, u 1, k 2, c 1 of 2, r 0 of 1: 7 of 9
    shapes = onnx_says.shapes
    assert shapes["a"] == shapes["k"] == ("N", 4) and shapes["s"] == (2,) and shapes["u"] == (1,) and shapes["n"] == ()
    for fresh in (shapes["c"][0], shapes["r"][0]) if shapes["c"] and shapes["r"] else ():
        assert isinstance(fresh, str) and peers.parse_dim(fresh, frozenset({"N"})) is None
    s = peers.score(onnx_says, actual)
    assert (s.values, s.dims, s.resolved, s.wrong) == (7, 9, 7, 0)
    assert s.percent == pytest.approx(700 / 9)


def test_ort_symbolic_writes_expressions_the_metric_reads() -> None:
    model = small_shape_model()
    ort = peers.ort_symbolic(model)
    assert ort.status == "ok", ort.note
    assert peers.parse_dim(str(ort.shapes["c"][0]), frozenset({"N"})) == peers.parse_dim("2*N", frozenset({"N"}))  # type: ignore[index]
    s = peers.score(ort, peers.trace_cases(model, small_cases()))
    assert (s.resolved, s.wrong) == (9, 0)


def test_expressions_are_checked_against_every_case() -> None:
    actual = peers.trace_cases(small_shape_model(), small_cases())
    tool = peers.ToolShapes("hand", {"c": ("N + N", "floor(8/2)"), "r": ("N * 4 - 1",), "a": ("N", "Max(4, N)"),
                                     "k": ("N/(N - 1)", 4)}, frozenset({"N"}))
    s = peers.score(tool, actual)
    # c: 2N and 4 right; r: off by one; a: N right, Max(4, N) wrong at N=8; k: undefined at N=1, wrong after
    assert (s.resolved, s.wrong) == (4, 3)
    assert any("'N * 4 - 1', ran 4 (N=1), 12 (N=3), 32 (N=8)" in e for e in s.examples)


@pytest.mark.parametrize(("text", "value"), [("P + 1", 8), ("N // 2", 3), ("floor(N/2 - 1/2) + 1", 4), ("max(P, N)", 7),
                                             ("Mod(P, 4)", 3), ("0.25*N", 1.75)])
def test_parse_dim_reads_both_printings(text: str, value: float) -> None:
    expr = peers.parse_dim(text, frozenset({"P", "N"}))
    assert expr is not None and float(expr.subs({sym: 7 for sym in expr.free_symbols})) == value


@pytest.mark.parametrize("text", ["unk__0", "Relu/0/x_dim_2", "S + 1", "N + (", "exp(N)"])
def test_parse_dim_rejects_other_symbols_and_bad_text(text: str) -> None:
    assert peers.parse_dim(text, frozenset({"N"})) is None


def test_pliant_column_is_skipped_or_scored() -> None:
    answer = peers.pliant_rdp(small_shape_model())
    if answer.status == "skipped":
        assert "analyze_json" in answer.note
    else:  # RDP exists: its answer is scored like the others and must never be wrong
        assert peers.score(answer, peers.trace_cases(small_shape_model(), small_cases())).wrong == 0


def test_pliant_json_is_read_as_the_issue_specifies(monkeypatch: pytest.MonkeyPatch) -> None:
    def analyze_json(module: pliant.Module) -> dict[str, object]:
        assert isinstance(module, pliant.Module)
        return {"values": {"a": {"shape": ["N", 4], "dtype": "float32", "class": "ISDOS"},
                           "c": {"shape": ["2 * N", "?"]}, "r": {"shape": None}, "k": {"shape": ["N + it", 4]}},
                "summary": {"input_symbols": ["N"], "iteration_symbols": ["it"]}}

    fake = ModuleType("pliant.analysis.rdp")
    fake.analyze_json = analyze_json  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pliant.analysis.rdp", fake)
    answer = peers.pliant_rdp(small_shape_model())
    assert answer.status == "ok" and answer.allowed_symbols == {"N", "it"}
    assert answer.shapes == {"a": ("N", 4), "c": ("2 * N", None), "r": None, "k": ("N + it", 4)}
    s = peers.score(answer, peers.trace_cases(small_shape_model(), small_cases()))
    assert (s.resolved, s.wrong, s.unchecked) == (5, 0, 1)


def _load_script() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "shapes" / "compare.py"
    spec = importlib.util.spec_from_file_location("shapes_compare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_script_on_a_model_with_stored_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_path = tmp_path / "small.onnx"
    onnx.save(small_shape_model(), str(model_path))
    save_cases(tmp_path / "small.npz", [f for _, f in small_cases()], [{} for _ in small_cases()])
    script = _load_script()
    assert script.main([str(model_path), "--out", str(tmp_path / "out" / "shapes")]) == 0
    text = capsys.readouterr().out
    assert "| small | 3 | 7 | 9 | 77.8% | 100.0% |" in text
    report = json.loads((tmp_path / "out" / "shapes.json").read_text())
    assert report["models"][0]["tools"]["onnx-data_prop"]["resolved"] == 7
    assert (tmp_path / "out" / "shapes.md").read_text().strip() == text.strip()


# -- each analysis in a fresh process (the tools below run in the child: module level, so they pickle) --------------


def raising_tool(model: onnx.ModelProto) -> peers.ToolShapes:
    raise ValueError(f"no shapes for {model.graph.name}\n(second line)")


def dying_tool(model: onnx.ModelProto) -> peers.ToolShapes:
    os._exit(3)


def sympy_tool(model: onnx.ModelProto) -> peers.ToolShapes:
    import sympy

    n = sympy.Symbol("N", integer=True)
    not_plain: dict[str, Any] = {"c": (2 * n, sympy.Integer(4)), "s": (np.int64(2),)}  # as a tool might build them
    return peers.ToolShapes("sympy", not_plain, frozenset({n}), seconds=0.5)


def process_id_tool(model: onnx.ModelProto) -> peers.ToolShapes:
    return peers.ToolShapes("pid", {}, frozenset(), note=str(os.getpid()))


def test_fresh_processes_give_the_in_process_answers() -> None:
    model = small_shape_model()
    with peers.FreshProcesses() as fresh:
        for key in ("onnx-data_prop", "ort-symbolic"):
            here, there = peers.TOOLS[key](model), fresh.run(key, peers.TOOLS[key], model)
            assert (there.tool, there.status, there.shapes, there.allowed_symbols) == \
                (here.tool, here.status, here.shapes, here.allowed_symbols)
            assert there.seconds > 0.0
        pids = {fresh.run("pid", process_id_tool, model).note for _ in range(2)}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # one new process per call


def test_fresh_process_sends_back_plain_data() -> None:
    answer = peers.run_fresh("sympy", sympy_tool, small_shape_model())
    assert answer.shapes == {"c": ("2*N", 4), "s": (2,)} and answer.allowed_symbols == {"N"}
    assert answer.seconds == 0.5  # the tool's own measurement, not the process's lifetime
    s = peers.score(answer, peers.trace_cases(small_shape_model(), small_cases()))
    assert (s.resolved, s.wrong) == (3, 0)


def test_a_tool_that_raises_or_dies_in_its_process_is_failed_with_the_reason() -> None:
    model = small_shape_model()
    with peers.FreshProcesses() as fresh:
        raised = fresh.run("raises", raising_tool, model)
        died = fresh.run("dies", dying_tool, model)
        after = fresh.run("onnx-data_prop", peers.onnx_data_prop, model)  # a dead process leaves no broken pool behind
    assert (raised.tool, raised.status, raised.note) == ("raises", "failed", "ValueError: no shapes for g (second line)")
    assert raised.allowed_symbols == {"N"}
    assert died.status == "failed" and died.note.startswith("BrokenProcessPool: ")
    assert after.status == "ok" and after.shapes["s"] == (2,)


def test_compare_script_notes_why_a_tool_failed() -> None:
    script = _load_script()
    with peers.FreshProcesses() as fresh:
        result = peers.compare_model("small", small_shape_model(), small_cases(),
                                     {"onnx-data_prop": raising_tool, "ort-symbolic": peers.ort_symbolic}, fresh=fresh)
    report = script.to_json([result], {"date": "today", "cpu": "cpu", "cores_usable": 1, "os": "os", "versions": {}},
                            False)
    text = script.render_markdown(report, [result])
    assert "| small | 3 | 7 | 9 | 0.0% ✗ | 100.0% | n/a |" in text
    assert "- small, onnx data_prop: failed: ValueError: no shapes for g (second line)" in text
    assert "in a fresh process of its own" in text and "| small | " in text.split("inside its process")[1]
    assert report["models"][0]["tools"]["onnx-data_prop"]["note"].startswith("ValueError")
