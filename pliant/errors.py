"""The errors pliant raises.  Each message names what is wrong and how to fix it."""

from __future__ import annotations


class PliantError(Exception):
    """Base class of every error pliant raises on bad input."""


class ModelLoadError(PliantError):
    """The model file is missing, corrupt, or not an ONNX model."""


class UnsupportedOpError(PliantError):
    """The model uses operators pliant does not define."""


class VerifyError(PliantError):
    """The IR breaks an invariant (type mismatch, use before def, region arity...)."""


class IRParseError(PliantError):
    """The IR text could not be parsed."""


class FeedError(PliantError):
    """An input given to a model does not match its declared type."""


class OpRuntimeError(PliantError):
    """An operator failed while running (e.g. a Reshape whose sizes do not match)."""


class ShapeInferenceError(PliantError):
    """An operator's shape rule rejected its inputs."""
