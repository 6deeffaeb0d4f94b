"""Hand-written C kernels shipped with pliant (``pliant/runtime/*.c``), compiled through the kernel cache.

Each file defines the kernel layer's entry point, ``int pliant_kernel(void **p,
const int64_t *s)`` (data pointers, sizes); it is compiled with the system C
compiler on first use, cached on disk like a generated kernel, and loaded once
per process.  ``load`` raises ``CompilerNotFoundError`` without a C compiler.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any

from pliant.kernels import cache
from pliant.kernels.toolchain import find_toolchain

_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}


def load(name: str) -> Any:
    """The entry point of ``pliant/runtime/<name>.c`` (a ctypes function returning int)."""
    fn = _LOADED.get(name)
    if fn is None:
        source = resources.files("pliant.runtime").joinpath(f"{name}.c").read_text()
        fn = cache.load(source, find_toolchain()).fn
        with _LOCK:
            fn = _LOADED.setdefault(name, fn)
    return fn
