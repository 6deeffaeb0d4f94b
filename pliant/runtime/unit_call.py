"""The host side of a region unit's call in C (``unit_call.c``), built on first use into the kernel cache.

``RegionUnit.run`` spends about 7 us of Python per call on checking inputs, looking its plan up,
allocating outputs and building the pointer array, against a few microseconds of native work in the small
units of a dynamic model (one per expert of a mixture of experts, per step of a decoder). ``runner()``
returns the C function that does all of that in one call, or None where it cannot be built (no Python
headers, no C compiler, ``PLIANT_UNIT_CALL=0``); the units then take their Python path, which gives the
same results.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import os
import sysconfig
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()
_STATE: list[Callable[..., Any] | None] = []
NAME = "_pliant_unit_call"


def runner() -> Callable[..., Any] | None:
    """``run(fn, xs, dyn, descrs, const_at, const_objs, plans, table)`` (see ``unit_call.c``), or None."""
    if _STATE:
        return _STATE[0]
    with _LOCK:
        if not _STATE:
            _STATE.append(_build())
    return _STATE[0]


def executor() -> Callable[..., Any] | None:
    """``exec_block(code, regs, args)`` (see ``unit_call.c``), or None where the C path is off."""
    return _MODULE[0].exec_block if runner() is not None and _MODULE else None


def feeds_checker() -> Callable[..., Any] | None:
    """``feeds_in_order(spec, feeds)`` (see ``unit_call.c``), or None where the C path is off."""
    return _MODULE[0].feeds_in_order if runner() is not None and _MODULE else None


def arena_size() -> int:
    """The bytes of this thread's arena in the C path (0 where it is off or this thread ran no unit yet)."""
    return int(_MODULE[0].arena_size()) if _MODULE else 0


def why_not() -> str | None:
    """Why the C path is off (after ``runner()`` returned None), for reports."""
    return _WHY[0] if _WHY else None


_WHY: list[str] = []
_MODULE: list[Any] = []


def _build() -> Callable[..., Any] | None:
    if os.environ.get("PLIANT_UNIT_CALL", "1") == "0":
        _WHY.append("PLIANT_UNIT_CALL=0")
        return None
    import numpy as np

    from pliant.kernels import cache
    from pliant.kernels.errors import CompileError, CompilerNotFoundError
    from pliant.kernels.toolchain import find_toolchain

    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").exists():
        _WHY.append("the Python headers (Python.h) are not installed")
        return None
    try:
        tc = find_toolchain()
        # NOTE: the include paths enter the cache key through the flags: another Python or NumPy builds anew
        tc = dataclasses.replace(tc, flags=(*tc.flags, f"-I{include}", f"-I{np.get_include()}"))
        source = resources.files("pliant.runtime").joinpath("unit_call.c").read_text()
        path = cache.load(source, tc).path
        loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
        spec = importlib.util.spec_from_loader(NAME, loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except (CompilerNotFoundError, CompileError, OSError, ImportError) as e:
        _WHY.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return None
    _MODULE.append(module)
    fn: Callable[..., Any] = module.run
    return fn
