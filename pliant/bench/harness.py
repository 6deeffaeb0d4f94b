"""The benchmark driver: every (system, model) pair in a worker process of its own, one after another.

One system per process because thread pools of different runtimes in one
process disturb each other (both spin between calls), and because the peak
memory of a process then belongs to one system. The driver itself imports no
system; it writes a job file, starts ``python -m pliant.bench.worker`` with the
thread variables fixed, streams its progress, and collects its result file.

>>> config = BenchConfig(systems=("onnxruntime",), threads=(2,))
>>> report = run_benchmark(load_suite("benchmarks/models", ["bert_encoder"]), config)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pliant.bench.machine import describe_machine, loadavg
from pliant.bench.measure import CpuSample, TimingPolicy, cpu_sample, other_load
from pliant.bench.spec import SuiteModel

DEFAULT_SYSTEMS = ("pliant", "onnxruntime", "torch-eager", "torch-compile")
REPORT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to run and how. ``timeout_s`` bounds one worker (one system on one model, all its cases)."""

    systems: tuple[str, ...] = DEFAULT_SYSTEMS
    threads: tuple[int, ...] = (2,)
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    timeout_s: float = 300.0
    plugins: tuple[str, ...] = ()
    cases: tuple[str, ...] = ()
    title: str = "pliant benchmark"
    reference: str = "PyTorch eager (float32) outputs stored by the export script"
    rounds: int = 1


def _both_cpu() -> CpuSample:
    own = cpu_sample(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSample(own.wall, own.busy_s, own.steal_s, own.own_s + children.ru_utime + children.ru_stime)


def _job(model: SuiteModel, system: str, threads: int, cases: list[int], config: BenchConfig) -> dict[str, Any]:
    return {
        "system": system,
        "threads": threads,
        "plugins": list(config.plugins),
        "policy": config.policy.to_json(),
        "cases": cases,
        "model": {
            "spec": model.spec.to_json(),
            "onnx": str(model.onnx_path),
            "reference": None if model.reference_path is None else str(model.reference_path),
            "source": None if model.source is None else str(model.source),
        },
    }


def _worker_env(system: str, threads: int, scratch: Path) -> dict[str, str]:
    from pliant.bench.systems import System

    env = dict(os.environ)
    env.update(System.thread_env(threads))
    # NOTE: a fresh inductor cache per worker, so torch.compile's first call is a cold compile every run
    env["TORCHINDUCTOR_CACHE_DIR"] = str(scratch / "inductor")
    env["PYTHONUNBUFFERED"] = "1"
    repo_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_worker(model: SuiteModel, system: str, threads: int, cases: list[int], config: BenchConfig) -> dict[str, Any]:
    """Run one worker process to completion (or to the timeout) and return its result."""
    with tempfile.TemporaryDirectory(prefix="pliant-bench-") as tmp:
        scratch = Path(tmp)
        job_path, result_path = scratch / "job.json", scratch / "result.json"
        job_path.write_text(json.dumps(_job(model, system, threads, cases, config)))
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pliant.bench.worker", str(job_path), str(result_path)],
            env=_worker_env(system, threads, scratch), start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=config.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            # NOTE: the worker leads its own session; this ends it and any compile helpers it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        wall = time.perf_counter() - t0
        result: dict[str, Any] = {"system": system, "model": model.name, "cases": []}
        if result_path.exists():
            try:
                result = json.loads(result_path.read_text())
            except json.JSONDecodeError:
                pass
    result["threads"] = threads
    result["wall_s"] = wall
    result["exit_code"] = proc.returncode
    done = {c["index"] for c in result["cases"]}
    for i in cases:
        if i in done:
            continue
        if result.get("unavailable"):
            status, error = "unavailable", result["unavailable"]
        elif result.get("load", {}).get("ok") is False:
            status, error = "failed", "load failed: " + result["load"].get("error", "")
        elif timed_out:
            status, error = "timeout", f"the worker passed the {config.timeout_s:.0f} s limit"
        else:
            status, error = "crashed", f"the worker exited with code {proc.returncode} before this case"
        result["cases"].append({"case": model.spec.cases[i].name, "index": i, "status": status, "error": error})
    result["cases"].sort(key=lambda c: c["index"])
    return result


def median_round(found: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell from a case's rounds: the round with the median latency (the lower middle one of an even
    number), with every round's median latency and peak memory kept beside it; a round that failed or did
    not match wins over any that ran (a failure is never hidden by a good round)."""
    if len(found) == 1:
        return found[0]
    bad = [c for c in found if c.get("status") != "ok" or "latency" not in c]
    if bad:
        pick = dict(bad[0])
    else:
        ordered = sorted(found, key=lambda c: float(c["latency"]["median"]))
        pick = dict(ordered[(len(ordered) - 1) // 2])
    pick["rounds"] = [{"median": c["latency"]["median"] if "latency" in c else None,
                       "peak_rss_above_idle": c.get("peak_rss_above_idle"), "status": c.get("status")} for c in found]
    return pick


def run_benchmark(models: Sequence[SuiteModel], config: BenchConfig,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every system on every model at every thread count; returns the report (see :mod:`pliant.bench.report`)."""
    say = progress or (lambda s: print(s, file=sys.stderr, flush=True))
    runs: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    if config.rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {config.rounds}")
    # NOTE: rounds alternate the systems on one model (a, b, a, b...), so that a slow minute of a shared
    # machine falls on both rather than on one
    plan = [(t, m, s, r) for t in config.threads for m in models for r in range(config.rounds) for s in config.systems]
    machine = describe_machine()
    say(f"pliant bench: {len(models)} model(s) x {len(config.systems)} system(s) x threads {list(config.threads)} "
        f"= {len(plan)} worker processes on {machine['cpu']} ({machine['cores_usable']} cores)")
    load_start = loadavg()
    start = _both_cpu()
    t_start = time.perf_counter()
    rounds: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for k, (threads, model, system, rnd) in enumerate(plan, 1):
        indices = [i for i, c in enumerate(model.spec.cases) if not config.cases or c.name in config.cases]
        say(f"[{k}/{len(plan)}] {system} on {model.name} ({len(indices)} cases, {threads} threads"
            + (f", round {rnd + 1} of {config.rounds}" if config.rounds > 1 else "") + ")")
        run = run_worker(model, system, threads, indices, config)
        say(f"    {system} on {model.name}: {time.perf_counter() - t_start:.0f} s elapsed"
            + (f" - {run['unavailable']}" if run.get("unavailable") else ""))
        for c in run.pop("cases"):
            spec_case = model.spec.cases[c["index"]]
            rounds.setdefault((model.name, system, threads, c["case"]), []).append(
                {"model": model.name, "system": system, "threads": threads, "expected_path": spec_case.path, **c})
        run["round"] = rnd
        runs.append(run)
    cells += [median_round(found) for found in rounds.values()]
    load = other_load(start, _both_cpu())
    load["loadavg_start"] = load_start  # type: ignore[assignment]
    load["loadavg_end"] = loadavg()  # type: ignore[assignment]
    say(f"pliant bench: done in {time.perf_counter() - t_start:.0f} s; other processes kept "
        f"{load['other_cores']:.2f} cores busy on average")
    return {
        "format": REPORT_FORMAT,
        "title": config.title,
        "machine": machine,
        "settings": {
            "systems": list(config.systems),
            "threads": list(config.threads),
            "policy": config.policy.to_json(),
            "timeout_s": config.timeout_s,
            "isolation": "one worker process per (system, model); peak RSS per case above the worker's idle RSS",
            "rounds": config.rounds,
            "reference": config.reference,
            "first_call": "the first call at each case's size, in a process that ran the model's earlier cases",
        },
        "load": load,
        "models": [
            {"name": m.name, "title": m.spec.title, "dynamism": m.spec.dynamism, "notes": m.spec.notes,
             "onnx_bytes": m.onnx_path.stat().st_size if m.onnx_path.exists() else None,
             "cases": [{"name": c.name, "dims": dict(c.dims), "path": c.path} for c in m.spec.cases]}
            for m in models
        ],
        "runs": runs,
        "cells": cells,
    }
