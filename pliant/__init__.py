"""pliant: a compiler and runtime for dynamic neural networks.

>>> import pliant
>>> module = pliant.load("model.onnx")            # doctest: +SKIP
>>> shapes = pliant.analyze(module)              # doctest: +SKIP
>>> outputs = pliant.interpret(module, {"x": x})  # doctest: +SKIP
>>> exe = pliant.compile("model.onnx")           # doctest: +SKIP
"""

import os as _os

# NOTE: OpenMP threads wait between parallel regions by spinning for GOMP_SPINCOUNT checks, then sleeping.
# libgomp's default (300000 checks, milliseconds) starves NumPy's BLAS threads on a small machine (6 ms instead
# of 0.4 per conv at 2 threads, measured when regions still called BLAS); passive waiting costs 50-90 us to
# wake a sleeping thread at every region.  10000 checks spin for about 0.2-0.5 ms here: long enough to keep a
# model's back-to-back regions warm, short enough to let BLAS (or another process) have the CPU soon after.
# Set before any kernel loads the OpenMP runtime; a wait policy or spin count set by the user wins.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

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
