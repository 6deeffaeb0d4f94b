"""Kernels written in a Tensor-Comprehension-style language, compiled to native code.

>>> import numpy as np
>>> import pliant.tc
>>> matmul = pliant.tc.define('''
...     def matmul(float(M, K) A, float(K, N) B) -> (C) {
...         C(m, n) +=! A(m, k) * B(k, n)
...     }''')
>>> A = np.arange(6, dtype=np.float32).reshape(2, 3)
>>> B = np.ones((3, 2), dtype=np.float32)
>>> matmul(A, B)
array([[ 3.,  3.],
       [12., 12.]], dtype=float32)

A kernel compiles on first use: one generic version serves every size; with
``specialize=True`` (or after ``autotune``) a version with the sizes built in is
compiled per distinct size signature.  Compiled code is cached on disk
(``$PLIANT_CACHE_DIR``, default ``~/.cache/pliant``).  The language, range
inference and schedules are described in ``pliant.frontends.tc``,
``pliant.kernels.ranges`` and ``pliant.kernels.schedule``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pliant.frontends.tc import parse
from pliant.kernels.autotune import TuneResult, autotune, lookup
from pliant.kernels.check import check_kernel
from pliant.kernels.compiled import CompiledKernel, Signature, build, data_pointers, generate_c
from pliant.kernels.errors import (
    CompileError,
    CompilerNotFoundError,
    TCCallError,
    TCError,
    TCRangeError,
    TCRuntimeError,
    TCScheduleError,
    TCSyntaxError,
    TCTypeError,
)
from pliant.kernels.ir import KernelDef, format_kernel
from pliant.kernels.ranges import infer_ranges
from pliant.kernels.schedule import Schedule, validate
from pliant.kernels.toolchain import find_toolchain
from pliant.kernels.vendor import library_call

__all__ = [
    "CompileError",
    "CompilerNotFoundError",
    "Kernel",
    "Schedule",
    "TCCallError",
    "TCError",
    "TCRangeError",
    "TCRuntimeError",
    "TCScheduleError",
    "TCSyntaxError",
    "TCTypeError",
    "TuneResult",
    "define",
    "define_all",
]

_MAX_VERSIONS = 1024
_Runner = Callable[[list[np.ndarray], list[int]], None]  # (arrays, their data pointers): inputs then outputs


class Kernel:
    """A checked kernel: call it on arrays; compiles versions on demand.

    Attributes: ``name``, ``inputs``, ``outputs`` (names), ``sizes`` (size
    symbols), ``source`` (canonical source), ``schedule`` (settable).
    """

    def __init__(self, kdef: KernelDef, schedule: Schedule | None = None, specialize: bool = False) -> None:
        self.typed = check_kernel(kdef)  # type checking
        self.ranges = infer_ranges(self.typed)  # symbolic range inference: output shapes, errors early
        self.signature = Signature(self.typed, self.ranges)
        self.name = kdef.name
        self.inputs = tuple(t.name for t in self.signature.inputs)
        self.outputs = tuple(t.name for t in self.signature.outputs)
        self.sizes = self.typed.sizes
        self.specialize = specialize
        self._schedule = Schedule()
        self._lock = threading.Lock()
        self._generic: CompiledKernel | None = None
        self._versions: dict[tuple[Any, ...], tuple[_Runner, list[tuple[int, ...]]]] = {}  # and output shapes
        if schedule is not None:
            self.schedule = schedule

    @property
    def source(self) -> str:
        """The canonical source of the kernel."""
        return format_kernel(self.typed.kdef)

    @property
    def schedule(self) -> Schedule:
        return self._schedule

    @schedule.setter
    def schedule(self, s: Schedule) -> None:
        validate(s, self.ranges)
        with self._lock:
            self._schedule = s
            self._generic = None
            self._versions.clear()

    def describe(self) -> str:
        """Tensors with their inferred sizes and every statement's index ranges."""
        return self.ranges.describe()

    def __repr__(self) -> str:
        ins = ", ".join(self.signature.describe(t) for t in self.signature.inputs)
        return f"<pliant.tc.Kernel {self.name}({ins}) -> ({', '.join(self.outputs)})>"

    # --- compiling -----------------------------------------------------------------------------

    def compile(self, sizes: Mapping[str, int] | None = None, schedule: Schedule | None = None) -> CompiledKernel:
        """The generic version (``sizes`` None) or the one specialised to ``sizes``, compiled or cached."""
        return build(self.typed, schedule or self._schedule, sizes)

    @property
    def source_c(self) -> str:
        """The C source of the generic version under the current schedule."""
        return generate_c(self.typed, self._schedule, None, find_toolchain())[0]

    def c_source(self, *args: Any, specialize: bool = True) -> str:
        """The C source of the version that serves ``args`` (specialised to their sizes by default)."""
        _, env = self.signature.bind(args)
        return generate_c(self.typed, self._schedule, env if specialize else None, find_toolchain())[0]

    # --- calling -------------------------------------------------------------------------------

    def __call__(self, *args: Any, out: Any = None, specialize: bool | None = None) -> Any:
        """Run on ``args``; returns the output array (a tuple when there are several) or ``out``."""
        arrays, env = self.signature.bind(args)
        spec = self.specialize if specialize is None else specialize
        key = (spec, *(env[s] for s in self.sizes))
        version = self._versions.get(key)
        if version is None:
            shapes = self.signature.output_shapes(env)  # raises for inputs too small, before compiling
            version = (self._version(env, spec), shapes)
            with self._lock:
                if len(self._versions) >= _MAX_VERSIONS:
                    self._versions.clear()
                self._versions[key] = version
        run, shapes = version
        outs = self.signature.outputs_of_shapes(shapes, out)
        everything = arrays + outs
        ptrs = data_pointers(everything)
        if out is not None:
            self.signature.check_overlap(ptrs, everything)
        run(everything, ptrs)
        if out is not None:
            return out
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _version(self, env: Mapping[str, int], specialize: bool) -> _Runner:
        tuned = lookup(self.typed, env) if self.typed.sizes else None
        if tuned is not None:
            lib = library_call(self.typed) if tuned.use_library else None
            if lib is not None:
                fn, n_in = lib.fn, len(self.inputs)
                return lambda arrays, ptrs: fn(arrays[:n_in], arrays[n_in:])
            return _native(build(self.typed, tuned.best, env), env)
        if specialize:
            return _native(build(self.typed, self._schedule, env), env)
        with self._lock:
            if self._generic is None:
                self._generic = build(self.typed, self._schedule, None)
            return _native(self._generic, env)

    # --- tuning --------------------------------------------------------------------------------

    def autotune(
        self,
        *args: Any,
        generations: int = 3,
        population: int = 8,
        top_k: int = 3,
        seed: int = 0,
        progress: bool = True,
        force: bool = False,
    ) -> TuneResult:
        """Search schedules for the sizes of ``args`` (see ``pliant.kernels.autotune``).

        The result is stored on disk; later calls with these sizes use the best
        schedule (or the library call, when it is faster) in this and later processes.
        """
        result = autotune(
            self.typed,
            self.signature,
            list(args),
            generations=generations,
            population=population,
            top_k=top_k,
            seed=seed,
            progress=progress,
            force=force,
        )
        with self._lock:
            self._versions.clear()
        return result


def _native(ck: CompiledKernel, env: Mapping[str, int]) -> _Runner:
    call = ck.caller(env)
    return lambda arrays, ptrs: call(ptrs)


def define_all(source: str, *, schedule: Schedule | None = None, specialize: bool = False) -> dict[str, Kernel]:
    """Every kernel ``source`` defines, by name."""
    return {k.name: Kernel(k, schedule, specialize) for k in parse(source)}


def define(
    source: str, name: str | None = None, *, schedule: Schedule | None = None, specialize: bool = False
) -> Kernel:
    """The kernel ``source`` defines (the one called ``name`` when it defines several).

    Raises ``TCSyntaxError``/``TCTypeError``/``TCRangeError`` (with line and
    column) for a bad kernel; compiling waits for the first call.

    >>> relu = define("def relu(float(N) X) -> (Y) { Y(i) = fmax(X(i), 0.0) }")
    >>> relu(np.array([-1.0, 2.0], dtype=np.float32))
    array([0., 2.], dtype=float32)
    """
    kernels = parse(source)
    if name is None:
        if len(kernels) > 1:
            names = ", ".join(k.name for k in kernels)
            raise TCError(f"the source defines {len(kernels)} kernels ({names}): pass name= to choose one")
        return Kernel(kernels[0], schedule, specialize)
    for k in kernels:
        if k.name == name:
            return Kernel(k, schedule, specialize)
    raise TCError(f"the source defines no kernel '{name}' (it defines {', '.join(k.name for k in kernels)})")
