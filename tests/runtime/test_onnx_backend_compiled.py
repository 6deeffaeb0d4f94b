"""ONNX's backend node tests through ``pliant.compile`` (the passes verified after each one).

The same expected failures as the interpreter's run apply, each with its reason
(``tests/onnx_backend_expected_failures.py``); an expected failure that passes
fails the run.
"""

from __future__ import annotations

import re
import warnings

import onnx.backend.test

from pliant.onnx_backend import CompiledBackend
from tests.onnx_backend_expected_failures import EXPECTED_FAILURES, RANDOM_OUTPUTS

warnings.filterwarnings("ignore", category=RuntimeWarning)

backend_test = onnx.backend.test.BackendTest(CompiledBackend, __name__)
# NOTE: only the node tests: the model categories are run by the interpreter's backend test file.
backend_test.include(r"^test_.*_cpu$")
backend_test.exclude(r"(test_bvlc_alexnet|test_densenet121|test_inception_v1|test_inception_v2|test_resnet50"
                     r"|test_shufflenet|test_squeezenet|test_vgg19|test_zfnet512)")
for name in EXPECTED_FAILURES:
    backend_test.xfail("^" + re.escape(name) + "_cpu$")
for name in RANDOM_OUTPUTS:
    backend_test.exclude("^" + re.escape(name) + "_cpu$")

globals().update(backend_test.test_cases)
