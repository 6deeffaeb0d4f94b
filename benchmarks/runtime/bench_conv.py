"""Benchmark of pliant's C convolution against the OpenBLAS path it replaced and ONNX Runtime; writes
benchmarks/results/conv.md.

    python benchmarks/runtime/bench_conv.py [--threads 1,2] [--rounds 3] [--min-time 0.3] [--quick]

Three systems, each case a float32 NCHW Conv with a bias (what ``pliant.runtime.native.conv`` runs):

- ``pliant``: ``pliant.runtime.blas_conv.conv2d`` as it is now (``conv.c``: its own GEMM);
- ``openblas``: ``conv.c`` as of ``--baseline`` (default ba20736, the last version that called OpenBLAS's
  ``cblas_sgemm``, whose address it is passed), taken from git, compiled by pliant's kernel cache and
  called the way that version of ``blas_conv.conv2d`` called it;
- ``onnxruntime``: a one-node ONNX model (weights and bias as initializers), default session options
  (its threads spin between calls), ``intra_op_num_threads`` = the thread count.

Each system runs in a process of its own, one after another, ``--rounds`` times per thread count, in a
rotating order, so that slow phases of this shared machine fall on all three alike: thread pools of two
systems in one process distort each other (OpenBLAS's threads spin after a call; with OpenMP's woken in
between, one call took 60 ms instead of 1.4).  Threads are fixed per process (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, threadpoolctl; ``OMP_WAIT_POLICY=PASSIVE`` as pliant sets it).  A process
times each case for ``--min-time`` seconds (at least 20 calls) after 3 warm-up calls and keeps the
median; the table shows the median over rounds and the range of the rounds' medians.  Each process
also checks its results against a float64 NumPy convolution.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "conv.md"
SYSTEMS = ("pliant", "openblas", "onnxruntime")


@dataclass(frozen=True)
class Case:
    """One convolution: x (n, c, h, w), m output channels, a k x k window, symmetric padding."""

    n: int
    c: int
    h: int
    w: int
    m: int
    k: int
    stride: int = 1
    pad: int = 1
    group: int = 1

    @property
    def name(self) -> str:
        text = f"N{self.n} C{self.c} H{self.h}" + (f" W{self.w}" if self.w != self.h else "")
        text += f" M{self.m} {self.k}x{self.k}"
        text += f" s{self.stride}" if self.stride != 1 else ""
        return text + (f" g{self.group}" if self.group != 1 else "")

    @property
    def outs(self) -> tuple[int, int]:
        return ((self.h + 2 * self.pad - self.k) // self.stride + 1, (self.w + 2 * self.pad - self.k) // self.stride + 1)

    @property
    def flops(self) -> int:
        oh, ow = self.outs
        return 2 * self.n * self.m * (self.c // self.group) * self.k * self.k * oh * ow


CASES = [
    Case(1, 16, 32, 32, 16, 3),
    Case(1, 32, 16, 16, 32, 3),
    Case(1, 64, 8, 8, 64, 3),
    Case(1, 16, 32, 32, 32, 3, stride=2),
    Case(1, 3, 32, 32, 16, 3),
    Case(1, 32, 80, 80, 64, 3),
    Case(1, 64, 40, 40, 128, 3, stride=2),
    Case(1, 128, 20, 20, 128, 3),
    Case(1, 16, 160, 160, 32, 3, stride=2),
    Case(1, 64, 40, 40, 128, 1, pad=0),
    Case(1, 256, 20, 20, 64, 1, pad=0),
    Case(2, 16, 32, 32, 16, 3),
    Case(2, 32, 40, 40, 64, 3, group=2),
    Case(1, 256, 10, 10, 256, 3),
]
QUICK = [CASES[0], CASES[4], CASES[7], CASES[12]]


def _inputs(case: Case) -> tuple[Any, Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.n, case.c, case.h, case.w)).astype(np.float32)
    w = (rng.standard_normal((case.m, case.c // case.group, case.k, case.k)) * 0.1).astype(np.float32)
    return x, w, rng.standard_normal(case.m).astype(np.float32)


def _reference(case: Case, x: Any, w: Any, b: Any) -> Any:
    """The convolution in float64 NumPy (patches by sliding_window_view)."""
    import numpy as np

    p, s, g = case.pad, case.stride, case.group
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (case.k, case.k), axis=(2, 3))[:, :, ::s, ::s]
    cg, mg = case.c // g, case.m // g
    ys = [np.einsum("nchwij,mcij->nmhw", win[:, i * cg:(i + 1) * cg], w[i * mg:(i + 1) * mg].astype(np.float64))
          for i in range(g)]
    return np.concatenate(ys, axis=1) + b.reshape(1, -1, 1, 1)


# --- the three systems, each in its own process ---------------------------------------------------


def _pliant(case: Case) -> Callable[[], Any]:
    from pliant.runtime import blas_conv

    x, w, b = _inputs(case)
    p, s = case.pad, case.stride
    return lambda: blas_conv.conv2d(x, w, b, None, outs=case.outs, strides=(s, s), dilations=(1, 1),
                                    pads_begin=(p, p), group=case.group)


_OLD: dict[str, Any] = {}


def _openblas(case: Case) -> Callable[[], Any]:
    """The baseline's conv.c: 20 sizes, the last three the sgemm address, its ILP64 flag and the block size."""
    import ctypes

    import numpy as np

    from pliant.kernels import cache
    from pliant.kernels.compiled import data_pointers
    from pliant.kernels.toolchain import find_toolchain

    if "fn" not in _OLD:
        source = subprocess.run(["git", "show", f"{_OLD['rev']}:pliant/runtime/conv.c"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        _OLD["fn"] = cache.load(source, find_toolchain()).fn
        _OLD["sgemm"] = _find_sgemm()
    fn, (address, ilp64) = _OLD["fn"], _OLD["sgemm"]
    x, w, b = _inputs(case)
    oh, ow = case.outs
    y = np.empty((case.n, case.m, oh, ow), np.float32)
    params = np.zeros(3, np.float32)
    p, s = case.pad, case.stride
    sizes = (ctypes.c_int64 * 20)(case.n, case.c, case.h, case.w, case.m, case.k, case.k, oh, ow, s, s, 1, 1, p, p,
                                  case.group, 0, address, int(ilp64), 1 << 18)

    def run() -> Any:
        out = np.empty_like(y)
        px, pw, pb, py, pp = data_pointers([x, w, b, out, params])
        if fn((ctypes.c_void_p * 6)(px, pw, pb, None, py, pp), sizes) != 0:
            raise MemoryError("baseline conv: no scratch")
        return out

    return run


def _find_sgemm() -> tuple[int, bool]:
    """The CBLAS sgemm of the BLAS NumPy loaded, as the baseline's blas_conv found it."""
    import ctypes

    import numpy as np
    from threadpoolctl import threadpool_info

    np.dot(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        lib = ctypes.CDLL(info["filepath"])
        for name, ilp64 in (("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True), ("scipy_cblas_sgemm", False),
                            ("cblas_sgemm", False)):
            f = getattr(lib, name, None)
            if f is not None:
                return ctypes.cast(f, ctypes.c_void_p).value or 0, ilp64
    raise RuntimeError("no CBLAS sgemm in NumPy's BLAS")


def _onnxruntime(case: Case, threads: int) -> Callable[[], Any]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    x, w, b = _inputs(case)
    p, s = case.pad, case.stride
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[case.k, case.k], strides=[s, s],
                            pads=[p, p, p, p], group=case.group)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})[0]


def worker(system: str, threads: int, min_time: float, quick: bool) -> dict[str, Any]:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from pliant.bench.measure import LoadWindow

    threadpool_limits(threads)
    rows = []
    with LoadWindow() as whole:
        for case in QUICK if quick else CASES:
            fn = _onnxruntime(case, threads) if system == "onnxruntime" else {"pliant": _pliant,
                                                                              "openblas": _openblas}[system](case)
            got = fn()
            want = _reference(case, *_inputs(case))
            err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
            for _ in range(3):
                fn()
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < 20 or time.perf_counter() - start < min_time:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            rows.append({"case": asdict(case), "median_s": float(np.median(times)), "reps": len(times), "err": err})
    return {"system": system, "threads": threads, "rows": rows, "other_load": whole.other}


# --- the driver and the report ---------------------------------------------------------------------------


def _run_worker(system: str, threads: int, args: argparse.Namespace, cache: str) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", PLIANT_CACHE_DIR=cache,
               PYTHONPATH=str(ROOT))
    argv = [sys.executable, __file__, "--worker", system, "--worker-threads", str(threads), "--min-time",
            str(args.min_time), "--baseline", args.baseline, *(["--quick"] if args.quick else [])]
    out = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _versions(baseline: str) -> str:
    import numpy as np
    import onnxruntime as ort
    from threadpoolctl import threadpool_info

    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = "AVX-512F" if " avx512f" in flags else "AVX2" if " avx2" in flags else "no AVX2"
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    blas = [f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info() if i.get("user_api") == "blas"]
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=False).stdout.strip()
    return (f"Machine: {cpu} ({isa}), {os.cpu_count()} CPUs; Python {platform.python_version()}, NumPy "
            f"{np.__version__} (BLAS: {', '.join(blas) or 'none found'}), onnxruntime {ort.__version__}, C compiler: "
            f"{cc[0] if cc else 'none'}.  pliant at {rev}; the OpenBLAS path is conv.c at {baseline}.")


NOTES = """\
## Reading the tables

- **What runs**: conv.c multiplies MR = 8 rows of the weights (read in place) by NR = 32 output columns
  in AVX-512 registers, the epilogue applied as the tile is stored.  Its B comes from the input without
  an im2col matrix: stride-1 3x3 cases whose rows fill 16-lane vectors (32x32, 16x16, 80x80, the 3-channel
  stem) read a zero-padded copy of the input in place; 1x1 ones read the input itself; the rest (stride 2,
  rows of 8, 10, 20 or 40 columns) gather their patches a block at a time into packed panels.  The
  kernel alone runs at 115-117 GFLOP/s on one core (ONNX Runtime's best cases reach 114-120).
- **1 thread**: 1.1-1.8x the OpenBLAS path on the 3x3 shapes; equal on the 1x1 ones (there the OpenBLAS
  path's product is a plain GEMM too, near peak) and on the 3-channel stem (27-row products).  0.7-1.0x
  ONNX Runtime, whose default graph optimisations run these Conv nodes as NCHWc direct convolutions
  (vectors across 16 channels, weights reordered once per session): no patches to gather and no lanes
  wasted on narrow rows, which is where the gap is widest (64 channels of 8x8, 256 of 10x10, groups of 32
  channels on 40x40: 0.7-0.8x; gathering costs 7-27% of a call, most with few output channels).
- **2 threads**: calls below 3M multiply-adds (the five smallest cases) stay on one thread: pliant's
  processes wait passively for OpenMP work (OMP_WAIT_POLICY=PASSIVE, set in pliant/__init__.py), and
  waking the other thread costs 30-50 us on this 2-vCPU guest, as long as such a call.  ONNX Runtime's pool
  spins between calls (its default), so it gains there (30-38 us against 54-56); spinning OpenMP threads
  (GOMP_SPINCOUNT) made such a call take 0.2-4.6 ms whenever another process held the other CPU.  Larger
  calls ran 1.25-1.8x faster on two threads than on one (ONNX Runtime: 1.4-1.9x); tasks go to whichever
  thread asks next, so the calling thread does more of them while the other wakes.  The 1x1 cases scaled
  least (1.25x and 1.5x), and there the OpenBLAS path was ahead at 2 threads when the machine was idle.
- **Noise**: the machine is a shared guest; 'CPU time other processes used' is measured per worker, and a
  round under load shows in the range.  With the other CPU busy, two threads cannot beat one: pliant's
  calls then cost about what one thread takes (+10 us on small ones), the OpenBLAS path's took
  milliseconds (its pool and the other process fight for the CPU).
"""


def report(results: dict[int, dict[str, list[dict[str, Any]]]], args: argparse.Namespace) -> str:
    import numpy as np

    lines = [
        "# Conv: pliant's own GEMM vs the OpenBLAS path it replaced and ONNX Runtime",
        "",
        _versions(args.baseline),
        f"Run {time.strftime('%Y-%m-%d %H:%M')}: `python benchmarks/runtime/bench_conv.py {args.command}`.",
        "",
        "Float32 NCHW Conv with a bias; N, C, H (= W unless given), M output channels, window, stride (1 unless "
        "given), padding 1 for 3x3 and 0 for 1x1, group.  `pliant` is `blas_conv.conv2d` (conv.c's own GEMM), "
        f"`OpenBLAS` conv.c at {args.baseline} (im2col blocks + OpenBLAS `cblas_sgemm` + the same epilogue), `ORT` "
        "a one-node onnxruntime session (default options: its threads spin).  Each system in its own process, "
        f"{args.rounds} rounds per thread count in rotating order; a cell is the median over rounds of each "
        f"round's median time ({args.min_time} s or >= 20 calls each), in microseconds, with GFLOP/s and the "
        "range of the rounds' medians.  Ratios above 1 mean pliant is faster.  'err' is pliant's largest "
        "difference from a float64 NumPy convolution relative to its largest magnitude.",
        "",
    ]
    for threads, by_system in results.items():
        loads = [r["other_load"] for rs in by_system.values() for r in rs]
        lines += [f"## {threads} thread(s)", "",
                  f"CPU time other processes used while the workers ran: {np.median(loads):.2f} CPUs (median over "
                  f"processes; max {max(loads):.2f}).", "",
                  "| case | MFLOP | pliant us (GFLOP/s) | OpenBLAS us (GFLOP/s) | ORT us (GFLOP/s) | OpenBLAS / pliant "
                  "| ORT / pliant | err |", "|---|---|---|---|---|---|---|---|"]
        runs = {s: by_system.get(s, []) for s in SYSTEMS}
        for i, row in enumerate(runs["pliant"][0]["rows"]):
            case = Case(**row["case"])
            med: dict[str, float] = {}
            cells = []
            for s in SYSTEMS:
                ts = [r["rows"][i]["median_s"] for r in runs[s]]
                if not ts:
                    cells.append("-")
                    continue
                med[s] = float(np.median(ts))
                cells.append(f"{med[s] * 1e6:.0f} ({case.flops / med[s] / 1e9:.1f}) [{min(ts) * 1e6:.0f}-"
                             f"{max(ts) * 1e6:.0f}]")
            ratios = [f"{med[s] / med['pliant']:.2f}x" if s in med else "-" for s in ("openblas", "onnxruntime")]
            err = max(r["rows"][i]["err"] for r in runs["pliant"])
            lines.append(f"| {case.name} | {case.flops / 1e6:.1f} | {' | '.join(cells)} | {' | '.join(ratios)} | "
                         f"{err:.1e} |")
        lines.append("")
    lines.append(NOTES)
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--rounds", type=int, default=3, help="processes per system and thread count (default 3)")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds of calls per case and process")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="which systems (default all three)")
    p.add_argument("--baseline", default="ba20736", help="git revision of the OpenBLAS conv.c (default ba20736)")
    p.add_argument("--quick", action="store_true", help="four cases, for checking the script")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        _OLD["rev"] = args.baseline
        print(json.dumps(worker(args.worker, args.worker_threads, args.min_time, args.quick)))
        return 0
    args.command = " ".join(sys.argv[1:])
    systems = [s for s in args.systems.split(",") if s]
    results: dict[int, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="pliant-bench-conv-") as cache:
        for threads in (int(t) for t in args.threads.split(",")):
            results[threads] = {s: [] for s in systems}
            for r in range(args.rounds):
                for s in systems[r % len(systems):] + systems[:r % len(systems)]:
                    results[threads][s].append(_run_worker(s, threads, args, cache))
                    print(f"{threads} thread(s), round {r + 1}: {s} done", file=sys.stderr)
    text = report(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
