"""C emission: a lowered kernel printed as one C function.

The function is ``int pliant_kernel(void *const *args, const int64_t *sizes)``:
``args`` holds the data pointers of the inputs then the outputs (C-contiguous),
``sizes`` the size symbols in declaration order (ignored by a specialised
version, whose sizes are constants).  It returns 0, a positive code indexing
``KernelRanges.errors`` (a data-dependent index out of range), or -1 (out of
memory).  Pointers are ``restrict``: inputs and outputs never overlap.

Memory layout matters as much as arithmetic for the memory-bound kernels:
heap temporaries start half a page (modulo 4096) from the first array argument
and at its offset modulo 64 (``pl_place``), and an innermost vector loop over
1 KiB or more first runs the iterations that bring one of its accesses to a
64-byte boundary (``pl_peel``): NumPy's large arrays start 16 bytes past a cache
line, and without the two a fused softmax ran about 1.5 times slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import sympy

from pliant.kernels.builtins import BUILTINS, C_HELPERS
from pliant.kernels.check import Role
from pliant.kernels.ir import (
    Access,
    Binary,
    Call,
    Cast,
    DType,
    Expr,
    Index,
    Literal,
    ReduceOp,
    Select,
    Size,
    Statement,
    Unary,
    format_kernel,
    walk,
)
from pliant.kernels.lower import PARALLEL_MIN_WORK, Action, Compute, Loop, LoweredKernel, Node, acc_name
from pliant.kernels.ranges import Check
from pliant.kernels.symbolic import to_c

if TYPE_CHECKING:
    from pliant.kernels.toolchain import Toolchain

ENTRY = "pliant_kernel"

_PRELUDE = """\
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
"""

_RUNTIME = """\
static inline int pl_inb(int64_t i, int64_t n, int *err, int code) {
  if (__builtin_expect(i < 0 || i >= n, 0)) { __atomic_store_n(err, code, __ATOMIC_RELAXED); return 0; }
  return 1;
}
static inline void *pl_alloc(int64_t bytes, int *err) {
  void *p = aligned_alloc(64, (size_t)((bytes + 127) / 64 * 64));
  if (!p) __atomic_store_n(err, -1, __ATOMIC_RELAXED);
  return p;
}
/* Where heap temporary number k starts inside mem (PL_PLACE_SLACK bytes larger than it needs): half a
   page from the anchor argument modulo 4096, and at the anchor's offset modulo 64.  Its accesses then do
   not 4K-alias the anchor's (a load held up by an unrelated store at the same page offset), and a loop
   peeled to align the anchor aligns the temporary too. */
#define PL_PLACE_SLACK 8192
static inline void *pl_place(void *mem, uintptr_t anchor, int k) {
  if (!mem) return 0;
  uintptr_t page = ((uintptr_t)mem + 4095) & ~(uintptr_t)4095;
  return (void *)(page + ((anchor + 2048 + 320 * (uintptr_t)k) & 4095));
}
/* Iterations to run before p (advancing size bytes each) reaches a 64-byte boundary; 0 for short loops. */
static inline int64_t pl_peel(const void *p, int64_t n, int64_t size) {
  if (n < 1024 / size) return 0;
  return (int64_t)((0 - (uintptr_t)p) & 63) / size;
}
"""

_SUFFIX = {DType.INT32: "i32", DType.INT64: "i64", DType.FLOAT32: "f32", DType.FLOAT64: "f64"}
_OMP_OP = {ReduceOp.ADD: "+", ReduceOp.MUL: "*", ReduceOp.MIN: "min", ReduceOp.MAX: "max"}


def size_name(s: sympy.Symbol) -> str:
    return f"sz_{s.name}"


def literal(value: float | int | bool, dtype: DType) -> str:
    """C text of a constant of ``dtype``."""
    if dtype is DType.BOOL:
        return "1" if value else "0"
    if dtype.is_float:
        v = float(value)
        if math.isnan(v):
            text = "NAN"
        elif math.isinf(v):
            text = "INFINITY" if v > 0 else "(-INFINITY)"
        else:
            text = repr(v)
            if "e" not in text and "." not in text:
                text += ".0"
            return f"{text}f" if dtype is not DType.FLOAT64 else text
        return text if dtype is not DType.FLOAT64 else f"((double){text})"
    v = int(value)
    if dtype is DType.INT64:
        return f"INT64_C({v})" if not -(2**31) < v < 2**31 else (str(v) if v >= 0 else f"({v})")
    return str(v) if v >= 0 else f"({v})"


def identity(op: ReduceOp, dtype: DType) -> str:
    """The value a ``!`` reduction starts from."""
    if op is ReduceOp.ADD:
        return literal(0, dtype)
    if op is ReduceOp.MUL:
        return literal(1, dtype)
    big = op is ReduceOp.MIN
    if dtype.is_float:
        return literal(math.inf if big else -math.inf, dtype)
    if dtype is DType.BOOL:
        return "1" if big else "0"
    bits = 32 if dtype is DType.INT32 else 64
    return f"INT{bits}_MAX" if big else f"INT{bits}_MIN"


def combine(op: ReduceOp, dtype: DType, acc: str, value: str) -> str:
    """C text of ``acc op value``."""
    if op is ReduceOp.ADD:
        return f"{acc} + {value}"
    if op is ReduceOp.MUL:
        return f"{acc} * {value}"
    if dtype is DType.BOOL:
        return f"({acc} && {value})" if op is ReduceOp.MIN else f"({acc} || {value})"
    return f"pl_{'min' if op is ReduceOp.MIN else 'max'}_{_suffix(dtype)}({acc}, {value})"


def _suffix(dtype: DType) -> str:
    return _SUFFIX[dtype]


def emit_c(lk: LoweredKernel, tc: Toolchain) -> str:
    """The C source of ``lk`` for compiler ``tc``."""
    return _Emitter(lk, tc).run()


class _Emitter:
    def __init__(self, lk: LoweredKernel, tc: Toolchain) -> None:
        self.lk, self.tc, self.kr = lk, tc, lk.kr
        self.stmts = [sr.stmt for sr in self.kr.stmts]
        # NOTE: a float min=/max= accumulator (register form) also keeps a "saw NaN" flag, and its result
        # is NaN when the flag is set, as np.max's: OpenMP joins the SIMD lanes of a reduction with a
        # max/min that may drop a NaN, whatever the combine inside the loop does.
        self.nan_flagged = {
            i
            for i, st in enumerate(self.stmts)
            if st.op in (ReduceOp.MIN, ReduceOp.MAX) and self.kr.typed.tensors[st.tensor].dtype.compute.is_float
        }
        self.heap_temps = [t.name for t in self.kr.typed.by_role(Role.TEMP) if self.heap(t.name)]
        self.lines: list[str] = []
        self.depth = 1

    def out(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def size(self, e: sympy.Expr) -> str:
        return to_c(e, size_name)

    # --- the function --------------------------------------------------------------------------

    def run(self) -> str:
        kr, typed = self.kr, self.kr.typed
        head = format_kernel(typed.kdef).replace("*/", "* /")
        spec = (
            "generic (sizes are arguments)"
            if kr.sizes is None
            else ("specialised to " + ", ".join(f"{k}={v}" for k, v in kr.sizes.items()))
        )
        text = [
            f"/* pliant kernel {typed.name}: {spec}\n   schedule {self.lk.schedule.key()}\n{head}*/",
            _PRELUDE,
            C_HELPERS,
            _RUNTIME,
        ]
        text += self.vector_decls()
        args = "void *const *restrict pl_args, const int64_t *restrict pl_sizes"
        text.append(f'__attribute__((visibility("default"))) int {ENTRY}({args}) {{')
        self.out("(void)pl_sizes;")
        for n, name in enumerate(typed.sizes):
            value = f"pl_sizes[{n}]" if kr.sizes is None else literal(kr.sizes[name], DType.INT64)
            self.out(f"const int64_t sz_{name} = {value};")
        self.out("int pl_err = 0;")
        inputs = [t for t in typed.tensors.values() if t.role is Role.INPUT]
        outputs = [typed.tensors[o.name] for o in typed.kdef.outputs]
        for n, t in enumerate(inputs + outputs):
            const = "const " if t.role is Role.INPUT else ""
            self.out(f"{const}{t.dtype.c_type} *restrict t_{t.name} = ({const}{t.dtype.c_type} *)pl_args[{n}];")
        for name in kr.dims:
            self.strides(name)
        if self.heap_temps:
            arrays = [t.name for t in inputs + outputs if t.rank > 0]
            self.out(f"const uintptr_t pl_anchor = (uintptr_t){f't_{arrays[0]}' if arrays else '0'};")
        for name in self.lk.shared_temps:
            self.alloc(name)
        if self.lk.shared_temps:
            self.out("if (pl_err) goto pl_done;")
        for node in self.lk.body:
            self.node(node)
        if self.lk.shared_temps:
            self.lines.append("pl_done:")
        self.free(self.lk.shared_temps)
        self.out("return pl_err;")
        text.append("\n".join(self.lines))
        text.append("}\n")
        return "\n".join(text)

    def vector_decls(self) -> list[str]:
        """``simd`` declarations of the libm functions the code calls that libmvec vectorises."""
        used: set[tuple[str, int, str]] = set()
        for sr in self.kr.stmts:
            for x in walk(sr.stmt.rhs):
                if isinstance(x, Call) and x.dtype is not None and x.dtype.is_float:
                    b = BUILTINS[x.fn]
                    if b.libm is None or b.libm not in self.tc.vector_math or not self.tc.openmp_simd:
                        continue
                    ty, template = ("double", b.f64) if x.dtype is DType.FLOAT64 else ("float", b.f32)
                    name = b.libm if ty == "double" else f"{b.libm}f"
                    if template.startswith(f"{name}("):
                        used.add((name, b.arity, ty))
        out = []
        for name, arity, ty in sorted(used):
            params = ", ".join([ty] * arity)
            out.append(f'{ty} {name}({params}) __attribute__((simd("notinbranch")));')
        return out

    def strides(self, name: str) -> None:
        dims = self.kr.dims[name]
        kept = self.lk.kept[name]
        stride = "1"
        for p in reversed(kept):
            if p != kept[-1]:
                self.out(f"const int64_t st_{name}_{p} = {stride};")
            d = self.size(dims[p])
            stride = d if stride == "1" else f"{stride} * {d}"
        if self.kr.typed.tensors[name].role is Role.TEMP:
            self.out(f"const int64_t n_{name} = pl_max_i64(0, {stride});")

    def heap(self, name: str) -> bool:
        """Whether temp ``name`` lives on the heap (folded to a scalar, it is a local instead)."""
        return bool(self.lk.kept[name])

    def alloc(self, name: str) -> None:
        t = self.kr.typed.tensors[name]
        ct = t.dtype.c_type
        if not self.heap(name):
            self.out(f"{ct} t_{name}[1];")
            return
        size = f"n_{name} * (int64_t)sizeof({ct}) + PL_PLACE_SLACK"
        self.out(f"void *pl_mem_{name} = pl_alloc({size}, &pl_err);")
        slot = self.heap_temps.index(name)
        self.out(f"{ct} *restrict t_{name} = ({ct} *)pl_place(pl_mem_{name}, pl_anchor, {slot});")

    def free(self, names: list[str]) -> None:
        for name in names:
            if self.heap(name):
                self.out(f"free(pl_mem_{name});")

    # --- loops ---------------------------------------------------------------------------------

    def node(self, n: Node) -> None:
        if isinstance(n, Compute):
            self.compute(n)
        else:
            self.loop(n)

    def loop(self, lp: Loop) -> None:
        v = lp.var
        if lp.inner_of is not None:
            span = sympy.simplify(lp.hi - lp.lo)
            if span.is_Integer and int(span) % lp.tile == 0:
                end = f"{lp.inner_of} + {lp.tile}"  # NOTE: full blocks only: a constant trip count unrolls
            else:
                end = f"pl_min_i64({lp.inner_of} + {lp.tile}, {self.size(lp.hi)})"
            header = f"for (int64_t {v} = {lp.inner_of}; {v} < {end}; {v}++)"
        elif lp.step > 1:
            header = f"for (int64_t {v} = {self.size(lp.lo)}; {v} < {self.size(lp.hi)}; {v} += {lp.step})"
        else:
            header = f"for (int64_t {v} = {self.size(lp.lo)}; {v} < {self.size(lp.hi)}; {v}++)"
        # NOTE: OpenMP allows no other pragma between "omp simd" and its loop, so an unrolled loop
        # is marked with GCC's ivdep + unroll instead (and a parallel loop is not unrolled).
        unroll = lp.unroll if lp.unroll > 1 and not lp.parallel else 0
        simd = ""
        if lp.simd and self.tc.openmp_simd and not unroll:
            clauses = []
            for op, acc, dt in lp.reductions:
                clauses.append(f" reduction({_OMP_OP[op]}:{acc})")
                if op in (ReduceOp.MIN, ReduceOp.MAX) and dt.is_float:
                    clauses.append(f" reduction(|:{acc}_nan)")
            simd = " simd" + "".join(clauses)
        opened = 0
        if lp.parallel:
            threads = f" num_threads({self.lk.schedule.threads})" if self.lk.schedule.threads else ""
            cond = ""
            if lp.work is not None and not lp.work.is_Integer:
                # NOTE: "parallel:" limits the condition to the threads; a bare if() also turns off the simd loop
                cond = f" if(parallel: {self.size(lp.work)} >= {PARALLEL_MIN_WORK})"
            if lp.private:
                self.out(f"#pragma omp parallel{cond}{threads}")
                self.out("{")
                self.depth += 1
                opened = 1
                for name in lp.private:
                    self.alloc(name)
                self.out(f"#pragma omp for{simd} schedule(static)")
            else:
                self.out(f"#pragma omp parallel for{simd} schedule(static){cond}{threads}")
        elif simd:
            self.out(f"#pragma omp{simd}")
        elif lp.simd and not lp.reductions:
            self.out("#pragma GCC ivdep")
        if unroll:
            self.out(f"#pragma GCC unroll {unroll}")
        peel = self.peel_ref(lp) if simd and not lp.parallel else None
        if peel is not None:
            # NOTE: the first iterations run on their own until the anchor access reaches a 64-byte
            # boundary, so the vector loop's loads and stores do not straddle cache lines (NumPy's large
            # arrays start 16 bytes past one).
            ref, ct = peel
            lo, hi = self.size(lp.lo), self.size(lp.hi)
            pragma = self.lines.pop().strip()
            self.out("{")
            self.depth += 1
            self.out("int64_t pl_pk;")
            self.out(
                f"{{ const int64_t {v} = {lo}; pl_pk = {v} + pl_peel(&{ref}, {hi} - {v}, (int64_t)sizeof({ct})); }}"
            )
            self.out(f"for (int64_t {v} = {lo}; {v} < pl_pk; {v}++) {{")
            self.body(lp)
            self.out(pragma)
            header = f"for (int64_t {v} = pl_pk; {v} < {hi}; {v}++)"
        self.out(header + " {")
        self.body(lp)
        if peel is not None:
            self.depth -= 1
            self.out("}")
        if opened:
            self.free(lp.private)
            self.depth -= 1
            self.out("}")

    def body(self, lp: Loop) -> None:
        """The statements of ``lp`` and its closing brace (its header is out already)."""
        self.depth += 1
        for name in lp.private:
            if self.heap(name):
                self.out(f"if (!t_{name}) continue;")
        for n in lp.body:
            self.node(n)
        self.depth -= 1
        self.out("}")

    def peel_ref(self, lp: Loop) -> tuple[str, str] | None:
        """The access a vector loop aligns by peeling (C text in the loop's variable, element type), if any.

        A store is preferred to a load; the access must be contiguous in the loop's variable and
        unchecked.  Only plain (not tiled, unit step, innermost) loops peel.
        """
        if lp.inner_of is not None or lp.step != 1 or not all(isinstance(n, Compute) for n in lp.body):
            return None
        stores: list[tuple[str, str]] = []
        loads: list[tuple[str, str]] = []
        for c in lp.body:
            assert isinstance(c, Compute)
            s = self.stmts[c.stmt]
            if c.action in (Action.STORE, Action.UPDATE_MEM) and self.contiguous(s.tensor, s.indices, c, lp.var):
                idx = [c.var(i) for i in s.indices]
                stores.append(
                    (f"t_{s.tensor}[{self.offset(s.tensor, idx)}]", self.kr.typed.tensors[s.tensor].dtype.c_type)
                )
            if c.action not in (Action.STORE, Action.UPDATE_MEM, Action.UPDATE_ACC):
                continue
            checked = self.kr.stmts[c.stmt].checks
            for a in walk(s.rhs):
                if not isinstance(a, Access) or checked.get(a) or not all(isinstance(i, Index) for i in a.indices):
                    continue
                names = [i.name for i in a.indices if isinstance(i, Index)]
                if self.contiguous(a.tensor, names, c, lp.var):
                    idx = [c.var(i) for i in names]
                    loads.append(
                        (f"t_{a.tensor}[{self.offset(a.tensor, idx)}]", self.kr.typed.tensors[a.tensor].dtype.c_type)
                    )
        found = stores + loads
        return found[0] if found else None

    def contiguous(self, tensor: str, indices: Sequence[str], c: Compute, var: str) -> bool:
        """Whether ``tensor`` indexed by ``indices`` in ``c`` steps by one element as loop ``var`` runs."""
        kept = self.lk.kept[tensor]
        if not kept or self.kr.typed.tensors[tensor].dtype is DType.FLOAT16:
            return False
        try:
            return c.var(indices[kept[-1]]) == var and all(c.var(indices[p]) != var for p in kept[:-1])
        except KeyError:
            return False

    # --- statements ----------------------------------------------------------------------------

    def offset(self, tensor: str, indices: list[str]) -> str:
        terms = []
        for p in self.lk.kept[tensor]:
            stride_one = p == self.lk.kept[tensor][-1]
            terms.append(indices[p] if stride_one else f"{indices[p]} * st_{tensor}_{p}")
        return " + ".join(terms) if terms else "0"

    def compute(self, c: Compute) -> None:
        s = self.stmts[c.stmt]
        t = self.kr.typed.tensors[s.tensor]
        store_t, comp_t = t.dtype, t.dtype.compute
        if c.action is Action.DECL_TILE:
            self.tile_action(c, s, comp_t, "", "", str)
            return
        idx = [c.var(v) for v in s.indices]
        ref = f"t_{s.tensor}[{self.offset(s.tensor, idx)}]"
        acc = acc_name(c.stmt)

        def store(value: str) -> str:
            return f"({store_t.c_type})({value})" if store_t is not comp_t else value

        load = f"({comp_t.c_type}){ref}" if store_t is not comp_t else ref
        if c.action is Action.ZERO:
            self.out(f"{ref} = {literal(0, store_t.compute)};")
        elif c.action is Action.FILL:
            self.out(f"{ref} = {store(identity(s.op, comp_t))};")
        elif c.action is Action.STORE:
            self.out(f"{ref} = {store(self.expr(s.rhs, c))};")
        elif c.action is Action.INIT:
            init = identity(s.op, comp_t) if s.init else load
            self.out(f"{comp_t.c_type} {acc} = {init};")
            if c.stmt in self.nan_flagged:
                self.out(f"int {acc}_nan = {'0' if s.init else f'{acc} != {acc}'};")
        elif c.action is Action.UPDATE_ACC:
            if c.stmt in self.nan_flagged:
                # NOTE: the flag records a NaN, so the combine may skip it: "v > acc ? v : acc" is one
                # vector max instruction, a short loop-carried chain.
                value = self.expr(s.rhs, c)
                cmp = ">" if s.op is ReduceOp.MAX else "<"
                update = f"{acc} = pl_v {cmp} {acc} ? pl_v : {acc}; {acc}_nan |= pl_v != pl_v;"
                self.out(f"{{ const {comp_t.c_type} pl_v = {value}; {update} }}")
            else:
                self.out(f"{acc} = {combine(s.op, comp_t, acc, self.expr(s.rhs, c))};")
        elif c.action is Action.WRITE_ACC:
            if c.stmt in self.nan_flagged:
                self.out(f"{ref} = {store(f'({acc}_nan ? {literal(math.nan, comp_t)} : {acc})')};")
            else:
                self.out(f"{ref} = {store(acc)};")
        elif c.action is Action.UPDATE_MEM:
            self.out(f"{ref} = {store(combine(s.op, comp_t, load, self.expr(s.rhs, c)))};")
        else:
            self.tile_action(c, s, comp_t, ref, load, store)

    def tile_action(
        self, c: Compute, s: Statement, comp_t: DType, ref: str, load: str, store: Callable[[str], str]
    ) -> None:
        tile = self.lk.acc_tiles[c.stmt]
        name = f"tacc{c.stmt}"
        if c.action is Action.DECL_TILE:
            self.out(f"{comp_t.c_type} {name}{''.join(f'[{n}]' for _, n in tile)};")
            return
        elem = name + "".join(f"[{c.var(v)} - {c.block(v)}]" for v, _ in tile)
        if c.action is Action.TILE_INIT:
            self.out(f"{elem} = {identity(s.op, comp_t) if s.init else load};")
        elif c.action is Action.TILE_UPDATE:
            self.out(f"{elem} = {combine(s.op, comp_t, elem, self.expr(s.rhs, c))};")
        else:
            self.out(f"{ref} = {store(elem)};")

    # --- expressions ---------------------------------------------------------------------------

    def expr(self, e: Expr, c: Compute) -> str:
        dt = e.dtype
        assert dt is not None, e
        if isinstance(e, Literal):
            return literal(e.value, dt)
        if isinstance(e, Index):
            return c.var(e.name)
        if isinstance(e, Size):
            return f"sz_{e.name}"
        if isinstance(e, Access):
            return self.access(e, c)
        if isinstance(e, Unary):
            return f"({e.op}{self.expr(e.operand, c)})"
        if isinstance(e, Binary):
            a, b = self.expr(e.lhs, c), self.expr(e.rhs, c)
            operand_t = e.lhs.dtype
            assert operand_t is not None
            if e.op in ("/", "%") and not operand_t.is_float:
                helper = "floordiv" if e.op == "/" else "floormod"
                return f"pl_{helper}_{_suffix(operand_t)}({a}, {b})"
            if e.op == "%":
                return f"pl_floormod{'f' if operand_t is DType.FLOAT32 else ''}({a}, {b})"
            return f"({a} {e.op} {b})"
        if isinstance(e, Select):
            return f"({self.expr(e.cond, c)} ? {self.expr(e.then, c)} : {self.expr(e.other, c)})"
        if isinstance(e, Call):
            fn = BUILTINS[e.fn]
            args = [self.expr(x, c) for x in e.args]
            if dt is DType.FLOAT32:
                template = fn.f32
            elif dt is DType.FLOAT64:
                template = fn.f64
            else:
                assert fn.integer is not None
                template = fn.integer.replace("{T}", _suffix(dt))
            return template.format(*args)
        assert isinstance(e, Cast)
        x = self.expr(e.operand, c)
        if e.to is DType.BOOL:
            return f"({x} != 0)"
        if e.to is DType.FLOAT16:
            return f"((float)(_Float16)({x}))"
        return f"(({dt.c_type})({x}))"

    def access(self, a: Access, c: Compute) -> str:
        t = self.kr.typed.tensors[a.tensor]
        idx = [self.expr(i, c) for i in a.indices]
        ref = f"t_{a.tensor}[{self.offset(a.tensor, idx)}]"
        if t.dtype is DType.FLOAT16:
            ref = f"(float){ref}"
        sr = self.kr.stmts[c.stmt]
        checks, codes = sr.checks.get(a), sr.error_codes
        if not checks:
            return ref
        conds = []
        dims = self.kr.dims[a.tensor]
        for p, kind in enumerate(checks):
            if kind is Check.GUARD:
                conds.append(f"({idx[p]} >= 0 && {idx[p]} < {self.size(dims[p])})")
            elif kind is Check.DATA:
                conds.append(f"pl_inb({idx[p]}, {self.size(dims[p])}, &pl_err, {codes[(a, p)]})")
        zero = literal(0, t.dtype.compute)
        return f"(({' && '.join(conds)}) ? {ref} : {zero})"
