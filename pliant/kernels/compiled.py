"""From a checked kernel to a callable native function, and the checks around each call.

``Signature`` binds arguments: dtypes, ranks, size agreement, output shapes
(from range inference, compiled once into integer Python).  ``build`` is the
compiler pipeline for one (kernel, schedule, specialisation).  ``CompiledKernel``
runs the native code on arrays a ``Signature`` has bound.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from pliant.kernels.cache import Loaded, load
from pliant.kernels.check import Role, TensorInfo, TypedKernel
from pliant.kernels.emit_c import emit_c
from pliant.kernels.errors import TCCallError, TCError, TCRuntimeError
from pliant.kernels.ir import DType
from pliant.kernels.lower import lower
from pliant.kernels.ranges import KernelRanges, infer_ranges
from pliant.kernels.schedule import Schedule, validate
from pliant.kernels.symbolic import compile_py
from pliant.kernels.toolchain import Toolchain, find_toolchain


class Signature:
    """How a kernel is called: inputs, outputs and their shapes as functions of the sizes."""

    def __init__(self, typed: TypedKernel, kr: KernelRanges) -> None:
        self.typed, self.kr = typed, kr
        self.inputs = typed.by_role(Role.INPUT)
        self.outputs = tuple(typed.tensors[o.name] for o in typed.kdef.outputs)
        exprs: list[sympy.Expr] = [d for t in self.outputs for d in kr.dims[t.name]]
        self._shapes: Callable[[Mapping[str, int]], tuple[int, ...]] = compile_py(exprs)
        self._dims_text = {t.name: kr.dims[t.name] for t in self.outputs}
        self._bind_specs = [(t, t.dtype.numpy, tuple(enumerate(t.dims or ()))) for t in self.inputs]
        self._out_dtypes = [t.dtype.numpy for t in self.outputs]

    def describe(self, t: TensorInfo) -> str:
        dims = ", ".join(str(d) for d in (t.dims if t.dims is not None else self.kr.dims[t.name]))
        return f"{t.dtype.value}({dims}) {t.name}"

    def bind(self, args: Sequence[Any]) -> tuple[list[np.ndarray], dict[str, int]]:
        """The arguments as C-contiguous arrays, and the value of every size; raises ``TCCallError``."""
        if len(args) != len(self.inputs):
            sig = ", ".join(self.describe(t) for t in self.inputs)
            raise TCCallError(f"kernel '{self.typed.name}' takes {len(self.inputs)} input(s) ({sig}), got {len(args)}")
        env: dict[str, int] = {}
        arrays = []
        # NOTE: this runs on every call; checks are ordered cheapest first and messages built only on failure.
        for (t, want, dims), a in zip(self._bind_specs, args):
            if type(a) is not np.ndarray:
                a = self._convert(t, a)
            elif a.dtype != want:
                raise TCCallError(
                    f"kernel '{self.typed.name}': input '{t.name}' must be {t.dtype.value}, got {a.dtype} "
                    f"(convert it with .astype(np.{want}))"
                )
            shape = a.shape
            if len(shape) != t.rank:
                raise TCCallError(
                    f"kernel '{self.typed.name}': input '{t.name}' must have rank {t.rank} ({self.describe(t)}), "
                    f"got shape {shape}"
                )
            for p, d in dims:
                n = shape[p]
                if isinstance(d, int):
                    if n != d:
                        raise TCCallError(f"kernel '{self.typed.name}': dim {p} of '{t.name}' must be {d}, got {n}")
                    continue
                old = env.setdefault(d, n)
                if old != n:
                    raise self._size_clash(d, old, t.name, p, n, args)
            if not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
            arrays.append(a)
        return arrays, env

    def _convert(self, t: TensorInfo, a: Any) -> np.ndarray:
        want = t.dtype.numpy
        if isinstance(a, np.ndarray):
            if a.dtype != want:
                raise TCCallError(
                    f"kernel '{self.typed.name}': input '{t.name}' must be {t.dtype.value}, got {a.dtype} "
                    f"(convert it with .astype(np.{want}))"
                )
            return np.asarray(a)
        try:
            return np.asarray(a, dtype=want)
        except (TypeError, ValueError) as e:
            raise TCCallError(
                f"kernel '{self.typed.name}': input '{t.name}' is not a {t.dtype.value} array: {e}"
            ) from e

    def _size_clash(self, d: str, old: int, name: str, p: int, n: int, args: Sequence[Any]) -> TCCallError:
        for t, a in zip(self.inputs, args):
            assert t.dims is not None
            for q, e in enumerate(t.dims):
                if e == d and np.shape(a)[q] == old:
                    return TCCallError(
                        f"kernel '{self.typed.name}': size {d} is {old} from '{t.name}' (dim {q}) but {n} from "
                        f"'{name}' (dim {p})"
                    )
        return TCCallError(f"kernel '{self.typed.name}': size {d} is {old} but {n} from '{name}' (dim {p})")

    def output_shapes(self, env: Mapping[str, int]) -> list[tuple[int, ...]]:
        """The shape of every output for sizes ``env``; raises ``TCCallError`` for a negative size."""
        flat = self._shapes(env)
        out, k = [], 0
        for t in self.outputs:
            shape = tuple(int(x) for x in flat[k : k + t.rank])
            k += t.rank
            for p, n in enumerate(shape):
                if n < 0:
                    sizes = ", ".join(f"{s}={v}" for s, v in env.items())
                    raise TCCallError(
                        f"kernel '{self.typed.name}': output '{t.name}' would have size {n} in dim {p} "
                        f"({self._dims_text[t.name][p]} with {sizes}): the inputs are too small"
                    )
            out.append(shape)
        return out

    def outputs_for(self, env: Mapping[str, int], out: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Fresh output arrays, or the ones given as ``out=`` after checking them."""
        return self.outputs_of_shapes(self.output_shapes(env), out)

    def outputs_of_shapes(self, shapes: Sequence[tuple[int, ...]], out: Any) -> list[np.ndarray]:
        """``outputs_for`` with the output shapes already known."""
        if out is None:
            return [np.empty(s, dtype=d) for d, s in zip(self._out_dtypes, shapes)]
        given = list(out) if isinstance(out, tuple | list) else [out]
        name = self.typed.name
        if len(given) != len(self.outputs):
            raise TCCallError(f"kernel '{name}' has {len(self.outputs)} output(s), out= gives {len(given)}")
        for t, want, s, a in zip(self.outputs, self._out_dtypes, shapes, given):
            if not isinstance(a, np.ndarray):
                raise TCCallError(f"kernel '{name}': out= for '{t.name}' must be a NumPy array, got {type(a).__name__}")
            if a.dtype != want or a.shape != s:
                raise TCCallError(
                    f"kernel '{name}': out= for '{t.name}' must be {t.dtype.value} of shape {s}, "
                    f"got {a.dtype} of shape {a.shape}"
                )
            flags = a.flags
            if not (flags.c_contiguous and flags.writeable):
                raise TCCallError(f"kernel '{name}': out= for '{t.name}' must be a writeable C-contiguous array")
        return given

    def check_overlap(self, ptrs: list[int], arrays: list[np.ndarray]) -> None:
        """Raise ``TCCallError`` when an output's memory overlaps an input's or another output's."""
        n_in = len(self.inputs)
        spans = [(p, p + a.nbytes) for p, a in zip(ptrs, arrays)]
        for j in range(n_in, len(spans)):
            lo, hi = spans[j]
            if hi == lo:
                continue
            for i, (lo2, hi2) in enumerate(spans):
                if lo < hi2 and lo2 < hi and i != j and hi2 > lo2:
                    other = self.inputs[i].name if i < n_in else self.outputs[i - n_in].name
                    what = "input" if i < n_in else "output"
                    raise TCCallError(
                        f"kernel '{self.typed.name}': out= for '{self.outputs[j - n_in].name}' overlaps {what} '{other}'"
                    )


_PLACEHOLDER = re.compile(r"\{(\w+)\.(\d+)\}")
_char_from_buffer: Callable[[Any], Any] = ctypes.c_char.from_buffer
_addressof: Callable[[Any], int] = ctypes.addressof


def data_pointers(arrays: Sequence[np.ndarray]) -> list[int]:
    """The data addresses of C-contiguous ``arrays``.

    A writeable array's goes through the buffer protocol (0.3 us, where ``a.ctypes.data``
    takes 1-2 us); a read-only or empty one's through ``__array_interface__``.
    """
    out = []
    for a in arrays:
        try:
            out.append(_addressof(_char_from_buffer(a)))
        except (TypeError, ValueError, BufferError):
            out.append(a.__array_interface__["data"][0])
    return out


@dataclass(frozen=True)
class CompiledKernel:
    """One native version of a kernel: generic (``sizes`` None) or specialised to ``sizes``."""

    typed: TypedKernel
    kr: KernelRanges
    schedule: Schedule
    sizes: Mapping[str, int] | None
    c_source: str
    loaded: Loaded

    def run(self, inputs: list[np.ndarray], outputs: list[np.ndarray], env: Mapping[str, int]) -> None:
        """Run on bound ``inputs`` (see ``Signature.bind``), writing ``outputs``; raises ``TCRuntimeError``."""
        self.run_ptrs(data_pointers(inputs + outputs), env)

    def run_ptrs(self, ptrs: Sequence[int], env: Mapping[str, int]) -> None:
        """Run on data pointers (inputs then outputs, C-contiguous, as bound)."""
        self.caller(env)(ptrs)

    def caller(self, env: Mapping[str, int]) -> Callable[[Sequence[int]], None]:
        """A function running this version at sizes ``env`` on data pointers; raises ``TCRuntimeError``.

        What does not change between calls (the sizes array, the pointer array's type) is built here,
        once, so a call costs little more than the C function's.
        """
        fn, sizes_env = self.loaded.fn, dict(env)
        sizes = (ctypes.c_int64 * self._n_sizes)(*[sizes_env[s] for s in self.typed.sizes])
        pointers = ctypes.c_void_p * (len(self.typed.by_role(Role.INPUT)) + len(self.typed.kdef.outputs))

        def call(ptrs: Sequence[int]) -> None:
            rc = fn(pointers(*ptrs), sizes)
            if rc != 0:
                raise TCRuntimeError(self.error_message(int(rc), sizes_env))

        return call

    @property
    def _n_sizes(self) -> int:
        return max(1, len(self.typed.sizes))

    def error_message(self, rc: int, env: Mapping[str, int]) -> str:
        name = self.typed.name
        if rc < 0:
            return f"kernel '{name}' ran out of memory allocating its intermediate tensors"
        generic = infer_ranges(self.typed, None) if self.sizes is None else self.kr
        text = generic.errors[rc - 1] if rc - 1 < len(generic.errors) else f"error code {rc}"

        def dim(m: re.Match[str]) -> str:
            d = self.kr.dims[m.group(1)][int(m.group(2))]
            return str(d.subs({sympy.Symbol(k, integer=True, positive=True): v for k, v in env.items()}))

        return f"kernel '{name}': {_PLACEHOLDER.sub(dim, text)}"


def generate_c(
    typed: TypedKernel, schedule: Schedule, sizes: Mapping[str, int] | None, tc: Toolchain
) -> tuple[str, KernelRanges]:
    """The C source of one version of ``typed``, and the range inference it used."""
    if tc.float16 is False and any(t.dtype is DType.FLOAT16 for t in typed.tensors.values()):
        raise TCError(f"kernel '{typed.name}' uses float16, which the C compiler ({tc.version}) does not support")
    kr = infer_ranges(typed, sizes)  # range inference: symbolic, or exact on the given sizes
    validate(schedule, kr)  # the schedule names loops the kernel has
    lowered = lower(kr, schedule, parallel_ok=tc.openmp)  # loop tree: order, tiles, fusion, parallel, folding
    return emit_c(lowered, tc), kr  # C text


def build(typed: TypedKernel, schedule: Schedule, sizes: Mapping[str, int] | None = None) -> CompiledKernel:
    """Compile (or fetch from the cache) one version of ``typed``."""
    tc = find_toolchain()
    c_source, kr = generate_c(typed, schedule, sizes, tc)
    loaded = load(c_source, tc)  # in-process cache, disk cache, or the C compiler
    return CompiledKernel(typed, kr, schedule, dict(sizes) if sizes is not None else None, c_source, loaded)
