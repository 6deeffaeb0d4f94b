"""The compiled runtime's linear Resize (``resize.c``) against ONNX Runtime: every coordinate transform it
takes, up- and downsampling, scales and sizes; the cases it leaves to the reference still run."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pliant
from tests.helpers import run_onnxruntime

TRANSFORMS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]


def _model(transform: str, scales: list[float] | None, sizes: list[int] | None, rank: int, **attrs: object) -> bytes:
    inits = [numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    inputs = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        inputs.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.zeros(0, np.float32), "scales"))
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        inputs += ["scales", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], mode="linear", coordinate_transformation_mode=transform, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None] * rank)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]).SerializeToString()


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(("shape", "scales", "sizes"), [
    ((1, 3, 8, 10), [1, 1, 2.0, 1.5], None),
    # NOTE: scale x size is a whole number: with a fractional one, align_corners divides by the fractional
    # output length in ONNX's reference (and pliant's) but by the rounded one in ONNX Runtime
    ((2, 2, 8, 8), [1, 1, 0.5, 0.75], None),
    ((1, 1, 5, 6), None, [1, 1, 11, 3]),
    ((3, 6, 4), [1, 3.0, 0.5], None),  # rank 3: the last two axes
])
def test_linear_resize_matches_onnxruntime(transform: str, shape: tuple[int, ...], scales: list[float] | None,
                                           sizes: list[int] | None) -> None:
    import onnx

    model = _model(transform, scales, sizes, len(shape))
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    (want,) = run_onnxruntime(onnx.load_from_string(model), {"x": x})
    exe = pliant.compile(model, specialize=False)
    assert exe.report()["kernels"]["native"] >= 1
    np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("scales", "attrs"), [
    ([1, 1, 0.5, 0.5], {"antialias": 1}),
    ([1, 1, 0.6, 1.7], {"exclude_outside": 1, "antialias": 1}),
])
def test_cases_left_to_the_reference_match_onnxruntime(scales: list[float], attrs: dict[str, int]) -> None:
    import onnx

    model = _model("half_pixel", scales, None, 4, **attrs)
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    (want,) = run_onnxruntime(onnx.load_from_string(model), {"x": x})
    np.testing.assert_allclose(pliant.compile(model, specialize=False).run({"x": x})["y"], want, rtol=1e-5, atol=1e-5)


def test_a_leading_axis_resized_runs_the_reference() -> None:
    """ONNX Runtime's linear Resize refuses this; the fast kernel declines it and the reference runs."""
    model = _model("half_pixel", [2.0, 1, 1.5, 1.5], None, 4)
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 6)).astype(np.float32)
    got = pliant.compile(model, specialize=False).run({"x": x})["y"]
    np.testing.assert_array_equal(got, pliant.interpret(pliant.load(model), {"x": x})["y"])
