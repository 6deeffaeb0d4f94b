"""The pliant IR: types with symbolic dims, values, ops, regions, functions, modules."""

from pliant.ir.builder import BlockBuilder, FunctionBuilder
from pliant.ir.core import AttrValue, Block, Function, Module, Op, Region, Use, Value
from pliant.ir.dims import Dim, Sym
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, OptionalType, SequenceType, TensorType, TupleType, Type, UnknownType, tensor

__all__ = [
    "ANY",
    "AttrValue",
    "Block",
    "BlockBuilder",
    "DType",
    "Dim",
    "Function",
    "FunctionBuilder",
    "Module",
    "Op",
    "OptionalType",
    "Region",
    "SequenceType",
    "Sym",
    "TensorType",
    "TupleType",
    "Type",
    "UnknownType",
    "Use",
    "Value",
    "tensor",
]

from pliant.ir.parser import parse_module
from pliant.ir.printer import print_module

__all__ += ["parse_module", "print_module"]

from pliant.ir.verifier import verify_module  # noqa: E402

__all__ += ["verify_module"]
