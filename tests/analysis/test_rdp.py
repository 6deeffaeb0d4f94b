"""Rank and Dimension Propagation: soundness against real runs, precision on the patterns it targets,
backward propagation, and the analysed IR's text round trip."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
import pytest

import pliant
from pliant.analysis.rdp import analyze
from pliant.analysis.soundness import check_soundness
from pliant.ir.dims import Sym, d_add, d_mul, dims_equal
from pliant.ir.types import SequenceType, TensorType
from tests.analysis import models as M
from tests.helpers import assert_round_trips


def _sym(name: str) -> Sym:
    return Sym.named(name)


def _check_all(module: pliant.ir.Module, feeds_list: Any) -> int:
    """Analyse once, run every feed, and fail on any mismatch; returns the number of checked dims."""
    analysis = analyze(module)
    checked = 0
    for feeds in feeds_list:
        report = check_soundness(module, analysis, feeds)
        assert not report.mismatches, "\n".join(str(m) for m in report.mismatches[:10])
        checked += report.checked_dims
    return checked


# -- soundness: every inferred dim and value evaluates to what happened -----------------------


@pytest.mark.parametrize("name", M.SUITE_MODELS)
def test_suite_model_is_sound_at_every_case(name: str) -> None:
    module = pliant.load(os.path.join(M.SUITE, f"{name}.onnx"))
    cases = M.suite_cases(name)
    assert len(cases) >= 2
    checked = _check_all(module, [feeds for _, feeds in cases])
    assert checked > 100


@pytest.mark.parametrize(("builder", "feeds"), [
    (M.loop_grow, M.loop_grow_feeds),
    (M.if_disagree, M.if_disagree_feeds),
    (M.nonzero, M.nonzero_feeds),
])
def test_small_models_are_sound(builder: Any, feeds: Any) -> None:
    assert _check_all(pliant.load(builder()), list(feeds())) > 0


@pytest.mark.parametrize(("file", "feeds"), [("encoder.onnx", M.encoder_feeds), ("gpt_step.onnx", M.gpt_step_feeds)])
def test_exported_models_are_sound(file: str, feeds: Any) -> None:
    assert _check_all(pliant.load(os.path.join(M.DATA, file)), list(feeds())) > 100


def test_a_wrong_dim_is_reported() -> None:
    """The checker itself: a type that contradicts the run is a mismatch naming the value."""
    module = pliant.load(M.nonzero())
    analysis = analyze(module)
    gather = next(op for op in module.walk() if op.name == "GatherND")
    t = gather.results[0].type
    assert isinstance(t, TensorType)
    gather.results[0].type = TensorType(t.dtype, (5,))
    report = check_soundness(module, analysis, {"x": np.ones((2, 2), np.float32)})
    assert [str(m) for m in report.mismatches] == [
        "GatherND node result 0 'vals' (f32[5]) axis 0: inferred 5, actual 4"]


# -- precision ------------------------------------------------------------------------------------


def test_encoder_keeps_batch_and_length_through_reshapes() -> None:
    module = pliant.load(os.path.join(M.DATA, "encoder.onnx"))
    analyze(module)
    (out,) = module.entry.output_types
    assert isinstance(out, TensorType) and out.shape == (_sym("B"), _sym("L"), 32)
    # every value of the encoder has a fully known shape: constants or expressions of B and L
    for op in module.walk():
        for r in op.results:
            assert isinstance(r.type, TensorType) and r.type.shape is not None, r
            assert all(d is not None and (isinstance(d, int) or d.symbols <= {"B", "L"}) for d in r.type.shape), r


def test_gpt_step_cache_grows_to_past_plus_seq() -> None:
    module = pliant.load(os.path.join(M.DATA, "gpt_step.onnx"))
    analyze(module)
    logits, present_k, present_v = module.entry.output_types
    b, s, p = _sym("B"), _sym("S"), _sym("P")
    assert isinstance(logits, TensorType) and logits.shape == (b, s, 50)
    for t in (present_k, present_v):
        assert isinstance(t, TensorType) and t.shape is not None
        assert t.shape[0] == b and dims_equal(t.shape[2], d_add(p, s)) and t.shape[3] == 8


def test_suite_decode_step_cache_is_past_plus_one() -> None:
    module = pliant.load(os.path.join(M.SUITE, "gpt_decode_step.onnx"))
    analyze(module)
    for t in module.entry.output_types[1:]:
        assert isinstance(t, TensorType) and t.shape is not None
        assert dims_equal(t.shape[3], d_add(_sym("P"), 1))


def test_loop_growth_is_an_expression_of_the_trip_count() -> None:
    module = pliant.load(M.loop_grow())
    analysis = analyze(module)
    grown, shapes = module.entry.output_types
    assert isinstance(grown, TensorType) and grown.shape is not None
    assert dims_equal(grown.shape[0], d_add(_sym("P"), d_mul(2, _sym("N")))) and grown.shape[1] == 4
    assert isinstance(shapes, TensorType) and shapes.shape == (_sym("N"), 2)
    # inside the body the carried dim is an expression of the iteration index
    (it,) = [s for s in analysis.symbols.values() if s.kind == "iteration"]
    loop = next(op for op in module.walk() if op.name == "Loop")
    acc_in = loop.regions["body"].block.args[2]
    assert isinstance(acc_in.type, TensorType) and acc_in.type.shape is not None
    assert dims_equal(acc_in.type.shape[0], d_add(_sym("P"), d_mul(2, _sym(it.name))))


def test_if_branches_that_disagree_join_to_a_bounded_symbol() -> None:
    module = pliant.load(M.if_disagree())
    analysis = analyze(module)
    y = module.entry.output_types[0]
    assert isinstance(y, TensorType) and y.shape is not None and y.shape[1] == 8
    d = y.shape[0]
    assert isinstance(d, Sym) and d.is_symbol
    info = analysis.symbols[str(d)]
    assert info.kind == "join" and info.lower == _sym("N") and dims_equal(info.upper, d_mul(2, _sym("N")))


def test_nonzero_count_is_a_data_symbol_bounded_by_the_input_size() -> None:
    module = pliant.load(M.nonzero())
    analysis = analyze(module)
    vals, _count = module.entry.output_types
    assert isinstance(vals, TensorType) and vals.shape is not None
    (k,) = vals.shape
    assert isinstance(k, Sym)
    info = analysis.symbols[str(k)]
    assert info.kind == "data" and dims_equal(info.upper, d_mul(_sym("N"), _sym("M")))
    # the symbolic value of Shape(vals) is that same symbol
    shape_op = next(op for op in module.walk() if op.name == "Shape")
    assert list(analysis.values[shape_op.results[0]]) == [k]


def test_sequence_built_in_a_loop_concatenates_to_the_iteration_count() -> None:
    module = pliant.load(os.path.join(M.SUITE, "gru_seq2seq.onnx"))
    analysis = analyze(module)
    enc = next(op for op in module.entry.body.ops if op.name == "ConcatFromSequence")
    t = enc.results[0].type
    # the encoder runs once per source token: S rows of 256
    assert isinstance(t, TensorType) and t.shape == (_sym("S"), 256)
    loop = next(op for op in module.entry.body.ops if op.name == "Loop")
    assert isinstance(loop.results[1].type, SequenceType)
    assert list(analysis.values[loop.results[1]]) == [_sym("S")]


# -- backward ---------------------------------------------------------------------------------------


def test_matmul_proves_two_input_symbols_equal() -> None:
    module = pliant.load(M.matmul_unify())
    analysis = analyze(module)
    assert analysis.equalities == [("K2", "K1")]
    _a, b = module.entry.input_types
    assert isinstance(b, TensorType) and b.shape == (_sym("K1"), _sym("M"))
    # the feed check now enforces it, before anything runs
    with pytest.raises(pliant.FeedError, match="symbol 'K1' is already bound"):
        pliant.interpret(module, {"a": np.ones((2, 3), np.float32), "b": np.ones((4, 5), np.float32)})


def test_reshape_backward_proves_an_unknown_dim_is_three_n() -> None:
    module = pliant.load(M.reshape_backward())
    forward_only = analyze(module, backward=False)
    y = module.entry.output_types[0]
    assert isinstance(y, TensorType) and y.shape == (None,)
    assert forward_only.rounds == 1
    module = pliant.load(M.reshape_backward())
    analyze(module)
    y = module.entry.output_types[0]
    assert isinstance(y, TensorType) and y.shape == (d_mul(3, _sym("n")),)
    out = pliant.interpret(module, {"x": np.ones((4, 3), np.float32), "shape": np.array([12])})
    assert out["y"].shape == (12,)


# -- the IR ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt_generate", "moe_transformer", "conformer", "ranet_cnn"])
def test_analysed_module_round_trips_as_text(name: str) -> None:
    module = pliant.load(os.path.join(M.SUITE, f"{name}.onnx"))
    analyze(module)
    assert_round_trips(module)


def test_analysis_is_idempotent() -> None:
    module = pliant.load(os.path.join(M.DATA, "gpt_step.onnx"))
    analyze(module)
    first = str(module)
    analyze(module)
    assert str(module) == first


def test_shape_errors_are_reported_not_raised() -> None:
    """A Reshape whose element counts can never match (3*n vs 5*n) is a conflict in the result, not a crash."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Constant", [], ["zero"], value=onnx.numpy_helper.from_array(np.array([0]), "zero")),
             helper.make_node("Constant", [], ["five"], value=onnx.numpy_helper.from_array(np.array([5]), "five")),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "five"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    model = M.make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    module = pliant.load(model)
    analysis = analyze(module)
    assert analysis.conflicts == [
        "Reshape node: dims 3*n and 5*n must be equal, which no input sizes allow"]
    with pytest.raises(pliant.OpRuntimeError, match="Reshape"):
        pliant.interpret(module, {"x": np.ones((2, 3), np.float32)})


# -- calls ----------------------------------------------------------------------------------------------


def _recursive_module(grow: bool) -> pliant.ir.Module:
    """main(x[N], n) = f(x, n); f(x, n) = x if n == 0 else f(g(x), n - 1), g = Relu (same size) or x ++ x."""
    from pliant.ir import DType, FunctionBuilder, tensor
    from pliant.ir.types import ANY

    fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N")), ("n", tensor(DType.INT64))])
    f = FunctionBuilder("f", [("x", TensorType(DType.FLOAT, None)), ("n", tensor(DType.INT64))], module=fb.module())
    x, n = f.inputs
    one = f.const(np.array(1, np.int64))
    done = f.op("Equal", [n, f.const(np.array(0, np.int64))])

    def recurse(b: Any, _: Any) -> list[Any]:
        nx = b.op("Concat", [x, x], {"axis": 0}) if grow else b.op("Relu", [x])
        return b.op_results("Call", [nx, b.op("Sub", [n, one])], {"callee": "f"}, domain="pliant",
                            num_outputs=1, types=[ANY])

    y = f.op("If", [done], regions={"then_branch": f.region([], lambda b, _: [b.op("Identity", [x])]),
                                    "else_branch": f.region([], recurse)}, types=[ANY])
    f.output("y", y)
    (r,) = fb.call(f.function, fb.inputs)
    fb.output("y", r)
    return fb.module()


@pytest.mark.parametrize("grow", [False, True])
def test_recursion_reaches_a_fixpoint_and_stays_sound(grow: bool) -> None:
    module = _recursive_module(grow)
    analysis = analyze(module)
    (y,) = module.entry.output_types
    if grow:
        # the size doubles per level, which no fixed expression of N describes
        assert not (isinstance(y, TensorType) and y.shape is not None and y.shape[0] is not None)
    else:
        assert isinstance(y, TensorType) and y.shape == (_sym("N"),)
    for size, depth in [(3, 0), (4, 2), (2, 3)]:
        report = check_soundness(module, analysis, {"x": np.ones(size, np.float32), "n": np.array(depth)})
        assert not report.mismatches, report.mismatches


def test_a_function_called_with_two_shapes_keeps_types_valid_for_both() -> None:
    from pliant.ir import DType, FunctionBuilder, tensor

    fb = FunctionBuilder("main", [("a", tensor(DType.FLOAT, "N", 2)), ("b", tensor(DType.FLOAT, "M", 2))])
    g = FunctionBuilder("g", [("x", TensorType(DType.FLOAT, (None, 2)))], module=fb.module())
    g.output("y", g.op("Concat", [g.inputs[0], g.inputs[0]], {"axis": 0}))
    (ra,) = fb.call(g.function, [fb.inputs[0]])
    (rb,) = fb.call(g.function, [fb.inputs[1]])
    fb.output("ya", ra)
    fb.output("yb", rb)
    module = fb.module()
    analysis = analyze(module)
    ya, yb = module.entry.output_types
    assert isinstance(ya, TensorType) and ya.shape == (d_mul(2, _sym("N")), 2)
    assert isinstance(yb, TensorType) and yb.shape == (d_mul(2, _sym("M")), 2)
    inner = g.function.outputs[0].type
    assert isinstance(inner, TensorType) and inner.shape == (None, 2)
    report = check_soundness(module, analysis, {"a": np.ones((3, 2), np.float32), "b": np.ones((5, 2), np.float32)})
    assert not report.mismatches and report.checked_dims > 0


def test_a_wrong_bound_is_reported() -> None:
    module = pliant.load(M.nonzero())
    analysis = analyze(module)
    (name,) = [s.name for s in analysis.symbols.values() if s.kind == "data"]
    analysis.symbols[name].upper = 2
    report = check_soundness(module, analysis, {"x": np.ones((2, 2), np.float32)})
    assert [m.where for m in report.mismatches] == [f"bound of {name} (NonZero node result 0)"]
    assert report.mismatches[0].actual == "4"
