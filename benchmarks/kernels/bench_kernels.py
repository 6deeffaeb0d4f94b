"""Benchmark of the kernel language against NumPy; writes benchmarks/results/kernels.md.

    python benchmarks/kernels/bench_kernels.py [--threads 1,2] [--min-time 1.0] [--quick]

Each thread count runs in its own process (``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` are set before NumPy loads), with a fresh compilation
cache so first-call (compile) times are real.  Every figure is a median over
warm repetitions; NumPy is measured in the same process, so ratios compare like
with like.  The CPU load from other processes during the run is recorded
(/proc/stat minus this process's own CPU time).

What it measures:

- memory-bound kernels at 64 MB per operand (add, scale-and-add, softmax,
  layernorm): bandwidth against NumPy's own copy, and time against NumPy;
- fused multi-statement kernels against the equivalent multi-call NumPy code;
- matmul 512^3 float32: default and autotuned schedules against NumPy's sgemm,
  and whether the autotuner picks the BLAS call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from pliant.bench.measure import LoadWindow, measure_quietly, run_thread_workers

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "kernels.md"
MB64 = 16 * 1024 * 1024  # float32 elements in 64 MB


def _measure_quiet(
    fns: dict[str, Any], min_time: float, max_load: float, retries: int
) -> tuple[dict[str, dict[str, float]], float, int]:
    """``_measure`` repeated (up to ``retries`` more times) while other processes load the machine by more than
    ``max_load`` CPUs; the attempt with the least load is kept.  Returns it, its load and the attempts made."""
    return measure_quietly(lambda: _measure(fns, min_time), max_load, retries)  # type: ignore[no-any-return]


def _measure(fns: dict[str, Any], min_time: float, min_reps: int = 20) -> dict[str, dict[str, float]]:
    """Median, min and max seconds of each function, timed round-robin so all see the same machine load."""
    import numpy as np

    for fn in fns.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    while len(times[next(iter(fns))]) < min_reps or time.perf_counter() - start < min_time * len(fns):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {
        name: {"median": float(np.median(ts)), "min": min(ts), "max": max(ts), "reps": len(ts)}
        for name, ts in times.items()
    }


SOFTMAX = """def softmax(float(N,M) X) -> (Y) {
  mx(n) max=! X(n,m)
  e(n,m) = exp(X(n,m) - mx(n))
  s(n) +=! e(n,m)
  Y(n,m) = e(n,m) / s(n)
}"""
LAYERNORM = """def layernorm(float(N,C) X, float(C) G, float(C) B, float eps) -> (Y) {
  s(n) +=! X(n,c)
  mean(n) = s(n) / C
  xc(n,c) = X(n,c) - mean(n)
  v(n) +=! xc(n,c) * xc(n,c)
  rstd(n) = rsqrt(v(n) / C + eps)
  Y(n,c) = xc(n,c) * rstd(n) * G(c) + B(c)
}"""
BIAS_GELU = """def bias_gelu(float(N,M) H, float(M) Bias) -> (Y) {
  T(n,m) = H(n,m) + Bias(m)
  Y(n,m) = 0.5 * T(n,m) * (1.0 + tanh(0.7978845608028654 * T(n,m) * (1.0 + 0.044715 * T(n,m) * T(n,m))))
}"""
MATMUL = "def matmul(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }"


def worker(threads: int, min_time: float, quick: bool, max_load: float = 9.0, retries: int = 0) -> dict[str, Any]:
    import numpy as np

    import pliant.tc

    rng = np.random.default_rng(0)
    whole = LoadWindow().__enter__()
    rows: list[dict[str, Any]] = []
    n = MB64 // 16 if quick else MB64
    src = rng.standard_normal(n).astype(np.float32)
    dst = np.empty_like(src)

    def copy() -> None:
        np.copyto(dst, src)

    def bench(name: str, source: str, args: list[Any], numpy_fn: Any, nbytes: int, kind: str) -> None:
        k = pliant.tc.define(source)
        t0 = time.perf_counter()
        out = k(*args)
        first = time.perf_counter() - t0
        outs = out if isinstance(out, tuple) else (out,)
        ref = numpy_fn()
        err = float(np.max(np.abs(np.asarray(ref, dtype=np.float64) - outs[0])))
        res, load, attempts = _measure_quiet(
            {"copy": copy, "pliant": lambda: k(*args, out=outs if len(outs) > 1 else outs[0]), "numpy": numpy_fn},
            min_time,
            max_load,
            retries,
        )
        rows.append(
            {
                "case": name,
                "bytes": nbytes,
                "kind": kind,
                "first_call_s": first,
                "max_abs_err": err,
                "copy_bw": 2 * src.nbytes / res["copy"]["median"],
                "load": load,
                "attempts": attempts,
                **res,
            }
        )

    a, b = src, rng.standard_normal(n).astype(np.float32)
    c = np.empty_like(a)
    bench(
        "add C = A + B",
        "def add(float(N) A, float(N) B) -> (C) { C(i) = A(i) + B(i) }",
        [a, b],
        lambda: np.add(a, b, out=c),
        3 * a.nbytes,
        "memory",
    )
    y = np.empty_like(a)
    alpha = np.float32(1.5)

    def np_axpy() -> np.ndarray:
        np.multiply(a, alpha, out=y)
        return np.add(y, b, out=y)

    bench(
        "scale-and-add Y = a*X + Z",
        "def axpy(float a, float(N) X, float(N) Z) -> (Y) { Y(i) = a * X(i) + Z(i) }",
        [alpha, a, b],
        np_axpy,
        3 * a.nbytes,
        "memory",
    )
    rows_n, cols = n // 1024, 1024
    x2 = a.reshape(rows_n, cols)

    def np_softmax() -> np.ndarray:
        e = np.exp(x2 - x2.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        return e

    bench("softmax (4 statements, fused)", SOFTMAX, [x2], np_softmax, 2 * x2.nbytes, "memory+fused")
    g = rng.standard_normal(cols).astype(np.float32)
    bb = rng.standard_normal(cols).astype(np.float32)
    eps = np.float32(1e-5)

    def np_layernorm() -> np.ndarray:
        m = x2.mean(axis=1, keepdims=True)
        xc = x2 - m
        v = (xc * xc).mean(axis=1, keepdims=True)
        return xc / np.sqrt(v + eps) * g + bb

    bench("layernorm (6 statements, fused)", LAYERNORM, [x2, g, bb, eps], np_layernorm, 2 * x2.nbytes, "memory+fused")
    h = x2[: rows_n // 4]
    hy = np.empty_like(h)

    def np_bias_gelu() -> np.ndarray:
        t = np.add(h, g)  # NumPy at its best: in-place calls, one temporary
        np.multiply(t, t, out=hy)
        np.multiply(hy, 0.044715, out=hy)
        np.add(hy, 1.0, out=hy)
        np.multiply(hy, t, out=hy)
        np.multiply(hy, 0.7978845608028654, out=hy)
        np.tanh(hy, out=hy)
        np.add(hy, 1.0, out=hy)
        np.multiply(hy, t, out=hy)
        return np.multiply(hy, 0.5, out=hy)

    bench("bias + GELU (tanh form)", BIAS_GELU, [h, g], np_bias_gelu, 2 * h.nbytes, "fused")

    mm: list[dict[str, Any]] = []
    for size in [64] if quick else [512, 64]:
        A = rng.standard_normal((size, size)).astype(np.float32)
        B = rng.standard_normal((size, size)).astype(np.float32)
        C = np.empty((size, size), np.float32)
        k = pliant.tc.define(MATMUL)
        before, load_before, _ = _measure_quiet(
            {"numpy": lambda: np.matmul(A, B, out=C), "default": lambda: k(A, B, out=C, specialize=True)},
            min_time,
            max_load,
            retries,
        )
        t0 = time.perf_counter()
        tuned_result = k.autotune(A, B, generations=1 if quick else 2, population=6 if quick else 10, progress=False)
        tune_s = time.perf_counter() - t0
        best = pliant.tc.Kernel(k.typed.kdef, schedule=tuned_result.best)
        after, load_after, _ = _measure_quiet(
            {
                "numpy": lambda: np.matmul(A, B, out=C),
                "tuned": lambda: best(A, B, out=C, specialize=True),
                "chosen": lambda: k(A, B, out=C),
            },
            min_time,
            max_load,
            retries,
        )
        ref, default, tuned, chosen = before["numpy"], before["default"], after["tuned"], after["chosen"]
        ref_after = after["numpy"]
        err = float(np.max(np.abs(best(A, B, specialize=True) - A @ B)))
        mm.append(
            {
                "size": size,
                "numpy_after": ref_after,
                "numpy": ref,
                "default": default,
                "tuned": tuned,
                "chosen": chosen,
                "schedule": str(tuned_result.best),
                "library": tuned_result.library,
                "library_s": tuned_result.library_s,
                "use_library": tuned_result.use_library,
                "tune_s": tune_s,
                "evaluated": tuned_result.evaluated,
                "max_abs_err": err,
                "load": max(load_before, load_after),
            }
        )

    whole.__exit__()
    ncpu = os.cpu_count() or 1
    other = whole.other
    return {
        "threads": threads,
        "rows": rows,
        "matmul": mm,
        "other_load_cpus": other,
        "ncpu": ncpu,
        "loadavg": os.getloadavg(),
    }


def _fmt_ms(r: dict[str, float] | None) -> str:
    if r is None:
        return "-"
    return f"{r['median'] * 1e3:.3f} ({r['min'] * 1e3:.3f}-{r['max'] * 1e3:.3f})"


def _fmt_load(r: dict[str, Any]) -> str:
    text = f"{r.get('load', 0.0):.2f}"
    if r.get("attempts", 1) > 1:
        text += f" (quietest of {r['attempts']})"
    return text


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Kernel language vs NumPy",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"run {time.strftime('%Y-%m-%d %H:%M')}; `{' '.join(sys.argv)}`.",
        "Times are medians in ms (min-max in parentheses) over warm repetitions (>= 20 each, >= "
        f"{args.min_time} s per function).  Within a case, pliant, NumPy and NumPy's copy are timed round-robin in one "
        "process, so they share the machine's load and the ratios compare like with like.  Threads are fixed per run "
        "(OMP_NUM_THREADS = OPENBLAS_NUM_THREADS) and OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE), so "
        "pliant's idle threads do not spin against OpenBLAS's; pliant's first call includes compiling (fresh cache "
        "per run).  'Other load' is the CPU time other processes used while a case was timed (from /proc/stat); "
        f"a case timed under more than {args.max_load} CPUs of it was timed again, up to {args.retries} more "
        "times, and the quietest attempt is shown.",
        "",
    ]
    for res in results:
        t = res["threads"]
        la = ", ".join(f"{x:.1f}" for x in res["loadavg"])
        lines += [
            f"## {t} thread(s)",
            "",
            f"Load from other processes during the run: {res['other_load_cpus']:.2f} of {res['ncpu']} CPUs busy "
            f"(load average at the end: {la}).  Operands are 64 MB; bandwidth counts bytes read + written.",
            "",
            "| kernel | pliant ms | NumPy ms | speed-up vs NumPy | pliant GB/s | NumPy copy GB/s (same window) "
            "| pliant / copy bandwidth | first call s | other load (CPUs) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            bw = r["bytes"] / r["pliant"]["median"]
            speed = r["numpy"]["median"] / r["pliant"]["median"]
            lines.append(
                f"| {r['case']} | {_fmt_ms(r['pliant'])} | {_fmt_ms(r['numpy'])} | {speed:.2f}x | {bw / 1e9:.2f} | "
                f"{r['copy_bw'] / 1e9:.2f} | {100 * bw / r['copy_bw']:.0f}% | {r['first_call_s']:.2f} | "
                f"{_fmt_load(r)} |"
            )
        lines += [
            "",
            "Matmul: the default schedule is timed against sgemm before tuning, the tuned schedule and the call "
            "after tuning (the autotuner's choice) against sgemm after it (NumPy ms: before / after).",
            "",
            "| matmul float32 | NumPy sgemm ms | pliant default ms (% of sgemm) | pliant tuned ms (GFLOP/s) "
            "| tuned / sgemm throughput | autotuner's choice | call after tuning ms | tuning s (schedules timed) "
            "| other load (CPUs) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m in res["matmul"]:
            flops = 2 * m["size"] ** 3
            g_t = flops / m["tuned"]["median"] / 1e9
            ratio_default = m["numpy"]["median"] / m["default"]["median"]
            ratio_tuned = m["numpy_after"]["median"] / m["tuned"]["median"]
            choice = "library (BLAS)" if m["use_library"] else "generated code"
            lines.append(
                f"| {m['size']}^3 | {_fmt_ms(m['numpy'])} / {_fmt_ms(m['numpy_after'])} | {_fmt_ms(m['default'])} "
                f"({100 * ratio_default:.0f}%) | {_fmt_ms(m['tuned'])} ({g_t:.1f}) | {100 * ratio_tuned:.0f}% | {choice} "
                f"| {_fmt_ms(m['chosen'])} | {m['tune_s']:.0f} ({m['evaluated']}) | {_fmt_load(m)} |"
            )
        lines.append("")
        for m in res["matmul"]:
            lines.append(f"Best schedule at {m['size']}^3: `{m['schedule']}`.")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of repetitions per case (default 1)")
    p.add_argument("--quick", action="store_true", help="small sizes, for checking the script")
    p.add_argument(
        "--max-load",
        type=float,
        default=0.25,
        help="re-time a case when other processes kept more than this many CPUs busy meanwhile (default 0.25)",
    )
    p.add_argument("--retries", type=int, default=3, help="how many times a loaded case is re-timed (default 3)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.min_time, args.quick, args.max_load, args.retries)))
        return 0
    extra = ["--min-time", str(args.min_time), "--max-load", str(args.max_load), "--retries", str(args.retries)]
    extra += ["--quick"] if args.quick else []
    results = run_thread_workers(__file__, [int(x) for x in args.threads.split(",")], extra, pythonpath=str(ROOT))
    text = report(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
