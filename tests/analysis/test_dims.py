"""The dim algebra: canonical forms, the integer semantics of each operation (against Python's own
integer arithmetic), bounds, facts, and compiled evaluation."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import sympy

from pliant.ir.dims import (
    Dim,
    Facts,
    Sym,
    compile_dims,
    d_add,
    d_ceildiv,
    d_floordiv,
    d_max,
    d_min,
    d_mod,
    d_mul,
    d_sub,
    dims_equal,
    parse_dim,
    provably_le,
    sym_dim,
)

a, b, c = Sym.named("a"), Sym.named("b"), Sym.named("c")
SYMS = {"a": a, "b": b, "c": c}


def test_equal_expressions_are_equal_objects() -> None:
    assert d_mul(2, d_add(a, b)) == d_add(d_mul(2, a), d_mul(2, b))
    assert d_floordiv(d_mul(4, a), 2) == d_mul(2, a)
    assert d_mul(d_add(a, b), c) == d_add(d_mul(a, c), d_mul(b, c))
    assert d_sub(d_add(a, 3), a) == 3 and isinstance(d_sub(d_add(a, 3), a), int)
    assert d_mod(d_mul(6, a), 3) == 0
    assert hash(d_add(a, b)) == hash(d_add(b, a))


def test_unknown_propagates() -> None:
    for op in (d_add, d_sub, d_mul, d_floordiv, d_mod, d_max, d_min, d_ceildiv):
        assert op(None, a) is None and op(a, None) is None


# each case: a dim built with the algebra, and the same computation in plain Python integers
Case = tuple[Callable[[], Dim], Callable[[int, int, int], int]]
CASES: list[Case] = [
    (lambda: d_add(d_mul(3, a), b), lambda x, y, z: 3 * x + y),
    (lambda: d_floordiv(d_sub(a, 1), 2), lambda x, y, z: (x - 1) // 2),
    (lambda: d_floordiv(d_add(d_floordiv(d_sub(a, 3), 2), 1), 2), lambda x, y, z: ((x - 3) // 2 + 1) // 2),
    (lambda: d_ceildiv(d_mul(a, b), 4), lambda x, y, z: -(-(x * y) // 4)),
    (lambda: d_mod(d_add(a, c), 5), lambda x, y, z: (x + z) % 5),
    (lambda: d_max(a, d_sub(b, 2)), lambda x, y, z: max(x, y - 2)),
    (lambda: d_min(d_mul(2, a), d_add(b, c)), lambda x, y, z: min(2 * x, y + z)),
    (lambda: d_max(0, d_sub(d_min(b, d_add(a, 1)), d_min(b, a))), lambda x, y, z: max(0, min(y, x + 1) - min(y, x))),
    (lambda: d_floordiv(d_mul(a, d_mul(b, 64)), d_mul(b, 16)), lambda x, y, z: x * y * 64 // (y * 16)),
    (lambda: d_mul(d_floordiv(a, 3), d_add(c, 1)), lambda x, y, z: (x // 3) * (z + 1)),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_operations_follow_python_integer_semantics(case: int) -> None:
    build, oracle = CASES[case]
    d = build()
    f = compile_dims([d], ["a", "b", "c"])
    rng = random.Random(case)
    for _ in range(200):
        x, y, z = rng.randint(1, 60), rng.randint(1, 60), rng.randint(1, 60)
        env = {"a": x, "b": y, "c": z}
        assert f(env) == (oracle(x, y, z),), (str(d), env)
        if isinstance(d, Sym):
            # the sympy expression itself agrees too (compile_dims is not the only reading)
            assert int(d.expr.xreplace({sympy.Symbol(k, integer=True, positive=True): v for k, v in env.items()})) \
                == oracle(x, y, z)
        else:
            assert d == oracle(x, y, z)


def test_provably_le_is_never_wrong() -> None:
    pairs = [(1, a), (a, d_add(a, 1)), (a, d_mul(a, b)), (d_sub(a, 1), a), (a, b), (d_mul(2, a), d_add(a, b)),
             (0, d_floordiv(a, 2)), (a, 4), (d_min(a, b), a), (a, d_max(a, b))]
    rng = random.Random(0)
    for lhs, rhs in pairs:
        if not provably_le(lhs, rhs):
            continue
        f = compile_dims([lhs, rhs], ["a", "b"])
        for _ in range(100):
            x, y = f({"a": rng.randint(1, 100), "b": rng.randint(1, 100)})
            assert x is not None and y is not None and x <= y, (lhs, rhs)
    assert provably_le(1, a) and provably_le(a, d_add(a, 1)) and provably_le(a, d_mul(a, b))
    assert not provably_le(a, b) and not provably_le(a, 4)


def test_symbols_named_with_an_underscore_may_be_zero() -> None:
    n = Sym.named("_n3")
    assert provably_le(0, n) and not provably_le(1, n)
    assert d_max(n, 1) != n  # max(0, 1) is 1, so it cannot fold
    assert d_max(a, 1) == a


def test_facts_use_divisibility_and_bounds() -> None:
    f = Facts(divisible={"a": 4})
    assert f.simplify(d_mul(d_floordiv(a, 4), 4)) == a
    assert f.simplify(d_mod(a, 2)) == 0
    i = Sym.named("_i")
    g = Facts(upper={"_i": d_sub(b, 1)})
    # slicing [i, i+1) of an axis of size b, with i < b, has length 1
    length = d_max(0, d_sub(d_min(b, d_add(i, 1)), d_min(b, i)))
    assert g.simplify(length) == 1


def test_compile_dims_evaluates_many_dims_at_once() -> None:
    dims: list[Dim] = [d_add(a, b), 7, None, d_floordiv(d_mul(a, c), 2), d_max(a, c)]
    f = compile_dims(dims)
    assert f({"a": 3, "b": 4, "c": 5}) == (7, 7, None, 7, 5)
    with pytest.raises(KeyError):
        f({"a": 1})


def test_printed_dims_parse_back() -> None:
    for d in [d_add(a, b), d_floordiv(d_sub(a, 3), 2), d_max(0, d_sub(b, a)), d_ceildiv(a, 3), d_mod(a, 4),
              Sym.named("_if3_0"), d_add(Sym.named("_n1"), 1)]:
        assert parse_dim(str(d)) == d, str(d)
    assert dims_equal(parse_dim("2*(a + b)"), sym_dim(2 * a.expr + 2 * b.expr))
