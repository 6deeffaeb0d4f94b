"""Schedules: how a kernel's statements become loops.  A schedule changes speed, never results.

Options (all optional; ``Schedule()`` is the default heuristic schedule):

- ``order``: per statement, the loop order outermost first, e.g.
  ``(("m", "k", "n"),)``; a missing or empty entry takes the default, which puts
  innermost the variable that indexes the last (contiguous) dim of the most
  tensors, and keeps reductions innermost where that ties.
- ``tile``: ``(("k", 64), ("n", 256))`` splits each named loop in blocks; the
  block loops go outermost, in loop order.  With a reduction ordered outside
  tiled left-hand loops -- ``order=(("k", "m", "n"),), tile=(("m", 4), ("n", 64))``
  -- each block of the result accumulates in a local tile: a register-blocked
  matmul micro-kernel.
- ``parallel``: ``"auto"`` (the outermost loop of each nest that can run in
  parallel, when the nest does enough work), ``"none"``, or a variable name.
- ``vectorize``: mark innermost loops ``#pragma omp simd`` (with reduction
  clauses for accumulators).
- ``unroll``: unroll factor of innermost loops (1: let the compiler decide).
- ``fuse``: fuse adjacent loops of successive statements where legal, and keep
  intermediates that then live in one iteration in a small per-thread buffer.
- ``threads``: OpenMP thread count (0: the OpenMP default, ``OMP_NUM_THREADS``).

>>> Schedule(tile=(("k", 64),), parallel="m").key()
'{"fuse":true,"order":[],"parallel":"m","threads":0,"tile":[["k",64]],"unroll":1,"vectorize":true}'
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, fields, replace
from typing import Any

import sympy

from pliant.kernels.errors import TCScheduleError
from pliant.kernels.ir import Access, walk
from pliant.kernels.ranges import KernelRanges, StmtRanges, affine, size_symbol


@dataclass(frozen=True, slots=True)
class Schedule:
    """Schedule options of one kernel (see the module docstring)."""

    order: tuple[tuple[str, ...], ...] = ()
    tile: tuple[tuple[str, int], ...] = ()
    parallel: str = "auto"
    vectorize: bool = True
    unroll: int = 1
    fuse: bool = True
    threads: int = 0

    def key(self) -> str:
        """Canonical JSON text (part of cache keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["order"] = [list(o) for o in self.order]
        d["tile"] = [[v, n] for v, n in sorted(self.tile)]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Schedule:
        return Schedule(
            order=tuple(tuple(o) for o in d.get("order", ())),
            tile=tuple((str(v), int(n)) for v, n in d.get("tile", ())),
            parallel=str(d.get("parallel", "auto")),
            vectorize=bool(d.get("vectorize", True)),
            unroll=int(d.get("unroll", 1)),
            fuse=bool(d.get("fuse", True)),
            threads=int(d.get("threads", 0)),
        )

    def __str__(self) -> str:
        parts = []
        default = Schedule()
        for f in fields(self):
            v = getattr(self, f.name)
            if v != getattr(default, f.name):
                parts.append(f"{f.name}={v!r}")
        return "Schedule(" + ", ".join(parts) + ")"


def validate(s: Schedule, kr: KernelRanges) -> None:
    """Raise ``TCScheduleError`` when ``s`` names loops ``kr`` lacks or has bad values."""
    all_vars = {v for st in kr.stmts for v in st.ranges}
    lhs_vars = {v for st in kr.stmts for v in st.lhs}
    if len(s.order) > len(kr.stmts):
        raise TCScheduleError(f"order gives {len(s.order)} statements but the kernel has {len(kr.stmts)}")
    for i, o in enumerate(s.order):
        want = set(kr.stmts[i].ranges)
        if o and (set(o) != want or len(o) != len(want)):
            raise TCScheduleError(f"order of statement {i} must be a permutation of {sorted(want)}, got {list(o)}")
    for v, n in s.tile:
        if v not in all_vars:
            raise TCScheduleError(f"tile names '{v}', which no statement uses (index variables: {sorted(all_vars)})")
        if n < 1:
            raise TCScheduleError(f"tile size of '{v}' must be positive, got {n}")
    if s.parallel not in ("auto", "none") and s.parallel not in lhs_vars:
        raise TCScheduleError(
            f"parallel must be 'auto', 'none' or a left-hand index variable ({sorted(lhs_vars)}), got '{s.parallel}'"
        )
    if not 1 <= s.unroll <= 64:
        raise TCScheduleError(f"unroll must be in 1..64, got {s.unroll}")
    if s.threads < 0:
        raise TCScheduleError(f"threads must be >= 0, got {s.threads}")


def _trip(sr: StmtRanges, v: str) -> int | None:
    r = sr.ranges[v]
    d = r.hi - r.lo
    return int(d) if d.is_Integer else None


def default_order(sr: StmtRanges) -> tuple[str, ...]:
    """The default loop order of one statement: see the module docstring."""
    natural = list(sr.lhs) + list(sr.red)
    if not natural:
        return ()
    score = dict.fromkeys(natural, 0)
    for a in (x for x in walk(sr.stmt.rhs) if isinstance(x, Access) and x.indices):
        form = affine(a.indices[-1], _SYMBOLS)
        for v, c in form.coeffs.items() if form is not None else ():
            if abs(c) == 1 and v in score:
                score[v] += 2  # contiguous reads weigh more than the one contiguous write
    if sr.lhs:
        score[sr.lhs[-1]] += 1

    def rank(v: str) -> tuple[int, int, int]:
        trip = _trip(sr, v)
        # NOTE: with concrete sizes a tie goes to the longer loop (vector lanes); otherwise to reductions.
        return (score[v], trip if trip is not None else 0, 1 if v in sr.red else 0)

    inner = max(natural, key=rank)
    return tuple([v for v in natural if v != inner] + [inner])


class _AnySize(dict[str, sympy.Expr]):
    def __missing__(self, name: str) -> sympy.Expr:
        return size_symbol(name)


_SYMBOLS = _AnySize()


def orders(s: Schedule, kr: KernelRanges) -> list[tuple[str, ...]]:
    """The loop order of every statement under ``s``."""
    out = []
    for i, sr in enumerate(kr.stmts):
        given = s.order[i] if i < len(s.order) else ()
        out.append(tuple(given) if given else default_order(sr))
    return out


# --- the search space of the autotuner ---------------------------------------------------------

TILE_SIZES = (8, 16, 32, 64, 128, 256)
UNROLLS = (1, 2, 4, 8)


def mutate(s: Schedule, kr: KernelRanges, rng: random.Random, strength: int = 1) -> Schedule:
    """``s`` with ``strength`` random changes drawn from the options ``kr`` admits."""
    lhs_vars = sorted({v for st in kr.stmts for v in st.lhs})
    all_vars = sorted({v for st in kr.stmts for v in st.ranges})
    for _ in range(strength):
        what = rng.choice(("order", "tile", "tile", "parallel", "vectorize", "unroll", "fuse"))
        if what == "order":
            cur = [list(o) for o in orders(s, kr)]
            i = rng.randrange(len(cur))
            rng.shuffle(cur[i])
            s = replace(s, order=tuple(tuple(o) for o in cur))
        elif what == "tile" and all_vars:
            tiles = dict(s.tile)
            v = rng.choice(all_vars)
            if v in tiles and rng.random() < 0.3:
                del tiles[v]
            else:
                tiles[v] = rng.choice(TILE_SIZES)
            s = replace(s, tile=tuple(sorted(tiles.items())))
        elif what == "parallel":
            s = replace(s, parallel=rng.choice(["auto", "none", *lhs_vars]))
        elif what == "vectorize":
            s = replace(s, vectorize=not s.vectorize)
        elif what == "unroll":
            s = replace(s, unroll=rng.choice(UNROLLS))
        else:
            s = replace(s, fuse=not s.fuse)
    return s


def crossover(a: Schedule, b: Schedule, kr: KernelRanges, rng: random.Random) -> Schedule:
    """A child taking each option (each statement's order, each tile) from either parent."""
    oa, ob = orders(a, kr), orders(b, kr)
    order = tuple(x if rng.random() < 0.5 else y for x, y in zip(oa, ob))
    ta, tb = dict(a.tile), dict(b.tile)
    tiles = {}
    for v in set(ta) | set(tb):
        pick = ta if rng.random() < 0.5 else tb
        if v in pick:
            tiles[v] = pick[v]
    pick_ab = [a if rng.random() < 0.5 else b for _ in range(4)]
    return Schedule(
        order=order,
        tile=tuple(sorted(tiles.items())),
        parallel=pick_ab[0].parallel,
        vectorize=pick_ab[1].vectorize,
        unroll=pick_ab[2].unroll,
        fuse=pick_ab[3].fuse,
        threads=a.threads,
    )
