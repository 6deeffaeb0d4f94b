"""``pliant.compile``: the model suite against PyTorch's stored outputs, every path after one compile,
the passes, the feed errors, concurrent calls and the report."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import numpy as np
import pytest

import pliant
from pliant.analysis.rdp import analyze
from pliant.analysis.report import peak_memory
from pliant.ir.dims import compile_dims
from tests.analysis import models as M

SUITE = json.load(open(os.path.join(M.SUITE, "suite.json")))
SPECS = {m["spec"]["name"]: m["spec"] for m in SUITE["models"]}


@pytest.mark.parametrize("name", M.SUITE_MODELS)
def test_suite_model_matches_pytorch_at_every_case(name: str) -> None:
    exe = pliant.compile(os.path.join(M.SUITE, f"{name}.onnx"), verify=True)
    data = np.load(os.path.join(M.SUITE, f"{name}.npz"))
    spec = SPECS[name]
    cases = M.suite_cases(name)
    for case, feeds in cases:
        out = exe.run(feeds)
        for key, got in out.items():
            want = data[f"{case}.out.{key}"]
            assert np.asarray(got).shape == want.shape, (case, key)
            np.testing.assert_allclose(got, want, rtol=spec["rtol"], atol=spec["atol"], err_msg=f"{case} {key}")


def test_every_path_runs_after_one_compile() -> None:
    """The If and Loop paths the suite's cases take differ; one compiled model serves them all."""
    exe = pliant.compile(os.path.join(M.SUITE, "skipnet_resnet.onnx"))
    module = pliant.load(os.path.join(M.SUITE, "skipnet_resnet.onnx"))
    blocks = set()
    for _, feeds in M.suite_cases("skipnet_resnet"):
        got, want = exe.run(feeds), pliant.interpret(module, feeds)
        blocks.add(int(want["blocks_run"]))
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)
    assert len(blocks) >= 3


def test_shape_chains_become_shape_exprs() -> None:
    path = os.path.join(M.DATA, "gpt_step.onnx")
    exe = pliant.compile(path, verify=True)
    ops = [op.name for op in exe.module.walk()]
    before = [op.name for op in pliant.load(path).walk()]
    assert before.count("Shape") >= 3 and ops.count("Shape") == 0
    assert ops.count("ShapeExpr") >= 1 and len(ops) < len(before)
    names = [p["name"] for p in exe.report()["passes"]]
    assert names == ["gemm-layout", "pack-weights", "shape-chains", "fold-constants", "cse", "dce", "fuse-conv", "fuse-elementwise",
                     "schedule", "static-regions"]
    for feeds in M.gpt_step_feeds():
        got, want = exe.run(feeds), pliant.interpret(pliant.load(path), feeds)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


def test_cse_merges_equal_constants_only() -> None:
    """Constants are compared by dtype, shape and a digest of their bytes: equal weights merge, weights that
    differ in one element, or only in dtype or shape, do not."""
    from pliant.ir import DType, FunctionBuilder, tensor
    from pliant.transforms.cse import cse

    w = np.random.default_rng(5).standard_normal((64, 80)).astype(np.float32)
    other = w.copy()
    other[63, 79] += 1.0
    fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N", 64))])
    consts = [fb.const(v) for v in (w, w.copy(), other, w.astype(np.float64).astype(np.float32).reshape(80, 64))]
    fb.output("y", fb.op("Concat", [fb.op("MatMul", [fb.inputs[0], c]) for c in consts[:3]], {"axis": 1}))
    fb.output("z", consts[3])
    module = fb.module()
    assert cse(module) == 2  # the equal weight, then the MatMul that became equal to the first
    kept = [op.attrs["value"] for op in module.entry.body.ops if op.name == "Constant"]
    assert len(kept) == 3 and any(np.array_equal(k, other) for k in kept)
    x = np.ones((2, 64), np.float32)
    np.testing.assert_allclose(pliant.interpret(module, {"x": x})["y"],
                               np.concatenate([x @ w, x @ w, x @ other], axis=1), rtol=1e-5)


def test_folding_keeps_broadcasts_of_small_constants_as_ops() -> None:
    """A ConstantOfShape or Expand whose result is large and larger than its operands stays an op (a memset
    per call, not a constant kept for the program's life); small results and results no larger than their
    operands (a Gather from a table) fold.  The values match NumPy's either way."""
    from pliant.ir import DType, FunctionBuilder, tensor
    from pliant.transforms.fold_constants import MAX_GROWN, fold_constants

    table = np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32)
    fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, 64, 256))])
    x = fb.inputs[0]
    big = fb.op("ConstantOfShape", [fb.const(np.array([64, 256], np.int64))],
                {"value": np.array([0.5], np.float32)})
    small = fb.op("ConstantOfShape", [fb.const(np.array([4, 8], np.int64))], {"value": np.array([2.0], np.float32)})
    wide = fb.op("Expand", [fb.const(np.array([1.5], np.float32)), fb.const(np.array([64, 256], np.int64))])
    rows = fb.op("Gather", [fb.const(table), fb.const(np.arange(0, 256, dtype=np.int64))])
    fb.output("y", fb.op("Add", [fb.op("Mul", [x, big]), wide]))
    fb.output("s", small)
    fb.output("r", rows)
    module = fb.module()
    assert 64 * 256 > MAX_GROWN >= 4 * 8
    assert fold_constants(module) == 2
    left = sorted(op.name for op in module.entry.body.ops if op.name in ("ConstantOfShape", "Expand", "Gather"))
    assert left == ["ConstantOfShape", "Expand"]
    xv = np.random.default_rng(4).standard_normal((64, 256)).astype(np.float32)
    for exe in (pliant.compile(fb.module(), verify=True), pliant.compile(module)):
        got = exe.run({"x": xv})
        np.testing.assert_allclose(got["y"], xv * 0.5 + 1.5, rtol=1e-6)
        np.testing.assert_array_equal(got["s"], np.full((4, 8), 2.0, np.float32))
        np.testing.assert_array_equal(got["r"], table[:256])


def test_gemm_weights_are_stored_transposed_once() -> None:
    """A constant read only as the B of transB=1 Gemms is transposed once and the Gemms read it plainly; one
    also read by another op is left alone; the outputs still match ONNX Runtime, at two batch sizes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.helpers import run_onnxruntime

    rng = np.random.default_rng(9)
    w = rng.standard_normal((6, 5)).astype(np.float32)
    shared = rng.standard_normal((5, 5)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["a"], transB=1), helper.make_node("Gemm", ["x", "w"], ["b"], transB=1,
                                                                                      alpha=0.5),
             helper.make_node("Gemm", ["x", "s"], ["c"], transB=1), helper.make_node("MatMul", ["x", "s"], ["d"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in "abcd"],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(shared, "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    exe = pliant.compile(model.SerializeToString(), verify=True)
    assert {p["name"]: p["changes"] for p in exe.report()["passes"]}["gemm-layout"] == 1
    gemms = [op for op in exe.module.walk() if op.name == "Gemm"]
    assert sorted(int(op.attrs.get("transB", 0)) for op in gemms) == [0, 0, 1]  # type: ignore[arg-type]
    for n in (1, 7):
        x = np.ascontiguousarray(rng.standard_normal((n, 5)).astype(np.float32))
        got = exe.run({"x": x})
        for name, want in zip("abcd", run_onnxruntime(onnx.load_from_string(model.SerializeToString()), {"x": x})):
            np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_compile_leaves_the_given_module_alone() -> None:
    module = pliant.load(os.path.join(M.DATA, "encoder.onnx"))
    text = str(module)
    pliant.compile(module)
    assert str(module) == text


@pytest.mark.parametrize(("feeds", "message"), [
    ({}, "missing input(s): 'ids'"),
    ({"ids": np.zeros((2, 3), np.float32)}, "input 'ids' has dtype float32 but the model declares int64"),
    ({"ids": np.zeros(3, np.int64)}, "input 'ids' has rank 1"),
    ({"ids": np.zeros((1, 3), np.int64), "extra": np.zeros(1)}, "unknown input(s) 'extra'"),
])
def test_bad_feeds_get_the_interpreters_errors(feeds: dict[str, Any], message: str) -> None:
    path = os.path.join(M.DATA, "encoder.onnx")
    exe = pliant.compile(path)
    with pytest.raises(pliant.FeedError) as compiled:
        exe.run(feeds)
    with pytest.raises(pliant.FeedError) as interpreted:
        pliant.interpret(pliant.load(path), feeds)
    assert str(compiled.value) == str(interpreted.value)
    assert message in str(compiled.value)


def test_positional_call_and_its_error() -> None:
    exe = pliant.compile(os.path.join(M.DATA, "encoder.onnx"))
    (hidden,) = exe(np.zeros((2, 5), np.int64))
    assert hidden.shape == (2, 5, 32)
    with pytest.raises(pliant.FeedError, match=r"the model takes 1 input\(s\) \(ids\), got 2"):
        exe(np.zeros((2, 5), np.int64), np.zeros(1))


def test_a_runtime_fault_names_the_op() -> None:
    path = os.path.join(M.DATA, "gpt_step.onnx")
    exe = pliant.compile(path)
    feeds = next(M.gpt_step_feeds())
    feeds["past_k"] = feeds["past_k"][:, :, :2]  # a past length that disagrees with past_v's
    with pytest.raises((pliant.FeedError, pliant.OpRuntimeError), match=r"past_v|Concat|symbol 'P'"):
        exe.run(feeds)


def test_concurrent_calls_give_each_their_own_answer() -> None:
    exe = pliant.compile(os.path.join(M.DATA, "encoder.onnx"))
    feeds = list(M.encoder_feeds())
    want = [exe.run(f)["hidden"] for f in feeds]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for _ in range(5):
                np.testing.assert_array_equal(exe.run(feeds[k])["hidden"], want[k])
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k % len(feeds),)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_outputs_belong_to_the_caller() -> None:
    exe = pliant.compile(os.path.join(M.DATA, "encoder.onnx"))
    feeds = next(M.encoder_feeds())
    first = exe.run(feeds)["hidden"]
    first[...] = 0  # writable, and not shared with the next call
    assert np.abs(exe.run(feeds)["hidden"]).sum() > 0


def test_report_agrees_with_analyze_on_the_planned_peak() -> None:
    path = os.path.join(M.DATA, "gpt_step.onnx")
    exe = pliant.compile(path)
    feeds = list(M.gpt_step_feeds())[1]
    exe.run(feeds)
    rep = exe.report()
    dims = rep["last_call"]["dims"]
    assert dims == {"B": 2, "S": 3, "P": 9}
    assert rep["kernels"]["fast"] > 0 and rep["versions"] == 1
    # the planned peak is the same estimate `pliant analyze` gives, for the compiled module
    module = pliant.load(path)
    analyze(module)
    assert rep["planned_peak_bytes"] is not None
    assert rep["last_call"]["planned_peak_bytes"] == exe.planned_peak(dims) > 0
    assert compile_dims([peak_memory(exe.module).bytes])(dims)[0] == rep["last_call"]["planned_peak_bytes"]


def test_elementwise_chains_fuse_into_generated_kernels() -> None:
    path = os.path.join(M.SUITE, "bert_encoder.onnx")
    exe = pliant.compile(path, verify=True)
    fused = [op for op in exe.module.walk() if op.name == "Fused"]

    def in_unit(op: Any) -> bool:
        parent = op.parent.parent_op if op.parent is not None else None
        return parent is not None and (parent.name == "Static" or in_unit(parent))

    # a Fused op in a native unit runs in its C; the others get a host step each (ops in units get steps only
    # if their unit ever has to run them one by one)
    assert len(fused) >= 8 and exe.report()["kernels"].get("fused", 0) == sum(not in_unit(op) for op in fused)
    # the exported GELU (Div, Erf, Add, Mul, Mul) is one kernel, valid for every sequence length
    assert any("erf(" in str(op.attrs["source"]) for op in fused)
    module = pliant.load(path)
    for _, feeds in M.suite_cases("bert_encoder")[:2]:
        np.testing.assert_allclose(exe.run(feeds)["hidden"], pliant.interpret(module, feeds)["hidden"],
                                   rtol=1e-4, atol=1e-4)


def test_fused_ops_run_their_region_without_a_compiler(tmp_path: Any) -> None:
    """With no C compiler, a Fused op runs the ops it holds: same answer, no error."""
    import subprocess
    import sys

    code = (
        "import numpy as np, pliant, sys; sys.path.insert(0, '.');"
        "from tests.analysis import models as M;"
        "exe = pliant.compile('benchmarks/models/gpt_decode_step.onnx');"
        "assert exe.report()['kernels'].get('fused', 0) > 0;"
        "c, feeds = M.suite_cases('gpt_decode_step')[0];"
        "d = np.load('benchmarks/models/gpt_decode_step.npz');"
        "np.testing.assert_allclose(exe.run(feeds)['logits'], d[c + '.out.logits'], rtol=1e-3, atol=1e-4);"
        "print('ok')"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "PLIANT_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_a_hot_signature_gets_a_specialised_version() -> None:
    from pliant.runtime.compiled import MAX_VERSIONS, SPECIALIZE_AFTER

    path = os.path.join(M.DATA, "encoder.onnx")
    exe = pliant.compile(path)
    module = pliant.load(path)
    feeds = next(M.encoder_feeds())
    want = pliant.interpret(module, feeds)["hidden"]
    for _ in range(SPECIALIZE_AFTER):
        np.testing.assert_allclose(exe.run(feeds)["hidden"], want, rtol=1e-4, atol=1e-5)
    exe.wait_for_versions()
    rep = exe.report()
    assert rep["versions"] == 2 and rep["specialized"] == [[list(feeds["ids"].shape)]]
    assert rep["specialization_failures"] == []
    np.testing.assert_allclose(exe.run(feeds)["hidden"], want, rtol=1e-4, atol=1e-5)
    # a stream of new shapes specialises nothing and never recompiles: the generic version serves them
    rng = np.random.default_rng(5)
    for length in range(2, 12):
        ids = rng.integers(0, 50, (1, length)).astype(np.int64)
        np.testing.assert_allclose(exe.run({"ids": ids})["hidden"], pliant.interpret(module, {"ids": ids})["hidden"],
                                   rtol=1e-4, atol=1e-5)
    exe.wait_for_versions()
    assert exe.report()["versions"] == 2
    # and the number of versions is capped
    for length in range(20, 20 + MAX_VERSIONS + 2):
        ids = np.zeros((1, length), np.int64)
        for _ in range(SPECIALIZE_AFTER):
            exe.run({"ids": ids})
        exe.wait_for_versions()
    assert exe.report()["versions"] == 1 + MAX_VERSIONS


@pytest.mark.parametrize("keep", [True, False])
def test_a_version_is_kept_only_where_it_is_faster(keep: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new version, then the generic one, make TRIAL_CALLS timed calls each (both giving the interpreter's
    results); a version that is not faster is dropped and its signature never specialised again, nor, once
    more versions were declined than kept, any other signature."""
    from pliant.runtime import compiled

    # NOTE: 1e9: any version counts as faster; 0: none does
    monkeypatch.setattr(compiled, "KEEP_IF_FASTER", 1e9 if keep else 0.0)
    path = os.path.join(M.DATA, "encoder.onnx")
    exe, module = pliant.compile(path), pliant.load(path)
    feeds = next(M.encoder_feeds())
    want = pliant.interpret(module, feeds)["hidden"]
    for _ in range(compiled.SPECIALIZE_AFTER):
        exe.run(feeds)
    exe.wait_for_versions()
    assert exe.report()["on_trial"] == [[list(feeds["ids"].shape)]]
    for _ in range(2 * compiled.TRIAL_CALLS + 4):
        np.testing.assert_allclose(exe.run(feeds)["hidden"], want, rtol=1e-4, atol=1e-5)
        exe.wait_for_versions()
    rep = exe.report()
    assert rep["on_trial"] == []
    if keep:
        assert rep["versions"] == 2 and rep["declined"] == [] and rep["specializing"]
    else:
        assert rep["versions"] == 1 and len(rep["declined"]) == 1 and "generic version" in rep["declined"][0]
        assert not exe._building  # NOTE: a declined signature is not built again
        assert not rep["specializing"]
    # a second hot signature: a version while versions pay, none once more were declined than kept
    other = {"ids": np.zeros((1, feeds["ids"].shape[1] + 3), np.int64)}
    for _ in range(compiled.SPECIALIZE_AFTER):
        np.testing.assert_allclose(exe.run(other)["hidden"], pliant.interpret(module, other)["hidden"],
                                   rtol=1e-4, atol=1e-5)
    exe.wait_for_versions()
    assert exe.report()["versions"] == (3 if keep else 1)


def test_execution_order_lowers_the_peak() -> None:
    """Two independent branches each make a big tensor and reduce it: run one branch, then the other."""
    from onnx import TensorProto, helper

    from pliant.transforms.schedule import SAMPLE, schedule

    reps = helper.make_node("Constant", [], ["reps"], value=onnx_tensor(np.array([64, 1], np.int64)))
    nodes = [reps,
             helper.make_node("Tile", ["x", "reps"], ["a1"]), helper.make_node("Tile", ["x", "reps"], ["b1"]),
             helper.make_node("Relu", ["a1"], ["a1r"]), helper.make_node("Sigmoid", ["b1"], ["b1s"]),
             helper.make_node("ReduceSum", ["a1r"], ["a2"], keepdims=0),
             helper.make_node("ReduceSum", ["b1s"], ["b2"], keepdims=0),
             helper.make_node("Add", ["a2", "b2"], ["y"])]
    model = M.make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    module = pliant.load(model)
    analyze(module)

    def peak() -> int:
        p = peak_memory(module).bytes
        names = sorted(p.symbols) if hasattr(p, "symbols") else []
        return int(compile_dims([p], names)(dict.fromkeys(names, SAMPLE))[0] or 0)

    before = peak()
    assert schedule(module) == 1
    assert peak() < before
    order = [op.name for op in module.entry.body.ops if op.name != "Constant"]
    assert order.index("ReduceSum") < order.index("Sigmoid")
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_allclose(pliant.compile(model).run({"x": x})["y"], pliant.interpret(pliant.load(model), {"x": x})["y"],
                               rtol=1e-5)


def onnx_tensor(a: np.ndarray) -> Any:
    import onnx

    return onnx.numpy_helper.from_array(a)


@pytest.mark.parametrize("threshold", [True, False])
@pytest.mark.parametrize("center", [0, 1])
def test_fast_non_max_suppression_decides_as_the_reference(center: int, threshold: bool) -> None:
    from onnx import TensorProto, helper

    rng = np.random.default_rng(center)
    names = ["b", "s", "m", "i", "t"][:5 if threshold else 4]
    types = [TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.INT64, TensorProto.FLOAT, TensorProto.FLOAT]
    model = M.make_model([helper.make_node("NonMaxSuppression", names, ["y"], center_point_box=center)],
                         [helper.make_tensor_value_info(n, t, None) for n, t in zip(names, types)],
                         [helper.make_tensor_value_info("y", TensorProto.INT64, None)], opset=11)
    exe, module = pliant.compile(model), pliant.load(model)
    for trial in range(16):
        b, c, n = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(0, 60 if trial < 12 else 400))
        boxes = (rng.random((b, n, 4)) * 10).astype(np.float32)
        if trial % 3 == 0:
            boxes[..., 2:] = boxes[..., :2]  # empty boxes: no overlaps
        if trial == 13 and n:
            boxes[0, 0, 0] = np.nan  # NaN corners: NumPy's minimum/maximum decide, as in the reference
        scores = rng.random((b, c, n)).astype(np.float32)
        scores[..., ::7] = 0.5  # ties keep the input order
        if trial == 14:
            scores[..., 3::5] = np.nan  # NaN scores: never above a threshold; without one, taken last
        feeds = {"b": boxes, "s": scores, "m": np.array([rng.integers(1, 20)]),
                 "i": np.array([rng.random()], np.float32), "t": np.array([rng.random() * 0.5], np.float32)}
        feeds = {k: v for k, v in feeds.items() if k in names}
        np.testing.assert_array_equal(exe.run(feeds)["y"], pliant.interpret(module, feeds)["y"])


def test_pliant_analyze_compiled_agrees_with_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    from pliant.cli import main

    path = os.path.join(M.DATA, "gpt_step.onnx")
    exe = pliant.compile(path)
    for feeds in M.gpt_step_feeds():
        exe.run(feeds)
        dims = exe.report()["last_call"]["dims"]
        args = ["analyze", path, "--compiled", "--json"] + [a for k, v in dims.items() for a in ("--dim", f"{k}={v}")]
        assert main(args) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["summary"]["peak_memory_at"]["bytes"] == exe.report()["last_call"]["planned_peak_bytes"] > 0


def test_in_place_reuse_only_where_nothing_else_sees_the_buffer() -> None:
    """MatMul -> Relu -> Add may reuse their buffers; a value read twice (m) must not be overwritten."""
    from onnx import TensorProto, helper

    w = helper.make_node("Constant", [], ["w"], value=onnx_tensor(np.full((4, 4), 0.5, np.float32)))
    one = helper.make_node("Constant", [], ["one"], value=onnx_tensor(np.array(1.0, np.float32)))
    nodes = [w, one, helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Relu", ["m"], ["r"]), helper.make_node("Add", ["r", "one"], ["a"]),
             helper.make_node("Neg", ["m"], ["n"]), helper.make_node("Mul", ["a", "n"], ["y"])]
    model = M.make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    exe = pliant.compile(model, specialize=False, regions=False)  # NOTE: the host program, op by op
    assert exe.report()["kernels"].get("in_place", 0) >= 2
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(exe.run({"x": x})["y"], pliant.interpret(pliant.load(model), {"x": x})["y"], rtol=1e-6)


def test_threads_sets_the_blas_pool() -> None:
    """In a fresh process: compile(threads=1) leaves NumPy's BLAS with one thread."""
    import subprocess
    import sys

    code = ("import pliant; from threadpoolctl import threadpool_info;"
            "pliant.compile('tests/data/shapes/encoder.onnx', threads=1);"
            "print(sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.strip() == "[1]"


def test_outputs_are_the_callers_and_fresh_views_are_not_copied() -> None:
    """A view of a kernel's fresh result (nothing else refers to its base) is handed over as it is; a view of
    anything still referred to (a constant, an input) and a read-only array are copied."""
    from pliant.runtime.compiled import _owned

    fresh = np.arange(24, dtype=np.float32).reshape(4, 6)  # NOTE: the 1-D base is referred to by the view only
    assert _owned(fresh) is fresh
    kept = np.ones(6, np.float32)
    view = kept.reshape(2, 3)
    out = _owned(view)
    assert out is not view and not np.shares_memory(out, kept)
    frozen = np.ones(3, np.float32)
    frozen.flags.writeable = False
    assert _owned(frozen).flags.writeable

    from onnx import TensorProto, helper, numpy_helper

    w = np.ones((2, 3), np.float32)
    model = M.make_model([helper.make_node("Reshape", ["w", "s"], ["y"]), helper.make_node("Add", ["x", "x"], ["z"])],
                         [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                          helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                         [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([6], np.int64), "s")])
    exe = pliant.compile(model)
    first = exe.run({"x": np.ones(3, np.float32)})
    first["y"][:] = 7.0  # NOTE: the caller's: the constant it came from is untouched
    np.testing.assert_array_equal(exe.run({"x": np.ones(3, np.float32)})["y"], np.ones(6, np.float32))
