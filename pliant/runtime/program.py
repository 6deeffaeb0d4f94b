"""Host programs: a function's ops flattened into closures over a register file.

``FunctionProgram(module, fn)`` gives every value of ``fn`` (its blocks'
arguments and its ops' results, nested regions included) a slot in one list,
preloads the constants, and turns each op into a step ``step(regs)`` that
reads its operands' slots, calls the op's kernel (a fast one from
``pliant.runtime.fast`` when there is one, else the reference kernel with its
context prepared once) and writes its results.  A step also clears the slots
of values whose last use it is, so arrays are freed as early as the
interpreter would never do.  ``If`` and ``Loop`` run their bodies' programs
directly; other ops with regions (Scan, SequenceMap) run the reference kernel
with a region runner over the same registers; calls run the callee's program
on a fresh register file.

Where ``unit_call.c`` builds (a C compiler and the Python headers), a block's steps run in its
``exec_block``: region units, Ifs and Loops go on there without returning to Python (a Loop's
iterations, an If's branch, a unit's inputs and results), the other steps are called from there.  A
step it cannot take as it is (a unit meeting a new signature, a condition that is not an array) runs
its Python function instead.

Nothing in a program changes after it is built, so one program serves
concurrent calls: each call has its own registers.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from pliant.analysis.liveness import last_uses
from pliant.errors import OpRuntimeError, PliantError
from pliant.ir.core import Block, Function, Module, Op, Value
from pliant.ir.dims import dims_equal
from pliant.ir.types import TensorType
from pliant.ops import registry
from pliant.ops.control import _empty_stack
from pliant.ops.typing import attrs_with_defaults
from pliant.runtime import region_c
from pliant.runtime.fast import FALLBACK, fast_kernel, fused_conv_kernel, fused_kernel

Regs = list[Any]
Step = Callable[[Regs], None]


class BlockProgram:
    """The steps of one block; ``run`` binds the arguments and returns the outputs.

    Where ``unit_call.c`` builds, the steps run there (``exec_block``): region units, Ifs and Loops
    without a return to Python, other steps by calling their Python function.
    """

    __slots__ = ("_exec", "arg_slots", "code", "ops", "out_slots", "steps")

    def __init__(self, arg_slots: list[int], steps: list[Step], ops: list[Op], out_slots: list[int]) -> None:
        self.arg_slots = arg_slots
        self.steps = steps
        self.ops = ops
        self.out_slots = out_slots
        self.code = (tuple(arg_slots), tuple(getattr(s, "code", None) or (STEP_PY, s) for s in steps),
                     tuple(out_slots), self._reraise)
        self._exec = _executor()

    def run(self, regs: Regs, args: Sequence[Any]) -> list[Any]:
        if self._exec is not None:
            return self._exec(self.code, regs, args)  # type: ignore[no-any-return]
        for s, a in zip(self.arg_slots, args):
            regs[s] = a
        steps = self.steps
        k = 0
        try:
            for k in range(len(steps)):
                steps[k](regs)
        except Exception as e:  # noqa: BLE001 - named after its op and raised again
            self._reraise(k, e)
        return [regs[s] for s in self.out_slots]

    def _reraise(self, k: int, e: BaseException) -> NoReturn:
        """Raise ``e``, the error of step ``k``, named after its op."""
        op = self.ops[k]
        if isinstance(e, PliantError):
            if " node" in str(e) and op.regions:
                raise e
            raise type(e)(f"{op.where}: {e}") from None
        if isinstance(e, Exception):
            raise OpRuntimeError(f"{op.where} failed: {type(e).__name__}: {e}") from e
        raise e


# NOTE: the kinds of steps exec_block takes (unit_call.c)
STEP_PY, STEP_UNIT, STEP_IF, STEP_LOOP = 0, 1, 2, 3

STEP_NONZERO, STEP_SEQ_INSERT = 4, 5

HOST_EXEC = True
"""Whether blocks run in ``unit_call.c``'s ``exec_block`` where it builds (tests compare both paths)."""


def _c_kind(op: Op) -> int | None:
    """The kind of step exec_block runs itself for this op (beyond units and control flow), or None."""
    if op.domain != "":
        return None
    if op.name == "NonZero":
        return STEP_NONZERO
    if op.name == "SequenceInsert" and (len(op.operands) < 3 or op.operands[2] is None):
        return STEP_SEQ_INSERT
    return None


def _executor() -> Callable[..., Any] | None:
    if not HOST_EXEC:
        return None
    from pliant.runtime.unit_call import executor

    return executor()


class FunctionProgram:
    """A function compiled to host steps; ``run(args)`` executes it on a fresh register file."""

    def __init__(self, module: Module, fn: Function, programs: dict[str, FunctionProgram] | None = None, *,
                 specialized: bool = False) -> None:
        self.module = module
        self.specialized = specialized
        self.fn = fn
        self.programs = programs if programs is not None else {}
        self.programs[fn.name] = self
        self.slot: dict[Value, int] = {}
        self.template: Regs = []
        self.stats = {"fast": 0, "native": 0, "reference": 0, "control": 0, "constant": 0}
        self.unsupported: list[str] = []
        self.regions: list[dict[str, Any]] = []
        self._lazy = threading.Lock()
        self._number(fn.body)
        self.template = [None] * len(self.slot)
        self.blocks: dict[Block, BlockProgram] = {}
        self.body = self._block(fn.body)

    def run(self, args: Sequence[Any]) -> list[Any]:
        regs = list(self.template)
        return self.body.run(regs, args)

    # -- building --------------------------------------------------------------------
    def _number(self, block: Block) -> None:
        for a in block.args:
            self.slot[a] = len(self.slot)
        for op in block.ops:
            for r in op.results:
                self.slot[r] = len(self.slot)
            for region in op.regions.values():
                self._number(region.block)

    def _block(self, block: Block) -> BlockProgram:
        last = last_uses(block.ops)
        keep = set(block.outputs) | set(block.args)
        # NOTE: only values this block defines are freed here; outer values may be read again (next iteration)
        own = {r for op in block.ops for r in op.results}
        steps: list[Step] = []
        ops: list[Op] = []
        for k, op in enumerate(block.ops):
            if op.name == "Constant" and op.domain == "":
                from pliant.ops.typing import constant_value

                self.template[self.slot[op.results[0]]] = constant_value(op.results[0])
                self.stats["constant"] += 1
                continue
            release = tuple(self.slot[v] for v, at in last.items() if at == k and v not in keep
                            and v in own and not _is_constant(v))
            steps.append(self._step(op, release, _in_place(op, block, k, last, keep)))
            ops.append(op)
        prog = BlockProgram([self.slot[a] for a in block.args], steps, ops, [self.slot[v] for v in block.outputs])
        self.blocks[block] = prog
        return prog

    def _step(self, op: Op, release: tuple[int, ...], in_place: int | None = None) -> Step:
        ins = tuple(self.slot[v] if v is not None else -1 for v in op.operands)
        outs = tuple(self.slot[r] for r in op.results)
        if op.domain == "" and op.name == "If":
            self.stats["control"] += 1
            return self._if(op, ins, outs, release)
        if op.domain == "" and op.name == "Loop":
            self.stats["control"] += 1
            return self._loop(op, ins, outs, release)
        if op.domain == "pliant" and op.name == "Call":
            self.stats["control"] += 1
            return self._call(op, ins, outs, release)
        opdef = registry.get(op.name, op.domain)
        opset = self.module.opset(op.domain)
        attrs = attrs_with_defaults(opdef, op.attrs, opset)
        if op.domain == "pliant" and op.name == "Fused":
            return self._fused(op, opdef, attrs, opset, ins, outs, release)
        if op.domain == "pliant" and op.name == "Static":
            return self._static(op, opdef, attrs, opset, ins, outs, release)
        if op.domain == "pliant" and op.name == "FusedConv":
            self._block(op.regions["body"].block)
            by_region = self._with_regions(op, opdef, attrs, opset, ins, outs, release)
            conv = fused_conv_kernel(op, attrs)
            if conv is None:
                self.stats["reference"] += 1
                return by_region
            self.stats["native"] += 1
            return _or_region(_make_step(conv, ins, outs, release), by_region)
        if op.regions:
            self.stats["control"] += 1
            for region in op.regions.values():
                self._block(region.block)
            return self._with_regions(op, opdef, attrs, opset, ins, outs, release)
        ctx = registry.KernelContext(op, attrs, opset, None)
        ref = _bind(opdef.kernel, ctx)
        fast = fast_kernel(op, attrs, opset)
        c_kind = _c_kind(op)
        if c_kind is not None:
            self.stats["fast" if fast is not None else "reference"] += 1
            step = _make_step(fast if fast is not None else ref, ins, outs, release)
            step.code = (c_kind, step, ins, outs, release)  # type: ignore[attr-defined]
            return step
        if fast is not None and in_place is not None and op.name in _IN_PLACE:
            self.stats["in_place"] = self.stats.get("in_place", 0) + 1
            return _make_step(_IN_PLACE[op.name](in_place), ins, outs, release)
        if fast is None:
            self.stats["reference"] += 1
            return _make_step(ref, ins, outs, release)
        if getattr(fast, "fallible", False):
            self.stats["native" if getattr(fast, "native", False) else "fast"] += 1
            return _make_step(_or_reference(fast, ref), ins, outs, release)
        self.stats["fast"] += 1
        return _make_step(fast, ins, outs, release)

    def _fused(self, op: Op, opdef: registry.OpDef, attrs: dict[str, Any], opset: int,
               ins: tuple[int, ...], outs: tuple[int, ...], release: tuple[int, ...]) -> Step:
        self._block(op.regions["body"].block)
        by_region = self._with_regions(op, opdef, attrs, opset, ins, outs, release)
        # NOTE: sizes are built into the kernel only where they are constants of this version: a dim that
        # changes between loop iterations would compile a new version per iteration
        t = op.results[0].type
        static = isinstance(t, TensorType) and t.is_static and all(
            isinstance(v.type, TensorType) and v.type.is_static for v in op.operands if v is not None)
        kernel = fused_kernel(op, specialize=self.specialized and static)
        if kernel is None:
            self.stats["reference"] += 1
            return by_region
        self.stats["fused"] = self.stats.get("fused", 0) + 1
        return _or_region(_make_step(kernel, ins, outs, release), by_region)

    def _static(self, op: Op, opdef: registry.OpDef, attrs: dict[str, Any], opset: int,
                ins: tuple[int, ...], outs: tuple[int, ...], release: tuple[int, ...]) -> Step:
        """A static region: its native unit, or its ops one by one where the unit cannot run."""
        from pliant.kernels.errors import CompileError, TCError

        body = op.regions["body"].block
        by_region = self._with_regions(op, opdef, attrs, opset, ins, outs, release)
        try:
            unit = region_c.RegionUnit(op)
            unit.load()
        except (region_c.UnsupportedRegion, TCError, OSError) as e:
            self._block(body)
            if isinstance(e, CompileError):
                # NOTE: generated code the C compiler refuses is pliant's bug, not the model's: say so
                warnings.warn(f"{op.where}: its native unit did not compile, so its ops run one by one "
                              f"(slower; please report it): {str(e).splitlines()[0]}", RuntimeWarning, stacklevel=2)
            self.stats["reference"] += 1
            self.unsupported.append(f"{op.where}: {e}")
            self.regions.append({"at": op.where, "ops": len(op.regions["body"].block.ops), "native": False,
                                 "why": str(e).splitlines()[0]})
            return by_region
        self.stats["static"] = self.stats.get("static", 0) + 1
        self.regions.append({"at": op.where, "ops": len(unit.ops), "native": True, "inputs": len(unit.inputs),
                             "outputs": len(unit.outputs)})
        run = unit.run
        mismatch = region_c.MISMATCH
        # NOTE: the ops' own steps are built on first need (a signature the unit refuses): most regions never need
        # them, and MoE's 51 held 0.9 MB of closures.  Their constants go into the register file then, and into the
        # template for later calls.
        built: list[tuple[int, ...]] = []  # NOTE: one append, of the slots of the body's constants, once built

        def by_ops(regs: Regs) -> None:
            if not built:
                with self._lazy:
                    if not built:
                        self._block(body)
                        built.append(tuple(self.slot[o.results[0]] for o in op.walk()
                                           if o.name == "Constant" and o.domain == "" and o is not op))
            for k in built[0]:
                if regs[k] is None:
                    regs[k] = self.template[k]
            by_region(regs)

        def step(regs: Regs) -> None:
            try:
                res = run([regs[s] for s in ins])
            except mismatch:
                by_ops(regs)
                return
            _store(regs, outs, res, release)

        step.code = (STEP_UNIT, step, ins, outs, release, unit.c_args)  # type: ignore[attr-defined]
        return step

    def _if(self, op: Op, ins: tuple[int, ...], outs: tuple[int, ...], release: tuple[int, ...]) -> Step:
        then_p = self._block(op.regions["then_branch"].block)
        else_p = self._block(op.regions["else_branch"].block)
        cond = ins[0]

        def step(regs: Regs) -> None:
            c = regs[cond]
            _store(regs, outs, (then_p if bool(np.asarray(c).reshape(-1)[0]) else else_p).run(regs, ()), release)

        step.code = (STEP_IF, step, cond, then_p.code, else_p.code, outs, release)  # type: ignore[attr-defined]
        return step

    def _loop(self, op: Op, ins: tuple[int, ...], outs: tuple[int, ...], release: tuple[int, ...]) -> Step:
        body_block = op.regions["body"].block
        body = self._block(body_block)
        m_slot, c_slot = ins[0], ins[1]
        carried = ins[2:]
        n_carried = len(carried)
        scan_types = [v.type for v in body_block.outputs[1 + n_carried:]]

        def finish(regs: Regs, state: list[Any], scans: list[list[Any]]) -> None:
            _store(regs, outs, list(state) + [np.stack(acc) if acc else _empty_stack(t)
                                              for acc, t in zip(scans, scan_types)], release)

        def step(regs: Regs) -> None:
            trips = int(np.asarray(regs[m_slot]).reshape(-1)[0]) if m_slot >= 0 else None
            keep = bool(np.asarray(regs[c_slot]).reshape(-1)[0]) if c_slot >= 0 else True
            state = [regs[s] for s in carried]
            scans: list[list[Any]] = [[] for _ in scan_types]
            i = 0
            true = np.array(True)
            while keep and (trips is None or i < trips):
                res = body.run(regs, [np.array(i, dtype=np.int64), true, *state])
                keep = bool(res[0].reshape(-1)[0]) if isinstance(res[0], np.ndarray) else bool(res[0])
                state = res[1:1 + n_carried]
                for acc, x in zip(scans, res[1 + n_carried:]):
                    acc.append(x)
                i += 1
            finish(regs, state, scans)

        step.code = (STEP_LOOP, step, m_slot, c_slot, carried, body.code, finish,  # type: ignore[attr-defined]
                     outs, release)
        return step

    def _call(self, op: Op, ins: tuple[int, ...], outs: tuple[int, ...], release: tuple[int, ...]) -> Step:
        name = str(op.attrs["callee"])
        programs = self.programs
        module = self.module

        def step(regs: Regs) -> None:
            callee = programs.get(name)
            if callee is None:
                callee = FunctionProgram(module, module.functions[name], programs)
            _store(regs, outs, callee.run([regs[s] if s >= 0 else None for s in ins]), release)

        return step

    def _with_regions(self, op: Op, opdef: registry.OpDef, attrs: dict[str, Any], opset: int,
                      ins: tuple[int, ...], outs: tuple[int, ...], release: tuple[int, ...]) -> Step:
        blocks = self.blocks
        kernel = opdef.kernel

        def step(regs: Regs) -> None:
            runner = _RegionRunner(self, blocks, regs)
            ctx = registry.KernelContext(op, attrs, opset, runner)
            res = kernel(ctx, *[regs[s] if s >= 0 else None for s in ins])
            _store(regs, outs, list(res) if isinstance(res, tuple) else [res], release)

        return step


class _RegionRunner:
    """What a reference kernel with regions calls back into: the compiled bodies, on the caller's registers."""

    def __init__(self, program: FunctionProgram, blocks: dict[Block, BlockProgram], regs: Regs) -> None:
        self.program = program
        self.module = program.module
        self.blocks = blocks
        self.regs = regs

    def run_block(self, block: Block, args: list[Any]) -> list[Any]:
        return self.blocks[block].run(self.regs, args)

    def run_function(self, fn: Function, args: list[Any]) -> list[Any]:
        callee = self.program.programs.get(fn.name) or FunctionProgram(self.module, fn, self.program.programs)
        return callee.run(args)


# NOTE: ops whose kernels always return a new array (ufuncs, BLAS, native and generated kernels): a result of
# one of them that nothing else refers to may be overwritten by its only reader.
_FRESH = {"Conv", "FusedConv", "MatMul", "Gemm", "Fused", "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Exp",
          "Softmax", "LayerNormalization", "GlobalAveragePool", "MaxPool", "AveragePool", "Neg", "Sqrt"}
def _unary_in_place(f: Callable[..., Any]) -> Callable[[int], Callable[..., Any]]:
    def make(i: int) -> Callable[..., Any]:
        def run(x: Any) -> Any:
            return f(x, out=x) if type(x) is np.ndarray and x.ndim and x.flags.writeable else f(x)

        return run

    return make


def _binary_in_place(f: Callable[..., Any]) -> Callable[[int], Callable[..., Any]]:
    def make(i: int) -> Callable[..., Any]:
        def run(a: Any, b: Any) -> Any:
            # NOTE: checked per call: a kernel may hand back a NumPy scalar or a read-only array
            x = a if i == 0 else b
            if type(x) is np.ndarray and x.ndim and x.flags.writeable:
                return f(a, b, out=x)
            return f(a, b)

        return run

    return make


_IN_PLACE: dict[str, Callable[[int], Callable[..., Any]]] = {
    "Relu": _unary_in_place(lambda x, out=None: np.maximum(x, x.dtype.type(0), out=out)),
    "Tanh": _unary_in_place(np.tanh),
    "Exp": _unary_in_place(np.exp),
    "Neg": _unary_in_place(np.negative),
    "Sqrt": _unary_in_place(np.sqrt),
    "Add": _binary_in_place(np.add),
    "Mul": _binary_in_place(np.multiply),
    "Sub": _binary_in_place(np.subtract),
    "Div": _binary_in_place(np.divide),
}


def _in_place(op: Op, block: Block, k: int, last: dict[Value, int], keep: set[Value]) -> int | None:
    """The operand ``op`` may overwrite with its result, or None.

    It must be a float tensor of the result's exact shape and dtype, made in
    this block by an op that returns new arrays, read by ``op`` alone (so no
    view of it exists) and never again.
    """
    if op.domain != "" or op.name not in _IN_PLACE or len(op.results) != 1:
        return None
    out = op.results[0].type
    if not isinstance(out, TensorType) or out.shape is None or out.dtype is None or not out.dtype.is_float \
            or any(d is None for d in out.shape):
        return None
    for i, v in enumerate(op.operands):
        p = v.defining_op if v is not None else None
        if v is None or p is None or p.parent is not block or p.name not in _FRESH or v in keep or last.get(v) != k:
            continue
        if len(v.uses) != 1 or any(w is v for j, w in enumerate(op.operands) if j != i):
            continue
        t = v.type
        if isinstance(t, TensorType) and t.dtype == out.dtype and t.shape is not None and len(t.shape) == len(out.shape) \
                and all(a is not None and dims_equal(a, b) for a, b in zip(t.shape, out.shape)):
            return i
    return None


def _store(regs: Regs, outs: tuple[int, ...], values: Sequence[Any], release: tuple[int, ...]) -> None:
    for o, x in zip(outs, values):
        regs[o] = x
    for s in release:
        regs[s] = None


def _is_constant(v: Value) -> bool:
    op = v.defining_op
    return op is not None and op.name == "Constant" and op.domain == ""


_NO_ARITHMETIC = frozenset({"SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
                            "SequenceLength", "ConcatFromSequence", "SplitToSequence", "Identity", "Optional",
                            "OptionalGetElement", "OptionalHasElement"})
"""Default-domain ops whose reference kernels only move data: they run without NumPy's error state set (entering
and leaving it took 1.3 us, a GRU decoder's SequenceInsert per step)."""


def _bind(kernel: Callable[..., Any], ctx: registry.KernelContext) -> Callable[..., Any]:
    single = ctx.num_outputs == 1

    def plain(*xs: Any) -> Any:
        res = kernel(ctx, *xs)
        if single and isinstance(res, tuple):
            res = res[0]  # NOTE: a kernel may compute optional outputs the op does not have
        return np.asarray(res) if isinstance(res, np.generic) else res

    if ctx.op.domain == "" and ctx.op.name in _NO_ARITHMETIC:
        return plain

    def run(*xs: Any) -> Any:
        with np.errstate(all="ignore"):
            return plain(*xs)

    return run


def _or_region(native: Step, by_region: Step) -> Step:
    """``native``, or the op's region where the native kernel declines these inputs."""

    def step(regs: Regs) -> None:
        try:
            native(regs)
        except FALLBACK:
            by_region(regs)

    return step


def _or_reference(fast: Callable[..., Any], ref: Callable[..., Any]) -> Callable[..., Any]:
    def run(*xs: Any) -> Any:
        try:
            return fast(*xs)
        except FALLBACK:
            return ref(*xs)

    return run


def _make_step(fn: Callable[..., Any], ins: tuple[int, ...], outs: tuple[int, ...], release: tuple[int, ...]) -> Step:
    """A step specialised to its arity (the common shapes avoid building argument lists)."""
    no_none = all(s >= 0 for s in ins)
    if len(outs) == 1 and no_none and not release:
        o = outs[0]
        if len(ins) == 1:
            (a,) = ins

            def step1(regs: Regs) -> None:
                regs[o] = fn(regs[a])

            return step1
        if len(ins) == 2:
            a, b = ins

            def step2(regs: Regs) -> None:
                regs[o] = fn(regs[a], regs[b])

            return step2

    def step(regs: Regs) -> None:
        res = fn(*[regs[s] if s >= 0 else None for s in ins])
        if len(outs) == 1:
            regs[outs[0]] = res
        else:
            vals = list(res) if isinstance(res, tuple) else [res]
            for o, x in zip(outs, vals):
                regs[o] = x
        for s in release:
            regs[s] = None

    return step
