"""Benchmarking pliant against ONNX Runtime and PyTorch on dynamic models.

The library behind ``pliant bench``: suite specs (:mod:`.spec`), the systems
(:mod:`.systems`), one worker process per system and model (:mod:`.worker`),
the driver (:mod:`.harness`) and the report (:mod:`.report`, :mod:`.plot`).

>>> from pliant.bench import BenchConfig, TimingPolicy, load_suite, run_benchmark, write_report
>>> models = load_suite("benchmarks/models", ["bert_encoder"])                   # doctest: +SKIP
>>> report = run_benchmark(models, BenchConfig(systems=("pliant", "onnxruntime")))  # doctest: +SKIP
>>> write_report(report, "benchmarks/results", "bert")                           # doctest: +SKIP
"""

from pliant.bench.harness import BenchConfig, run_benchmark
from pliant.bench.measure import TimingPolicy
from pliant.bench.report import render_markdown, write_report
from pliant.bench.spec import BenchError, Case, InputSpec, ModelSpec, SuiteError, SuiteModel, load_suite
from pliant.bench.systems import System, register_system

__all__ = [
    "BenchConfig",
    "BenchError",
    "Case",
    "InputSpec",
    "ModelSpec",
    "SuiteError",
    "SuiteModel",
    "System",
    "TimingPolicy",
    "load_suite",
    "register_system",
    "render_markdown",
    "run_benchmark",
    "write_report",
]
