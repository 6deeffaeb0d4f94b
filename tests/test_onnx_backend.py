"""ONNX's backend test suite run through pliant.load + pliant.interpret.

Every failure that remains is listed in ``onnx_backend_expected_failures.py``
with its reason; an expected failure that starts passing fails the run, so the
list stays honest.
"""

from __future__ import annotations

import warnings
from typing import Any

import onnx

from pliant.onnx_backend import PliantBackend, PliantRep
from tests.helpers import assert_round_trips
from tests.onnx_backend_expected_failures import backend_tests

warnings.filterwarnings("ignore", category=RuntimeWarning)



class RoundTripBackend(PliantBackend):
    """Also checks that every imported model prints and parses back to an equal module."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> PliantRep:
        rep = super().prepare(model, device, **kwargs)
        assert_round_trips(rep.module)
        return rep


backend_test = backend_tests(RoundTripBackend, __name__)

globals().update(backend_test.test_cases)
