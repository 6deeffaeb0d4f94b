"""The language front end, range inference, schedules and the generated code's shape."""

from __future__ import annotations

import numpy as np
import pytest

import pliant.tc
from pliant.frontends.tc import parse, tokenize
from pliant.kernels.check import check_kernel
from pliant.kernels.ir import DType, format_kernel
from pliant.kernels.lower import Loop, lower
from pliant.kernels.ranges import Check, infer_ranges
from pliant.kernels.schedule import Schedule, default_order

from .cases import CASES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_canonical_source_round_trips(case: object) -> None:
    (k,) = parse(case.source)  # type: ignore[attr-defined]
    text = format_kernel(k)
    (again,) = parse(text)
    assert again == k and format_kernel(again) == text


def test_comments_semicolons_and_spacing_do_not_matter() -> None:
    a = "def f(float(N) A) -> (B) { B(i) = A(i) * 2.0; C(i) = B(i) }"
    b = "def f( float( N ) A )->( B ) {\n # comment\n B(i)=A(i)*2.0 // more\n C(i) = B(i)\n}"
    assert format_kernel(parse(a)[0]) == format_kernel(parse(b)[0])
    assert [t.text for t in tokenize("C(i) +=! A(i)")][:6] == ["C", "(", "i", ")", "+=!", "A"]


def test_reduction_operators_and_bang() -> None:
    src = """def r(float(N,M) A) -> (s, p, lo, hi, t) {
      s(i) +=! A(i,j)
      p(i) *=! A(i,j)
      lo(i) min=! A(i,j)
      hi(i) max=! A(i,j)
      t(i) = s(i)
      t(i) += lo(i)
    }"""
    k = pliant.tc.define(src)
    a = np.random.default_rng(0).uniform(0.5, 1.5, (4, 5)).astype(np.float32)
    s, p, lo, hi, t = k(a)
    np.testing.assert_allclose(s, a.sum(1), rtol=1e-5)
    np.testing.assert_allclose(p, a.prod(1), rtol=1e-5)
    np.testing.assert_array_equal(lo, a.min(1))
    np.testing.assert_array_equal(hi, a.max(1))
    np.testing.assert_allclose(t, a.sum(1) + a.min(1), rtol=1e-5)


def test_types_of_literals_sizes_and_casts() -> None:
    k = pliant.tc.define("""def t(int32(N) A, double(N) D) -> (X, Y, Z, W) {
      X(i) = A(i) * 2
      Y(i) = A(i) * 2.5
      Z(i) = D(i) + 1
      W(i) = int64(D(i)) + N + i
    }""")
    dtypes = {n: k.typed.tensors[n].dtype for n in "XYZW"}
    assert dtypes == {"X": DType.INT32, "Y": DType.FLOAT32, "Z": DType.FLOAT64, "W": DType.INT64}
    x, y, z, w = k(np.array([1, -3], np.int32), np.array([1.7, -2.5]))
    assert x.tolist() == [2, -6] and y.tolist() == [2.5, -7.5] and z.tolist() == [2.7, -1.5]
    assert w.tolist() == [1 + 2 + 0, -2 + 2 + 1]


def test_builtins_against_numpy() -> None:
    k = pliant.tc.define(
        """def m(float(N) X, float(N) Y) -> (O) {
      O(i, 0) = sqrt(abs(X(i))) + tanh(X(i)) + sigmoid(Y(i)) + log1p(abs(Y(i)))
      O(i, 1) = pow(abs(X(i)), 1.5) + fmin(X(i), Y(i)) + max(X(i), Y(i)) + floor(X(i)) + sign(Y(i))
    } """.replace("O(i, 0)", "P(i)")
        .replace("O(i, 1)", "Q(i)")
        .replace("-> (O)", "-> (P, Q)")
    )
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(50).astype(np.float32), rng.standard_normal(50).astype(np.float32)
    p, q = k(x, y)
    np.testing.assert_allclose(
        p, np.sqrt(np.abs(x)) + np.tanh(x) + 1 / (1 + np.exp(-y)) + np.log1p(np.abs(y)), rtol=1e-5
    )
    np.testing.assert_allclose(
        q, np.abs(x) ** 1.5 + np.minimum(x, y) + np.maximum(x, y) + np.floor(x) + np.sign(y), rtol=1e-5
    )


def test_range_inference_in_rounds_and_where() -> None:
    k = pliant.tc.define("def c(float(N) I, float(K) W) -> (O) { O(i) +=! I(i+k) * W(k) }")
    assert "output O(-K + N + 1)" in k.describe()
    assert "i in 0:-K + N + 1, k in 0:K" in k.describe()
    typed = check_kernel(parse(CASES[4].source)[0])  # conv with padding through where
    kr = infer_ranges(typed)
    (sr,) = kr.stmts
    assert str(sr.ranges["kh"]) == "0:KH" and str(sr.ranges["h"]) == "0:H"
    checks = next(iter(sr.checks.values()))
    assert checks == (Check.NONE, Check.NONE, Check.GUARD, Check.GUARD)
    widened = check_kernel(parse("def f(float(N) A, float(M) B) -> (O) { O(i) = A(i) + B(i) where i in 0:M }")[0])
    assert list(infer_ranges(widened).stmts[0].checks.values()) == [(Check.GUARD,)]
    assert not infer_ranges(widened, {"N": 5, "M": 4}).stmts[0].checks  # concrete sizes prove it
    assert infer_ranges(widened, {"N": 3, "M": 4}).stmts[0].checks
    k2 = pliant.tc.define("def f(float(N) A, float(M) B) -> (O) { O(i) = A(i) + B(i) where i in 0:M }")
    got = k2(np.ones(3, np.float32), np.ones(4, np.float32))
    np.testing.assert_array_equal(got, [2, 2, 2, 1])  # reads outside A give 0


def test_default_loop_order_puts_contiguous_loops_inside() -> None:
    for src, want in [
        ("def f(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }", ("m", "k", "n")),
        ("def f(float(N,M) A) -> (S) { S(i) +=! A(i,j) }", ("i", "j")),
        ("def f(float(N,M) A) -> (S) { S(j) +=! A(i,j) }", ("i", "j")),
    ]:
        kr = infer_ranges(check_kernel(parse(src)[0]))
        assert default_order(kr.stmts[0]) == want


def test_fusion_folds_softmax_intermediates_into_per_thread_buffers() -> None:
    typed = check_kernel(parse(CASES[11].source)[0])
    lk = lower(infer_ranges(typed), Schedule())
    assert len(lk.body) == 1 and isinstance(lk.body[0], Loop) and lk.body[0].parallel
    assert lk.kept["e"] == (1,) and lk.kept["mx"] == () and not lk.shared_temps
    unfused = lower(infer_ranges(typed), Schedule(fuse=False))
    assert len(unfused.body) == 4 and set(unfused.shared_temps) == {"mx", "e", "s"}


def test_generic_and_specialised_sources() -> None:
    k = pliant.tc.define("def f(float(N,M) A) -> (B) { B(i,j) = A(i,j) + 1.0 }")
    assert "const int64_t sz_N = pl_sizes[0];" in k.source_c
    spec = k.c_source(np.zeros((3, 5), np.float32))
    assert "const int64_t sz_N = 3;" in spec and "for (int64_t l0_i = 0; l0_i < 3; l0_i++)" in spec
    assert "#pragma omp" in k.source_c and "restrict" in k.source_c


MATMUL_SCHEDULES = [
    Schedule(),
    Schedule(order=(("k", "m", "n"),), tile=(("m", 4), ("n", 16))),
    Schedule(order=(("n", "k", "m"),), tile=(("k", 8),), parallel="n"),
    Schedule(order=(("m", "n", "k"),), parallel="none", vectorize=False, unroll=4),
    Schedule(tile=(("m", 8), ("k", 5), ("n", 7)), threads=1),
]


@pytest.mark.parametrize("schedule", MATMUL_SCHEDULES, ids=str)
def test_schedules_do_not_change_results(schedule: Schedule) -> None:
    k = pliant.tc.define("def mm(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }", schedule=schedule)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((37, 29)).astype(np.float32)
    b = rng.standard_normal((29, 41)).astype(np.float32)
    np.testing.assert_allclose(k(a, b, specialize=True), a @ b, rtol=1e-4, atol=1e-4)
    if schedule.tile:
        np.testing.assert_allclose(k(a, b), a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "schedule", [Schedule(fuse=False), Schedule(parallel="none", unroll=2), Schedule(tile=(("m", 16),))], ids=str
)
def test_softmax_schedules(schedule: Schedule) -> None:
    case = CASES[11]
    k = pliant.tc.define(case.source, schedule=schedule)
    x = np.random.default_rng(1).standard_normal((300, 130)).astype(np.float32)
    np.testing.assert_allclose(k(x), case.ref(x), rtol=1e-5, atol=1e-6)


def test_writes_stay_inside_the_tensor() -> None:
    a = np.arange(4, dtype=np.float32)
    k = pliant.tc.define("def f(float(N) A) -> (O) { O(i) = A(i+1) }")
    np.testing.assert_array_equal(k(a), [1, 2, 3])
    k = pliant.tc.define("def f(float(N) A) -> (float(N) O) { O(i) = 1.0 where i in 0:N+5 }")
    np.testing.assert_array_equal(k(a), [1, 1, 1, 1])
    k = pliant.tc.define("def f(float(N) A) -> (float(N) O) { O(i) = A(i-1) where i in 0:N }")
    np.testing.assert_array_equal(k(a), [0, 0, 1, 2])


def test_docstring_examples_run() -> None:
    import doctest

    import pliant.frontends.tc
    import pliant.kernels.schedule
    import pliant.kernels.symbolic

    for module in (pliant.tc, pliant.frontends.tc, pliant.kernels.schedule, pliant.kernels.symbolic):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
