"""Output comparison, statistics, the Markdown report and the PNG plot, without running any system."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pliant.bench.compare import compare_outputs
from pliant.bench.measure import LatencyStats, TimingPolicy, time_calls
from pliant.bench.plot import _FONT, Canvas, plot_ratios
from pliant.bench.report import fastest_round_s, peak_memory, ratio_to, render_markdown
from pliant.bench.spec import Case, InputSpec, ModelSpec, SuiteError


def test_compare_flags_shape_value_and_nan_differences() -> None:
    ref = {"y": np.array([1.0, 2.0], np.float32), "n": np.array(3), "boxes": np.zeros((3, 4), np.float32)}
    ok = compare_outputs({"y": ref["y"] + 1e-6, "n": np.array(3), "boxes": np.zeros((3, 4))}, ref, atol=1e-4, rtol=1e-3)
    assert ok.ok and ok.max_abs < 1e-5
    bad = compare_outputs({"y": np.array([1.0, np.nan]), "n": np.array(4), "boxes": np.zeros((2, 4))}, ref, atol=1e-4, rtol=1e-3)
    assert not bad.ok and math.isinf(bad.max_abs)
    problems = bad.to_json()["mismatches"]
    assert "NaN" in problems["y"] and "1 of 1 values differ" in problems["n"] and "shape [2, 4]" in problems["boxes"]
    missing = compare_outputs({}, {"y": ref["y"]}, atol=0, rtol=0)
    assert missing.summary() == "y: missing from the outputs"


def test_relative_tolerance_scales_with_the_output() -> None:
    ref = {"y": np.array([1000.0, 0.0])}
    assert compare_outputs({"y": np.array([1000.5, 0.0])}, ref, atol=1e-4, rtol=1e-3).ok
    assert not compare_outputs({"y": np.array([1002.0, 0.0])}, ref, atol=1e-4, rtol=1e-3).ok


def test_latency_stats_and_timing_policy() -> None:
    s = LatencyStats.of([3.0, 1.0, 2.0, 10.0])
    assert (s.n, s.median, s.min, s.max) == (4, 2.5, 1.0, 10.0)
    assert s.p10 == pytest.approx(1.3)
    calls = []
    stats, warm = time_calls(lambda: calls.append(1), TimingPolicy(warmup_s=0, min_warmup=2, min_reps=5, min_time_s=0, max_time_s=1, max_reps=7))
    assert warm == 2 and stats.n == 5 and len(calls) == 7


def test_spec_round_trips_and_names_missing_dims() -> None:
    spec = ModelSpec("m", "t", "d", (InputSpec("x", "float32", (1, "L")),), ("y",), (Case("L=2", {"L": 2}, "t", "p"),),
                     required_ops={"If": 2}, path_output="y")
    assert ModelSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SuiteError, match="dim 'L' but no size"):
        spec.inputs[0].concrete_shape({})
    with pytest.raises(SuiteError, match="no case 'L=3'"):
        spec.case("L=3")


def test_every_glyph_is_five_by_seven() -> None:
    for ch, rows in _FONT.items():
        assert len(rows) == 7 and all(len(r) == 5 and set(r) <= {".", "#"} for r in rows), ch


def synthetic_report() -> dict[str, Any]:
    def cell(system: str, case: str, median: float | None, status: str = "ok", **extra: Any) -> dict[str, Any]:
        c: dict[str, Any] = {"model": "m", "case": case, "system": system, "threads": 2, "status": status, **extra}
        if median is not None:
            c.update(latency={"n": 10, "median": median, "mean": median, "min": median * 0.9, "max": median * 1.2,
                              "p10": median, "p90": median, "stdev": 0.0},
                     first_call_s=median * 3, peak_rss_above_idle=5e6, allocator_peak=None,
                     diff={"ok": status == "ok", "max_abs": 1e-6 if status == "ok" else 0.5, "max_rel": 0.0,
                           "mismatches": {} if status == "ok" else {"y": "max abs diff 0.5 > 0.001"}},
                     cpu={"other_cores": 0.1, "steal_cores": 0.0, "wall_s": 1.0})
        return c

    return {
        "title": "t",
        "machine": {"date": "today", "cpu": "cpu", "cores": 2, "cores_usable": 2, "simd": [], "virtualized": False,
                    "memory_gib": 1, "os": "os", "revision": "abc", "versions": {"pliant": "0.1.0"}},
        "settings": {"systems": ["pliant", "onnxruntime", "torch-compile"], "threads": [2], "isolation": "one process",
                     "reference": "ref", "policy": TimingPolicy().to_json()},
        "load": {"other_cores": 0.9, "steal_cores": 0.0, "loadavg_start": [1, 1, 1], "loadavg_end": [1, 1, 1]},
        "models": [{"name": "m", "title": "M", "dynamism": "L", "notes": "", "onnx_bytes": 1000,
                    "cases": [{"name": "L=1", "dims": {}, "path": ""}, {"name": "L=2", "dims": {}, "path": ""}]}],
        "runs": [{"system": "pliant", "model": "m", "threads": 2, "load": {"ok": True, "seconds": 0.1},
                  "versions": {"pliant": "0.1.0"}, "settings": {"threads": 2}, "notes": {}}],
        "cells": [
            cell("pliant", "L=1", 0.004), cell("pliant", "L=2", 0.008, status="mismatch"),
            cell("onnxruntime", "L=1", 0.001), cell("onnxruntime", "L=2", 0.002),
            cell("torch-compile", "L=1", None, status="failed", error="Unsupported: boom"),
            cell("torch-compile", "L=2", None, status="timeout", error="limit"),
        ],
    }


def test_markdown_shows_ratios_failures_mismatches_and_load() -> None:
    rep = synthetic_report()
    assert ratio_to(rep, "onnxruntime")[(2, "m", "L=1", "pliant")] == pytest.approx(4.0)
    md = render_markdown(rep)
    assert "| m | L=1 |  | 4.00 [3.60-4.80] | 1.00 [0.900-1.20] | failed |" in md
    assert "| m | L=2 | 4.00 | timeout |" in md
    assert "8.00 [7.20-9.60] ✗" in md
    assert "**torch-compile** failed (1 cells: m L=1): Unsupported: boom" in md
    assert "output mismatch on m L=2" in md
    assert "0.90 cores busy on average" in md and "ratios measured in this same run" in md


def test_rounds_add_the_ratio_of_each_systems_fastest_round() -> None:
    """With rounds, the geometric mean is given again over each system's fastest round: pliant's median round
    4 ms and fastest 2 ms against onnxruntime's 1 ms and 0.5 ms (L=1): 4.00 and 4.00; at L=2 a slow spell on
    onnxruntime's median round only: 0.5 and 1.0."""
    rep = synthetic_report()
    rep["settings"]["rounds"] = 3
    rounds = {("pliant", "L=1"): [0.004, 0.002, 0.005], ("onnxruntime", "L=1"): [0.001, 0.0005, 0.001],
              ("pliant", "L=2"): [0.001, 0.001, 0.001], ("onnxruntime", "L=2"): [0.002, 0.001, 0.002]}
    for c in rep["cells"]:
        if (c["system"], c["case"]) in rounds:
            c["status"] = "ok"
            c["latency"]["median"] = sorted(rounds[(c["system"], c["case"])])[1]
            c["rounds"] = [{"median": m, "status": "ok"} for m in rounds[(c["system"], c["case"])]]
    c = rep["cells"][0]
    assert fastest_round_s(c) == pytest.approx(0.002)
    c["rounds"][1]["status"] = "failed"  # a failed round is no figure
    assert fastest_round_s(c) == pytest.approx(0.004)
    c["rounds"][1]["status"] = "ok"
    md = render_markdown(rep)
    assert "Geometric mean of the ratio to onnxruntime, per system over the cases it ran: pliant 1.41 (2 cases)" in md
    assert "The same over each system's fastest round, per system over the cases it ran: pliant 2.00 (2 cases)" in md
    rep["settings"]["rounds"] = 1
    assert "fastest round" not in render_markdown(rep)


def test_memory_ratios_leave_out_cells_that_did_not_run_ok() -> None:
    rep = synthetic_report()
    for c in rep["cells"]:
        if c["system"] == "onnxruntime":
            c["peak_rss_above_idle"] = {"L=1": 20e6, "L=2": 8e6}[c["case"]]
    rep["cells"][0]["peak_rss_above_idle"] = 4e6
    mem = ratio_to(rep, "onnxruntime", peak_memory)
    assert mem[(2, "m", "L=1", "pliant")] == pytest.approx(0.2)
    assert (2, "m", "L=2", "pliant") not in mem  # the mismatch's memory is no figure
    assert "Geometric mean of the peak memory's ratio to onnxruntime, per system over the cases it ran: " \
           "pliant 0.20 (1 cases)" in render_markdown(rep)


def test_plot_is_written_even_when_a_system_failed_everywhere(tmp_path: Path) -> None:
    plot_ratios(synthetic_report(), tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 500
    cv = Canvas(30, 10)
    cv.text(0, 0, "Ab1", scale=1)
    assert any(b != 255 for b in cv.pixels)
