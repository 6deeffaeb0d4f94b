"""The call path: how arrays reach the native code (pointers, sizes, outputs), against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import pliant.tc
from pliant.kernels.compiled import data_pointers

ROWSUM = "def rs(float(N,M) A, float(M) B) -> (S) { S(i) +=! A(i,j) * B(j) }"


def test_data_pointers_of_writeable_read_only_empty_and_scalar_arrays() -> None:
    w = np.arange(10, dtype=np.float32)
    ro = np.frombuffer(np.arange(6, dtype=np.float64).tobytes(), dtype=np.float64)
    assert not ro.flags.writeable
    arrays = [w, w[3:], ro, np.empty(0, np.float32), np.asarray(np.float32(2.5)), np.zeros((2, 3), np.bool_)]
    assert data_pointers(arrays) == [a.ctypes.data for a in arrays]


def test_read_only_inputs() -> None:
    k = pliant.tc.define(ROWSUM)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 7)).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    a.setflags(write=False)
    b_ro = np.frombuffer(b.tobytes(), dtype=np.float32)
    np.testing.assert_allclose(k(a, b_ro), a @ b, rtol=1e-5, atol=1e-6)


def test_sizes_follow_each_call() -> None:
    k = pliant.tc.define(ROWSUM)
    rng = np.random.default_rng(1)
    for n, m in [(3, 5), (8, 2), (3, 5), (1, 300), (0, 4), (8, 2)]:
        a, b = rng.standard_normal((n, m)).astype(np.float32), rng.standard_normal(m).astype(np.float32)
        for specialize in (False, True):
            got = k(a, b, specialize=specialize)
            assert got.shape == (n,)
            np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)
            out = np.full(n, 7, np.float32)
            assert k(a, b, out=out, specialize=specialize) is out
            np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_out_checks_still_apply_on_a_known_signature() -> None:
    k = pliant.tc.define("def f(float(N) A) -> (B) { B(i) = A(i) * 2.0 }")
    a = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(k(a), a * 2)  # the signature is now known
    with pytest.raises(pliant.tc.TCCallError, match=r"out= for 'B' overlaps input 'A'"):
        k(a, out=a)
    with pytest.raises(pliant.tc.TCCallError, match=r"out= for 'B' must be float32 of shape \(8,\), got float64"):
        k(a, out=np.zeros(8))
    with pytest.raises(pliant.tc.TCCallError, match=r"must be a writeable C-contiguous array"):
        k(a, out=np.zeros(16, np.float32)[::2])
