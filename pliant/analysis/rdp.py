"""Rank and Dimension Propagation (SoD²): symbolic shapes for a whole module.

``analyze(module)`` computes every value's type from the entry function's
input types, to a fixpoint, and writes the result into the IR:

* **forward**: each op's shape rule on symbolic dims, fed with the *symbolic
  values* of small integer tensors (``Shape -> Gather -> Concat -> Reshape``
  resolves to symbolic dims; see ``pliant.ops.symvalue``);
* **control flow**: ``If`` joins its branches (equal dims stay, differing ones
  become a fresh symbol bounded by both); ``Loop`` and ``Scan`` iterate their
  body to a fixpoint, and a carried dim that grows by a loop-invariant amount
  per iteration gets an expression in the iteration index inside the body
  (``past + i``) and in the iteration count after it (``past + n``); calls
  analyse the callee with the caller's types (recursion is cut with fresh
  symbols);
* **EDO ops** (NonZero, NonMaxSuppression, Unique...) give their unknown dims
  fresh symbols with a bound where one is known;
* **backward**: each op's ``backward`` rule states dim equalities (MatMul's
  contraction, Concat's other axes, Reshape's element count...); solving them
  unifies symbols (two input symbols proven equal, an unknown dim proven to
  be ``3*n``), and the forward pass runs again until nothing changes.

Unknown dims are carried as placeholder symbols during the analysis (so that
equalities between them survive) and written back as ``?``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from pliant.errors import PliantError
from pliant.ir.core import Block, Function, Module, Op, Value
from pliant.ir.dims import (
    Dim,
    Facts,
    Sym,
    canonical,
    d_add,
    d_max,
    d_min,
    d_mul,
    d_sub,
    dim_symbols,
    dims_equal,
    is_integer_polynomial,
    provably_le,
    substitute,
    sym_dim,
)
from pliant.ir.dtypes import DType
from pliant.ir.types import ANY, OptionalType, SequenceType, TensorType, TupleType, Type, UnknownType
from pliant.ops import registry
from pliant.ops.control import join_types
from pliant.ops.symvalue import MAX_ELEMENTS, array, from_constant, static_shape
from pliant.ops.typing import attrs_with_defaults, constant_value

MAX_ROUNDS = 8
"""Forward/backward rounds before giving up on a fixpoint."""
LOOP_ATTEMPTS = 4
"""Re-analyses of a loop body per loop (init, growth hypothesis, generalisation)."""
UNKNOWN_PREFIX = "u"


@dataclass
class SymbolInfo:
    """Where a symbol comes from.

    ``kind``: "input" (a dim of the entry function's inputs), "iteration" (a
    loop's iteration index inside its body), "count" (how many iterations a
    loop ran), "data" (an EDO op's data-dependent size), "join" (If branches
    or loop iterations that disagree), or "unknown" (a placeholder for a dim
    no rule could name).  ``scope`` is the block whose every execution may
    give the symbol a new value (None: once per call of the entry function).
    """

    name: str
    kind: str
    origin: str
    scope: Block | None = None
    upper: Dim = None
    lower: Dim = None


@dataclass
class ShapeAnalysis:
    """The result of ``analyze``: types are written into the IR; this holds the rest."""

    module: Module
    values: dict[Value, np.ndarray] = field(default_factory=dict)
    """Symbolic values of small integer tensors (object arrays of dims)."""
    symbols: dict[str, SymbolInfo] = field(default_factory=dict)
    equalities: list[tuple[str, str]] = field(default_factory=list)
    """Proven equalities between dims, as text: (symbol, what it equals)."""
    conflicts: list[str] = field(default_factory=list)
    """Shape errors found (a model that cannot run for any input size)."""
    rounds: int = 0
    seconds: float = 0.0

    @property
    def input_symbols(self) -> list[str]:
        return [s.name for s in self.symbols.values() if s.kind == "input"]

    def symbols_of_kind(self, *kinds: str) -> list[SymbolInfo]:
        return [s for s in self.symbols.values() if s.kind in kinds]


@dataclass(frozen=True, slots=True)
class Unreached(UnknownType):
    """The type of a result no execution has produced yet (a recursive call before its fixpoint)."""


UNREACHED = Unreached()


def analyze(module: Module, *, backward: bool = True) -> ShapeAnalysis:
    """Run RDP on ``module``, write the inferred types into it, and return the analysis.

    >>> import pliant
    >>> from pliant.ir import FunctionBuilder, tensor, DType
    >>> fb = FunctionBuilder("main", [("x", tensor(DType.FLOAT, "N", 4))])
    >>> x = fb.inputs[0]
    >>> s = fb.op("Shape", [x])
    >>> n = fb.op("Gather", [s, fb.const(np.array([0]))], {"axis": 0})
    >>> shape = fb.op("Concat", [fb.const(np.array([2])), n, fb.const(np.array([-1]))], {"axis": 0})
    >>> fb.output("y", fb.op("Reshape", [x, shape]))
    >>> m = fb.module()
    >>> a = analyze(m)
    >>> str(m.entry.output_types[0])
    'f32[2,N,2]'
    """
    t0 = time.perf_counter()
    engine = _Engine(module)
    result = engine.run(backward)
    result.seconds = time.perf_counter() - t0
    return result


class _Engine:
    def __init__(self, module: Module) -> None:
        self.module = module
        self.vid: dict[Value, int] = {}
        self.parent_block: dict[Block, Block | None] = {}
        for fn in module.functions.values():
            self._number(fn.body, None)
        self.subst: dict[str, int | Sym] = {}
        self.facts = Facts()
        self.input_names: set[str] = set()
        self.input_order: dict[str, int] = {}
        self.attr_cache: dict[Op, dict[str, Any]] = {}
        self.result = ShapeAnalysis(module)

    # -- numbering -------------------------------------------------------------
    def _number(self, block: Block, parent: Block | None) -> None:
        self.parent_block[block] = parent
        for a in block.args:
            self.vid[a] = len(self.vid)
        for op in block.ops:
            for r in op.results:
                self.vid[r] = len(self.vid)
            for region in op.regions.values():
                self._number(region.block, block)

    # -- driver ----------------------------------------------------------------
    def run(self, backward: bool) -> ShapeAnalysis:
        res = self.result
        entry = self.module.entry
        for v in entry.inputs:
            for s in sorted(_type_symbols(v.type)):
                self.input_names.add(s)
                self.input_order.setdefault(s, len(self.input_order))
        for rnd in range(1, MAX_ROUNDS + 1):
            res.rounds = rnd
            self._reset()
            self._analyze_function(entry, self._entry_types(entry), [None] * len(entry.inputs))
            for fn in self.module.functions.values():
                if fn is not entry and fn.body not in self.analyzed_blocks:
                    self._analyze_function(fn, [self._subst_type(v.type) for v in fn.inputs], [None] * len(fn.inputs))
            self._generalise_shared_functions()
            if not backward or not self._backward():
                break
        self._write_back()
        return res

    def _generalise_shared_functions(self) -> None:
        """A function analysed with different argument types (two call sites, or recursion with other
        arguments) keeps, in the IR, the types that hold for all of them: its body is analysed once more with
        the join of those argument types.  Each call's results were already computed from its own types."""
        for name, contexts in list(self.fn_contexts.items()):
            fn = self.module.functions[name]
            distinct = [c for k, c in enumerate(contexts) if c not in contexts[:k]]
            if len(distinct) < 2:
                continue
            joined = list(distinct[0])
            for c in distinct[1:]:
                joined = [join_types(a, b) for a, b in zip(joined, c)]
            # NOTE: symbols of the callers' scopes do not hold inside every execution of the body
            joined = [_map_dims(t, lambda d: d if isinstance(d, int) else None) for t in joined]
            self.call_args[name] = joined
            self._analyze_function(fn, joined, [None] * len(fn.inputs))
            self.call_args.pop(name, None)

    def _entry_types(self, entry: Function) -> list[Type]:
        """The entry's input types; a symbol inside a sequence's element type that no earlier input binds is
        per element (each element may differ there, as the feed check allows), so it becomes unknown."""
        bound: set[str] = set()
        out: list[Type] = []
        for v in entry.inputs:
            t = self._subst_type(v.type)
            if isinstance(t, SequenceType):
                t = _map_dims(t, lambda d: d if dim_symbols(d) <= bound else None)
            else:
                bound |= _type_symbols(t)
            out.append(t)
        return out

    def _reset(self) -> None:
        self.types: dict[Value, Type] = {}
        self.vals: dict[Value, np.ndarray] = {}
        self.symbols: dict[str, SymbolInfo] = {}
        self.visited: list[tuple[Op, registry.InferContext, list[Type]]] = []
        self.summaries: dict[str, tuple[list[Type], list[Type]]] = {}
        self.fn_contexts: dict[str, list[list[Type]]] = {}
        """Argument types each function was analysed (or recursively called) with in this round."""
        self.call_args: dict[str, list[Type]] = {}
        self.recursive: set[str] = set()
        self.empty: set[Value] = set()
        """Values known to be empty sequences."""
        self.analyzed_blocks: set[Block] = set()
        self.scope: list[Block] = []
        self.call_stack: list[str] = []
        self.conflicts: list[str] = []
        for n in sorted(self.input_names):
            if n not in self.subst:
                self.symbols[n] = SymbolInfo(n, "input", "an input dim")

    # -- symbols ---------------------------------------------------------------
    def fresh(self, name: str, kind: str, origin: str, *, scope: Block | None = None,
              upper: Dim = None, lower: Dim = None) -> int | Sym:
        """The symbol ``name`` (or what backward propagation proved it equals)."""
        if kind != "input":
            # NOTE: a leading underscore makes the symbol >= 0 rather than >= 1 (see ``pliant.ir.dims.symbol``)
            name = "_" + name.lstrip("_")
        if name in self.subst:
            return self.subst[name]
        if name not in self.symbols:
            self.symbols[name] = SymbolInfo(name, kind, origin, scope if scope is not None else self._cur_scope(),
                                            upper, lower)
        return Sym.named(name)

    def _cur_scope(self) -> Block | None:
        return self.scope[-1] if self.scope else None

    def _inside(self, inner: Block | None, outer: Block) -> bool:
        """Whether block ``inner`` is ``outer`` or nested in it."""
        b = inner
        while b is not None:
            if b is outer:
                return True
            b = self.parent_block.get(b)
        return False

    def _local_to(self, d: Dim, block: Block) -> bool:
        """Whether ``d`` mentions a symbol that takes a new value at each execution of ``block``."""
        for s in dim_symbols(d):
            info = self.symbols.get(s)
            if info is not None and info.scope is not None and self._inside(info.scope, block):
                return True
        return False

    def _subst_type(self, t: Type) -> Type:
        if not self.subst:
            return t
        return _map_dims(t, lambda d: substitute(d, self.subst))

    # -- values ----------------------------------------------------------------
    def type_of(self, v: Value | None) -> Type | None:
        if v is None:
            return None
        t = self.types.get(v)
        return t if t is not None else v.type

    def _set(self, v: Value, t: Type, val: np.ndarray | None) -> None:
        self.types[v] = t
        if val is not None and isinstance(t, SequenceType) and val.size == 1:
            self.vals[v] = np.asarray(val, dtype=object).reshape(1)  # NOTE: a sequence's value is its length
            return
        if val is not None and isinstance(t, TensorType) and t.shape is not None:
            shape = static_shape(t)
            if shape is not None and int(np.prod(shape)) <= MAX_ELEMENTS:
                try:
                    self.vals[v] = np.asarray(val, dtype=object).reshape(shape)
                    return
                except ValueError:
                    pass
        self.vals.pop(v, None)

    # -- blocks and functions ----------------------------------------------------
    def _analyze_function(self, fn: Function, arg_types: Sequence[Type], arg_vals: Sequence[np.ndarray | None]) -> list[Type]:
        self.call_stack.append(fn.name)
        try:
            return self._block(fn.body, arg_types, arg_vals)
        finally:
            self.call_stack.pop()

    def _block(self, block: Block, arg_types: Sequence[Type], arg_vals: Sequence[np.ndarray | None]) -> list[Type]:
        self.analyzed_blocks.add(block)
        self.scope.append(block)
        try:
            for v, t, val in zip(block.args, arg_types, arg_vals):
                self._set(v, t, val)
            for op in block.ops:
                self._op(op)
            return [self.type_of(v) or ANY for v in block.outputs]
        finally:
            self.scope.pop()

    # -- ops -------------------------------------------------------------------
    def _op(self, op: Op) -> None:
        if op.name == "If" and op.domain == "":
            self._if(op)
        elif op.name == "Loop" and op.domain == "":
            self._loop(op)
        elif op.name == "Scan" and op.domain == "" and self.module.opset("") >= 9:
            self._scan(op)
        elif op.name == "Call" and op.domain == "pliant":
            self._call(op)
        elif op.name == "SequenceMap" and op.domain == "" and "body" in op.regions:
            body = op.regions["body"].block
            outs = self._block(body, self._region_arg_types(op, body), [None] * len(body.args))
            n = self.vals.get(op.operands[0]) if op.operands and op.operands[0] is not None else None
            for r, t in zip(op.results, outs):
                # NOTE: one element per input element; what the body computes afresh per element is unknown
                self._set(r, SequenceType(_map_dims(t, lambda d: None if self._local_to(d, body) else d)), n)
        else:
            for region in op.regions.values():
                self._block(region.block, self._region_arg_types(op, region.block), [None] * len(region.block.args))
            self._plain(op)

    def _region_arg_types(self, op: Op, block: Block) -> list[Type]:
        """Argument types of a body this analysis has no special rule for: SequenceMap's are the elements of
        its sequence inputs (and its tensor inputs); elsewhere the declared types with symbols unknown."""
        if op.name == "SequenceMap" and len(op.operands) == len(block.args):
            out: list[Type] = []
            for v in op.operands:
                t = self.type_of(v) or ANY
                out.append(t.elem if isinstance(t, SequenceType) else t)
            return out
        return [_map_dims(a.type, lambda d: d if isinstance(d, int) else None) for a in block.args]

    def _ctx(self, op: Op) -> tuple[registry.OpDef, registry.InferContext]:
        opdef = registry.get(op.name, op.domain)
        opset = self.module.opset(op.domain)
        attrs = self.attr_cache.get(op)
        if attrs is None:
            attrs = self.attr_cache[op] = attrs_with_defaults(opdef, op.attrs, opset)
        types = [self.type_of(v) for v in op.operands]
        consts: list[np.ndarray | None] = []
        vals: list[np.ndarray | None] = []
        for v in op.operands:
            c = constant_value(v)
            val = self.vals.get(v) if v is not None else None
            if c is None and val is not None and all(_is_number(e) for e in val.reshape(-1)):
                t = self.type_of(v)
                dt = t.dtype.numpy if isinstance(t, TensorType) and t.dtype is not None else np.int64
                c = np.array([e if isinstance(e, int) else float(e.expr) for e in val.reshape(-1)],
                             dtype=dt).reshape(val.shape)
            consts.append(c)
            vals.append(val)
        ctx = registry.InferContext(op.name, op.domain, types, attrs, opset, len(op.results), consts,
                                    op.regions, self.module, vals)
        return opdef, ctx

    def _plain(self, op: Op) -> None:
        if op.name == "SequenceEmpty":
            self.empty.add(op.results[0])
        elif op.name == "SequenceInsert" and op.operands[0] in self.empty and op.operands[1] is not None:
            # NOTE: inserting into an empty sequence: its element type is the inserted tensor's, nothing joined
            n = self.vals.get(op.operands[0])
            self._set(op.results[0], SequenceType(self.type_of(op.operands[1]) or ANY),
                      None if n is None else np.array([d_add(n.reshape(-1)[0], 1)], dtype=object))
            return
        opdef, ctx = self._ctx(op)
        rule = opdef.infer
        try:
            if rule is None:
                from pliant.ops.infer import onnx_fallback

                types = list(onnx_fallback(ctx))
            else:
                types = list(rule(ctx))
        except PliantError as e:
            self.conflicts.append(f"{op.where}: {e}")
            types = []
        types = (types + [ANY] * len(op.results))[: len(op.results)]
        if op.name == "Constant" and op.domain == "":
            vals: list[np.ndarray | None] = [from_constant(constant_value(op.results[0]))]
        else:
            vals = [None] * len(op.results)
        types = [self._name_unknowns(op, r, t, opdef) for r, t in zip(op.results, types)]
        for t in types:
            if isinstance(t, TensorType) and t.shape is not None:
                self.facts.note_dims(t.shape)
        if opdef.value is not None and op.name != "Constant":
            for r, t in zip(op.results, types):
                self.types[r] = t
            ctx.num_outputs = len(op.results)
            try:
                vals = (list(opdef.value(ctx)) + [None] * len(op.results))[: len(op.results)]
            except (PliantError, ValueError, TypeError, IndexError, ArithmeticError):
                vals = [None] * len(op.results)
        for r, t, val in zip(op.results, types, vals):
            self._set(r, t, val)
        self.visited.append((op, ctx, types))

    def _name_unknowns(self, op: Op, r: Value, t: Type, opdef: registry.OpDef | None) -> Type:
        """Give each unknown dim of ``r`` a symbol: a data symbol for EDO ops, a placeholder otherwise."""
        vid = self.vid.get(r, 0)
        edo = opdef is not None and opdef.dynamism is registry.Dynamism.EDO

        def name_dim(d: Dim, path: str) -> Dim:
            if d is not None:
                return self.facts.simplify(d)
            if edo:
                base = f"{op.name.lower()}{vid}{path}"
                return self.fresh(base, "data", f"{op.where} result {r.index}", upper=self._edo_bound(op))
            return self.fresh(f"{UNKNOWN_PREFIX}{vid}{path}", "unknown", f"{op.where} result {r.index}")

        return _map_dims_indexed(t, name_dim)

    def _edo_bound(self, op: Op) -> Dim:
        """An upper bound on a data-dependent size: the element count of the first input, where it applies."""
        if op.name in ("NonZero", "Compress", "Unique") and op.operands and op.operands[0] is not None:
            t = self.type_of(op.operands[0])
            if isinstance(t, TensorType) and t.shape is not None and all(d is not None for d in t.shape):
                acc: Dim = 1
                for d in t.shape:
                    acc = d_mul(acc, d)
                return acc
        if op.name == "NonMaxSuppression" and len(op.operands) > 1 and op.operands[1] is not None:
            # NOTE: at most every box of every class of every batch, and at most max_output_boxes_per_class each
            t = self.type_of(op.operands[1])
            if isinstance(t, TensorType) and t.shape is not None and len(t.shape) == 3:
                per_class: Dim = t.shape[2]
                limit = self._scalar(op.operands[2]) if len(op.operands) > 2 else None
                if isinstance(limit, int) and limit >= 0:
                    per_class = d_min(per_class, limit)
                return d_mul(d_mul(t.shape[0], t.shape[1]), per_class)
        return None

    # -- If ----------------------------------------------------------------------
    def _if(self, op: Op) -> None:
        then_b, else_b = op.regions["then_branch"].block, op.regions["else_branch"].block
        t_out = self._block(then_b, [], [])
        e_out = self._block(else_b, [], [])
        cval = self.vals.get(op.operands[0]) if op.operands and op.operands[0] is not None else None
        taken = cval.reshape(-1)[0] if cval is not None and cval.size == 1 else None
        for k, r in enumerate(op.results):
            a = t_out[k] if k < len(t_out) else ANY
            b = e_out[k] if k < len(e_out) else ANY
            va = self.vals.get(then_b.outputs[k]) if k < len(then_b.outputs) else None
            vb = self.vals.get(else_b.outputs[k]) if k < len(else_b.outputs) else None
            if taken == 1:
                self._set(r, a, va)
                continue
            if taken == 0:
                self._set(r, b, vb)
                continue
            if isinstance(a, Unreached) or isinstance(b, Unreached):
                # NOTE: a branch that only recurses has not produced a type yet: the If has the other's
                self._set(r, b if isinstance(a, Unreached) else a, None)
                continue
            vid = self.vid.get(r, 0)
            joined = self._join(a, b, lambda j, x, y: self.fresh(
                f"if{vid}_{j}", "join", f"{op.where} result {r.index} (branches give {x} and {y})",
                upper=d_max(x, y), lower=d_min(x, y)))
            val = None
            if va is not None and vb is not None and va.shape == vb.shape and all(
                    dims_equal(x, y) for x, y in zip(va.reshape(-1), vb.reshape(-1))):
                val = va
            self._set(r, joined, val)

    def _join(self, a: Type, b: Type, fresh_for: Any) -> Type:
        """Join two types; a dim that differs gets ``fresh_for(j, x, y)`` (j counts dims in order)."""
        counter = [0]

        def go(x: Type, y: Type) -> Type:
            if isinstance(x, TensorType) and isinstance(y, TensorType):
                dtype = x.dtype if x.dtype is not None else y.dtype
                if x.shape is None or y.shape is None or len(x.shape) != len(y.shape):
                    return TensorType(dtype, None)
                dims: list[Dim] = []
                for dx, dy in zip(x.shape, y.shape):
                    counter[0] += 1
                    dims.append(dx if dims_equal(dx, dy) else fresh_for(counter[0] - 1, dx, dy))
                return TensorType(dtype, tuple(dims))
            if isinstance(x, SequenceType) and isinstance(y, SequenceType):
                return SequenceType(go(x.elem, y.elem))
            if isinstance(x, OptionalType) and isinstance(y, OptionalType):
                return OptionalType(go(x.elem, y.elem))
            return join_types(x, y)

        return go(a, b)

    # -- Loop --------------------------------------------------------------------
    def _loop(self, op: Op) -> None:
        body = op.regions["body"].block
        n_carried = len(op.operands) - 2
        m_val = self._scalar(op.operands[0])
        vid = self.vid.get(op.results[0], 0) if op.results else self.vid.get(body.args[0], 0)
        i_sym = self.fresh(f"i{vid}", "iteration", f"{op.where}: the iteration index", scope=body)
        if isinstance(i_sym, Sym) and i_sym.is_symbol and m_val is not None:
            self.facts.upper[str(i_sym)] = d_sub(m_val, 1)
        init_t = [self.type_of(v) or ANY for v in op.operands[2:]]
        init_v = [self.vals.get(v) if v is not None else None for v in op.operands[2:]]
        # per carried value, per dim position: "inv" | ("lin", delta) | "fresh"
        modes: list[dict[int, Any]] = [{} for _ in range(n_carried)]
        vmodes: list[dict[int, Any]] = [{} for _ in range(n_carried)]
        rank_lost = [False] * n_carried
        from_empty = {k for k, v in enumerate(op.operands[2:]) if v is not None and v.defining_op is not None
                      and v.defining_op.name == "SequenceEmpty"}
        outs: list[Type] = []
        cond_true = op.operands[1] is None or self._scalar(op.operands[1]) == 1
        for _attempt in range(LOOP_ATTEMPTS + 1):
            in_t = [self._carried_in(body, k, init_t[k], modes[k], rank_lost[k], i_sym) for k in range(n_carried)]
            in_v = [self._carried_vals(init_v[k], vmodes[k], i_sym) for k in range(n_carried)]
            for k in range(n_carried):
                if 2 + k < len(body.args):
                    (self.empty.add if k in from_empty else self.empty.discard)(body.args[2 + k])
            arg_t: list[Type] = [TensorType(DType.INT64, ()), TensorType(DType.BOOL, ()), *in_t]
            arg_v: list[np.ndarray | None] = [array([i_sym], ()), array([1], ()) if cond_true else None, *in_v]
            outs = self._block(body, arg_t, arg_v)
            changed = False
            if cond_true and not self._is_one(body.outputs[0] if body.outputs else None):
                # NOTE: the body was analysed assuming its condition input is true in every iteration; that
                # holds by induction only if the condition it yields is then true as well
                cond_true = False
                changed = True
            for k in range(n_carried):
                out_t = outs[1 + k] if 1 + k < len(outs) else ANY
                generalised = _map_dims(out_t, lambda d: None if self._local_to(d, body) else d)
                if k in from_empty:
                    if isinstance(out_t, SequenceType) and out_t != init_t[k]:
                        # NOTE: a sequence that starts empty holds what the body inserts: adopt its element
                        # type, with the dims that change between iterations unknown (elements may differ)
                        init_t[k] = generalised
                        from_empty.discard(k)
                        changed = True
                elif not isinstance(init_t[k], TensorType):
                    # NOTE: sequences and optionals carried around the loop: join what comes in with what the
                    # body yields until it stops changing
                    joined = join_types(init_t[k], generalised)
                    if joined != in_t[k]:
                        init_t[k] = joined
                        changed = True
                else:
                    changed |= self._update_modes(body, in_t[k], out_t, init_t[k], modes[k], rank_lost, k, i_sym)
                ov = self.vals.get(body.outputs[1 + k]) if 1 + k < len(body.outputs) else None
                changed |= self._update_val_modes(body, in_v[k], ov, init_v[k], vmodes[k], i_sym)
            if not changed:
                break
        # how many iterations ran
        cond_in = self._scalar(op.operands[1]) if op.operands[1] is not None else 1
        always = cond_true and self._is_one(body.outputs[0] if body.outputs else None)
        if m_val is not None and cond_in == 1 and always:
            count: Dim = m_val
        elif cond_in == 0:
            count = 0
        else:
            count = self.fresh(f"n{vid}", "count", f"{op.where}: the number of iterations run",
                               upper=m_val if m_val is not None else None)
        for k, r in enumerate(op.results[:n_carried]):
            final = self._carried_out(op, r, init_t[k], modes[k], rank_lost[k], count)
            val = self._carried_vals(init_v[k], vmodes[k], count)
            self._set(r, final, val)
        for j, r in enumerate(op.results[n_carried:]):
            t = outs[1 + n_carried + j] if 1 + n_carried + j < len(outs) else ANY
            self._set(r, self._stacked(op, r, t, count, body, 0), None)
        self.visited.append((op, self._ctx(op)[1], [self.type_of(r) or ANY for r in op.results]))

    def _is_one(self, v: Value | None) -> bool:
        val = self.vals.get(v) if v is not None else None
        return val is not None and val.size == 1 and val.reshape(-1)[0] == 1

    def _scalar(self, v: Value | None) -> Dim:
        if v is None:
            return None
        val = self.vals.get(v)
        if val is None:
            c = constant_value(v)
            val = from_constant(c) if c is not None else None
        if val is None or val.size != 1:
            return None
        return val.reshape(-1)[0]  # type: ignore[no-any-return]

    def _carried_in(self, body: Block, k: int, init: Type, modes: dict[int, Any], rank_lost: bool, i_sym: Dim) -> Type:
        if not isinstance(init, TensorType) or init.shape is None:
            return init
        if rank_lost:
            return TensorType(init.dtype, None)
        arg = body.args[2 + k] if 2 + k < len(body.args) else None
        vid = self.vid.get(arg, 0) if arg is not None else 0
        dims: list[Dim] = []
        for j, d in enumerate(init.shape):
            m = modes.get(j, "inv")
            if m == "inv":
                dims.append(d)
            elif m == "fresh":
                dims.append(self.fresh(f"c{vid}_{j}", "join", f"a dim of loop-carried value {arg.name if arg else k}"
                                       " that changes between iterations", scope=body))
            else:
                dims.append(d_add(d, d_mul(m[1], i_sym)))
        return TensorType(init.dtype, tuple(dims))

    def _update_modes(self, body: Block, in_t: Type, out_t: Type, init: Type, modes: dict[int, Any],
                      rank_lost: list[bool], k: int, i_sym: Dim) -> bool:
        if not isinstance(in_t, TensorType) or not isinstance(out_t, TensorType) or in_t.shape is None:
            return False
        if out_t.shape is None or len(out_t.shape) != len(in_t.shape):
            if not rank_lost[k]:
                rank_lost[k] = True
                return True
            return False
        assert isinstance(init, TensorType) and init.shape is not None
        changed = False
        for j, (di, do) in enumerate(zip(in_t.shape, out_t.shape)):
            if dims_equal(di, do):
                continue
            m = modes.get(j, "inv")
            if m == "inv":
                delta = d_sub(do, di)
                if delta is not None and not self._local_to(delta, body) and init.shape[j] is not None:
                    modes[j] = ("lin", delta)
                else:
                    modes[j] = "fresh"
                changed = True
            elif m != "fresh" and not dims_equal(do, d_add(di, m[1])):
                modes[j] = "fresh"
                changed = True
        return changed

    def _carried_out(self, op: Op, r: Value, init: Type, modes: dict[int, Any], rank_lost: bool, count: Dim) -> Type:
        if not isinstance(init, TensorType) or init.shape is None:
            return init
        if rank_lost:
            return TensorType(init.dtype, None)
        vid = self.vid.get(r, 0)
        dims: list[Dim] = []
        for j, d in enumerate(init.shape):
            m = modes.get(j, "inv")
            if m == "inv":
                dims.append(d)
            elif m == "fresh" or count is None:
                dims.append(self.fresh(f"loop{vid}_{j}", "join", f"{op.where} result {r.index}: a dim that changes "
                                       "between iterations"))
            else:
                dims.append(d_add(d, d_mul(m[1], count)))
        return TensorType(init.dtype, tuple(dims))

    def _carried_vals(self, init: np.ndarray | None, modes: dict[int, Any], at: Dim) -> np.ndarray | None:
        """A carried value's elements at iteration ``at`` (the index symbol in the body, the count after it)."""
        if init is None:
            return None
        out = np.empty(init.shape, dtype=object)
        flat, src = out.reshape(-1), init.reshape(-1)
        for j in range(src.size):
            m = modes.get(j, "inv")
            flat[j] = src[j] if m == "inv" else None if m == "fresh" or at is None else d_add(src[j], d_mul(m[1], at))
        return out

    def _update_val_modes(self, body: Block, vin: np.ndarray | None, vout: np.ndarray | None, init: np.ndarray | None,
                          modes: dict[int, Any], i_sym: Dim) -> bool:
        if vin is None or init is None:
            return False
        changed = False
        for j in range(init.size):
            a = vin.reshape(-1)[j]
            b = vout.reshape(-1)[j] if vout is not None and vout.size == init.size else None
            m = modes.get(j, "inv")
            if m == "fresh" or (a is not None and b is not None and dims_equal(a, b)):
                continue
            if m != "inv" and a is not None and b is not None and dims_equal(b, d_add(a, m[1])):
                continue
            if m == "inv" and a is not None and b is not None:
                delta = d_sub(b, a)
                modes[j] = ("lin", delta) if delta is not None and not self._local_to(delta, body) else "fresh"
            else:
                modes[j] = "fresh"
            changed = True
        return changed

    def _stacked(self, op: Op, r: Value, t: Type, count: Dim, body: Block, axis: int) -> Type:
        """A scan output: per-iteration type ``t`` stacked along ``axis`` ``count`` times."""
        if not isinstance(t, TensorType) or t.shape is None:
            return TensorType(t.dtype if isinstance(t, TensorType) else None, None)
        vid = self.vid.get(r, 0)
        dims = [d if not self._local_to(d, body) else
                self.fresh(f"{UNKNOWN_PREFIX}{vid}_{j}", "unknown", f"{op.where} result {r.index}")
                for j, d in enumerate(t.shape)]
        ax = axis if axis >= 0 else axis + len(dims) + 1
        dims.insert(ax, count)
        return TensorType(t.dtype, tuple(dims))

    # -- Scan ------------------------------------------------------------------------
    def _scan(self, op: Op) -> None:
        _, ctx = self._ctx(op)
        body = op.regions["body"].block
        n_scan = int(ctx.attr("num_scan_inputs", 0))
        n_state = len(op.operands) - n_scan
        in_axes = list(ctx.attr("scan_input_axes", [])) or [0] * n_scan
        out_axes = list(ctx.attr("scan_output_axes", []))
        init_t = [self.type_of(v) or ANY for v in op.operands[:n_state]]
        scan_t = [self.type_of(v) or ANY for v in op.operands[n_state:]]
        count: Dim = None
        slices: list[Type] = []
        for t, ax in zip(scan_t, in_axes):
            if isinstance(t, TensorType) and t.shape is not None and t.shape:
                a = ax + len(t.shape) if ax < 0 else ax
                if count is None:
                    count = t.shape[a]
                slices.append(TensorType(t.dtype, t.shape[:a] + t.shape[a + 1:]))
            else:
                slices.append(TensorType(t.dtype if isinstance(t, TensorType) else None, None))
        modes: list[dict[int, Any]] = [{} for _ in range(n_state)]
        rank_lost = [False] * n_state
        outs: list[Type] = []
        for _attempt in range(LOOP_ATTEMPTS):
            # NOTE: Scan bodies see no iteration index, so a growing state is generalised (no "lin" mode).
            in_t = [self._carried_in(body, k, init_t[k], {j: "fresh" for j, m in modes[k].items()}, rank_lost[k], 0)
                    for k in range(n_state)]
            outs = self._block(body, [*in_t, *slices], [None] * (n_state + len(slices)))
            changed = False
            for k in range(n_state):
                before = dict(modes[k])
                self._update_modes(body, in_t[k], outs[k] if k < len(outs) else ANY, init_t[k], modes[k], rank_lost, k, 0)
                changed |= before != modes[k]
            if not changed:
                break
        if count is None:
            count = self.fresh(f"n{self.vid.get(op.results[0], 0)}", "count", f"{op.where}: the scan length")
        for k, r in enumerate(op.results[:n_state]):
            self._set(r, self._carried_out(op, r, init_t[k], {j: "fresh" for j in modes[k]}, rank_lost[k], count), None)
        for j, r in enumerate(op.results[n_state:]):
            t = outs[n_state + j] if n_state + j < len(outs) else ANY
            self._set(r, self._stacked(op, r, t, count, body, out_axes[j] if j < len(out_axes) else 0), None)
        self.visited.append((op, ctx, [self.type_of(r) or ANY for r in op.results]))

    # -- calls -------------------------------------------------------------------------
    def _call(self, op: Op) -> None:
        fn = self.module.functions.get(str(op.attrs.get("callee")))
        arg_t = [self.type_of(v) or ANY for v in op.operands]
        arg_v = [self.vals.get(v) if v is not None else None for v in op.operands]
        if fn is None:
            outs: list[Type] = [_unknown_dims(r.type) for r in op.results]
        elif fn.name in self.call_stack:
            self.fn_contexts.setdefault(fn.name, []).append(arg_t)
            # NOTE: a recursive call. With the same argument types as the call being analysed, its results are
            # that call's (iterated from "not reached" to a fixpoint); with other arguments, they are unknown.
            self.recursive.add(fn.name)
            summary = self.summaries.get(fn.name)
            if summary is not None and summary[0] == arg_t:
                outs = list(summary[1])
            elif summary is None and self.call_args.get(fn.name) == arg_t:
                outs = [UNREACHED] * len(op.results)
            else:
                outs = [_unknown_dims(r.type) for r in op.results]
        else:
            self.fn_contexts.setdefault(fn.name, []).append(arg_t)
            self.call_args[fn.name] = arg_t
            self.summaries.pop(fn.name, None)
            for _attempt in range(LOOP_ATTEMPTS):
                self.recursive.discard(fn.name)
                outs = self._analyze_function(fn, arg_t, arg_v)
                if fn.name not in self.recursive:
                    break
                general = [_map_dims(t, lambda d: None if self._local_to(d, fn.body) else d) for t in outs]
                prev = self.summaries.get(fn.name)
                if prev is not None and prev[1] == general:
                    break
                self.summaries[fn.name] = (arg_t, general)
            self.call_args.pop(fn.name, None)
        for k, r in enumerate(op.results):
            t = outs[k] if k < len(outs) else ANY
            if not isinstance(t, Unreached):
                t = self._name_unknowns(op, r, t, None)
            val = self.vals.get(fn.outputs[k]) if fn is not None and k < len(fn.outputs) and fn.name not in self.recursive else None
            self._set(r, t, val)

    # -- backward ---------------------------------------------------------------------
    def _backward(self) -> bool:
        """Solve the ops' dim equalities; True if a new substitution was found."""
        changed = False
        for op, ctx, results in self.visited:
            opdef = registry.lookup(op.name, op.domain)
            if opdef is None or opdef.backward is None:
                continue
            try:
                eqs = opdef.backward(ctx, results)
            except (PliantError, ValueError, TypeError, IndexError):
                continue
            for a, b in eqs:
                changed |= self._unify(a, b, op)
        return changed

    def _unify(self, a: Dim, b: Dim, op: Op) -> bool:
        if a is None or b is None:
            return False
        a, b = substitute(a, self.subst), substitute(b, self.subst)
        if a is None or b is None:
            return False
        diff = canonical((sympy.Integer(a) if isinstance(a, int) else a.expr) - (sympy.Integer(b) if isinstance(b, int) else b.expr))
        if diff == 0:
            return False
        if diff.is_Integer or _never_zero(diff):
            self.conflicts.append(f"{op.where}: dims {a} and {b} must be equal, which no input sizes allow")
            return False
        order = {"unknown": 0, "join": 1, "data": 2, "count": 3, "input": 4}
        cands = sorted((s for s in diff.free_symbols if s.name in self.symbols and self.symbols[s.name].kind != "iteration"),  # type: ignore[attr-defined]
                       key=lambda s: (order.get(self.symbols[s.name].kind, 9),  # type: ignore[attr-defined]
                                      -self.input_order.get(s.name, 0), s.name))  # type: ignore[attr-defined]
        for s in cands:
            info = self.symbols[s.name]  # type: ignore[attr-defined]
            poly = sympy.Poly(diff, s) if diff.is_polynomial(s) else None
            if poly is None or poly.degree() != 1:
                continue
            c = poly.coeff_monomial(s)
            if not (provably_le(1, sym_dim(c)) or provably_le(sym_dim(c), -1)):
                continue
            sol = sym_dim(sympy.cancel(-(diff - c * s) / c))
            if isinstance(sol, Sym) and not is_integer_polynomial(sol.expr):
                continue
            if info.kind == "input" and not (isinstance(sol, Sym) and sol.is_symbol and str(sol) in self.input_names):
                continue  # NOTE: an input symbol is only renamed to another input symbol, never rewritten
            if any(not self._visible(info.scope, x) for x in dim_symbols(sol)):
                continue
            if sol is None:
                continue
            self.subst = {k: _known(substitute(v, {info.name: sol})) for k, v in self.subst.items()}
            self.subst[info.name] = sol
            if info.kind == "input":
                self.result.equalities.append((info.name, str(sol)))
            return True
        if dim_symbols(a) | dim_symbols(b) <= self.input_names and all(
                x is None or isinstance(x, int) or x.expr.is_polynomial() for x in (a, b)):
            text = (str(a), str(b))
            if text not in self.result.equalities:
                self.result.equalities.append(text)
        return False

    def _visible(self, scope: Block | None, name: str) -> bool:
        """Whether symbol ``name`` has one value throughout each execution of ``scope``."""
        info = self.symbols.get(name)
        if info is None or info.scope is None:
            return True
        return scope is not None and self._inside(scope, info.scope)

    # -- results -----------------------------------------------------------------------
    def _write_back(self) -> None:
        res = self.result
        res.symbols = {n: i for n, i in self.symbols.items() if i.kind != "unknown"}
        res.conflicts = list(dict.fromkeys(self.conflicts))
        unknown = {n for n, i in self.symbols.items() if i.kind == "unknown"}

        def clean(d: Dim) -> Dim:
            return None if dim_symbols(d) & unknown else d

        for v, t in self.types.items():
            v.type = ANY if isinstance(t, Unreached) else _map_dims(t, clean)
        for v, val in self.vals.items():
            res.values[v] = np.vectorize(clean, otypes=[object])(val) if val.size else val


def _never_zero(e: sympy.Expr) -> bool:
    """Whether ``e`` is provably nonzero for every value of its symbols (each >= 1, or >= 0 with ``_``)."""
    d = sym_dim(e)
    return provably_le(1, d) or provably_le(d, -1)


def _is_number(e: Dim) -> bool:
    return isinstance(e, int) or (isinstance(e, Sym) and not e.expr.free_symbols)


def _known(d: Dim) -> int | Sym:
    assert d is not None
    return d


def _type_symbols(t: Type) -> set[str]:
    out: set[str] = set()

    def visit(d: Dim) -> Dim:
        out.update(dim_symbols(d))
        return d

    _map_dims(t, visit)
    return out


def _map_dims(t: Type, fn: Any) -> Type:
    """``t`` with every dim replaced by ``fn(dim)``."""
    if isinstance(t, TensorType):
        if t.shape is None:
            return t
        return TensorType(t.dtype, tuple(fn(d) for d in t.shape))
    if isinstance(t, SequenceType):
        return SequenceType(_map_dims(t.elem, fn))
    if isinstance(t, OptionalType):
        return OptionalType(_map_dims(t.elem, fn))
    if isinstance(t, TupleType):
        return TupleType(tuple(_map_dims(e, fn) for e in t.elems))
    return t


def _map_dims_indexed(t: Type, fn: Any, path: str = "") -> Type:
    """Like ``_map_dims`` but ``fn(dim, path)`` gets a stable suffix naming the dim's position."""
    if isinstance(t, TensorType):
        if t.shape is None:
            return t
        return TensorType(t.dtype, tuple(fn(d, f"{path}_{j}" if len(t.shape) > 1 or path else "") for j, d in enumerate(t.shape)))
    if isinstance(t, SequenceType):
        return SequenceType(_map_dims_indexed(t.elem, fn, path + "_s"))
    if isinstance(t, OptionalType):
        return OptionalType(_map_dims_indexed(t.elem, fn, path + "_o"))
    if isinstance(t, TupleType):
        return TupleType(tuple(_map_dims_indexed(e, fn, f"{path}_t{k}") for k, e in enumerate(t.elems)))
    return t


def _unknown_dims(t: Type) -> Type:
    return _map_dims(t, lambda d: None)


def analyze_json(model: Module | str | bytes) -> dict[str, Any]:
    """Analyse ``model`` (a Module, or an ONNX path/bytes) and return ``pliant analyze --json``'s document."""
    from pliant.analysis.report import analysis_json

    if not isinstance(model, Module):
        from pliant.frontends.onnx import load

        model = load(model)
    return analysis_json(model, analyze(model))


def iter_values(module: Module) -> Iterable[Value]:
    """Every value of ``module``: function and region arguments, then op results, in program order."""

    def block(b: Block) -> Iterable[Value]:
        yield from b.args
        for op in b.ops:
            yield from op.results
            for region in op.regions.values():
                yield from block(region.block)

    for fn in module.functions.values():
        yield from block(fn.body)


__all__ = ["ShapeAnalysis", "SymbolInfo", "analyze", "analyze_json", "iter_values"]
