"""Control flow and structure: Constant, Identity, If, Loop, Scan, Call.

Bodies are regions; the kernels run them through ``KernelContext.run_region``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from pliant.errors import OpRuntimeError, ShapeInferenceError
from pliant.ir.core import AttrValue, Function, Op, Region, Value
from pliant.ir.dims import Dim
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, OptionalType, SequenceType, TensorType, TupleType, Type, compatible
from pliant.ops.registry import Dynamism, InferContext, KernelContext, ParamSpec, Schema, register
from pliant.ops.symvalue import unary_value

CONTROL = "control"


# -- Constant / Identity ------------------------------------------------------

def constant_attr_value(attrs: dict[str, AttrValue]) -> np.ndarray | None:
    """The tensor a Constant op's attributes describe."""
    if isinstance(attrs.get("value"), np.ndarray):
        return attrs["value"]  # type: ignore[return-value]
    conv: list[tuple[str, Any]] = [
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
        ("value_string", object),
        ("value_strings", object),
    ]
    for key, dt in conv:
        if key in attrs and attrs[key] is not None:
            return np.array(attrs[key], dtype=dt)
    return None


def _constant_infer(ctx: InferContext) -> list[Type]:
    v = constant_attr_value(ctx.attrs)
    if v is None:
        raise ShapeInferenceError("Constant has none of the value attributes (value, value_float, ...)")
    return [TensorType(DType.from_numpy(v.dtype), tuple(int(d) for d in v.shape))]


@register("Constant", Dynamism.ISDO, infer=_constant_infer, family=CONTROL)
def constant(ctx: KernelContext) -> np.ndarray:
    v = constant_attr_value(ctx.op.attrs)
    assert v is not None
    return v


def _identity_infer(ctx: InferContext) -> list[Type]:
    t = ctx.input(0)
    return [t if t is not None else ANY]


@register("Identity", Dynamism.ISDOS, infer=_identity_infer, family=CONTROL, value=unary_value)
def identity(ctx: KernelContext, x: Any) -> Any:
    return x


# -- joins of branch / iteration types --------------------------------------

def join_types(a: Type, b: Type) -> Type:
    """A type describing values of type ``a`` or ``b`` (differing dims become unknown)."""
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        dtype = a.dtype if a.dtype == b.dtype else (a.dtype if b.dtype is None else b.dtype if a.dtype is None else None)
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            return TensorType(dtype, None)
        dims: tuple[Dim, ...] = tuple(x if x == y else None for x, y in zip(a.shape, b.shape))
        return TensorType(dtype, dims)
    if isinstance(a, SequenceType) and isinstance(b, SequenceType):
        return SequenceType(join_types(a.elem, b.elem))
    if isinstance(a, OptionalType) and isinstance(b, OptionalType):
        return OptionalType(join_types(a.elem, b.elem))
    if isinstance(a, OptionalType):
        return OptionalType(join_types(a.elem, b))
    if isinstance(b, OptionalType):
        return OptionalType(join_types(a, b.elem))
    if a == b:
        return a
    return ANY


# -- If -----------------------------------------------------------------------

def _if_infer(ctx: InferContext) -> list[Type]:
    then_r, else_r = ctx.regions.get("then_branch"), ctx.regions.get("else_branch")
    if then_r is None or else_r is None:
        return [ANY] * ctx.num_outputs
    t_out, e_out = then_r.block.outputs, else_r.block.outputs
    if len(t_out) != len(e_out):
        raise ShapeInferenceError(f"If branches yield different numbers of values: then {len(t_out)}, else {len(e_out)}")
    return [join_types(a.type, b.type) for a, b in zip(t_out, e_out)]


def _if_verify(op: Op) -> list[str]:
    out = _needs_regions(op, ("then_branch", "else_branch"))
    if out:
        return out
    for key in ("then_branch", "else_branch"):
        b = op.regions[key].block
        if b.args:
            out.append(f"region {key} takes {len(b.args)} arguments; If branches take none")
        if len(b.outputs) != len(op.results):
            out.append(f"region {key} yields {len(b.outputs)} values but the If has {len(op.results)} results")
    return out


def _needs_regions(op: Op, keys: tuple[str, ...]) -> list[str]:
    missing = [k for k in keys if k not in op.regions]
    extra = [k for k in op.regions if k not in keys]
    out = [f"is missing region '{k}'" for k in missing]
    out += [f"has an unexpected region '{k}'" for k in extra]
    return out


@register("If", Dynamism.EDO, infer=_if_infer, family=CONTROL, verify=_if_verify)
def if_(ctx: KernelContext, cond: np.ndarray) -> Any:
    if cond.size != 1:
        raise OpRuntimeError(f"If condition must hold one element, got shape {cond.shape}")
    out = ctx.run_region("then_branch" if bool(cond.reshape(-1)[0]) else "else_branch", [])
    return tuple(out) if ctx.num_outputs != 1 else out[0]


# -- Loop ---------------------------------------------------------------------

def _scalar(dt: DType) -> TensorType:
    return TensorType(dt, ())


def body_arg_types(op_name: str, key: str, operands: Sequence[Value | None], n_args: int, node: onnx.NodeProto | None = None) -> list[Type]:
    """What the body's block arguments are known to be, from the op's operands."""
    types = [v.type if v is not None else ANY for v in operands]
    if op_name == "Loop":
        return [_scalar(DType.INT64), _scalar(DType.BOOL)] + types[2:]
    if op_name == "Scan":
        n_scan = 0
        axes: list[int] = []
        if node is not None:
            for a in node.attribute:
                if a.name == "num_scan_inputs":
                    n_scan = a.i
                if a.name == "scan_input_axes":
                    axes = list(a.ints)
        states = types[len(types) - n_scan:] if n_scan else []
        state_types = types[: len(types) - n_scan]
        scan_types: list[Type] = []
        for j, t in enumerate(states):
            ax = axes[j] if j < len(axes) else 0
            if isinstance(t, TensorType) and t.shape is not None and t.shape:
                shape = list(t.shape)
                shape.pop(ax if ax >= 0 else ax + len(shape))
                scan_types.append(TensorType(t.dtype, tuple(shape)))
            else:
                scan_types.append(TensorType(t.dtype if isinstance(t, TensorType) else None, None))
        return state_types + scan_types if (node is None or _opset_of(node) >= 9) else [ANY] * n_args
    if op_name == "SequenceMap":
        return [t.elem if isinstance(t, SequenceType) else t for t in types]
    return []


def _opset_of(node: onnx.NodeProto) -> int:
    # NOTE: opset-8 Scan has a leading optional sequence_lens input and a batch axis;
    # its body types are left to the declared ones.
    return 9 if not node.input or node.input[0] != "" else 8


def _loop_infer(ctx: InferContext) -> list[Type]:
    body = ctx.regions.get("body")
    if body is None:
        return [ANY] * ctx.num_outputs
    outs = body.block.outputs
    n_carried = len(ctx.input_types) - 2
    if len(outs) < 1 + n_carried:
        raise ShapeInferenceError(
            f"Loop body yields {len(outs)} values but needs at least 1 + {n_carried} (condition + carried values)"
        )
    result: list[Type] = []
    for i in range(n_carried):
        init = ctx.input_types[2 + i] or ANY
        result.append(join_types(init, outs[1 + i].type))
    for v in outs[1 + n_carried:]:
        t = v.type
        if isinstance(t, TensorType):
            result.append(TensorType(t.dtype, None if t.shape is None else (None, *t.shape)))
        else:
            result.append(ANY)
    return result[: ctx.num_outputs] + [ANY] * (ctx.num_outputs - len(result))


def _loop_verify(op: Op) -> list[str]:
    out = _needs_regions(op, ("body",))
    if out:
        return out
    b = op.regions["body"].block
    n_carried = max(len(op.operands) - 2, 0)
    if len(b.args) != 2 + n_carried:
        out.append(f"region body takes {len(b.args)} arguments; it needs 2 + {n_carried} (iteration, condition, carried)")
    if len(b.outputs) < 1 + n_carried:
        out.append(f"region body yields {len(b.outputs)} values; it needs at least 1 + {n_carried} (condition, carried)")
    elif len(op.results) > len(b.outputs) - 1:
        out.append(f"the Loop has {len(op.results)} results but its body yields only {len(b.outputs) - 1} carried/scan values")
    return out


@register("Loop", Dynamism.EDO, infer=_loop_infer, family=CONTROL, verify=_loop_verify)
def loop(ctx: KernelContext, max_trip: np.ndarray | None, cond: np.ndarray | None, *carried: Any) -> Any:
    n_carried = len(carried)
    trips = int(max_trip.reshape(-1)[0]) if max_trip is not None else None
    keep_going = bool(cond.reshape(-1)[0]) if cond is not None else True
    state = list(carried)
    scans: list[list[Any]] | None = None
    i = 0
    while keep_going and (trips is None or i < trips):
        out = ctx.run_region("body", [np.array(i, dtype=np.int64), np.array(keep_going), *state])
        keep_going = bool(np.asarray(out[0]).reshape(-1)[0])
        state = list(out[1 : 1 + n_carried])
        if scans is None:
            scans = [[] for _ in out[1 + n_carried :]]
        for acc, v in zip(scans, out[1 + n_carried :]):
            acc.append(v)
        i += 1
    body_outs = ctx.op.regions["body"].block.outputs
    n_scan = len(body_outs) - 1 - n_carried
    results: list[Any] = list(state)
    for k in range(n_scan):
        if scans and scans[k]:
            results.append(np.stack([np.asarray(x) for x in scans[k]]))
        else:
            results.append(_empty_stack(body_outs[1 + n_carried + k].type))
    results = results[: ctx.num_outputs]
    return tuple(results) if ctx.num_outputs != 1 else results[0]


def _empty_stack(t: Type) -> np.ndarray:
    if isinstance(t, TensorType) and t.dtype is not None:
        dims = [d if isinstance(d, int) else 0 for d in (t.shape or ())]
        return np.empty((0, *dims), dtype=t.dtype.numpy)
    return np.empty((0,), dtype=np.float32)


# -- Scan ---------------------------------------------------------------------

def _scan_infer(ctx: InferContext) -> list[Type]:
    body = ctx.regions.get("body")
    if body is None:
        return [ANY] * ctx.num_outputs
    n_scan_in = int(ctx.attr("num_scan_inputs", 0))
    inputs = ctx.input_types[1:] if ctx.opset < 9 else ctx.input_types
    n_state = len(inputs) - n_scan_in
    outs = body.block.outputs
    result: list[Type] = [join_types(inputs[i] or ANY, outs[i].type) for i in range(n_state)]
    length: Dim = None
    axes = list(ctx.attr("scan_input_axes", [])) or [0] * n_scan_in
    if ctx.opset >= 9 and n_scan_in:
        t = inputs[n_state]
        if isinstance(t, TensorType) and t.shape:
            ax = axes[0] if axes[0] >= 0 else axes[0] + len(t.shape)
            length = t.shape[ax]
    out_axes = list(ctx.attr("scan_output_axes", []))
    for j, v in enumerate(outs[n_state:]):
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None:
            result.append(TensorType(t.dtype if isinstance(t, TensorType) else None, None))
            continue
        if ctx.opset < 9:
            result.append(TensorType(t.dtype, None))
            continue
        ax = out_axes[j] if j < len(out_axes) else 0
        ax = ax if ax >= 0 else ax + len(t.shape) + 1
        shape = list(t.shape)
        shape.insert(ax, length)
        result.append(TensorType(t.dtype, tuple(shape)))
    return result[: ctx.num_outputs]


def _scan_verify(op: Op) -> list[str]:
    out = _needs_regions(op, ("body",))
    if out:
        return out
    b = op.regions["body"].block
    n_in = len(op.operands) - (1 if op.operands and op.operands[0] is None else 0)
    if len(b.args) > n_in:
        out.append(f"region body takes {len(b.args)} arguments but the Scan has only {n_in} state and scan inputs")
    if len(op.results) > len(b.outputs):
        out.append(f"the Scan has {len(op.results)} results but its body yields {len(b.outputs)} values")
    return out


@register("Scan", Dynamism.ISDOS, infer=_scan_infer, family=CONTROL, verify=_scan_verify,
          note="ISDOS when the body's shapes follow from its inputs; EDO-like bodies make it EDO")
def scan(ctx: KernelContext, *inputs: Any) -> Any:
    if ctx.opset < 9:
        return _scan8(ctx, inputs[0], list(inputs[1:]))
    n_scan = int(ctx.attr("num_scan_inputs"))
    n_state = len(inputs) - n_scan
    states = list(inputs[:n_state])
    scan_in = list(inputs[n_state:])
    in_axes = list(ctx.attr("scan_input_axes", [])) or [0] * n_scan
    in_dirs = list(ctx.attr("scan_input_directions", [])) or [0] * n_scan
    scan_in = [np.moveaxis(x, ax, 0) for x, ax in zip(scan_in, in_axes)]
    scan_in = [x[::-1] if d else x for x, d in zip(scan_in, in_dirs)]
    length = scan_in[0].shape[0] if scan_in else 0
    for x in scan_in:
        if x.shape[0] != length:
            raise OpRuntimeError(f"Scan inputs have different lengths along their scan axes: {length} and {x.shape[0]}")
    collected: list[list[np.ndarray]] = []
    for t in range(length):
        out = ctx.run_region("body", [*states, *(x[t] for x in scan_in)])
        states = list(out[:n_state])
        if not collected:
            collected = [[] for _ in out[n_state:]]
        for acc, v in zip(collected, out[n_state:]):
            acc.append(np.asarray(v))
    n_out_scan = len(ctx.op.regions["body"].block.outputs) - n_state
    out_axes = list(ctx.attr("scan_output_axes", [])) or [0] * n_out_scan
    out_dirs = list(ctx.attr("scan_output_directions", [])) or [0] * n_out_scan
    results: list[Any] = list(states)
    for j in range(n_out_scan):
        if collected:
            seq = collected[j][::-1] if out_dirs[j] else collected[j]
            stacked = np.stack(seq)
        else:
            stacked = _empty_stack(ctx.op.regions["body"].block.outputs[n_state + j].type)
        results.append(np.moveaxis(stacked, 0, out_axes[j]))
    results = results[: ctx.num_outputs]
    return tuple(results) if ctx.num_outputs != 1 else results[0]


def _scan8(ctx: KernelContext, seq_lens: np.ndarray | None, inputs: list[Any]) -> Any:
    """Opset-8 Scan: axis 0 is a batch axis, axis 1 the scan axis, optional lengths."""
    n_scan = int(ctx.attr("num_scan_inputs"))
    n_state = len(inputs) - n_scan
    batch = inputs[0].shape[0]
    dirs = list(ctx.attr("directions", [])) or [0] * n_scan
    per_batch: list[list[Any]] = []
    for b in range(batch):
        states = [x[b] for x in inputs[:n_state]]
        scans = [x[b] for x in inputs[n_state:]]
        length = int(seq_lens[b]) if seq_lens is not None else scans[0].shape[0]
        scans = [s[:length][::-1] if d else s[:length] for s, d in zip(scans, dirs)]
        collected: list[list[np.ndarray]] = []
        for t in range(length):
            out = ctx.run_region("body", [*states, *(s[t] for s in scans)])
            states = list(out[:n_state])
            if not collected:
                collected = [[] for _ in out[n_state:]]
            for acc, v in zip(collected, out[n_state:]):
                acc.append(np.asarray(v))
        per_batch.append(states + [np.stack(c) for c in collected])
    results = [np.stack([pb[k] for pb in per_batch]) for k in range(len(per_batch[0]))]
    results = results[: ctx.num_outputs]
    return tuple(results) if ctx.num_outputs != 1 else results[0]


# -- calls ----------------------------------------------------------------------

def _call_infer(ctx: InferContext) -> list[Type]:
    callee = ctx.attrs.get("callee")
    if ctx.module is None or callee not in ctx.module.functions:
        return [ANY] * ctx.num_outputs
    return list(ctx.module.functions[callee].output_types)


CALL_SCHEMA = Schema(
    "Call", "pliant", 1, (ParamSpec("args", variadic=True),), (ParamSpec("results", variadic=True),), {"callee": None},
    frozenset({"callee"}),
)


def _call_verify(op: Op) -> list[str]:
    fn_name = op.attrs.get("callee")
    block = op.parent
    module = None
    while block is not None and module is None:
        parent = block.parent
        if isinstance(parent, Function):
            module = parent.parent
        elif isinstance(parent, Region) and parent.parent is not None:
            block = parent.parent.parent
            continue
        break
    if module is None:
        return []
    if not isinstance(fn_name, str) or fn_name not in module.functions:
        return [f"calls '{fn_name}', which is not a function of the module"]
    callee = module.functions[fn_name]
    out = []
    if len(op.operands) != len(callee.inputs):
        out.append(f"passes {len(op.operands)} arguments to '{fn_name}', which takes {len(callee.inputs)}")
    if len(op.results) > len(callee.outputs):
        out.append(f"expects {len(op.results)} results from '{fn_name}', which returns {len(callee.outputs)}")
    for i, (v, a) in enumerate(zip(op.operands, callee.inputs)):
        if v is not None and not compatible(a.type, v.type):
            out.append(f"type mismatch: argument {i} is {v.type} but '{fn_name}' takes {a.type}")
    return out


@register("Call", Dynamism.EDO, domain="pliant", infer=_call_infer, family=CONTROL, schema=CALL_SCHEMA, verify=_call_verify,
          note="as dynamic as the callee; recursion makes it EDO")
def call(ctx: KernelContext, *args: Any) -> Any:
    fn = ctx.interp.module.functions[ctx.attrs["callee"]]
    out = ctx.interp.run_function(fn, list(args))
    return tuple(out) if ctx.num_outputs != 1 else out[0]


__all__ = ["TupleType", "body_arg_types", "join_types"]
