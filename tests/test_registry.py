"""The op registry: every op is defined once with a dynamism class, schema and kernel."""

from __future__ import annotations

import onnx.defs
import pytest

from pliant.ops.registry import Dynamism, all_ops, lookup

# The SoD² classes of representative ops (Niu et al., ASPLOS'24, Table 1).
EXPECTED_CLASSES = {
    "Shape": Dynamism.ISDO,
    "Size": Dynamism.ISDO,
    "Add": Dynamism.ISDOS,
    "Conv": Dynamism.ISDOS,
    "MatMul": Dynamism.ISDOS,
    "Relu": Dynamism.ISDOS,
    "Reshape": Dynamism.ISVDOS,
    "Expand": Dynamism.ISVDOS,
    "Range": Dynamism.ISVDOS,
    "ConstantOfShape": Dynamism.ISVDOS,
    "Tile": Dynamism.ISVDOS,
    "NonZero": Dynamism.EDO,
    "NonMaxSuppression": Dynamism.EDO,
    "Unique": Dynamism.EDO,
    "If": Dynamism.EDO,
    "Loop": Dynamism.EDO,
}


@pytest.mark.parametrize("name,cls", sorted(EXPECTED_CLASSES.items()))
def test_dynamism_class(name: str, cls: Dynamism) -> None:
    d = lookup(name)
    assert d is not None, f"{name} is not defined"
    assert d.dynamism == cls


def test_every_op_is_complete() -> None:
    defs = all_ops()
    assert len(defs) >= 180
    for d in defs:
        assert isinstance(d.dynamism, Dynamism)
        assert callable(d.kernel)
        if d.domain != "pliant":
            # the schema comes from ONNX's own definition of the op
            assert onnx.defs.has(d.name, d.domain), f"{d.qualname} is not an ONNX op"


def test_families_are_named_sets() -> None:
    from pliant.ops.registry import FAMILIES

    assert "Loop" in FAMILIES["control"]
    assert all(isinstance(v, set) and v for v in FAMILIES.values())
