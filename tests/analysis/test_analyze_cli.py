"""`pliant analyze`: the report, its JSON form, the peak-memory estimate, the comparison with the peer
tools on the test models, and the error paths."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnx
import pytest

from pliant.analysis import peers
from pliant.cli import main
from pliant.interpreter import Interpreter, check_feeds
from pliant.ir.core import Op, Value
from tests.analysis import models as M

GPT = os.path.join(M.DATA, "gpt_step.onnx")


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["analyze", *args, "--json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_json_gives_each_value_its_shape_dtype_and_class(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, GPT)
    values, summary = doc["values"], doc["summary"]
    assert values["present_k"] == {"shape": ["B", 4, "P + S", 8], "dtype": "float32", "class": "ISDOS"}
    assert values["ids"]["class"] == "input"
    assert summary["input_symbols"] == ["B", "P", "S"]
    assert summary["dims"]["unknown"] == 0 and summary["dims"]["unknown rank"] == 0
    assert sum(summary["dim_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert summary["op_classes"]["ISVDOS"] > 0 and summary["conflicts"] == []
    # every value the model names is there
    model = onnx.load(GPT)
    named = {o for n in model.graph.node for o in n.output if o}
    assert named <= set(values)


def test_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", os.path.join(M.SUITE, "moe_transformer.onnx")]) == 0
    out = capsys.readouterr().out
    assert "op classes: EDO " in out and "input symbols: L" in out
    assert "run-time size _nonzero" in out and "NonZero node" in out
    assert "peak activation memory: " in out
    assert "more (use --all or --json)" in out


class _LiveAtOp(Interpreter):
    """Records, for each op run, the bytes of its tensor inputs and outputs: all live while it runs."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.most = 0

    def _run_op(self, op: Op, env: dict[Value, Any]) -> None:
        super()._run_op(op, env)
        if op.name == "Constant":
            return
        seen = [env[v] for v in {*(v for v in op.operands if v is not None), *op.results}
                if v is not None and v in env and not (v.defining_op is not None and v.defining_op.name == "Constant")]
        self.most = max(self.most, sum(x.nbytes for x in seen if isinstance(x, np.ndarray)))


def test_peak_memory_is_at_least_what_any_op_holds_live(capsys: pytest.CaptureFixture[str]) -> None:
    import pliant

    module = pliant.load(GPT)
    for feeds in M.gpt_step_feeds():
        b, s = feeds["ids"].shape
        p = feeds["past_k"].shape[2]
        doc = _json(capsys, GPT, "--dim", f"B={b}", "--dim", f"S={s}", "--dim", f"P={p}")
        planned = doc["summary"]["peak_memory_at"]["bytes"]
        run = _LiveAtOp(module)
        run.run_function(module.entry, check_feeds(module.entry, feeds))
        assert planned >= run.most > 0
        # and it is not wildly above: the whole set of activations of the run bounds it
        assert planned <= 4 * sum(x.nbytes for x in feeds.values()) + 200_000


@pytest.mark.parametrize(("name", "strictly_more"), [
    ("loop_grow", True), ("if_disagree", False), ("nonzero", False), ("encoder", False), ("gpt_step", False)])
def test_pliant_resolves_at_least_as_many_dims_as_the_peers(name: str, strictly_more: bool) -> None:
    if name in ("encoder", "gpt_step"):
        model = onnx.load(os.path.join(M.DATA, f"{name}.onnx"))
    else:
        model = getattr(M, name)()
    feeds = getattr(M, f"{name}_feeds")()
    actual = peers.trace_cases(model, [(str(i), f) for i, f in enumerate(feeds)])
    scores = {tool: peers.score(fn(model), actual) for tool, fn in
              [("onnx", peers.onnx_data_prop), ("ort", peers.ort_symbolic), ("pliant", peers.pliant_rdp)]}
    best_peer = max(scores["onnx"].resolved, scores["ort"].resolved)
    assert scores["pliant"].wrong == 0
    assert scores["pliant"].resolved >= best_peer, scores
    if strictly_more:
        assert scores["pliant"].resolved > best_peer, scores


def test_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "no/such/model.onnx"]) == 2
    assert "no such file: 'no/such/model.onnx'" in capsys.readouterr().err
    assert main(["analyze", GPT, "--dim", "Q=3"]) == 2
    assert "--dim Q: the model has no input symbol 'Q' (its symbols: B, P, S)" in capsys.readouterr().err
    assert main(["analyze", GPT, "--dim", "B=x"]) == 2
    assert "bad --dim B=x: the size must be an integer" in capsys.readouterr().err
    assert main(["analyze", GPT, "--dim", "B=2"]) == 2
    assert "needs a size for" in capsys.readouterr().err
