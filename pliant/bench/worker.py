"""One benchmark worker: one system, one model, its cases, in a process of its own.

    python -m pliant.bench.worker JOB.json RESULT.json

The driver (:mod:`pliant.bench.harness`) writes the job and starts the process
with the thread variables set; the worker records its idle memory, loads the
model, and for each case measures the first call, checks the outputs against
the reference, warms up and times. The result file is rewritten after every
case, so a worker killed for taking too long still leaves what it measured.
A failure (an op pliant does not define yet, a compile error) is recorded for
its case, and the worker goes on with the next.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from pliant.bench.compare import compare_outputs
from pliant.bench.measure import (
    TimingPolicy,
    cpu_sample,
    other_load,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    time_calls,
)
from pliant.bench.spec import ModelSpec, SuiteModel, load_case
from pliant.bench.systems import System, SystemUnavailable, get_system, import_plugins
from pliant.runtime.heap import release_free_memory

MAX_MESSAGE = 400


def describe_error(e: BaseException) -> str:
    """One line: the exception's type and its message, lines joined, cut to a few hundred characters."""
    msg = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
    text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def path_of(spec: ModelSpec, outputs: Any) -> str:
    if spec.path_output is None or spec.path_output not in outputs:
        return ""
    return f"{spec.path_output}={np.asarray(outputs[spec.path_output]).tolist()}"


def model_from_job(job: dict[str, Any]) -> SuiteModel:
    m = job["model"]
    return SuiteModel(
        ModelSpec.from_json(m["spec"]),
        Path(m["onnx"]),
        Path(m["reference"]) if m.get("reference") else None,
        Path(m["source"]) if m.get("source") else None,
    )


def log(system: str, text: str) -> None:
    print(f"    [{system}] {text}", file=sys.stderr, flush=True)


def run_job(job: dict[str, Any], result_path: Path) -> dict[str, Any]:
    import_plugins(job.get("plugins", []))
    model = model_from_job(job)
    spec = model.spec
    policy = TimingPolicy.from_json(job["policy"])
    result: dict[str, Any] = {"system": job["system"], "model": spec.name, "cases": []}

    def save() -> None:
        result_path.write_text(json.dumps(result, indent=1))

    try:
        system: System = get_system(job["system"])(int(job["threads"]))
        system.import_runtime()
        result["versions"] = system.versions()
        result["settings"] = system.settings()
    except (SystemUnavailable, ImportError) as e:
        result["unavailable"] = describe_error(e)
        save()
        return result
    gc.collect()
    baseline = rss_bytes()
    result["idle_rss"] = baseline
    result["peak_reset"] = reset_peak_rss()

    before = cpu_sample(session=True)
    t0 = time.perf_counter()
    try:
        runner = system.load(model)
        result["load"] = {"ok": True, "seconds": time.perf_counter() - t0, "rss_above_idle": _above(rss_bytes(), baseline)}
    except SystemUnavailable as e:
        result["unavailable"] = describe_error(e)
        save()
        return result
    except Exception as e:  # noqa: BLE001  (any failure of the system under test is a result)
        result["load"] = {"ok": False, "seconds": time.perf_counter() - t0, "error": describe_error(e)}
        log(system.name, f"{spec.name}: load failed: {describe_error(e)}")
        traceback.print_exc(limit=-3, file=sys.stderr)
        save()
        return result
    result["load"]["cpu"] = other_load(before, cpu_sample(session=True))
    save()

    for index in job["cases"]:
        case = spec.cases[index]
        cell: dict[str, Any] = {"case": case.name, "index": index, "dims": dict(case.dims)}
        result["cases"].append(cell)
        feeds = reference = None  # NOTE: the previous case's data, freed before this case's is measured
        gc.collect()
        release_free_memory()
        before_case = rss_bytes()
        try:
            if model.reference_path is None:
                raise SystemUnavailable(f"'{spec.name}' has no feeds file")
            feeds, reference = load_case(model.reference_path, index, spec)
        except (SystemUnavailable, OSError, ValueError) as e:
            cell["status"], cell["error"] = "failed", f"cannot read the case's inputs: {describe_error(e)}"
            save()
            continue
        gc.collect()
        # NOTE: the case's inputs and reference outputs are the harness's memory, the same for every system:
        # the system's peak is measured above them
        case_data = _above(rss_bytes(), before_case) or 0
        cell["case_data_rss"] = case_data
        reset_peak_rss()
        before = cpu_sample(session=True)
        try:
            t0 = time.perf_counter()
            outs = runner(feeds)
            cell["first_call_s"] = time.perf_counter() - t0
            first_peak = peak_rss_bytes()
            # NOTE: the comparison's temporaries (float64 copies of large outputs) are the harness's too: the peak
            # is that of the first call and of the timed calls, without them
            diff = compare_outputs(outs, reference, atol=spec.atol, rtol=spec.rtol)
            cell["diff"] = diff.to_json()
            cell["path"] = path_of(spec, outs)
            del outs
            gc.collect()
            release_free_memory()
            reset_peak_rss()
            stats, warm = time_calls(lambda: runner(feeds), policy)
            cell["latency"] = stats.to_json()
            cell["warmup_calls"] = warm
            peaks = [p for p in (first_peak, peak_rss_bytes()) if p is not None]
            cell["peak_rss_above_idle"] = _above(max(peaks), baseline + case_data) if peaks and baseline else None
            cell["allocator_peak"] = system.allocator_peak(runner, feeds)
            cell["status"] = "ok" if diff.ok else "mismatch"
            summary = (f"{spec.name} {case.name}: median {stats.median * 1e3:.3f} ms (n={stats.n}), "
                       f"first {cell['first_call_s'] * 1e3:.1f} ms, {diff.summary()}")
            log(system.name, summary if diff.ok else "MISMATCH " + summary)
        except Exception as e:  # noqa: BLE001  (a failing cell is a result; the worker goes on)
            cell["status"] = "failed"
            cell["error"] = describe_error(e)
            log(system.name, f"{spec.name} {case.name}: failed: {cell['error']}")
        cell["cpu"] = other_load(before, cpu_sample(session=True))
        result["notes"] = system.notes()
        save()
    return result


def _above(value: int | None, baseline: int | None) -> int | None:
    return None if value is None or baseline is None else max(0, value - baseline)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pliant.bench.worker JOB.json RESULT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    run_job(job, Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
