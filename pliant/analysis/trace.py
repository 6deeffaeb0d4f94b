"""The shapes a model actually produces: run the reference interpreter and record every named value.

``trace_values(module, feeds)`` runs ``module``'s entry function on ``feeds``
and returns, for every op result that has a name (the ONNX tensor name), the
list of :class:`Observation` s made of it, in execution order. Values inside
If/Loop/Scan bodies are included: a Loop or Scan body's values are observed
once per iteration, a branch's values only when the branch runs (a value the
run never reaches has no entry). Analyses check their inferred shapes against
these observations (a sound symbolic dim must evaluate to every observed size).

Only tensors are observed: sequences and empty optionals are skipped. Values
inside model-local functions (reached by ``pliant.Call``) are skipped too:
their names are local to the function, so they could clash with the graph's.

>>> import numpy as np, onnx, onnx.helper as h
>>> import pliant
>>> g = h.make_graph([h.make_node("Shape", ["x"], ["s"]), h.make_node("Relu", ["x"], ["y"])], "g",
...     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N"])],
...     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N"])])
>>> obs = trace_values(pliant.load(h.make_model(g)), {"x": np.zeros(3, np.float32)})
>>> obs["s"]
[Observation(shape=(1,), value=(3,))]
>>> obs["y"]
[Observation(shape=(3,), value=None)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pliant.interpreter import Interpreter, check_feeds
from pliant.ir.core import Module, Op, Value

# NOTE: shape tensors (Shape, Gather on a shape, Concat of dims...) are small;
# bigger integer tensors are data (token ids, indices) whose values nobody infers
MAX_VALUE_ELEMENTS = 64
_VALUE_KINDS = (np.dtype(np.int64), np.dtype(np.int32))


@dataclass(frozen=True, slots=True)
class Observation:
    """One run's view of a tensor value: its shape, and its elements if it is a small int32/int64 tensor.

    ``value`` holds the elements in row-major order (``()`` for an empty
    tensor), or None for a float tensor or one with more than
    ``MAX_VALUE_ELEMENTS`` elements.
    """

    shape: tuple[int, ...]
    value: tuple[int, ...] | None = None

    @staticmethod
    def of(x: np.ndarray) -> Observation:
        """The observation of array ``x``."""
        value = None
        if x.dtype in _VALUE_KINDS and x.size <= MAX_VALUE_ELEMENTS:
            value = tuple(int(e) for e in x.reshape(-1))
        return Observation(tuple(int(d) for d in x.shape), value)


class TracingInterpreter(Interpreter):
    """The reference interpreter, recording an :class:`Observation` per named tensor result.

    ``observations`` accumulates across calls of ``run_function``, so one
    tracer can run several feeds; :func:`trace_values` is the one-call form.
    """

    def __init__(self, module: Module) -> None:
        super().__init__(module)
        self.observations: dict[str, list[Observation]] = {}

    def _run_op(self, op: Op, env: dict[Value, Any]) -> None:
        super()._run_op(op, env)
        if len(self.frames) != 1:
            return  # NOTE: inside a called function; its value names are its own (see the module docstring)
        for r in op.results:
            if r.name is None:
                continue
            x = env.get(r)
            if isinstance(x, np.ndarray):
                self.observations.setdefault(r.name, []).append(Observation.of(x))


def trace_values(module: Module, feeds: Mapping[str, Any]) -> dict[str, list[Observation]]:
    """Run ``module``'s entry function on ``feeds``; every named tensor result's observations, in order.

    The feeds are checked as :func:`pliant.interpret` checks them (a wrong
    name, dtype or rank raises :class:`pliant.FeedError`). See the module
    docstring for what is observed and an example.
    """
    fn = module.entry
    args = check_feeds(fn, feeds)
    tracer = TracingInterpreter(module)
    tracer.run_function(fn, args)
    return tracer.observations
