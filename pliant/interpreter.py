"""The reference interpreter: what every pliant program means.

``interpret(module, feeds)`` checks the feeds against the entry function's
declared types, then runs each op's NumPy reference kernel in order; region
bodies (If/Loop/Scan) run through ``run_block``, calls through
``run_function``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pliant.errors import FeedError, OpRuntimeError, PliantError
from pliant.ir.core import Block, Function, Module, Op, Value
from pliant.ir.dims import Sym
from pliant.ir.dtypes import DType
from pliant.ir.types import OptionalType, SequenceType, TensorType, Type
from pliant.ops import registry
from pliant.ops.typing import attrs_with_defaults


def interpret(module: Module, feeds: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``module``'s entry function on ``feeds`` (input name -> array).

    Returns output name -> value: an ndarray, a list (sequence) or None (empty optional).

    >>> import pliant, numpy as np
    >>> from pliant.ir import FunctionBuilder, tensor, DType
    >>> fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N"))])
    >>> fb.output("y", fb.op("Relu", [fb.inputs[0]]))
    >>> out = pliant.interpret(fb.module(), {"x": np.array([-1.0, 2.0], np.float32)})
    >>> out["y"].tolist()
    [0.0, 2.0]
    """
    fn = module.entry
    args = check_feeds(fn, feeds)
    outs = Interpreter(module).run_function(fn, args)
    return dict(zip(fn.result_names, outs))


def check_feeds(fn: Function, feeds: Mapping[str, Any]) -> list[Any]:
    """The feeds in input order, after checking names, dtypes, ranks and dims.

    Symbols are bound left to right; a dim that contradicts a constant or an
    already-bound symbol is an error naming both.
    """
    names = fn.input_names
    unknown = sorted(set(feeds) - set(names))
    if unknown:
        raise FeedError(
            f"unknown input(s) {', '.join(repr(u) for u in unknown)}; the model's inputs are: "
            + ", ".join(f"'{n}' ({v.type})" for n, v in zip(names, fn.inputs))
        )
    missing = [n for n in names if n not in feeds]
    if missing:
        raise FeedError(
            "missing input(s): "
            + ", ".join(f"'{n}' ({v.type})" for n, v in zip(names, fn.inputs) if n in missing)
        )
    bound: dict[str, tuple[int, str]] = {}
    args = []
    for name, v in zip(names, fn.inputs):
        args.append(_check_value(name, v.type, feeds[name], bound))
    return args


def _check_value(name: str, t: Type, x: Any, bound: dict[str, tuple[int, str]]) -> Any:
    if isinstance(t, SequenceType):
        if not isinstance(x, (list, tuple)):
            raise FeedError(f"input '{name}' is a sequence ({t}); pass a list of arrays, got {type(x).__name__}")
        # NOTE: elements may differ in size: each respects earlier bindings but binds nothing for the others
        return [_check_value(f"{name}[{i}]", t.elem, e, dict(bound)) for i, e in enumerate(x)]
    if isinstance(t, OptionalType):
        return None if x is None else _check_value(name, t.elem, x, bound)
    if not isinstance(t, TensorType):
        return x
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)) or np.isscalar(x):
            x = np.asarray(x, dtype=t.dtype.numpy if t.dtype is not None else None)
        else:
            raise FeedError(f"input '{name}' must be a NumPy array ({t}), got {type(x).__name__}")
    if t.dtype is not None:
        actual = DType.from_numpy(x.dtype) if x.dtype.kind not in "OUS" else DType.STRING
        if actual != t.dtype:
            raise FeedError(
                f"input '{name}' has dtype {x.dtype} but the model declares {t.dtype.numpy} ({t}); "
                f"convert it with .astype(np.{t.dtype.numpy})"
            )
        if x.dtype.kind in "US":
            x = x.astype(object)
    if t.shape is None:
        return x
    if x.ndim != len(t.shape):
        raise FeedError(f"input '{name}' has rank {x.ndim} (shape {x.shape}) but the model declares rank {len(t.shape)} ({t})")
    for axis, (d, actual_d) in enumerate(zip(t.shape, x.shape)):
        if isinstance(d, int):
            if d != actual_d:
                raise FeedError(f"input '{name}' has size {actual_d} on axis {axis} (shape {x.shape}) but the model requires {d} ({t})")
        elif isinstance(d, Sym) and d.is_symbol:
            sym = str(d)
            if sym in bound and bound[sym][0] != actual_d:
                prev, where = bound[sym]
                raise FeedError(
                    f"input '{name}' has size {actual_d} on axis {axis} (shape {x.shape}), but symbol '{sym}' "
                    f"is already bound to {prev} by {where}; dims named '{sym}' must agree"
                )
            bound.setdefault(sym, (actual_d, f"input '{name}' axis {axis}"))
        elif isinstance(d, Sym):
            want = d.evaluate({k: v for k, (v, _) in bound.items()})
            if want is not None and want != actual_d:
                raise FeedError(f"input '{name}' has size {actual_d} on axis {axis} but the model requires {d} = {want}")
    return x


class Interpreter:
    """Runs IR with the reference kernels.  One value environment per function call."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.frames: list[dict[Value, Any]] = []
        self._prepared: dict[Op, tuple[registry.OpDef, registry.KernelContext]] = {}

    def run_function(self, fn: Function, args: list[Any]) -> list[Any]:
        self.frames.append({})
        try:
            return self.run_block(fn.body, args)
        finally:
            self.frames.pop()

    def run_block(self, block: Block, args: list[Any]) -> list[Any]:
        env = self.frames[-1]
        if len(args) != len(block.args):
            raise OpRuntimeError(f"a body expects {len(block.args)} arguments but was given {len(args)}")
        for v, x in zip(block.args, args):
            env[v] = x
        for op in block.ops:
            self._run_op(op, env)
        return [env[v] for v in block.outputs]

    def _prepare(self, op: Op) -> tuple[registry.OpDef, registry.KernelContext]:
        p = self._prepared.get(op)
        if p is None:
            opdef = registry.get(op.name, op.domain)
            opset = self.module.opset(op.domain)
            ctx = registry.KernelContext(op, attrs_with_defaults(opdef, op.attrs, opset), opset, self)
            p = self._prepared[op] = (opdef, ctx)
        return p

    def _run_op(self, op: Op, env: dict[Value, Any]) -> None:
        opdef, ctx = self._prepare(op)
        inputs = [env[v] if v is not None else None for v in op.operands]
        try:
            with np.errstate(all="ignore"):
                res = opdef.kernel(ctx, *inputs)
        except PliantError as e:
            if " node" in str(e) and op.regions:
                raise  # NOTE: raised by an op inside this op's body, which already named itself
            raise type(e)(f"{op.where} on inputs {_describe(inputs)}: {e}") from None
        except Exception as e:
            raise OpRuntimeError(
                f"{op.where} failed on inputs {_describe(inputs)}: {type(e).__name__}: {e}"
            ) from e
        outs = list(res) if isinstance(res, tuple) else [res]
        if len(outs) < len(op.results):
            raise OpRuntimeError(f"{op.where}: kernel produced {len(outs)} outputs, the op has {len(op.results)}")
        for r, x in zip(op.results, outs):
            if isinstance(x, np.generic):
                x = np.asarray(x)
            env[r] = x


def _describe(inputs: list[Any]) -> str:
    parts = []
    for x in inputs:
        if x is None:
            parts.append("(none)")
        elif isinstance(x, np.ndarray):
            parts.append(f"{x.dtype}{list(x.shape)}")
        elif isinstance(x, list):
            parts.append(f"seq(len {len(x)})")
        else:
            parts.append(type(x).__name__)
    return "(" + ", ".join(parts) + ")"
