"""Lowering: statements + schedule -> a tree of loops whose leaves are statement actions.

Each statement becomes a loop nest in its schedule order (tiled loops split
into a block loop and a point loop).  A reduction whose reduced loops are all
inside its left-hand loops accumulates in a scalar (``INIT``, ``UPDATE_ACC``,
``WRITE_ACC``); one whose innermost loops are tiles of left-hand variables under
the reduced loops accumulates in a local tile (``DECL_TILE``, ``TILE_INIT``,
``TILE_UPDATE``, ``TILE_WRITE``: a register-blocked micro-kernel once the
compiler unrolls it); otherwise it accumulates in memory (``FILL`` with the
identity, then ``UPDATE_MEM``).  A tensor its first statement does not cover is zeroed
(``ZERO``) first.

Then, in order:

1. fusion (``Schedule.fuse``): adjacent sibling loops with equal bounds merge
   when every tensor one of them writes and the other touches is indexed, in
   every access, by the fused loop's variable at one same position -- so
   iteration ``x`` of the second needs only what iteration ``x`` of the first
   wrote.  Scalar accumulator initialisations hoist over loops to allow it.
2. parallel loops: the outermost loops whose variable is a left-hand index of
   every statement inside (each iteration writes its own elements).
3. storage folding: an intermediate whose accesses all sit inside common loops
   that index it at fixed positions loses those dims; it becomes a small
   buffer, private to each thread when a parallel loop encloses it.
4. innermost loops: ``simd`` (with reduction clauses for accumulators) when
   iterations are independent, and the unroll factor.

The result (``LoweredKernel``) is what ``pliant.kernels.emit_c`` prints.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

import sympy

from pliant.kernels.check import Role
from pliant.kernels.ir import Access, DType, Index, ReduceOp, Statement, walk
from pliant.kernels.ranges import KernelRanges, Range, StmtRanges
from pliant.kernels.schedule import Schedule, orders

PARALLEL_MIN_WORK = 32768
"""Loops doing fewer iterations (all statements inside, counted) than this stay serial."""


class Action(enum.Enum):
    STORE = "store"  # T[idx] = rhs
    INIT = "init"  # acc = identity (or T[idx] for '+=' without '!')
    UPDATE_ACC = "update_acc"  # acc = acc op rhs
    WRITE_ACC = "write_acc"  # T[idx] = acc
    UPDATE_MEM = "update_mem"  # T[idx] = T[idx] op rhs
    FILL = "fill"  # T[idx] = identity
    ZERO = "zero"  # T[idx] = 0 over the whole tensor
    DECL_TILE = "decl_tile"  # a local accumulator tile
    TILE_INIT = "tile_init"  # tile[idx - block] = identity (or T[idx])
    TILE_UPDATE = "tile_update"  # tile[idx - block] = tile[idx - block] op rhs
    TILE_WRITE = "tile_write"  # T[idx] = tile[idx - block]


@dataclass
class Compute:
    """One action of statement ``stmt``; ``loops`` maps enclosing C loop variables to its index variables."""

    stmt: int
    action: Action
    loops: dict[str, str]

    def var(self, index: str) -> str:
        """The C variable holding index variable ``index`` (its point loop)."""
        for c, v in self.loops.items():
            if v == index and c.startswith("l"):
                return c
        raise KeyError(index)

    def block(self, index: str) -> str:
        """The C variable of the block loop of tiled index variable ``index``."""
        for c, v in self.loops.items():
            if v == index and c.startswith("b"):
                return c
        raise KeyError(index)


@dataclass
class Loop:
    """``for var in lo:hi step``; a tiled point loop runs from its block variable ``inner_of`` for ``tile``."""

    var: str
    label: str
    lo: sympy.Expr
    hi: sympy.Expr
    body: list[Node]
    step: int = 1
    inner_of: str | None = None
    tile: int = 0
    parallel: bool = False
    work: sympy.Expr | None = None
    simd: bool = False
    reductions: list[tuple[ReduceOp, str, DType]] = field(default_factory=list)
    unroll: int = 1
    private: list[str] = field(default_factory=list)


Node = Union[Loop, Compute]


@dataclass
class LoweredKernel:
    """Loops ready to print, and where each intermediate lives."""

    kr: KernelRanges
    schedule: Schedule
    body: list[Node]
    kept: dict[str, tuple[int, ...]]  # tensor -> dims stored (all of them unless folded)
    shared_temps: list[str]  # allocated once at kernel entry
    acc_tiles: dict[int, list[tuple[str, int]]]  # statement -> its accumulator tile (variable, size)


def acc_name(stmt: int) -> str:
    return f"acc{stmt}"


def lower(kr: KernelRanges, schedule: Schedule, parallel_ok: bool = True) -> LoweredKernel:
    """The loop tree of ``kr`` under ``schedule`` (``parallel_ok``: OpenMP is available)."""
    names = itertools.count()
    tiles = dict(schedule.tile)
    body: list[Node] = []
    first: set[str] = set()
    acc_tiles: dict[int, list[tuple[str, int]]] = {}
    for i, (sr, order) in enumerate(zip(kr.stmts, orders(schedule, kr))):
        s = sr.stmt
        if s.tensor not in first:
            first.add(s.tensor)
            if s.tensor in kr.zero_fill:
                full = {v: Range(sympy.Integer(0), d) for v, d in zip(s.indices, kr.dims[s.tensor])}
                lhs_order = [v for v in order if v in s.indices]
                body.append(_nest(i, Action.ZERO, _spec(lhs_order, tiles), full, tiles, names))
        body.extend(_statement(i, sr, order, tiles, names, acc_tiles))
    stmts = [sr.stmt for sr in kr.stmts]
    if schedule.fuse:
        body = _fuse(body, stmts)
    if parallel_ok and schedule.parallel != "none":
        for node in body:
            if isinstance(node, Loop):
                if schedule.parallel == "auto" or not _mark_parallel(node, stmts, kr, schedule.parallel):
                    _mark_parallel(node, stmts, kr, None)
    kept = {name: tuple(range(len(d))) for name, d in kr.dims.items()}
    shared = [t.name for t in kr.typed.by_role(Role.TEMP)]
    if schedule.fuse:
        for t in list(shared):
            fold = _fold(t, body, stmts, kr)
            if fold is not None:
                dims, owner = fold
                kept[t] = dims
                if owner is not None:
                    owner.private.append(t)
                    shared.remove(t)
    for node in body:
        if isinstance(node, Loop):
            _mark_inner(node, stmts, kr, schedule)
    return LoweredKernel(kr, schedule, body, kept, shared, acc_tiles)


# --- building nests ------------------------------------------------------------------------------


Spec = list[tuple[str, str]]  # ("block" | "point", index variable), outermost first

MAX_ACC_TILE = 4096
"""Largest accumulator tile (elements) kept in a local array; small ones live in registers."""


def _spec(order: list[str] | tuple[str, ...], tiles: dict[str, int]) -> Spec:
    """Loops of ``order``: the block loops of tiled variables first, then every point loop."""
    return [("block", v) for v in order if v in tiles] + [("point", v) for v in order]


def _nest(
    stmt: int,
    action: Action,
    spec: Spec,
    ranges: dict[str, Range],
    tiles: dict[str, int],
    names: Iterator[int],
    leaf: list[Node] | None = None,
    blocks: dict[str, str] | None = None,
) -> Node:
    """Loops of ``spec`` around ``leaf`` or one ``action``; ``blocks`` names block loops made elsewhere."""
    blocks = dict(blocks or {})
    loops: dict[str, str] = {}
    specs: list[Loop] = []
    for kind, v in spec:
        r = ranges[v]
        if kind == "block":
            b = blocks.setdefault(v, f"b{next(names)}_{v}")
            loops[b] = v
            specs.append(Loop(b, v, r.lo, r.hi, [], step=tiles[v]))
            continue
        c = f"l{next(names)}_{v}"
        loops[c] = v
        if v in tiles:
            specs.append(Loop(c, v, r.lo, r.hi, [], inner_of=blocks[v], tile=tiles[v]))
        else:
            specs.append(Loop(c, v, r.lo, r.hi, []))
    inner: list[Node] = leaf if leaf is not None else [Compute(stmt, action, loops)]
    if leaf is not None:
        _set_loops(inner, loops)
    for loop in reversed(specs):
        loop.body = inner
        inner = [loop]
    assert len(inner) == 1, "a nest without loops wraps exactly one action"
    return inner[0]


def _set_loops(nodes: list[Node], outer: dict[str, str]) -> None:
    for n in nodes:
        if isinstance(n, Compute):
            n.loops = {**outer, **n.loops}
        else:
            _set_loops(n.body, outer)


def _statement(
    i: int,
    sr: StmtRanges,
    order: tuple[str, ...],
    tiles: dict[str, int],
    names: Iterator[int],
    acc_tiles: dict[int, list[tuple[str, int]]],
) -> list[Node]:
    s = sr.stmt
    if not s.op.is_reduction:
        return [_nest(i, Action.STORE, _spec(order, tiles), sr.ranges, tiles, names)]
    lhs = [v for v in order if v in s.indices]
    red = [v for v in order if v not in s.indices]
    final = _spec(order, tiles)
    kinds = [v in s.indices for _, v in final]
    if kinds == sorted(kinds, reverse=True):
        # register form: reduce into a scalar inside the left-hand loops
        inner: list[Node] = [Compute(i, Action.UPDATE_ACC, {})]
        if red:
            inner = [_nest(i, Action.UPDATE_ACC, _spec(red, tiles), sr.ranges, tiles, names)]
        leaf: list[Node] = [Compute(i, Action.INIT, {}), *inner, Compute(i, Action.WRITE_ACC, {})]
        if not lhs:
            return leaf
        return [_nest(i, Action.INIT, _spec(lhs, tiles), sr.ranges, tiles, names, leaf=leaf)]
    tiled = _acc_tile(i, sr, final, tiles, names, acc_tiles)
    if tiled is not None:
        return tiled
    out: list[Node] = []
    if s.init:
        out.append(_nest(i, Action.FILL, _spec(lhs, tiles), sr.ranges, tiles, names))
    out.append(_nest(i, Action.UPDATE_MEM, final, sr.ranges, tiles, names))
    return out


def _acc_tile(
    i: int,
    sr: StmtRanges,
    final: Spec,
    tiles: dict[str, int],
    names: Iterator[int],
    acc_tiles: dict[int, list[tuple[str, int]]],
) -> list[Node] | None:
    """Tile-accumulator form, when the innermost loops are tiles of left-hand variables below the reductions.

    ``for blocks { tile = identity; for reductions { for tile: tile op= rhs }; for tile: T = tile }``
    keeps a block of the result in a local array (registers, once unrolled) across the reduction.
    """
    s = sr.stmt
    j = len(final)
    while j > 0 and final[j - 1][0] == "point" and final[j - 1][1] in s.indices and final[j - 1][1] in tiles:
        j -= 1
    inner, rest = final[j:], final[:j]
    kinds = [v in s.indices for _, v in rest]
    elems = 1
    for _, v in inner:
        elems *= tiles[v]
    if not inner or kinds != sorted(kinds, reverse=True) or all(kinds) or elems > MAX_ACC_TILE:
        return None
    outer, middle = rest[: kinds.count(True)], rest[kinds.count(True) :]
    blocks = {v: f"b{next(names)}_{v}" for kind, v in final if kind == "block"}
    acc_tiles[i] = [(v, tiles[v]) for _, v in inner]
    init = _nest(i, Action.TILE_INIT, inner, sr.ranges, tiles, names, blocks=blocks)
    update = _nest(i, Action.TILE_UPDATE, middle + inner, sr.ranges, tiles, names, blocks=blocks)
    write = _nest(i, Action.TILE_WRITE, inner, sr.ranges, tiles, names, blocks=blocks)
    leaf: list[Node] = [Compute(i, Action.DECL_TILE, {}), init, update, write]
    return [_nest(i, Action.DECL_TILE, outer, sr.ranges, tiles, names, leaf=leaf, blocks=blocks)]


# --- fusion ------------------------------------------------------------------------------------


def computes(node: Node) -> Iterator[Compute]:
    if isinstance(node, Compute):
        yield node
    else:
        for n in node.body:
            yield from computes(n)


def _accesses(s: Statement, tensor: str) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    if s.tensor == tensor:
        out.append(tuple(Index(v) for v in s.indices))
    out.extend(a.indices for a in walk(s.rhs) if isinstance(a, Access) and a.tensor == tensor)
    return out


def _touched(s: Statement) -> tuple[set[str], set[str]]:
    reads = {a.tensor for a in walk(s.rhs) if isinstance(a, Access)}
    return {s.tensor}, reads | {s.tensor}


def common_position(tensor: str, uses: list[tuple[Statement, str]], rank: int) -> int | None:
    """A dim every access of ``tensor`` in ``uses`` (statement, its variable) indexes by that variable."""
    cands = set(range(rank))
    for s, v in uses:
        for idx in _accesses(s, tensor):
            cands &= {p for p, e in enumerate(idx) if isinstance(e, Index) and e.name == v}
    return min(cands) if cands else None


def _loop_uses(loop: Loop) -> dict[int, str]:
    """Statement -> its index variable that ``loop`` runs over."""
    return {c.stmt: c.loops[loop.var] for c in computes(loop)}


def _can_fuse(a: Loop, b: Loop, stmts: list[Statement]) -> bool:
    if (a.lo, a.hi, a.step, a.tile, a.inner_of) != (b.lo, b.hi, b.step, b.tile, b.inner_of):
        return False
    for i, vi in _loop_uses(a).items():
        wi, ri = _touched(stmts[i])
        for j, vj in _loop_uses(b).items():
            wj, rj = _touched(stmts[j])
            for t in (wi & rj) | (wj & ri):  # t is written by one of them: the other may not see it early
                rank = len(stmts[i].indices) if stmts[i].tensor == t else len(stmts[j].indices)
                if common_position(t, [(stmts[i], vi), (stmts[j], vj)], rank) is None:
                    return False
    return True


def _rename(nodes: list[Node], old: str, new: str) -> None:
    for n in nodes:
        if isinstance(n, Compute):
            if old in n.loops:
                n.loops = {(new if k == old else k): v for k, v in n.loops.items()}
        else:
            if n.inner_of == old:
                n.inner_of = new
            _rename(n.body, old, new)


def _hoistable(n: Node, stmts: list[Statement]) -> bool:
    return isinstance(n, Compute) and n.action is Action.INIT and stmts[n.stmt].init


def _fuse(nodes: list[Node], stmts: list[Statement]) -> list[Node]:
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, Loop):
            j = len(out) - 1
            while j >= 0 and _hoistable(out[j], stmts):
                j -= 1
            prev = out[j] if j >= 0 else None
            if isinstance(prev, Loop) and _can_fuse(prev, n, stmts):
                _rename(n.body, n.var, prev.var)
                hoisted = out[j + 1 :]
                prev.body = _fuse(prev.body + n.body, stmts)
                out[j:] = [*hoisted, prev]
                continue
        out.append(n)
    return out


# --- parallel loops, folding, inner loops ---------------------------------------------------------


def _trips(sr: StmtRanges) -> sympy.Expr:
    out = sympy.Integer(1)
    for r in sr.ranges.values():
        out *= sympy.Max(r.hi - r.lo, 0)
    return out


def _parallel_legal(loop: Loop, stmts: list[Statement]) -> bool:
    if loop.inner_of is not None:
        return False
    return all(c.loops[loop.var] in stmts[c.stmt].indices for c in computes(loop))


def _mark_parallel(loop: Loop, stmts: list[Statement], kr: KernelRanges, name: str | None) -> bool:
    """Mark the outermost legal loop(s) (labelled ``name`` when given); True when one was marked."""
    if _parallel_legal(loop, stmts) and (name is None or loop.label == name):
        ids = sorted({c.stmt for c in computes(loop)})
        work = sympy.Max(*[_trips(kr.stmts[i]) for i in ids]) if len(ids) > 1 else _trips(kr.stmts[ids[0]])
        work = sympy.simplify(work)
        if work.is_Integer and int(work) < PARALLEL_MIN_WORK:
            return False
        loop.parallel, loop.work = True, work
        return True
    marked = False
    for n in loop.body:
        if isinstance(n, Loop):
            marked = _mark_parallel(n, stmts, kr, name) or marked
    return marked


def _chains(node: Node, prefix: list[Loop], out: list[tuple[Compute, list[Loop]]]) -> None:
    if isinstance(node, Compute):
        out.append((node, prefix))
        return
    for n in node.body:
        _chains(n, [*prefix, node], out)


_WRITES = frozenset({Action.STORE, Action.WRITE_ACC, Action.UPDATE_MEM, Action.FILL, Action.ZERO, Action.TILE_WRITE})
_READS_RHS = frozenset({Action.STORE, Action.UPDATE_ACC, Action.UPDATE_MEM, Action.TILE_UPDATE})


def _touches(c: Compute, s: Statement, t: str) -> bool:
    """Whether action ``c`` of ``s`` reads or writes tensor ``t`` in memory."""
    if s.tensor == t and (c.action in _WRITES or (c.action in (Action.INIT, Action.TILE_INIT) and not s.init)):
        return True
    return c.action in _READS_RHS and any(isinstance(a, Access) and a.tensor == t for a in walk(s.rhs))


def _fold(
    t: str, body: list[Node], stmts: list[Statement], kr: KernelRanges
) -> tuple[tuple[int, ...], Loop | None] | None:
    """The dims ``t`` keeps and the parallel loop owning it, when it can shrink; else None."""
    if t in kr.zero_fill or any(a.tensor == t for sr in kr.stmts for a in sr.checks):
        return None
    tops = [n for n in body if any(_touches(c, stmts[c.stmt], t) for c in computes(n))]
    if len(tops) != 1:
        return None
    chains: list[tuple[Compute, list[Loop]]] = []
    _chains(tops[0], [], chains)
    chains = [(c, ch) for c, ch in chains if _touches(c, stmts[c.stmt], t)]
    common: list[Loop] = []
    for level in zip(*[ch for _, ch in chains]):
        if all(lp is level[0] for lp in level):
            common.append(level[0])
        else:
            break
    rank = len(kr.dims[t])
    dropped: set[int] = set()
    for lp in common:
        uses = list({(c.stmt, c.loops[lp.var]) for c, _ in chains})
        p = common_position(t, [(stmts[i], v) for i, v in uses], rank)
        if p is not None and lp.step == 1:
            dropped.add(p)
    if not dropped:
        return None
    owner = next((lp for lp in common if lp.parallel), None)
    if owner is None and any(lp.parallel for _, ch in chains for lp in ch):
        return None
    return tuple(p for p in range(rank) if p not in dropped), owner


def _mark_inner(loop: Loop, stmts: list[Statement], kr: KernelRanges, schedule: Schedule) -> None:
    inner_loops = [n for n in loop.body if isinstance(n, Loop)]
    for n in inner_loops:
        _mark_inner(n, stmts, kr, schedule)
    if inner_loops:
        return
    loop.unroll = schedule.unroll
    if not schedule.vectorize:
        return
    local_acc = {c.stmt for c in loop.body if isinstance(c, Compute) and c.action is Action.INIT}
    reductions: list[tuple[ReduceOp, str, DType]] = []
    for c in loop.body:
        assert isinstance(c, Compute)
        s = stmts[c.stmt]
        v = c.loops[loop.var]
        if c.action is Action.UPDATE_ACC and c.stmt not in local_acc:
            dtype = kr.typed.tensors[s.tensor].dtype.compute
            if dtype is DType.BOOL:
                return
            reductions.append((s.op, acc_name(c.stmt), dtype))
        elif c.action in (Action.UPDATE_MEM, Action.TILE_UPDATE) and v not in s.indices:
            return
    loop.simd = True
    loop.reductions = reductions
