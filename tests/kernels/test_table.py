"""Every kernel of the table against NumPy: generic and specialised versions, two sizes each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import pliant.tc
from pliant.kernels.errors import TCError

from .cases import CASES, Case, make_inputs


@pytest.fixture(scope="session")
def kernels() -> dict[str, Any]:
    """Each case's kernel, with its generic and specialised versions compiled up front, in parallel."""
    out: dict[str, Any] = {c.name: pliant.tc.define(c.source) for c in CASES}
    jobs: list[tuple[Any, dict[str, int] | None]] = []
    for c in CASES:
        jobs.append((out[c.name], None))
        jobs += [(out[c.name], s) for s in c.sizes]

    def compile_one(job: tuple[Any, dict[str, int] | None]) -> None:
        try:
            job[0].compile(job[1])
        except TCError:
            pass  # NOTE: the test that needs this version reports the error

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(compile_one, jobs))
    return out


def _check(case: Case, got: Any, want: Any) -> None:
    got_t = got if isinstance(got, tuple) else (got,)
    want_t = want if isinstance(want, tuple) else (want,)
    assert len(got_t) == len(want_t)
    for g, w in zip(got_t, want_t):
        w = np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        if g.dtype.kind == "f":
            scale = max(1.0, float(np.max(np.abs(w.astype(np.float64))))) if w.size else 1.0
            np.testing.assert_allclose(
                g.astype(np.float64), w.astype(np.float64), rtol=case.rtol, atol=case.rtol * scale
            )
        else:
            np.testing.assert_array_equal(g, w.astype(g.dtype))


def test_table_has_at_least_25_kernels() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("specialize", [False, True], ids=["generic", "specialised"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kernel_matches_numpy(case: Case, specialize: bool, kernels: dict[str, Any]) -> None:
    k = kernels[case.name]
    for n, sizes in enumerate(case.sizes):
        args = make_inputs(case, k, sizes, seed=n)
        got = k(*args, specialize=specialize)
        _check(case, got, case.ref(*args))


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("softmax", "matmul", "argmin")], ids=lambda c: c.name)
def test_out_argument_is_written_and_returned(case: Case, kernels: dict[str, Any]) -> None:
    k = kernels[case.name]
    args = make_inputs(case, k, case.sizes[0], seed=3)
    want = k(*args)
    want_t = want if isinstance(want, tuple) else (want,)
    outs = tuple(np.full_like(w, 7) for w in want_t)
    got = k(*args, out=outs if len(outs) > 1 else outs[0])
    assert (got if isinstance(got, tuple) else (got,))[0] is outs[0]
    for o, w in zip(outs, want_t):
        np.testing.assert_array_equal(o, w)
