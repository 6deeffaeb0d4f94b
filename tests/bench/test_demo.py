"""The suite demo runs pliant's interpreter on three dynamic models and agrees with PyTorch."""

from __future__ import annotations

from pliant.bench.demo import run_suite_demo


def test_suite_demo_matches_pytorch() -> None:
    lines: list[str] = []
    assert run_suite_demo(say=lines.append) == 0
    assert any("steps = 40" in line for line in lines)
    assert sum("vs PyTorch: ok" in line for line in lines) == 10
