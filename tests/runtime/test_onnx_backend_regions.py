"""ONNX's backend node tests with every op the native units support compiled as a region of its own.

``static_regions.MIN_OPS`` is 1 here, so each supported node runs through the
C emitters of ``pliant.runtime.region_c`` (a region falls back to its ops only
where its unit declines; ``test_units_were_built`` checks that they did not
all decline).  Expected failures are the interpreter's, with their reasons.
"""

from __future__ import annotations

import warnings
from typing import Any

import onnx

from pliant.onnx_backend import CompiledBackend
from pliant.transforms import static_regions
from tests.onnx_backend_expected_failures import backend_tests

warnings.filterwarnings("ignore", category=RuntimeWarning)

class RegionBackend(CompiledBackend):
    """Compiled execution with single-op regions."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> Any:
        old = static_regions.MIN_OPS
        static_regions.MIN_OPS = 1
        try:
            rep = super().prepare(model, device, **kwargs)
        finally:
            static_regions.MIN_OPS = old
        return rep


# NOTE: only the node tests: the model categories are run by the interpreter's backend test file.
backend_test = backend_tests(RegionBackend, __name__, include=r"^test_.*_cpu$")

globals().update(backend_test.test_cases)


def test_units_were_built() -> None:
    """Running a sample of the node tests here built native units for most of them."""
    import numpy as np
    from onnx import TensorProto, helper

    for op, n_in in [("Add", 2), ("Softmax", 1), ("Transpose", 1), ("Erf", 1), ("Where", 3)]:
        types = [TensorProto.BOOL if op == "Where" and i == 0 else TensorProto.FLOAT for i in range(n_in)]
        graph = helper.make_graph([helper.make_node(op, [f"x{i}" for i in range(n_in)], ["y"])], "g",
                                  [helper.make_tensor_value_info(f"x{i}", t, [2, 3]) for i, t in enumerate(types)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        rep = RegionBackend.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
        assert rep.exe.report()["kernels"].get("static", 0) == 1, op
        xs = [np.ones((2, 3), bool if t == TensorProto.BOOL else np.float32) for t in types]
        rep.run(xs)
