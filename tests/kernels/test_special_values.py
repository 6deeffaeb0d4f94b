"""NaN, infinities and extreme arguments: reductions, min/max and the inline math against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import pliant.tc
from pliant.kernels.schedule import Schedule

SCHEDULES = [Schedule(), Schedule(vectorize=False), Schedule(parallel="none", fuse=False)]
SCHEDULE_IDS = ["default", "scalar", "serial-unfused"]


def _with_specials(rng: np.random.Generator, shape: tuple[int, int], dtype: type) -> np.ndarray:
    """Random rows; some get a NaN at the start, in the middle, at the end, or next to infinities."""
    a = rng.standard_normal(shape).astype(dtype)
    m = shape[1]
    a[0, 0] = np.nan
    a[1, m // 2] = np.nan
    a[2, m - 1] = np.nan
    a[3, :] = np.nan
    a[4, 1] = np.inf
    a[5, 2] = -np.inf
    a[6, 3] = np.inf
    a[6, m - 2] = np.nan
    a[7, :] = -np.inf
    a[8, 5:9] = np.nan
    return a


@pytest.mark.parametrize("schedule", SCHEDULES, ids=SCHEDULE_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("m", [7, 300, 1029])
def test_min_max_reductions_propagate_nan_like_numpy(schedule: Schedule, dtype: type, m: int) -> None:
    ty = "float" if dtype is np.float32 else "double"
    k = pliant.tc.define(
        f"""def r({ty}(N,M) A) -> (lo, hi, col_lo, col_hi, g) {{
          lo(i) min=! A(i,j)
          hi(i) max=! A(i,j)
          col_lo(j) min=! A(i,j)
          col_hi(j) max=! A(i,j)
          g max=! A(i,j)
        }}""",
        schedule=schedule,
    )
    a = _with_specials(np.random.default_rng(m), (12, m), dtype)
    for specialize in (False, True):
        lo, hi, col_lo, col_hi, g = k(a, specialize=specialize)
        np.testing.assert_array_equal(lo, a.min(axis=1))
        np.testing.assert_array_equal(hi, a.max(axis=1))
        np.testing.assert_array_equal(col_lo, a.min(axis=0))
        np.testing.assert_array_equal(col_hi, a.max(axis=0))
        np.testing.assert_array_equal(g, a.max())


def test_max_without_bang_keeps_a_nan_it_starts_from() -> None:
    k = pliant.tc.define(
        """def r(float(N,M) A, float(N) B) -> (T) {
          T(i) = B(i)
          T(i) max= A(i,j)
        }"""
    )
    rng = np.random.default_rng(1)
    a = _with_specials(rng, (12, 500), np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    b[[9, 10]] = np.nan
    np.testing.assert_array_equal(k(a, b), np.maximum(b, a.max(axis=1)))


def test_softmax_of_rows_with_nan_and_infinities_matches_numpy() -> None:
    k = pliant.tc.define(
        """def softmax(float(N,M) X) -> (Y) {
          mx(n) max=! X(n,m)
          e(n,m) = exp(X(n,m) - mx(n))
          s(n) +=! e(n,m)
          Y(n,m) = e(n,m) / s(n)
        }"""
    )
    x = _with_specials(np.random.default_rng(2), (12, 700), np.float32)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        want = e / e.sum(axis=1, keepdims=True)
    got = k(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_min_max_builtins_propagate_nan_and_fmin_fmax_ignore_it(dtype: type) -> None:
    ty = "float" if dtype is np.float32 else "double"
    k = pliant.tc.define(
        f"""def mm({ty}(N) X, {ty}(N) Y) -> (A, B, C, D) {{
          A(i) = min(X(i), Y(i))
          B(i) = max(X(i), Y(i))
          C(i) = fmin(X(i), Y(i))
          D(i) = fmax(X(i), Y(i))
        }}"""
    )
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(1000).astype(dtype), rng.standard_normal(1000).astype(dtype)
    x[::7], y[::11] = np.nan, np.nan
    x[::13], y[::17] = np.inf, -np.inf
    a, b, c, d = k(x, y)
    np.testing.assert_array_equal(a, np.minimum(x, y))
    np.testing.assert_array_equal(b, np.maximum(x, y))
    np.testing.assert_array_equal(c, np.fmin(x, y))
    np.testing.assert_array_equal(d, np.fmax(x, y))


EXTREMES = [
    np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 1e-6, 0.5, -0.5, 1.0, 4.5, -4.5, 9.5, 10.5, 20.0, -20.0,
    87.0, 88.72, 88.7228394, 88.8, 89.0, 100.0, 150.0, 1e30, -87.3, -87.4, -100.0, -103.9, -104.0, -110.0,
    -150.0, -1e30, 3.4e38, -3.4e38, 1.2e-38, 1e-45,
]  # fmt: skip


@pytest.mark.parametrize("schedule", SCHEDULES[:2], ids=SCHEDULE_IDS[:2])
def test_inline_exp_tanh_sigmoid_at_extremes_match_numpy(schedule: Schedule) -> None:
    k = pliant.tc.define(
        "def m(float(N) X) -> (E, T, S) { E(i) = exp(X(i))  T(i) = tanh(X(i))  S(i) = sigmoid(X(i)) }",
        schedule=schedule,
    )
    rng = np.random.default_rng(4)
    base = np.array(EXTREMES, np.float32)
    x = np.concatenate([base, -base, rng.uniform(-120, 120, 3000).astype(np.float32)])
    x = np.concatenate([x, rng.standard_normal(3000).astype(np.float32) * 1e-3])
    e, t, s = k(x)
    with np.errstate(over="ignore", under="ignore"):
        want_e, want_t = np.exp(x), np.tanh(x)
        want_s = (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32)
    for got, want, rtol in ((e, want_e, 2e-7), (t, want_t, 4e-7), (s, want_s, 4e-7)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=3e-45)
    real = ~np.isnan(x)
    np.testing.assert_array_equal(np.signbit(t[real]), np.signbit(want_t[real]))  # tanh(-0) is -0
