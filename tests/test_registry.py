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


def test_shipped_schema_table_matches_onnx_defs_at_every_covered_opset() -> None:
    """The table read instead of ``onnx.defs`` (so that loading a model leaves ONNX's schema registry unbuilt)
    must give what ``onnx.defs`` gives, for every registered op at every opset it covers. A stale table fails
    here: regenerate it with ``python -m pliant.ops.schema_table``."""
    from pliant.errors import UnsupportedOpError
    from pliant.frontends.onnx_attrs import attr_from_onnx
    from pliant.ops.registry import ParamSpec, Schema, onnx_schema
    from pliant.ops.schema_table import covered

    def from_onnx_defs(name: str, domain: str, opset: int) -> Schema:
        """The schema built straight from onnx.defs, without the table's encoding."""
        try:
            s = onnx.defs.get_schema(name, opset, domain)
        except onnx.defs.SchemaError:
            raise UnsupportedOpError("no such op") from None
        opt = onnx.defs.OpSchema.FormalParameterOption
        attrs = {k: attr_from_onnx(a.default_value) if a.default_value.name else None for k, a in s.attributes.items()}

        def params(ps: list[onnx.defs.OpSchema.FormalParameter]) -> tuple[ParamSpec, ...]:
            return tuple(ParamSpec(p.name, p.option == opt.Optional, p.option == opt.Variadic) for p in ps)

        required = frozenset(k for k, a in s.attributes.items() if a.required)
        return Schema(name, domain, s.since_version, params(s.inputs), params(s.outputs), attrs, required)

    checked = 0
    for d in all_ops():
        if d.schema_override is not None:
            continue
        top = {"": onnx.defs.onnx_opset_version(), "ai.onnx.ml": onnx.defs.onnx_ml_opset_version()}.get(d.domain, 1)
        for opset in range(1, top + 1):
            assert covered(d.name, d.domain, opset) is not None, f"{d.qualname} at opset {opset} is not in the table"
            try:
                want = from_onnx_defs(d.name, d.domain, opset)
            except UnsupportedOpError:
                with pytest.raises(UnsupportedOpError, match="defines no op"):
                    onnx_schema(d.name, d.domain, opset)
                continue
            assert onnx_schema(d.name, d.domain, opset) == want, f"{d.qualname} at opset {opset}"
            checked += 1
    assert checked > 1000


def test_schema_table_defers_to_onnx_defs_past_what_it_covers() -> None:
    from pliant.ops.schema_table import covered

    assert covered("Relu", "", 10_000) is None
    assert covered("Relu", "no.such.domain", 1) is None
    assert covered("Relu", "", 5) is not False and covered("Relu", "", 5) is not None
