"""Errors name the place, the values and the remedy; their messages are pinned here."""

from __future__ import annotations

import re

import numpy as np
import pytest

import pliant.tc
from pliant.errors import PliantError
from pliant.kernels.errors import (
    TCCallError,
    TCRangeError,
    TCRuntimeError,
    TCScheduleError,
    TCSyntaxError,
    TCTypeError,
)
from pliant.kernels.schedule import Schedule


def test_errors_are_pliant_errors() -> None:
    for cls in (TCSyntaxError, TCTypeError, TCRangeError, TCCallError, TCRuntimeError, TCScheduleError):
        assert issubclass(cls, PliantError)


def test_syntax_error_points_at_line_and_column() -> None:
    src = "def f(float(N) A) -> (B) {\n  B(i) = A(i) +* 2\n}"
    with pytest.raises(TCSyntaxError, match=r"line 2, column 16: expected an expression but found '\*'") as e:
        pliant.tc.define(src)
    assert e.value.line == 2 and e.value.col == 16
    assert "  B(i) = A(i) +* 2\n" in str(e.value) and str(e.value).endswith("\n                 ^")


@pytest.mark.parametrize(
    ("src", "pattern"),
    [
        ("def f(float(N) A) -> (B) { B(i) = A(i)", r"line 1, column \d+: expected '\}' to close the kernel body"),
        ("def f(float(N) A) -> (B) { B(i) == A(i) }", r"expected an assignment .* but found '=='"),
        ("def f(float(N) A) -> (B) { B(i) = A(i) @ 2 }", r"unexpected character '@'"),
        ("def f(floot(N) A) -> (B) { B(i) = A(i) }", r"line 1, column 7: expected a type .* but found 'floot'"),
        ("def f(float(N) A) -> (B) { B(i, i) = A(i) }", r"index 'i' appears twice on the left-hand side"),
        ("def f(float(N) A) -> (B) { B(i) = A(i) < 1 < 2 }", r"comparisons do not chain"),
        ("def f(float(N) A) -> (B) { B(i) =! A(i) }", r"'=!' is not an operator"),
    ],
)
def test_syntax_errors(src: str, pattern: str) -> None:
    with pytest.raises(TCSyntaxError, match=pattern):
        pliant.tc.define(src)


def test_unknown_builtin() -> None:
    src = "def f(float(N) A) -> (B) {\n  B(i) = expp(A(i))\n}"
    with pytest.raises(
        TCTypeError, match=r"line 2, column 10: unknown function or tensor 'expp': not a builtin \(abs, "
    ):
        pliant.tc.define(src)


@pytest.mark.parametrize(
    ("src", "pattern"),
    [
        ("def f(float(N) A) -> (B) { B(i) = exp(A(i), 1.0) }", r"exp\(\) takes 1 argument\(s\), got 2"),
        ("def f(float(N,M) A) -> (B) { B(i) = A(i) }", r"'A' has rank 2 but is read with 1 indices"),
        ("def f(float(N) A) -> (B) { A(i) = B(i) }", r"cannot write input 'A'"),
        ("def f(float(N,M) A) -> (B) { B(i) = A(i,j) }", r"index 'j' appears only on the right of '='"),
        ("def f(float(N) A) -> (B) { B(i) += A(i) }", r"'B' is accumulated with '\+=' before any statement writes it"),
        ("def f(float(N) A) -> (B) { B(i) = T(i) }", r"unknown function or tensor 'T'"),
        ("def f(float(N) A) -> (int32(N) B) { B(i) = A(i) }", r"'B' holds int32 but the value is float32: convert it"),
        ("def f(float(N) A) -> (B) { B(i) = A(i) && 1.0 }", r"operand of '&&' must be bool, got float32"),
        ("def f(float(N) A) -> (B) { B(i) = A(A(i)) }", r"index of 'A' must be an integer, got float32"),
        ("def f(float(N) A) -> (B, C) { B(i) = A(i) }", r"output 'C' is never written"),
        ("def f(float(N) A) -> (float(P) B) { B(i) = A(i) }", r"size 'P' of output 'B' is not a size of any input"),
        ("def f(float(N) A) -> (B) { B(i) = A(i) where k in 0:N }", r"where-clause names 'k', which the statement"),
        (
            "def f(float(N) A) -> (B) { B(i) = A(i) where i in 0:j }",
            r"where-clause bounds may use sizes and integers only",
        ),
    ],
)
def test_type_errors(src: str, pattern: str) -> None:
    with pytest.raises(TCTypeError, match=pattern):
        pliant.tc.define(src)


def test_size_mismatch_between_arguments() -> None:
    k = pliant.tc.define("def mm(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }")
    a = np.zeros((3, 4), np.float32)
    b = np.zeros((5, 6), np.float32)
    with pytest.raises(TCCallError, match=r"kernel 'mm': size K is 4 from 'A' \(dim 1\) but 5 from 'B' \(dim 0\)"):
        k(a, b)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (
            (np.zeros(3, np.float64),),
            r"input 'A' must be float32, got float64 \(convert it with \.astype\(np\.float32\)\)",
        ),
        ((np.zeros((3, 3), np.float32),), r"input 'A' must have rank 1 \(float32\(N\) A\), got shape \(3, 3\)"),
        ((), r"kernel 'f' takes 1 input\(s\) \(float32\(N\) A\), got 0"),
    ],
)
def test_call_errors(args: tuple[np.ndarray, ...], pattern: str) -> None:
    k = pliant.tc.define("def f(float(N) A) -> (B) { B(i) = A(i) }")
    with pytest.raises(TCCallError, match=pattern):
        k(*args)


def test_out_argument_is_checked() -> None:
    k = pliant.tc.define("def f(float(N) A) -> (B) { B(i) = A(i) * 2.0 }")
    a = np.ones(4, np.float32)
    with pytest.raises(TCCallError, match=r"out= for 'B' must be float32 of shape \(4,\), got float32 of shape \(5,\)"):
        k(a, out=np.empty(5, np.float32))
    with pytest.raises(TCCallError, match=r"out= for 'B' overlaps input 'A'"):
        k(a, out=a)


def test_unresolvable_range() -> None:
    src = "def f(float(N) A) -> (B) {\n  B(i) +=! A(i + j)\n}"
    with pytest.raises(
        TCRangeError,
        match=r"line 2, column 14: cannot infer the range of 'i': every read it indexes \(A\(\(i \+ j\)\)\) also "
        r"depends on another index without a range; add 'where i in lo:hi'",
    ):
        pliant.tc.define(src)


def test_data_dependent_index_needs_where() -> None:
    src = "def f(float(N) T, int64(M) I) -> (O) { O(x) = T(I(0) + x) }"
    with pytest.raises(
        TCRangeError,
        match=r"cannot infer the range of 'x': it only indexes T\(\(I\(0\) \+ x\)\) at a data-dependent position; add 'where x in lo:hi'",
    ):
        pliant.tc.define(src)
    ok = pliant.tc.define("def f(float(N) T, int64(M) I) -> (O) { O(x) = T(I(0) + x) where x in 0:3 }")
    got = ok(np.arange(10, dtype=np.float32), np.array([4], np.int64))
    np.testing.assert_array_equal(got, [4, 5, 6])


def test_left_hand_only_index_needs_where_or_sizes() -> None:
    with pytest.raises(TCRangeError, match=r"cannot infer the range of 'j': it appears only on the left-hand side"):
        pliant.tc.define("def f(float(N) A) -> (B) { B(i, j) = A(i) }")
    k = pliant.tc.define("def f(float(N) A, float(M) U) -> (float(N, M) B) { B(i, j) = A(i) }")
    np.testing.assert_array_equal(k(np.ones(2, np.float32), np.ones(3, np.float32)), np.ones((2, 3)))


def test_data_dependent_index_out_of_range_raises() -> None:
    k = pliant.tc.define("def embed(float(V,D) E, int64(B) I) -> (O) { O(b,d) = E(I(b), d) }")
    e = np.ones((4, 2), np.float32)
    with pytest.raises(TCRuntimeError, match=r"kernel 'embed': index 0 of E\(I\(b\), d\) \(line 1\) is outside 0:4"):
        k(e, np.array([0, 7], np.int64))


def test_output_too_small_is_a_call_error() -> None:
    k = pliant.tc.define("def conv(float(N) I, float(K) W) -> (O) { O(i) +=! I(i+k) * W(k) }")
    with pytest.raises(TCCallError, match=r"output 'O' would have size -2 in dim 0 \(-K \+ N \+ 1 with N=3, K=6\)"):
        k(np.ones(3, np.float32), np.ones(6, np.float32))


def test_bad_schedule() -> None:
    k = pliant.tc.define("def f(float(N,M) A) -> (B) { B(i,j) = A(i,j) }")
    with pytest.raises(
        TCScheduleError, match=re.escape("tile names 'q', which no statement uses (index variables: ['i', 'j'])")
    ):
        k.schedule = Schedule(tile=(("q", 4),))
    with pytest.raises(TCScheduleError, match=r"order of statement 0 must be a permutation of \['i', 'j'\]"):
        k.schedule = Schedule(order=(("i",),))


def test_two_kernels_need_a_name() -> None:
    src = "def a(float(N) X) -> (Y) { Y(i) = X(i) }\ndef b(float(N) X) -> (Y) { Y(i) = -X(i) }"
    with pytest.raises(PliantError, match=r"the source defines 2 kernels \(a, b\): pass name= to choose one"):
        pliant.tc.define(src)
    assert pliant.tc.define(src, "b").name == "b"
    assert set(pliant.tc.define_all(src)) == {"a", "b"}


@pytest.mark.parametrize(
    ("src", "pattern"),
    [
        (
            "def f(float(N) A) -> (B) { B(i) = A(i)\n B(i) = B(i-1) + A(i) }",
            r"line 2, column 9: 'B' is read at other indices",
        ),
        ("def f(float(N) A) -> (B) { B(i) = A(i)\n B(i) += B(i) }", r"a reduction into 'B' may not read 'B'"),
    ],
)
def test_recurrences_are_rejected(src: str, pattern: str) -> None:
    with pytest.raises(TCTypeError, match=pattern):
        pliant.tc.define(src)
    ok = pliant.tc.define("def f(float(N) A) -> (B) { B(i) = A(i)\n B(i) = B(i) * 2.0 }")
    np.testing.assert_array_equal(ok(np.ones(3, np.float32)), [2, 2, 2])


def test_where_bound_with_division_is_a_range_error() -> None:
    import pliant.tc as tc

    with pytest.raises(tc.TCRangeError, match=r"line 1, column 48: the bounds of 'where o in 0:\(\(\(H - 3\) / 2\) \+ 1\)' "
                                               r"must be sums of sizes and integers"):
        tc.define("def f(float(H) X) -> (Y) { Y(o) = X(2*o) where o in 0:(H-3)/2+1 }")(np.ones(9, np.float32))
