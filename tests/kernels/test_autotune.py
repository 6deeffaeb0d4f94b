"""The autotuner, its stored records, the library path and the `tune` command."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

import pliant.tc
from pliant.kernels import autotune as tuning
from pliant.kernels.cli import add_tune_command, parse_sizes
from pliant.kernels.errors import TCError
from pliant.kernels.vendor import LibraryCall, library_call

MATMUL = "def tmm(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }"


def test_autotune_finds_records_and_reuses_them() -> None:
    k = pliant.tc.define(MATMUL)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((24, 16)).astype(np.float32)
    b = rng.standard_normal((16, 20)).astype(np.float32)
    result = k.autotune(a, b, generations=1, population=3, progress=False)
    assert not result.from_cache
    assert result.sizes == {"M": 24, "K": 16, "N": 20}
    assert 3 <= result.evaluated <= 6
    assert result.best_s == result.top[0][1] and result.best_s <= result.default_s
    assert [t for _, t in result.top] == sorted(t for _, t in result.top)
    assert result.library is not None and "matmul" in result.library and result.library_s is not None
    assert result.use_library == (result.library_s < result.best_s)
    assert "choice:" in str(result)
    again = k.autotune(a, b, progress=False)
    assert again.from_cache and again.best == result.best
    fresh = pliant.tc.define(MATMUL)  # a new kernel object (as in a new process) finds the record
    np.testing.assert_allclose(fresh(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_tuned_library_choice_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    k = pliant.tc.define(MATMUL.replace("tmm", "libmm"))
    a = np.ones((5, 3), np.float32)
    b = np.ones((3, 4), np.float32)
    record = tuning.TuneResult(
        "libmm",
        {"M": 5, "K": 3, "N": 4},
        pliant.tc.Schedule(),
        1.0,
        1.0,
        ((pliant.tc.Schedule(), 1.0),),
        "numpy.matmul",
        1e-9,
        1,
        False,
    )
    tuning.write_atomic(tuning._record_path(k.typed, record.sizes), __import__("json").dumps(record.to_json()).encode())
    calls = []
    real = library_call(k.typed)
    assert real is not None

    def spy(ins: list[np.ndarray], outs: list[np.ndarray]) -> None:
        calls.append(1)
        real.fn(ins, outs)

    monkeypatch.setattr(pliant.tc, "library_call", lambda typed: LibraryCall("spy", spy))
    np.testing.assert_array_equal(k(a, b), np.full((5, 4), 3.0))
    assert calls == [1]


@pytest.mark.parametrize(
    ("src", "kind"),
    [
        ("def f(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }", "matmul"),
        ("def f(float(K,M) A, float(N,K) B) -> (C) { C(m,n) +=! A(k,m) * B(n,k) }", "matmul"),
        ("def f(float(B,M,K) A, float(B,K,N) X) -> (C) { C(b,m,n) +=! A(b,m,k) * X(b,k,n) }", "matmul"),
        ("def f(float(I,K,L) A, float(K,L,J) B) -> (C) { C(i,j) +=! A(i,k,l) * B(k,l,j) }", "einsum"),
        ("def f(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) + B(k,n) }", None),
        ("def f(float(M,K) A) -> (C) { C(m,n) +=! A(m,k) * A(n,k) }", None),
    ],
)
def test_library_path_matches_generated_code(src: str, kind: str | None) -> None:
    k = pliant.tc.define(src)
    lib = library_call(k.typed)
    if kind is None:
        assert lib is None
        return
    assert lib is not None and kind in lib.kind
    rng = np.random.default_rng(1)
    sizes = {"M": 5, "K": 4, "N": 3, "B": 2, "I": 3, "L": 2, "J": 4}
    ins = [
        rng.standard_normal(tuple(sizes[str(d)] for d in t.dims or ())).astype(np.float32) for t in k.signature.inputs
    ]
    arrays, env = k.signature.bind(ins)
    outs = k.signature.outputs_for(env, None, arrays)
    lib.fn(arrays, outs)
    np.testing.assert_allclose(outs[0], k(*ins), rtol=1e-4, atol=1e-5)


def test_tune_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "scale.tc"
    src.write_text("# a kernel file\ndef scale(float(N) X, float a) -> (Y) { Y(i) = X(i) * a }\n")
    parser = argparse.ArgumentParser(prog="pliant")
    add_tune_command(parser.add_subparsers())
    args = parser.parse_args(
        ["tune", str(src), "--sizes", "N=1000", "--generations", "0", "--population", "2", "--no-progress"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "kernel scale at N=1000" in out and "choice: generated code" in out
    bad = parser.parse_args(["tune", str(src), "--sizes", "M=3"])
    with pytest.raises(TCError, match=r"kernel 'scale' needs sizes N; --sizes lacks N"):
        bad.func(bad)
    missing = parser.parse_args(["tune", str(tmp_path / "nope.tc"), "--sizes", "N=3"])
    with pytest.raises(TCError, match=r"cannot read kernel file"):
        missing.func(missing)


def test_parse_sizes() -> None:
    assert parse_sizes("M=512, N=3") == {"M": 512, "N": 3}
    with pytest.raises(TCError, match=r"bad size 'M:3'"):
        parse_sizes("M:3")
