"""Measuring one process: latency statistics, resident memory and the CPU load of other processes.

Latency: after a warm-up, a case is repeated until it has run at least
``min_reps`` times and for at least ``min_time_s`` (or ``max_reps`` times, or
``max_time_s`` with no fewer than three runs); the median is the figure, with the
spread beside it.

Memory: Linux's ``VmHWM`` (peak resident set) is reset through
``/proc/self/clear_refs`` before each case, so the peak seen after a case
belongs to it; it is reported above the idle baseline the worker took before
it loaded anything.

Load: ``/proc/stat`` counts every CPU's busy time; taking away this process's
own CPU time (``getrusage``) leaves what other processes used while it ran.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class TimingPolicy:
    """How long and how often to repeat a case. ``quick()`` is for tests, not for figures."""

    warmup_s: float = 0.3
    min_warmup: int = 2
    min_reps: int = 10
    min_time_s: float = 1.0
    max_time_s: float = 4.0
    max_reps: int = 5000

    @staticmethod
    def quick() -> TimingPolicy:
        return TimingPolicy(warmup_s=0.0, min_warmup=1, min_reps=3, min_time_s=0.0, max_time_s=0.5, max_reps=20)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @staticmethod
    def from_json(d: dict[str, Any]) -> TimingPolicy:
        return TimingPolicy(**{k: d[k] for k in TimingPolicy.__slots__ if k in d})


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Seconds per call over ``n`` timed runs."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    p10: float
    p90: float
    stdev: float

    @staticmethod
    def of(samples: list[float]) -> LatencyStats:
        s = sorted(samples)
        n = len(s)

        def q(p: float) -> float:
            k = (n - 1) * p
            lo = int(k)
            hi = min(lo + 1, n - 1)
            return s[lo] + (s[hi] - s[lo]) * (k - lo)

        return LatencyStats(n, statistics.median(s), statistics.fmean(s), s[0], s[-1], q(0.1), q(0.9),
                            statistics.stdev(s) if n > 1 else 0.0)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def time_calls(fn: Callable[[], object], policy: TimingPolicy) -> tuple[LatencyStats, int]:
    """Warm up, then time ``fn``; returns the statistics and the number of warm-up calls."""
    clock = time.perf_counter
    warm = 0
    start = clock()
    while warm < policy.min_warmup or clock() - start < policy.warmup_s:
        fn()
        warm += 1
        if clock() - start > policy.max_time_s:
            break
    samples: list[float] = []
    start = clock()
    while len(samples) < policy.max_reps:
        elapsed = clock() - start
        if len(samples) >= policy.min_reps and elapsed >= policy.min_time_s:
            break
        if len(samples) >= 3 and elapsed >= policy.max_time_s:
            break
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return LatencyStats.of(samples), warm


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """This process's resident set now (Linux), or None."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int | None:
    """The peak resident set since the last :func:`reset_peak_rss` (or process start)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def reset_peak_rss() -> bool:
    """Reset the peak resident set to the current one; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class CpuSample:
    wall: float
    busy_s: float
    steal_s: float
    own_s: float


def session_cpu_s() -> float | None:
    """CPU seconds of the live processes in this process's session (itself, compile helpers it started), or None.

    The harness starts each worker as a session leader, so this counts the
    worker and every helper it spawned (torch.compile's compile workers) as the
    worker's own, not as load from other processes.
    """
    sid = os.getsid(0)
    total = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid pgrp session ... utime(12) stime(13)
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def cpu_sample(own: int = resource.RUSAGE_SELF, session: bool = False) -> CpuSample:
    """Machine-wide busy and steal CPU seconds (``/proc/stat``) and this process's (or its children's) CPU seconds.

    With ``session``, the own time is that of the whole session (see :func:`session_cpu_s`) plus the children
    already reaped.
    """
    busy = steal = 0.0
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal guest guest_nice
        busy = sum(fields[i] for i in (0, 1, 2, 5, 6) if i < len(fields)) / _CLK_TCK
        steal = (fields[7] if len(fields) > 7 else 0) / _CLK_TCK
    except (OSError, ValueError):
        pass
    ru = resource.getrusage(own)
    own_s = ru.ru_utime + ru.ru_stime
    if session:
        live = session_cpu_s()
        if live is not None:
            reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
            own_s = live + reaped.ru_utime + reaped.ru_stime
    return CpuSample(time.perf_counter(), busy, steal, own_s)


def other_load(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Average number of cores other processes kept busy between two samples, and the steal rate."""
    wall = max(after.wall - before.wall, 1e-9)
    others = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s))
    return {"other_cores": others / wall, "steal_cores": max(0.0, after.steal_s - before.steal_s) / wall, "wall_s": wall}


def own_cpu_s() -> float:
    """CPU seconds of this process and the children it reaped (a compiler it ran counts as its own)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadWindow:
    """CPUs kept busy by other processes between ``__enter__`` and ``__exit__`` (``other``, in cores).

    >>> with LoadWindow() as w:
    ...     pass
    >>> w.other >= 0
    True
    """

    def __enter__(self) -> LoadWindow:
        self._before = cpu_sample()
        self._own = own_cpu_s()
        self.other = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        after = cpu_sample()
        wall = max(after.wall - self._before.wall, 1e-9)
        self.other = max(0.0, (after.busy_s - self._before.busy_s) - (own_cpu_s() - self._own)) / wall


def measure_quietly(measure: Callable[[], Any], max_load: float, retries: int) -> tuple[Any, float, int]:
    """``measure()`` repeated (up to ``retries`` more times) while other processes keep more than ``max_load``
    CPUs busy; returns the attempt with the least load, that load, and the number of attempts."""
    best: tuple[Any, float] | None = None
    attempts = 0
    while attempts <= retries:
        attempts += 1
        with LoadWindow() as w:
            res = measure()
        if best is None or w.other < best[1]:
            best = (res, w.other)
        if w.other <= max_load:
            break
    assert best is not None
    return best[0], best[1], attempts


def run_thread_workers(script: str, threads: list[int], args: list[str], *, cache_prefix: str = "pliant-bench-",
                       pythonpath: str | None = None) -> list[Any]:
    """Run ``script --worker T ARGS`` once per thread count T in a fresh process and return each one's JSON.

    Each worker gets its threads fixed (OpenMP, OpenBLAS, MKL), passive OpenMP
    waits and an empty kernel cache of its own; its last line of output is JSON.
    """
    import json
    import subprocess
    import sys
    import tempfile

    results = []
    for t in threads:
        with tempfile.TemporaryDirectory(prefix=cache_prefix) as cache:
            env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t),
                       OMP_WAIT_POLICY="PASSIVE", PLIANT_CACHE_DIR=cache)
            if pythonpath is not None:
                env["PYTHONPATH"] = pythonpath
            out = subprocess.run([sys.executable, script, "--worker", str(t), *args], env=env,
                                 stdout=subprocess.PIPE, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results
