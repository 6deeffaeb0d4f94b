"""The C heap's free pages handed back to the system (glibc's ``malloc_trim``; elsewhere nothing happens).

glibc keeps freed blocks in the heap, and they stay in the resident set: compiling allocates and frees far
more than it keeps (protobuf copies, the analysis's expressions), and the benchmark harness's own work (reading
a case, comparing outputs) would otherwise count towards the next calls' peak memory.
"""

from __future__ import annotations

from typing import Any

_TRIM: Any = None


def release_free_memory() -> None:
    """Return the heap's free pages to the system now."""
    global _TRIM
    # NOTE: no gc.collect() here: in a process holding millions of objects it takes a good part of a second
    if _TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)
