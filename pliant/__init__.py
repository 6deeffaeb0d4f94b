"""pliant: a compiler and runtime for dynamic neural networks.

>>> import pliant
>>> module = pliant.load("model.onnx")            # doctest: +SKIP
>>> shapes = pliant.analyze(module)              # doctest: +SKIP
>>> outputs = pliant.interpret(module, {"x": x})  # doctest: +SKIP
>>> exe = pliant.compile("model.onnx")           # doctest: +SKIP
"""

import os as _os

# NOTE: generated kernels use OpenMP and NumPy's BLAS has its own threads; OpenMP threads that spin after
# each kernel (libgomp's default) starve BLAS on a small machine (measured: 6 ms instead of 0.4 ms per conv
# at 2 threads). Passive waiting is set before any kernel loads the OpenMP runtime; a value set by the user wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pliant.analysis.rdp import analyze
from pliant.errors import (
    FeedError,
    IRParseError,
    ModelLoadError,
    OpRuntimeError,
    PliantError,
    ShapeInferenceError,
    UnsupportedOpError,
    VerifyError,
)
from pliant.frontends.onnx import load
from pliant.interpreter import interpret
from pliant.ir.core import Module
from pliant.runtime.compiled import CompiledModel, compile

__version__ = "0.1.0"

__all__ = [
    "CompiledModel",
    "FeedError",
    "IRParseError",
    "Module",
    "ModelLoadError",
    "OpRuntimeError",
    "PliantError",
    "ShapeInferenceError",
    "UnsupportedOpError",
    "VerifyError",
    "analyze",
    "compile",
    "interpret",
    "tc",
    "load",
]


def __getattr__(name: str) -> object:
    # NOTE: the kernel language pulls in its compiler toolchain; load it only when used
    if name == "tc":
        import importlib

        return importlib.import_module("pliant.tc")
    raise AttributeError(f"module 'pliant' has no attribute '{name}'")
