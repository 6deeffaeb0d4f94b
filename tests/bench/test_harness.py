"""The harness on a tiny suite: it writes the table, the JSON and the plot, records failures and goes on,
and flags outputs that differ from the reference."""

from __future__ import annotations

import argparse
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pliant.bench import BenchConfig, TimingPolicy, load_suite, run_benchmark, write_report
from pliant.bench.cli import add_bench_command
from pliant.bench.cli import main as bench_main
from pliant.bench.spec import SUITE_FILE, SUITE_FORMAT, Case, InputSpec, ModelSpec, save_cases

pytest.importorskip("onnxruntime")

W = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)


def tiny_model(op: str = "Relu", domain: str = "") -> onnx.ModelProto:
    """y = op(x @ W) with a symbolic batch N."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node(op, ["h"], ["y"], domain=domain)],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(W, "W")],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def write_suite(root: Path, models: dict[str, tuple[onnx.ModelProto, float]]) -> Path:
    """A suite of tiny models; the float is added to the stored reference (a planted mismatch when not 0)."""
    entries = []
    for name, (proto, offset) in models.items():
        spec = ModelSpec(name=name, title=f"tiny {name}", dynamism="batch N",
                         inputs=(InputSpec("x", "float32", ("N", 8)),), outputs=("y",),
                         cases=(Case("N=1", {"N": 1}), Case("N=16", {"N": 16})))
        onnx.save(proto, root / f"{name}.onnx")
        feeds = [{"x": np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)} for n in (1, 16)]
        refs = [{"y": np.maximum(f["x"] @ W, 0) + offset} for f in feeds]
        save_cases(root / f"{name}.npz", feeds, refs)
        entries.append({"spec": spec.to_json(), "files": {"onnx": f"{name}.onnx", "reference": f"{name}.npz", "source": f"{name}.py"}})
    (root / SUITE_FILE).write_text(json.dumps({"format": SUITE_FORMAT, "models": entries}))
    return root


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, size, idat = 8, (0, 0), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height = size
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    return width, height


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    root = write_suite(tmp_path_factory.mktemp("suite"), {
        "tiny": (tiny_model(), 0.0),
        "tiny_planted": (tiny_model(), 0.5),
        "tiny_unknown_op": (tiny_model("Frobnicate", "com.example"), 0.0),
    })
    config = BenchConfig(systems=("pliant", "onnxruntime"), threads=(1,), policy=TimingPolicy.quick(), timeout_s=120)
    rep = run_benchmark(load_suite(root), config, progress=lambda s: None)
    out = tmp_path_factory.mktemp("results")
    write_report(rep, out, "tiny")
    return rep, out


def cells(rep: dict[str, Any], model: str, system: str) -> list[dict[str, Any]]:
    return [c for c in rep["cells"] if c["model"] == model and c["system"] == system]


def test_measures_every_cell(report: tuple[dict[str, Any], Path]) -> None:
    rep, _ = report
    for system in ("pliant", "onnxruntime"):
        got = cells(rep, "tiny", system)
        assert [c["case"] for c in got] == ["N=1", "N=16"]
        for c in got:
            assert c["status"] == "ok", c
            lat = c["latency"]
            assert lat["n"] >= 3 and 0 < lat["min"] <= lat["median"] <= lat["max"]
            assert c["first_call_s"] > 0
            assert c["diff"]["ok"] and c["diff"]["max_abs"] < 1e-4
            assert c["cpu"]["wall_s"] > 0
    assert rep["machine"]["cores"] and rep["machine"]["versions"]["onnxruntime"]
    assert {r["threads"] for r in rep["runs"]} == {1}


def test_flags_a_planted_mismatch(report: tuple[dict[str, Any], Path]) -> None:
    rep, out = report
    for system in ("pliant", "onnxruntime"):
        for c in cells(rep, "tiny_planted", system):
            assert c["status"] == "mismatch"
            assert not c["diff"]["ok"] and c["diff"]["max_abs"] == pytest.approx(0.5, abs=1e-4)
    md = (out / "tiny.md").read_text()
    assert "✗" in md and "output mismatch on tiny_planted" in md


def test_records_a_failure_and_goes_on(report: tuple[dict[str, Any], Path]) -> None:
    rep, out = report
    for system in ("pliant", "onnxruntime"):
        got = cells(rep, "tiny_unknown_op", system)
        assert len(got) == 2 and all(c["status"] == "failed" for c in got)
        assert all("Frobnicate" in c["error"] for c in got), got
    md = (out / "tiny.md").read_text()
    assert "**pliant** failed" in md


def test_writes_table_json_and_plot(report: tuple[dict[str, Any], Path]) -> None:
    rep, out = report
    md = (out / "tiny.md").read_text()
    assert "## Latency (ms), 1 thread" in md
    assert "| tiny | N=16 |" in md
    assert "Load from other processes" in md
    for heading in ("relative to onnxruntime", "First call", "Peak memory", "Output difference"):
        assert heading in md
    data = json.loads((out / "tiny.json").read_text())
    assert data["cells"] == rep["cells"] and data["settings"]["threads"] == [1]
    width, height = png_size((out / "tiny.png").read_bytes())
    assert width > 400 and height > 100


def test_peak_memory_is_measured_per_case(report: tuple[dict[str, Any], Path]) -> None:
    rep, _ = report
    for c in cells(rep, "tiny", "pliant"):
        assert c["peak_rss_above_idle"] is not None and c["peak_rss_above_idle"] >= 0
        assert c["case_data_rss"] >= 0  # what reading the case's data added, left out of the peak
        assert c["allocator_peak"] is not None and c["allocator_peak"] > 0


def test_bench_command_on_a_user_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(tiny_model(), tmp_path / "mine.onnx")
    code = bench_main([str(tmp_path / "mine.onnx"), "--dim", "N=2,5", "--systems", "onnxruntime", "--quick",
                       "--threads", "1", "--out", str(tmp_path / "out")])
    assert code == 0
    rep = json.loads((tmp_path / "out" / "mine.json").read_text())
    assert [c["case"] for c in rep["cells"]] == ["N=2", "N=5"]
    assert all(c["status"] == "ok" for c in rep["cells"])
    assert (tmp_path / "out" / "mine.png").is_file() and (tmp_path / "out" / "mine.md").is_file()


def test_bench_command_asks_for_symbolic_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(tiny_model(), tmp_path / "mine.onnx")
    assert bench_main([str(tmp_path / "mine.onnx"), "--systems", "onnxruntime", "--out", str(tmp_path)]) == 2
    assert "--dim N=N[,N...]" in capsys.readouterr().err


def test_add_bench_command_registers_bench() -> None:
    parser = argparse.ArgumentParser(prog="pliant")
    add_bench_command(parser.add_subparsers())
    args = parser.parse_args(["bench", "--models", "bert_encoder", "--threads", "1,2"])
    assert args.models == "bert_encoder" and args.threads == "1,2" and callable(args.func)


TORCH_SOURCE = '''
import numpy as np
import torch

W = torch.from_numpy(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))


class Tiny(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ W)


def build() -> torch.nn.Module:
    return Tiny()
'''


def test_torch_eager_runs_suite_sources_and_skips_models_without_one(tmp_path: Path) -> None:
    root = write_suite(tmp_path, {"tiny": (tiny_model(), 0.0), "tiny_without_source": (tiny_model(), 0.0)})
    (root / "tiny.py").write_text(TORCH_SOURCE)
    config = BenchConfig(systems=("torch-eager",), threads=(1,), policy=TimingPolicy.quick(), timeout_s=120)
    rep = run_benchmark(load_suite(root), config, progress=lambda s: None)
    without = cells(rep, "tiny_without_source", "torch-eager")
    assert all(c["status"] == "unavailable" for c in without)
    with_source = cells(rep, "tiny", "torch-eager")
    try:
        import torch  # noqa: F401
    except ImportError:
        assert all(c["status"] == "unavailable" and "torch" in c["error"] for c in with_source)
    else:
        assert all(c["status"] == "ok" for c in with_source), with_source


def test_a_worker_past_its_time_limit_is_stopped_and_recorded(tmp_path: Path) -> None:
    root = write_suite(tmp_path, {"tiny": (tiny_model(), 0.0)})
    config = BenchConfig(systems=("onnxruntime",), threads=(1,), policy=TimingPolicy.quick(), timeout_s=0.05)
    rep = run_benchmark(load_suite(root), config, progress=lambda s: None)
    assert [c["status"] for c in rep["cells"]] == ["timeout", "timeout"]
    assert "limit" in rep["cells"][0]["error"]


def test_render_rewrites_markdown_and_plot_from_json(report: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    _, out = report
    assert bench_main(["--render", str(out / "tiny.json"), "--out", str(tmp_path), "--name", "again"]) == 0
    assert (tmp_path / "again.md").read_text() == (out / "tiny.md").read_text()
    assert (tmp_path / "again.png").read_bytes() == (out / "tiny.png").read_bytes()


def test_rounds_alternate_the_systems_and_report_the_median_round(tmp_path: Path) -> None:
    root = write_suite(tmp_path, {"tiny": (tiny_model(), 0.0)})
    order: list[str] = []
    config = BenchConfig(systems=("pliant", "onnxruntime"), threads=(1,), policy=TimingPolicy.quick(), timeout_s=120,
                         rounds=3)
    rep = run_benchmark(load_suite(root), config, progress=lambda s: order.append(s.split("] ")[1].split(" on ")[0])
                        if s.startswith("[") else None)
    assert order == ["pliant", "onnxruntime"] * 3
    assert rep["settings"]["rounds"] == 3 and len(rep["runs"]) == 6
    for c in rep["cells"]:
        medians = sorted(r["median"] for r in c["rounds"])
        assert len(medians) == 3 and c["latency"]["median"] == medians[1] and c["status"] == "ok"
    assert len(rep["cells"]) == 4


def test_a_failed_round_is_never_hidden_by_a_good_one() -> None:
    from pliant.bench.harness import median_round

    ok = [{"status": "ok", "latency": {"median": m}} for m in (3.0, 1.0, 2.0, 4.0)]
    assert median_round(ok)["latency"]["median"] == 2.0  # NOTE: the lower middle of an even number
    failed = {"status": "failed", "error": "boom"}
    assert median_round([*ok[:2], failed])["status"] == "failed"
    mismatch = {"status": "mismatch", "latency": {"median": 1.5}}
    assert median_round([ok[0], mismatch, ok[1]])["status"] == "mismatch"


def test_bench_command_rejects_zero_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--rounds", "0", "--quick"]) != 0
    assert "--rounds must be at least 1" in capsys.readouterr().err
