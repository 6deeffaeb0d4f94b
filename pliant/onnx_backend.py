"""pliant as an ``onnx.backend`` (the reference interpreter, or compiled execution), for ONNX's backend tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from pliant.frontends.onnx import load
from pliant.interpreter import interpret
from pliant.ir.core import Module


class PliantRep(BackendRep):
    """A loaded model; ``run`` takes the inputs in the model's input order."""

    def __init__(self, module: Module) -> None:
        self.module = module

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        fn = self.module.entry
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = dict(zip(fn.input_names, inputs))
        out = interpret(self.module, feeds)
        return tuple(out[n] for n in fn.result_names)


class CompiledRep(BackendRep):
    """A model compiled with ``pliant.compile``; ``run`` takes the inputs in the model's input order."""

    def __init__(self, exe: Any) -> None:
        self.exe = exe

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            out = self.exe.run(dict(inputs))
            return tuple(out[n] for n in self.exe.output_names)
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        return tuple(self.exe(*inputs))


class CompiledBackend(Backend):
    """pliant's compiled execution (analysis, passes, host program) as an ``onnx.backend``."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> CompiledRep:
        from pliant.runtime.compiled import compile

        return CompiledRep(compile(load(model), verify=True))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


class PliantBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> PliantRep:
        return PliantRep(load(model))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"
