"""ONNX backend tests pliant does not pass, each with the reason, and the one setup every backend test file uses.

An entry that starts passing fails the run (an unexpected success), so the list stays honest.
"""

from __future__ import annotations

import re
from typing import Any

import onnx.backend.test

_RANDOM = ("the expected values were drawn by another implementation's random generator; "
           "no implementation can reproduce them, even with a seed (the spec says so)")

_CODEC = ("ImageDecoder needs image codecs (JPEG, PNG, WebP, TIFF, JPEG 2000...); pliant does not take a "
          "dependency on an imaging library for this one op")
_GRADIENT = ("the preview Gradient op needs reverse-mode autodiff on the IR, which comes in its own issue")

EXPECTED_FAILURES: dict[str, str] = {
    **{f"test_image_decoder_decode_{k}": _CODEC for k in (
        "bmp_rgb", "jpeg2k_rgb", "jpeg_bgr", "jpeg_grayscale", "jpeg_rgb", "png_rgb", "pnm_rgb", "tiff_rgb", "webp_rgb")},
    "test_gradient_of_add": _GRADIENT,
    "test_gradient_of_add_and_mul": _GRADIENT,
    "test_loop16_seq_none": "ONNX's runner cannot compare a sequence holding a 0-d tensor (len() of unsized object); "
                            "pliant's output matches",
    "test_attention_4d_causal_fp16_expanded": (
        "the function body's float16 Softmax runs in float32 and rounds once, while the expected "
        "values round every float16 step; two elements differ by one float16 ulp, just over rtol 1e-3"
    ),
}

RANDOM_OUTPUTS: dict[str, str] = {
    name: _RANDOM for name in ("test_bernoulli", "test_bernoulli_double", "test_bernoulli_double_expanded",
                               "test_bernoulli_expanded", "test_bernoulli_seed", "test_bernoulli_seed_expanded")
}
"""Excluded, not expected to fail: a draw of 0/1 values matches the stored one by chance now and then (it did
in one run of the three backend files), and an expected failure that passes fails the run."""

# NOTE: the "real" category downloads models from a hub, which this project cannot reach.
HUB_MODELS = (r"(test_bvlc_alexnet|test_densenet121|test_inception_v1|test_inception_v2|test_resnet50"
              r"|test_shufflenet|test_squeezenet|test_vgg19|test_zfnet512)")


def backend_tests(backend: Any, module_name: str, include: str | None = None) -> onnx.backend.test.BackendTest:
    """ONNX's backend tests for ``backend``: hub models and random outputs excluded, expected failures marked."""
    tests = onnx.backend.test.BackendTest(backend, module_name)
    if include is not None:
        tests.include(include)
    tests.exclude(HUB_MODELS)
    for name in EXPECTED_FAILURES:
        tests.xfail("^" + re.escape(name) + "_cpu$")
    for name in RANDOM_OUTPUTS:
        tests.exclude("^" + re.escape(name) + "_cpu$")
    return tests
