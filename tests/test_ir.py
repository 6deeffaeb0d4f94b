"""The IR: builder, use lists, text round trip, verifier messages, calls and recursion."""

from __future__ import annotations

import numpy as np
import pytest

import pliant
from pliant.errors import IRParseError, VerifyError
from pliant.ir import (
    DType,
    Function,
    FunctionBuilder,
    Op,
    OptionalType,
    SequenceType,
    Sym,
    TensorType,
    parse_module,
    print_module,
    tensor,
    verify_module,
)
from pliant.ir.dims import parse_dim
from pliant.ir.equality import module_difference
from tests.helpers import assert_round_trips

F32 = DType.FLOAT


def relu_module() -> pliant.Module:
    fb = FunctionBuilder("main", [("x", tensor(F32, "N", 4)), ("c", tensor(DType.BOOL))])
    r = fb.op("Relu", [fb.inputs[0]], names=["r"])
    then = fb.region([], lambda b, _: [r])
    other = fb.region([], lambda b, _: [b.op("Neg", [fb.inputs[0]])])
    fb.output("y", fb.op("If", [fb.inputs[1]], regions={"then_branch": then, "else_branch": other}))
    return fb.module()


def test_builder_infers_symbolic_types() -> None:
    m = relu_module()
    assert str(m.entry.output_types[0]) == "f32[N,4]"
    verify_module(m)


def test_use_lists_follow_rewrites() -> None:
    m = relu_module()
    x = m.entry.inputs[0]
    relu = m.entry.body.ops[0]
    assert len(x.uses) == 2  # Relu, and Neg inside the else region
    # route the Relu's operand through a new Identity of x, then back, checking both use lists
    ident = Op("Identity", [x], [x.type])
    m.entry.body.insert(0, ident)
    relu.set_operand(0, ident.results[0])
    assert [u.user for u in ident.results[0].uses] == [relu]
    assert relu not in [u.user for u in x.uses]
    ident.results[0].replace_all_uses_with(x)
    assert not ident.results[0].uses
    ident.erase()
    assert ident not in m.entry.body.ops
    with pytest.raises(ValueError, match="still has 1 uses"):
        relu.erase()


def test_round_trip_control_flow_and_types() -> None:
    m = relu_module()
    assert_round_trips(m)
    text = print_module(m)
    assert "If(%c)" in text and "then_branch()" in text and "yield %r" in text


def test_round_trip_attributes_of_every_kind() -> None:
    fb = FunctionBuilder("main", [("x", tensor(F32, 2, 3))])
    big = np.arange(100, dtype=np.float32).reshape(10, 10)
    small = np.array([[1.5, -2.25, np.inf]], dtype=np.float64)
    strings = np.array(["a", "b\"c", "ü"], dtype=object)
    attrs = {"i": -3, "f": 1e-5, "s": "hi \"there\"", "ints": [1, 2], "floats": [0.5, 2.0], "strs": ["x", "y z"],
             "t": big, "t2": small, "ts": strings, "ty": SequenceType(tensor(F32, "N")), "nan": float("nan")}
    fb.output("y", fb.op("Identity", [fb.inputs[0]], types=[tensor(F32, 2, 3)]))
    fb.function.body.ops[0].attrs.update(attrs)
    m = fb.module()
    assert_round_trips(m)
    back = parse_module(print_module(m))
    got = back.entry.body.ops[0].attrs
    np.testing.assert_array_equal(got["t"], big)
    assert got["t2"].dtype == np.float64 and np.array_equal(got["t2"], small)
    assert list(got["ts"]) == list(strings)
    assert got["ty"] == SequenceType(tensor(F32, "N"))


def test_dims_print_and_parse_as_expressions() -> None:
    d = parse_dim("past + seq")
    assert isinstance(d, Sym) and d.symbols == {"past", "seq"}
    assert parse_dim("2*N") == parse_dim("N*2")
    assert parse_dim("?") is None and parse_dim("7") == 7
    t = TensorType(F32, (parse_dim("past + 1"), None, 3))
    fb = FunctionBuilder("main", [("x", t), ("o", OptionalType(tensor(DType.INT64)))])
    fb.output("y", fb.inputs[0])
    assert_round_trips(fb.module())
    assert "f32[past + 1,?,3]" in print_module(fb.module())


def test_recursive_function_runs() -> None:
    """fact(n) = n <= 1 ? 1 : n * fact(n - 1), as IR calling itself."""
    i64 = tensor(DType.INT64)
    fb = FunctionBuilder("main", [("n", i64)])
    m = fb.module()
    fact = Function("fact")
    n = fact.body.add_arg(i64, "n")
    m.add_function(fact)
    from pliant.ir import BlockBuilder

    b = BlockBuilder(fact.body, m)
    one = b.const(np.array(1, np.int64))
    small = b.op("LessOrEqual", [n, one])
    then = b.region([], lambda rb, _: [one])

    def recurse(rb: BlockBuilder, _: list[pliant.ir.Value]) -> list[pliant.ir.Value]:
        sub = rb.op("Sub", [n, one])
        call = pliant.ir.Op("Call", [sub], [i64], {"callee": "fact"}, domain="pliant")
        rb.block.append(call)
        return [rb.op("Mul", [n, call.results[0]])]

    other = b.region([], recurse)
    fact.body.add_output(b.op("If", [small], regions={"then_branch": then, "else_branch": other}))
    fact.result_names = ["f"]
    (res,) = fb.call(fact, [fb.inputs[0]])
    fb.output("f", res)
    verify_module(m)
    assert_round_trips(m)
    for k, expected in ((1, 1), (5, 120), (10, 3628800)):
        assert int(pliant.interpret(m, {"n": np.array(k, np.int64)})["f"]) == expected


def test_verifier_reports_use_before_def() -> None:
    m = relu_module()
    body = m.entry.body
    body.ops.reverse()  # the If now reads %r before the Relu defines it
    with pytest.raises(VerifyError, match=r"output 0 \(%r\) is used before it is defined"):
        verify_module(m)


def test_verifier_reports_type_mismatch() -> None:
    text = """module @main opset(ai.onnx = 17) {
  func @main(%x: f32[N], %y: i64[N]) -> (z: f32[N]) {
    %z = Add(%x, %y) : f32[N]
    return %z
  }
}"""
    m = parse_module(text)
    with pytest.raises(VerifyError, match=r"type mismatch|type error"):
        verify_module(m)


def test_verifier_reports_region_arity() -> None:
    text = """module @main opset(ai.onnx = 17) {
  func @main(%m: i64[], %c: bool[], %x: f32[3]) -> (y: f32[3]) {
    %y = Loop(%m, %c, %x) : f32[3] {
      body(%i: i64[], %cond: bool[]) {
        yield %cond
      }
    }
    return %y
  }
}"""
    with pytest.raises(VerifyError, match=r"region body takes 2 arguments; it needs 2 \+ 1"):
        verify_module(parse_module(text))


def test_verifier_reports_unknown_op_and_arity() -> None:
    text = """module @main opset(ai.onnx = 17) {
  func @main(%x: f32[3]) -> (y: f32[3], z: f32[3]) {
    %y = Relu(%x, %x) : f32[3]
    %z = NoSuchOp(%x) : f32[3]
    return %y, %z
  }
}"""
    with pytest.raises(VerifyError, match=r"(?s)has 2 inputs; its schema allows 1.*NoSuchOp is not defined"):
        verify_module(parse_module(text))


def test_parse_errors_point_at_line_and_column() -> None:
    text = "module @main opset(ai.onnx = 17) {\n  func @main(%x: f32[3]) -> (y: f32[3]) {\n    %y = Relu(%q) : f32[3]\n"
    with pytest.raises(IRParseError, match=r"line 3, column 15: use of undefined value %q"):
        parse_module(text)
    with pytest.raises(IRParseError, match=r"line 1.*unknown dtype 'f33'"):
        parse_module("module @main opset() { func @main(%x: f33[3]) -> () { return } }")


def test_equality_finds_differences() -> None:
    a, b = relu_module(), relu_module()
    assert module_difference(a, b) is None
    b.entry.body.ops[0].attrs["alpha"] = 1.0
    assert "attribute names differ" in (module_difference(a, b) or "")
