"""Conversions between ONNX protos and pliant values: attributes, tensors, types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from pliant.ir.dims import Dim, Sym, parse_dim, symbol_name_for
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, OptionalType, SequenceType, TensorType, Type

if TYPE_CHECKING:
    from pliant.ir.core import AttrValue

A = AttributeProto.AttributeType


def tensor_from_onnx(t: onnx.TensorProto, base_dir: str | None = None) -> np.ndarray:
    """A TensorProto as a NumPy array (strings become an object array of str)."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        from onnx.external_data_helper import load_external_data_for_tensor

        load_external_data_for_tensor(t, base_dir or ".")
    arr = numpy_helper.to_array(t)
    if t.data_type == onnx.TensorProto.STRING:
        arr = np.vectorize(_decode, otypes=[object])(arr) if arr.size else arr.astype(object)
    return arr


def _decode(x: Any) -> Any:
    return x.decode("utf-8", errors="surrogateescape") if isinstance(x, bytes) else x


def tensor_to_onnx(arr: np.ndarray, name: str = "") -> onnx.TensorProto:
    if arr.dtype == object:
        enc = np.vectorize(lambda s: s.encode("utf-8", errors="surrogateescape") if isinstance(s, str) else s, otypes=[object])
        arr = enc(arr) if arr.size else arr
        t = onnx.helper.make_tensor(name, onnx.TensorProto.STRING, arr.shape, arr.flatten().tolist())
        return t
    return numpy_helper.from_array(arr, name)


def attr_from_onnx(a: AttributeProto, base_dir: str | None = None) -> AttrValue:
    """An ONNX attribute's value (graphs are handled by the importer, not here)."""
    t = a.type
    if t == A.INT:
        return int(a.i)
    if t == A.FLOAT:
        return float(a.f)
    if t == A.STRING:
        return _decode(a.s)
    if t == A.INTS:
        return [int(x) for x in a.ints]
    if t == A.FLOATS:
        return [float(x) for x in a.floats]
    if t == A.STRINGS:
        return [_decode(x) for x in a.strings]
    if t == A.TENSOR:
        return tensor_from_onnx(a.t, base_dir)
    if t == A.TENSORS:
        return [tensor_from_onnx(x, base_dir) for x in a.tensors]
    if t == A.SPARSE_TENSOR:
        return sparse_to_dense(a.sparse_tensor)
    if t == A.TYPE_PROTO:
        return type_from_onnx(a.tp)
    if t == A.TYPE_PROTOS:
        return [type_from_onnx(x) for x in a.type_protos]
    raise ValueError(f"attribute '{a.name}' has a type pliant cannot hold ({A.Name(t)})")


def sparse_to_dense(sp: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sp.values)
    indices = numpy_helper.to_array(sp.indices)
    shape = tuple(sp.dims)
    dense = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    if indices.ndim == 2:
        flat = np.ravel_multi_index(tuple(indices.T), shape)
    else:
        flat = indices
    dense[flat] = values
    return dense.reshape(shape)


def attr_to_onnx(name: str, value: AttrValue) -> AttributeProto:
    """The inverse of ``attr_from_onnx``."""
    if isinstance(value, np.ndarray):
        return onnx.helper.make_attribute(name, tensor_to_onnx(value))
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return onnx.helper.make_attribute(name, [tensor_to_onnx(v) for v in value])  # type: ignore[arg-type]
    if isinstance(value, (TensorType, SequenceType, OptionalType)):
        return onnx.helper.make_attribute(name, type_to_onnx(value))
    if isinstance(value, list) and value and isinstance(value[0], (TensorType, SequenceType, OptionalType)):
        return onnx.helper.make_attribute(name, [type_to_onnx(v) for v in value])  # type: ignore[arg-type, misc]
    if isinstance(value, list) and not value:
        return onnx.helper.make_attribute(name, [], attr_type=A.INTS)
    return onnx.helper.make_attribute(name, value)


class SymbolTable:
    """Maps ONNX ``dim_param`` strings to symbols and makes fresh ones for unnamed dims."""

    def __init__(self) -> None:
        self.fresh_count = 0
        self.names: dict[str, str] = {}

    def named(self, param: str) -> Dim:
        if param not in self.names:
            base = symbol_name_for(param)
            self.names[param] = base
        try:
            return parse_dim(self.names[param])
        except ValueError:
            return Sym.named(symbol_name_for(param))

    def fresh(self) -> Sym:
        self.fresh_count += 1
        return Sym.named(f"_d{self.fresh_count}")


def type_from_onnx(tp: onnx.TypeProto, symbols: SymbolTable | None = None, fresh_dims: bool = False) -> Type:
    """An ONNX TypeProto as a pliant type.

    With ``fresh_dims`` an unnamed dynamic dim gets a fresh symbol (graph
    inputs); otherwise it stays unknown.
    """
    which = tp.WhichOneof("value")
    if which == "tensor_type" or which == "sparse_tensor_type":
        tt = tp.tensor_type if which == "tensor_type" else tp.sparse_tensor_type
        dtype = DType.from_onnx(tt.elem_type) if tt.elem_type else None
        if not tt.HasField("shape"):
            return TensorType(dtype, None)
        dims: list[Dim] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(symbols.named(d.dim_param) if symbols else parse_dim_safe(d.dim_param))
            else:
                dims.append(symbols.fresh() if (symbols and fresh_dims) else None)
        return TensorType(dtype, tuple(dims))
    if which == "sequence_type":
        return SequenceType(type_from_onnx(tp.sequence_type.elem_type, symbols, fresh_dims))
    if which == "optional_type":
        return OptionalType(type_from_onnx(tp.optional_type.elem_type, symbols, fresh_dims))
    return ANY


def parse_dim_safe(param: str) -> Dim:
    try:
        return parse_dim(param)
    except ValueError:
        return Sym.named(symbol_name_for(param))


def type_to_onnx(t: Type) -> onnx.TypeProto:
    if isinstance(t, TensorType):
        elem = t.dtype.value if t.dtype is not None else 0
        if t.shape is None:
            return onnx.helper.make_tensor_type_proto(elem, None)
        shape: list[int | str | None] = [d if isinstance(d, int) or d is None else str(d) for d in t.shape]
        return onnx.helper.make_tensor_type_proto(elem, shape)
    if isinstance(t, SequenceType):
        return onnx.helper.make_sequence_type_proto(type_to_onnx(t.elem))
    if isinstance(t, OptionalType):
        return onnx.helper.make_optional_type_proto(type_to_onnx(t.elem))
    return onnx.TypeProto()
