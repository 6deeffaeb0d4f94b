"""ONNX's backend node tests through ``pliant.compile`` (the passes verified after each one).

The same expected failures as the interpreter's run apply, each with its reason
(``tests/onnx_backend_expected_failures.py``); an expected failure that passes
fails the run.
"""

from __future__ import annotations

import warnings

from pliant.onnx_backend import CompiledBackend
from tests.onnx_backend_expected_failures import backend_tests

warnings.filterwarnings("ignore", category=RuntimeWarning)

# NOTE: only the node tests: the model categories are run by the interpreter's backend test file.
backend_test = backend_tests(CompiledBackend, __name__, include=r"^test_.*_cpu$")

globals().update(backend_test.test_cases)
