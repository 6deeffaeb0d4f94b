"""Types of IR values: tensors with symbolic shapes, sequences, optionals, tuples.

All types are frozen; build a changed one with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from pliant.ir.dims import Dim, Sym, format_dim
from pliant.ir.dtypes import DType


@dataclass(frozen=True, slots=True)
class TensorType:
    """A tensor of ``dtype`` (None: not known) and ``shape`` (None: unknown rank).

    >>> str(TensorType(DType.FLOAT, (Sym.named("N"), 3)))
    'f32[N,3]'
    """

    dtype: DType | None
    shape: tuple[Dim, ...] | None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for d in self.shape or ():
            if isinstance(d, Sym):
                out |= d.symbols
        return out

    def __str__(self) -> str:
        dt = self.dtype.short if self.dtype is not None else "?"
        if self.shape is None:
            return f"{dt}[*]"
        return f"{dt}[{','.join(format_dim(d) for d in self.shape)}]"


@dataclass(frozen=True, slots=True)
class SequenceType:
    """An ONNX sequence (a list) of values of type ``elem``."""

    elem: Type

    def __str__(self) -> str:
        return f"seq<{self.elem}>"


@dataclass(frozen=True, slots=True)
class OptionalType:
    """A value of type ``elem`` or nothing."""

    elem: Type

    def __str__(self) -> str:
        return f"opt<{self.elem}>"


@dataclass(frozen=True, slots=True)
class TupleType:
    """A fixed-size heterogeneous group of values."""

    elems: tuple[Type, ...]

    def __str__(self) -> str:
        return f"tuple<{', '.join(str(e) for e in self.elems)}>"


@dataclass(frozen=True, slots=True)
class UnknownType:
    """A value whose type nothing has told us yet (e.g. an untyped function argument)."""

    def __str__(self) -> str:
        return "any"


Type = Union[TensorType, SequenceType, OptionalType, TupleType, UnknownType]

ANY = UnknownType()


def tensor(dtype: DType | None, *dims: Dim | str) -> TensorType:
    """Shorthand: ``tensor(DType.FLOAT, "N", 3)`` is ``f32[N,3]``."""
    return TensorType(dtype, tuple(Sym.named(d) if isinstance(d, str) else d for d in dims))


def compatible(declared: Type, actual: Type) -> bool:
    """Whether ``actual`` may flow where ``declared`` is expected (unknowns match anything)."""
    if isinstance(declared, UnknownType) or isinstance(actual, UnknownType):
        return True
    if isinstance(declared, TensorType) and isinstance(actual, TensorType):
        if declared.dtype is not None and actual.dtype is not None and declared.dtype != actual.dtype:
            return False
        if declared.shape is None or actual.shape is None:
            return True
        if len(declared.shape) != len(actual.shape):
            return False
        return all(
            a is None or b is None or not isinstance(a, int) or not isinstance(b, int) or a == b
            for a, b in zip(declared.shape, actual.shape)
        )
    if isinstance(declared, (SequenceType, OptionalType)) and type(declared) is type(actual):
        return compatible(declared.elem, actual.elem)  # type: ignore[union-attr]
    if isinstance(declared, TupleType) and isinstance(actual, TupleType):
        return len(declared.elems) == len(actual.elems) and all(
            compatible(a, b) for a, b in zip(declared.elems, actual.elems)
        )
    return False
