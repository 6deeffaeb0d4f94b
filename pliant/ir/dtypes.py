"""Element types of tensors.

One table maps each pliant dtype to its ONNX element type, its short printed
name and its NumPy dtype.  Types NumPy lacks (bfloat16, the float8/float4
variants, int4/uint4 ...) come from ``ml_dtypes``, as ONNX itself uses them.
"""

from __future__ import annotations

import enum
from typing import Any

import ml_dtypes
import numpy as np
from onnx import TensorProto


class DType(enum.Enum):
    """A tensor element type; ``value`` is the ONNX ``TensorProto.DataType``."""

    FLOAT = TensorProto.FLOAT
    UINT8 = TensorProto.UINT8
    INT8 = TensorProto.INT8
    UINT16 = TensorProto.UINT16
    INT16 = TensorProto.INT16
    INT32 = TensorProto.INT32
    INT64 = TensorProto.INT64
    STRING = TensorProto.STRING
    BOOL = TensorProto.BOOL
    FLOAT16 = TensorProto.FLOAT16
    DOUBLE = TensorProto.DOUBLE
    UINT32 = TensorProto.UINT32
    UINT64 = TensorProto.UINT64
    COMPLEX64 = TensorProto.COMPLEX64
    COMPLEX128 = TensorProto.COMPLEX128
    BFLOAT16 = TensorProto.BFLOAT16
    FLOAT8E4M3FN = TensorProto.FLOAT8E4M3FN
    FLOAT8E4M3FNUZ = TensorProto.FLOAT8E4M3FNUZ
    FLOAT8E5M2 = TensorProto.FLOAT8E5M2
    FLOAT8E5M2FNUZ = TensorProto.FLOAT8E5M2FNUZ
    UINT4 = TensorProto.UINT4
    INT4 = TensorProto.INT4
    FLOAT4E2M1 = TensorProto.FLOAT4E2M1
    FLOAT8E8M0 = TensorProto.FLOAT8E8M0
    UINT2 = TensorProto.UINT2
    INT2 = TensorProto.INT2
    FLOAT6E2M3 = TensorProto.FLOAT6E2M3
    FLOAT6E3M2 = TensorProto.FLOAT6E3M2

    @property
    def short(self) -> str:
        """The name used in IR text, e.g. ``f32``."""
        return _SHORT[self]

    @property
    def numpy(self) -> np.dtype[Any]:
        """The NumPy dtype that holds values of this type."""
        return _NP[self]

    @property
    def is_float(self) -> bool:
        return self in FLOATS

    @property
    def is_int(self) -> bool:
        return self in INTS

    @staticmethod
    def from_onnx(elem_type: int) -> DType:
        try:
            return DType(elem_type)
        except ValueError:
            raise ValueError(f"unsupported ONNX element type {elem_type}") from None

    @staticmethod
    def from_short(name: str) -> DType:
        try:
            return _FROM_SHORT[name]
        except KeyError:
            raise ValueError(f"unknown dtype '{name}'") from None

    @staticmethod
    def from_numpy(dt: np.dtype[Any] | type) -> DType:
        key = np.dtype(dt)
        if key.kind in "OUS":
            return DType.STRING
        try:
            return _FROM_NP[key]
        except KeyError:
            raise ValueError(f"no pliant dtype for NumPy dtype {key}") from None


_TABLE: list[tuple[DType, str, Any]] = [
    (DType.FLOAT, "f32", np.float32),
    (DType.DOUBLE, "f64", np.float64),
    (DType.FLOAT16, "f16", np.float16),
    (DType.BFLOAT16, "bf16", ml_dtypes.bfloat16),
    (DType.FLOAT8E4M3FN, "f8e4m3fn", ml_dtypes.float8_e4m3fn),
    (DType.FLOAT8E4M3FNUZ, "f8e4m3fnuz", ml_dtypes.float8_e4m3fnuz),
    (DType.FLOAT8E5M2, "f8e5m2", ml_dtypes.float8_e5m2),
    (DType.FLOAT8E5M2FNUZ, "f8e5m2fnuz", ml_dtypes.float8_e5m2fnuz),
    (DType.FLOAT8E8M0, "f8e8m0", ml_dtypes.float8_e8m0fnu),
    (DType.FLOAT4E2M1, "f4e2m1", ml_dtypes.float4_e2m1fn),
    (DType.FLOAT6E2M3, "f6e2m3", ml_dtypes.float6_e2m3fn),
    (DType.FLOAT6E3M2, "f6e3m2", ml_dtypes.float6_e3m2fn),
    (DType.INT8, "i8", np.int8),
    (DType.INT16, "i16", np.int16),
    (DType.INT32, "i32", np.int32),
    (DType.INT64, "i64", np.int64),
    (DType.UINT8, "u8", np.uint8),
    (DType.UINT16, "u16", np.uint16),
    (DType.UINT32, "u32", np.uint32),
    (DType.UINT64, "u64", np.uint64),
    (DType.INT4, "i4", ml_dtypes.int4),
    (DType.UINT4, "u4", ml_dtypes.uint4),
    (DType.INT2, "i2", ml_dtypes.int2),
    (DType.UINT2, "u2", ml_dtypes.uint2),
    (DType.BOOL, "bool", np.bool_),
    (DType.STRING, "str", np.object_),
    (DType.COMPLEX64, "c64", np.complex64),
    (DType.COMPLEX128, "c128", np.complex128),
]

_SHORT: dict[DType, str] = {d: s for d, s, _ in _TABLE}
_FROM_SHORT: dict[str, DType] = {s: d for d, s, _ in _TABLE}
_NP: dict[DType, np.dtype[Any]] = {d: np.dtype(n) for d, _, n in _TABLE}
_FROM_NP: dict[np.dtype[Any], DType] = {np.dtype(n): d for d, _, n in _TABLE}

FLOATS = frozenset(
    {
        DType.FLOAT,
        DType.DOUBLE,
        DType.FLOAT16,
        DType.BFLOAT16,
        DType.FLOAT8E4M3FN,
        DType.FLOAT8E4M3FNUZ,
        DType.FLOAT8E5M2,
        DType.FLOAT8E5M2FNUZ,
        DType.FLOAT8E8M0,
        DType.FLOAT4E2M1,
        DType.FLOAT6E2M3,
        DType.FLOAT6E3M2,
    }
)
INTS = frozenset(
    {
        DType.INT8,
        DType.INT16,
        DType.INT32,
        DType.INT64,
        DType.UINT8,
        DType.UINT16,
        DType.UINT32,
        DType.UINT64,
        DType.INT4,
        DType.UINT4,
        DType.INT2,
        DType.UINT2,
    }
)
