"""Errors of the kernel language, its compiler and its runtime.

Errors about kernel source carry the line and column and show the offending
text with a caret under it:

    line 2, column 12: unknown function 'expp' (builtins: abs, acos, ...)
      C(i) = expp(A(i))
             ^^^^
"""

from __future__ import annotations

from pliant.errors import PliantError
from pliant.kernels.ir import Loc


class TCError(PliantError):
    """Base class of every kernel-language error."""


class TCSourceError(TCError):
    """An error at a place in kernel source; ``line`` and ``col`` are 1-based (0 when unknown)."""

    def __init__(self, message: str, loc: Loc | None = None, source: str = "") -> None:
        self.message = message
        self.line = loc.line if loc else 0
        self.col = loc.col if loc else 0
        super().__init__(_format(message, loc, source))


class TCSyntaxError(TCSourceError):
    """The source does not parse."""


class TCTypeError(TCSourceError):
    """The kernel is ill-typed: wrong arity, rank, dtype, unknown name, size clash."""


class TCRangeError(TCSourceError):
    """Range inference cannot bound an index variable."""


class TCCallError(TCError):
    """A kernel was called with arguments that do not fit its signature."""


class TCRuntimeError(TCError):
    """A kernel stopped at run time: a data-dependent index out of range, or out of memory."""


class TCScheduleError(TCError):
    """A schedule names loops the kernel lacks or asks for something illegal."""


class CompilerNotFoundError(TCError):
    """No working C compiler."""


class CompileError(TCError):
    """The C compiler rejected generated code (a pliant bug: please report it with the C source)."""


def _format(message: str, loc: Loc | None, source: str) -> str:
    if loc is None or loc.line <= 0:
        return message
    head = f"line {loc.line}, column {loc.col}: {message}"
    lines = source.splitlines()
    if not 0 < loc.line <= len(lines):
        return head
    text = lines[loc.line - 1]
    caret = " " * (loc.col - 1) + "^" * max(1, min(loc.length, len(text) - loc.col + 1))
    return f"{head}\n  {text}\n  {caret}"
