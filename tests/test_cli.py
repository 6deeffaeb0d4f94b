"""The pliant command line: show, run, ops, demo, and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from pliant.cli import main
from pliant.demo import build_demo_model


@pytest.fixture
def demo_path(tmp_path: Path) -> Path:
    path = tmp_path / "demo.onnx"
    onnx.save(build_demo_model(), str(path))
    return path


def test_show_prints_ir(demo_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(demo_path)]) == 0
    out = capsys.readouterr().out
    assert "func @main(%x: f32[T,8], %threshold: f32[])" in out and "Loop(" in out and "If(" in out


def test_run_random_with_dims_and_save(demo_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save = tmp_path / "out.npz"
    assert main(["run", str(demo_path), "--random", "--dim", "T=5", "--save", str(save)]) == 0
    out = capsys.readouterr().out
    assert "y: float32 [4]" in out and "steps: int64 []" in out
    saved = np.load(save)
    assert set(saved.files) == {"y", "states", "steps"}


def test_run_with_input_files(demo_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.ones((3, 8), np.float32))
    thr = tmp_path / "t.npy"
    np.save(thr, np.array(100.0, np.float32))
    assert main(["run", str(demo_path), "--input", f"x={x}", "--input", f"threshold={thr}"]) == 0
    assert "states: float32 [3, 16]" in capsys.readouterr().out


def test_run_errors(demo_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(demo_path), "--random"]) == 2
    assert "has symbolic dim 'T': give --dim T=N" in capsys.readouterr().err
    assert main(["run", str(demo_path)]) == 2
    assert "no value for input(s) x, threshold" in capsys.readouterr().err


def test_corrupt_file_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage\x00\x01\x02")
    proc = subprocess.run([sys.executable, "-m", "pliant.cli", "show", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("pliant: error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_ops_lists_dynamism(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops", "--family", "control"]) == 0
    out = capsys.readouterr().out
    assert "Loop" in out and "EDO" in out


def test_demo_runs_and_matches_onnxruntime(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out
    assert sum(1 for line in out.splitlines() if "onnxruntime max |diff|" in line and line.endswith(" ok")) == 4
