"""``pliant.compile``: a model analysed, simplified and turned into a host program.

The pipeline (each pass verified after it when ``verify=True``)::

    load -> RDP (symbolic shapes and values)
         -> shape-chains   (integer chains RDP resolved become ShapeExpr/Constant)
         -> fold-constants -> cse -> dce
         -> fuse-conv      (Conv + residual Add + activation become one FusedConv)
         -> fuse-elementwise (float32 elementwise groups become one generated kernel each)
         -> schedule       (an op order that lowers the peak of live memory)
         -> static-regions (straight-line runs of resolved shapes become one native unit each)
         -> host program   (fast / native / reference kernel per op, early frees)

``CompiledModel.run(feeds)`` checks the feeds exactly as the interpreter does
(same errors, before any kernel runs) and executes the program.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pliant.analysis.rdp import ShapeAnalysis, analyze
from pliant.interpreter import check_feeds
from pliant.ir.clone import clone_module
from pliant.ir.core import Module
from pliant.ir.dims import Dim, compile_dims
from pliant.ir.types import TensorType
from pliant.runtime.heap import release_free_memory
from pliant.runtime.program import FunctionProgram
from pliant.transforms.cse import cse
from pliant.transforms.dce import dce
from pliant.transforms.fold_constants import fold_constants
from pliant.transforms.fuse_conv import fuse_conv
from pliant.transforms.fuse_elementwise import fuse_elementwise
from pliant.transforms.gemm_layout import gemm_layout
from pliant.transforms.manager import PassStat, run_passes
from pliant.transforms.pack_weights import pack_weights
from pliant.transforms.schedule import schedule
from pliant.transforms.shape_chains import shape_chains
from pliant.transforms.static_regions import static_regions

SPECIALIZE_AFTER = 3
"""Calls with one input signature (the inputs' shapes) before a version specialised to it is built."""
MAX_VERSIONS = 4
"""Specialised versions kept at most, besides the generic one."""
TRIAL_CALLS = 5
"""Timed calls each of a new version and the generic one make, one after the other (each after a first,
untimed, call), before the version is kept or dropped.  Not call by call in turn: switching programs at every
call made both 1.5-3x slower (MoE at 16 tokens), a measure of the switching, not of either."""
KEEP_IF_FASTER = 0.97
"""A version is kept where its median call takes at most this fraction of the generic version's."""
# NOTE: building a version costs memory that outlives it: its objects leave the allocator's arenas fragmented
# (MoE: 4.7 MB more resident after one declined version than without it). Over the suite's 11 models only
# gpt_generate's versions paid (0.80-0.84 of the generic's time); the others' were within 2%, and declined.


def compile(model: Module | str | os.PathLike[str] | bytes, *, threads: int | None = None,
            verify: bool = False, specialize: bool = True, regions: bool = True) -> CompiledModel:
    """Compile ``model`` (a Module, or an ONNX path/bytes/ModelProto) for execution.

    ``threads`` sets the threads of BLAS and of the generated kernels for the
    whole process (through threadpoolctl; default: leave them as they are);
    ``verify`` runs the IR verifier after every pass.
    With ``specialize``, an input signature seen ``SPECIALIZE_AFTER`` times gets
    a version compiled for its exact shapes (in the background; the generic
    version serves meanwhile), at most ``MAX_VERSIONS`` of them. A new version
    then runs ``TRIAL_CALLS`` timed calls, the generic one as many, and the
    version is kept only if its median call is faster (``report()["declined"]``
    says which were dropped, and why).  Once more versions were declined than
    kept, the model builds no more (``report()["specializing"]`` turns False):
    its generic version is as fast as a specialised one would be.

    >>> import numpy as np, pliant
    >>> from pliant.ir import FunctionBuilder, tensor, DType
    >>> fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N"))])
    >>> fb.output("y", fb.op("Relu", [fb.inputs[0]]))
    >>> exe = pliant.compile(fb.module())
    >>> exe.run({"x": np.array([-1.0, 2.0], np.float32)})["y"].tolist()
    [0.0, 2.0]
    """
    return CompiledModel(model, threads=threads, verify=verify, specialize=specialize, regions=regions)


class CompiledModel:
    """A compiled model: ``run(feeds) -> {name: array}``, ``exe(*arrays) -> tuple``, ``report()``."""

    def __init__(self, model: Module | str | os.PathLike[str] | bytes, *, threads: int | None = None,
                 verify: bool = False, specialize: bool = True, regions: bool = True) -> None:
        t0 = time.perf_counter()
        if isinstance(model, Module):
            module = clone_module(model)
        else:
            from pliant.frontends.onnx import load

            module = load(model)  # type: ignore[arg-type]
        self.threads = threads
        if threads is not None:
            _limit_threads(threads)
        self.verify = verify
        self.ops_before = sum(1 for _ in module.walk())
        # NOTE: before the copy kept for specialised versions, so that every version shares its constants
        layout = run_passes(module, [gemm_layout, *([pack_weights] if regions else [])], verify=verify)
        self._source = clone_module(module) if specialize else None
        self.regions = regions
        self.analysis, self.passes = _pipeline(module, verify, regions)
        self.passes = layout + self.passes
        self.module = module
        self.ops_after = sum(1 for _ in module.walk())
        self.program = FunctionProgram(module, module.entry)
        self._feed_spec = _feed_spec(module.entry)
        self._in_order = _feeds_in_order(self._feed_spec)
        self._result_names = tuple(module.entry.result_names)
        self.compile_seconds = time.perf_counter() - t0
        release_free_memory()
        self._peak_cache: tuple[Dim, Any] | None = None
        self._last_dims: dict[str, int] = {}
        self._lock = threading.Lock()
        self._versions: dict[tuple[Any, ...], FunctionProgram] = {}
        self._seen: dict[tuple[Any, ...], int] = {}
        self._building: dict[tuple[Any, ...], threading.Thread] = {}
        self._failed: dict[tuple[Any, ...], str] = {}
        # a version on trial: (program, its call times, the generic version's call times)
        self._trial: dict[tuple[Any, ...], tuple[FunctionProgram, list[float], list[float]]] = {}
        self._declined: dict[tuple[Any, ...], str] = {}

    @property
    def input_names(self) -> list[str]:
        return self.module.entry.input_names

    @property
    def output_names(self) -> list[str]:
        return self.module.entry.result_names

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run on ``feeds`` (input name -> array); returns output name -> value."""
        fast = self._in_order(feeds)
        if fast is None:
            fn = self.module.entry
            args = check_feeds(fn, feeds)
            dims = _bindings(fn, args)
            sig = _signature(args)
        else:
            args, dims, sig = fast
        program = self._versions.get(sig) if sig is not None else None
        if program is None:
            program = self.program
            if sig is not None and self._source is not None:
                if sig in self._trial:
                    return self._run_trial(sig, args, dims)
                self._count(sig)
        outs = program.run(args)
        self._last_dims = dims  # NOTE: one assignment (atomic); the dict is never changed after
        return dict(zip(self._result_names, map(_owned, outs)))

    def __call__(self, *arrays: Any) -> tuple[Any, ...]:
        names = self.input_names
        if len(arrays) != len(names):
            from pliant.errors import FeedError

            raise FeedError(f"the model takes {len(names)} input(s) ({', '.join(names)}), got {len(arrays)}")
        out = self.run(dict(zip(names, arrays)))
        return tuple(out[n] for n in self.output_names)

    def _run_trial(self, sig: tuple[Any, ...], args: list[Any], dims: dict[str, int]) -> dict[str, Any]:
        """One timed call of a version on trial (its first ``TRIAL_CALLS`` + 1 calls) or then of the generic
        one (as many); after both, the version is kept if its median call is faster, else dropped (and its
        signature never specialised again).  The first call of each is left out of the medians."""
        with self._lock:
            trial = self._trial.get(sig)
            if trial is None:  # NOTE: decided by another thread meanwhile
                program = self._versions.get(sig, self.program)
            else:
                program = trial[0] if len(trial[1]) <= TRIAL_CALLS else self.program
        t0 = time.perf_counter()
        outs = program.run(args)
        spent = time.perf_counter() - t0
        with self._lock:
            self._last_dims = dims
            if trial is not None and sig in self._trial:
                (trial[1] if program is trial[0] else trial[2]).append(spent)
                if len(trial[2]) > TRIAL_CALLS:
                    del self._trial[sig]
                    fast, slow = sorted(trial[1][1:])[TRIAL_CALLS // 2], sorted(trial[2][1:])[TRIAL_CALLS // 2]
                    if fast <= KEEP_IF_FASTER * slow:
                        self._versions[sig] = trial[0]
                    else:
                        self._declined[sig] = (f"{list(sig)}: {fast * 1e3:.3f} ms a call against the generic "
                                               f"version's {slow * 1e3:.3f} ms")
        # NOTE: a dropped version's objects form cycles (the IR's parent links): Python's cycle collector frees
        # them, not at once; collecting here could take a good part of a second in a process of many objects
        return dict(zip(self._result_names, map(_owned, outs)))

    def _count(self, sig: tuple[Any, ...]) -> None:
        with self._lock:
            n = self._seen.get(sig, 0) + 1
            self._seen[sig] = n
            if n != SPECIALIZE_AFTER or sig in self._failed or sig in self._building or sig in self._declined:
                return
            if len(self._versions) + len(self._building) + len(self._trial) >= MAX_VERSIONS:
                return
            if not self._specializing():
                return
            t = threading.Thread(target=self._specialize, args=(sig,), name="pliant-specialize", daemon=True)
            self._building[sig] = t
        t.start()

    def _specializing(self) -> bool:
        """Whether new signatures still get versions: not once more versions were declined than kept."""
        return self._source is not None and len(self._declined) <= len(self._versions)

    def _specialize(self, sig: tuple[Any, ...]) -> None:
        """Build the version for input signature ``sig``: every input shape a constant, RDP and the passes again."""
        try:
            assert self._source is not None
            module = clone_module(self._source)
            for arg, shape in zip(module.entry.inputs, sig):
                if shape is not None and isinstance(arg.type, TensorType):
                    arg.type = TensorType(arg.type.dtype, tuple(shape))
            _pipeline(module, self.verify, self.regions)
            program = FunctionProgram(module, module.entry, specialized=True)
            with self._lock:
                self._trial[sig] = (program, [], [])
            release_free_memory()
        except Exception as e:  # noqa: BLE001 - a version that cannot be built is left out; the generic one serves
            with self._lock:
                self._failed[sig] = f"{type(e).__name__}: {e}"
        finally:
            with self._lock:
                self._building.pop(sig, None)

    def wait_for_versions(self, timeout: float | None = None) -> None:
        """Wait until the specialised versions being built are ready."""
        with self._lock:
            threads = list(self._building.values())
        for t in threads:
            t.join(timeout)

    def _peak(self) -> tuple[Dim, Any]:
        """The planned peak as an expression, and its compiled form (worked out on first use: it is not cheap)."""
        with self._lock:
            if self._peak_cache is None:
                expr = _peak_expression(self.module)
                self._peak_cache = (expr, compile_dims([expr]) if expr is not None else None)
            return self._peak_cache

    def planned_peak(self, dims: Mapping[str, int]) -> int | None:
        """The planned peak of live activation bytes for input sizes ``dims`` (symbol -> size)."""
        fn = self._peak()[1]
        if fn is None:
            return None
        try:
            return fn(dict(dims))[0]  # type: ignore[no-any-return]
        except KeyError:
            return None

    def report(self) -> dict[str, Any]:
        """What compiling did: passes, kernels chosen, versions, and the planned peak memory."""
        with self._lock:
            last = dict(self._last_dims)
        return {
            "compile_seconds": round(self.compile_seconds, 4),
            "ops": {"before": self.ops_before, "after": self.ops_after},
            "passes": [{"name": p.name, "changes": p.changes, "seconds": round(p.seconds, 4)} for p in self.passes],
            "kernels": dict(self.program.stats),
            "regions": list(self.program.regions),
            "versions": 1 + len(self._versions) + len(self._trial),
            "specialized": [[list(s) if s is not None else None for s in sig] for sig in [*self._versions, *self._trial]],
            "on_trial": [[list(s) if s is not None else None for s in sig] for sig in self._trial],
            "declined": list(self._declined.values()),
            "specializing": self._specializing(),
            "specialization_failures": list(self._failed.values()),
            "input_symbols": self.analysis.input_symbols,
            "planned_peak_bytes": str(self._peak()[0]) if self._peak()[0] is not None else None,
            "last_call": {"dims": last, "planned_peak_bytes": self.planned_peak(last) if last else None},
        }


def _pipeline(module: Module, verify: bool, regions: bool = True) -> tuple[ShapeAnalysis, list[PassStat]]:
    analysis = analyze(module)
    passes = run_passes(module, [shape_chains(analysis), fold_constants, cse, dce, fuse_conv, fuse_elementwise,
                                 schedule, *([static_regions(analysis)] if regions else [])],
                        verify=verify)
    return analysis, passes


def _signature(args: list[Any]) -> tuple[Any, ...] | None:
    """The inputs' shapes (None for a model with sequence or optional inputs: not specialised)."""
    sig = []
    for x in args:
        if not isinstance(x, np.ndarray):
            return None
        sig.append(x.shape)
    return tuple(sig)


def _owned(x: Any) -> Any:
    """An output the caller may keep and write: views of internal arrays are copied.

    A view whose base is an array that owns its memory and that nothing but the view refers to (a kernel's
    fresh result, reshaped) is the caller's already: copying it cost a page fault per 4 KiB of a large one.
    """
    if isinstance(x, np.ndarray) and (not x.flags.writeable or x.base is not None):
        if x.flags.writeable and type(x.base) is np.ndarray and x.base.flags.owndata \
                and sys.getrefcount(x.base) == 2:  # NOTE: the view's reference and the call's own
            return x
        return np.array(x)
    return x


FeedSpec = list[tuple[str, Any, tuple[tuple[bool, Any], ...]]]


def _feed_spec(fn: Any) -> FeedSpec | None:
    """Per input: name, NumPy dtype, per axis (is a symbol, the symbol's name or the constant size); None where
    some input is not a tensor of known dtype whose dims are constants or plain symbols."""
    from pliant.ir.dims import Sym

    spec = []
    for name, v in zip(fn.input_names, fn.inputs):
        t = v.type
        if not isinstance(t, TensorType) or t.dtype is None or t.shape is None:
            return None
        try:
            dt = np.dtype(t.dtype.numpy)
        except TypeError:
            return None
        if dt.kind in "OUS":
            return None
        axes: list[tuple[bool, Any]] = []
        for d in t.shape:
            if isinstance(d, int):
                axes.append((False, d))
            elif isinstance(d, Sym) and d.is_symbol:
                axes.append((True, str(d)))
            else:
                return None
        spec.append((name, dt, tuple(axes)))
    return spec


InOrder = tuple[list[Any], dict[str, int], tuple[tuple[int, ...], ...]]


def _fast_feeds(spec: FeedSpec | None, feeds: Mapping[str, Any]) -> InOrder | None:
    """The feeds in input order, the symbols they bind and their shapes, when they match ``spec`` exactly;
    None otherwise (``check_feeds`` then checks them, and names what is wrong)."""
    if spec is None or len(feeds) != len(spec):
        return None
    args = []
    bound: dict[str, int] = {}
    for name, dt, axes in spec:
        x = feeds.get(name)
        if type(x) is not np.ndarray or x.dtype != dt or x.ndim != len(axes):
            return None
        for (is_sym, d), n in zip(axes, x.shape):
            if is_sym:
                if bound.setdefault(d, n) != n:
                    return None
            elif d != n:
                return None
        args.append(x)
    return args, bound, tuple(x.shape for x in args)


def _feeds_in_order(spec: FeedSpec | None) -> Callable[[Mapping[str, Any]], InOrder | None]:
    """``_fast_feeds`` for ``spec``: ``unit_call.c``'s where it builds (one call), else the Python one."""
    if spec is None:
        return lambda feeds: None
    from pliant.runtime.unit_call import feeds_checker

    check = feeds_checker()
    if check is None:
        return lambda feeds: _fast_feeds(spec, feeds)
    frozen = tuple((name, dt, axes) for name, dt, axes in spec)
    return lambda feeds: check(frozen, feeds)  # type: ignore[no-any-return]


def _bindings(fn: Any, args: list[Any]) -> dict[str, int]:
    from pliant.ir.dims import Sym

    dims: dict[str, int] = {}
    for v, x in zip(fn.inputs, args):
        t = v.type
        if isinstance(t, TensorType) and t.shape is not None and isinstance(x, np.ndarray):
            for d, n in zip(t.shape, x.shape):
                if isinstance(d, Sym) and d.is_symbol:
                    dims.setdefault(str(d), int(n))
    return dims


def _peak_expression(module: Module) -> Dim:
    from pliant.analysis.report import peak_memory

    try:
        return peak_memory(module).bytes
    except (ValueError, TypeError):
        return None


def _limit_threads(threads: int) -> None:
    """Set the process's thread pools to ``threads``: BLAS and OpenMP runtimes already loaded (threadpoolctl),
    and, through the environment, the OpenMP runtime the generated kernels load later."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads)
