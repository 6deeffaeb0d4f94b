"""Run passes in order, timing each and (in tests and debug mode) verifying the IR after each.

A pass is a function ``(module) -> int`` that changes the module in place and
returns how many changes it made; the contract (as in xDSL) is that it leaves
the IR valid, which ``run_passes(..., verify=True)`` checks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pliant.errors import VerifyError
from pliant.ir.core import Module, Op

Pass = Callable[[Module], int]


@dataclass(frozen=True)
class PassStat:
    name: str
    changes: int
    seconds: float


def run_passes(module: Module, passes: Sequence[Pass], *, verify: bool = False) -> list[PassStat]:
    """Run ``passes`` on ``module`` in order; with ``verify``, the verifier runs after each one.

    >>> from pliant.ir import FunctionBuilder, tensor, DType
    >>> from pliant.transforms.dce import dce
    >>> fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N"))])
    >>> _ = fb.op("Relu", [fb.inputs[0]])
    >>> fb.output("y", fb.inputs[0])
    >>> [(s.name, s.changes) for s in run_passes(fb.module(), [dce], verify=True)]
    [('dce', 1)]
    """
    from pliant.ir.verifier import verify_module

    stats = []
    for p in passes:
        t0 = time.perf_counter()
        n = p(module)
        # NOTE: a pass module names its pass with a module-level ``pass_name``
        name = getattr(p, "pass_name", None) or getattr(sys.modules.get(p.__module__), "pass_name", p.__name__)
        stats.append(PassStat(str(name), n, time.perf_counter() - t0))
        if verify:
            try:
                verify_module(module)
            except VerifyError as e:
                raise VerifyError(f"the IR is invalid after pass '{name}': {e}") from None
    return stats


def _forward_identities(const: Op) -> None:
    """Make the readers of ``Identity(const)`` (in any block the constant's value reaches) read ``const``."""
    for use in list(const.results[0].uses):
        op = use.user
        if isinstance(op, Op) and op.name == "Identity" and op.domain == "" \
                and all(isinstance(u.user, Op) for u in op.results[0].uses):
            op.results[0].replace_all_uses_with(const.results[0])
            op.erase()


def rewrite_matrices(module: Module, takes: Callable[[Op], bool],
                     rewrite: Callable[[Op, np.ndarray, list[Op]], None], *, min_side: int = 1, ndim: int = 2) -> int:
    """Call ``rewrite(constant, value, readers)`` for every Constant holding a float32 matrix (or array of
    ``ndim`` dims; every side at least ``min_side``) whose every use is as operand 1 (a product's B, a
    convolution's weights) of an op ``takes`` accepts, in the default domain; returns how many were rewritten.
    The weight-layout passes are this walk.

    An ``Identity`` of such a constant is looked through first: its readers read the constant (the TorchScript
    exporter hands a ``Loop`` body its weights as such copies, and the copies' readers count as any other)."""
    changed = 0
    for fn in module.functions.values():
        for const in list(fn.walk()):
            if const.name != "Constant" or const.domain != "":
                continue
            value = const.attrs.get("value")
            if isinstance(value, np.ndarray):
                _forward_identities(const)
            uses = const.results[0].uses
            if not isinstance(value, np.ndarray) or value.ndim != ndim or value.dtype != np.float32 or not uses \
                    or min(value.shape) < min_side:
                continue
            readers = [u.user for u in uses if isinstance(u.user, Op) and u.user.domain == "" and u.index == 1
                       and takes(u.user)]
            if len(readers) == len(uses):
                rewrite(const, value, readers)
                changed += 1
    return changed
