"""The disk cache: reused by a new process, safe under concurrent builds, repaired when broken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pliant.tc
from pliant.kernels import cache
from pliant.kernels.errors import CompilerNotFoundError
from pliant.kernels.toolchain import find_toolchain

SCRIPT = """
import sys
import numpy as np
import pliant.tc
for name in sys.argv[1:]:
    k = pliant.tc.define("def " + name + "(float(N) X) -> (Y) { Y(i) = X(i) * 3.0 + 1.0 }")
    ck = k.compile(None)
    print(name, ck.loaded.origin, ck.loaded.key, k(np.arange(4, dtype=np.float32)).tolist())
"""
EXPECTED = [1.0, 4.0, 7.0, 10.0]


def _start(*names: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )


def _finish(proc: subprocess.Popen[str]) -> dict[str, tuple[str, str]]:
    """name -> (origin, key), after checking each kernel's values."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    result = {}
    for line in out.strip().splitlines():
        name, origin, key, values = line.split(" ", 3)
        assert json.loads(values) == EXPECTED
        result[name] = (origin, key)
    return result


def _entry_is_sound(key: str) -> bool:
    so, _, record = cache.entry_paths(key)
    return bool(json.loads(record.read_text())["sha256"] == cache._digest(so))


def test_new_process_hits_the_disk_cache() -> None:
    first = _finish(_start("restart"))["restart"]
    assert first[0] == "compiled"
    assert _finish(_start("restart"))["restart"] == ("disk", first[1])


def test_two_processes_compiling_at_once() -> None:
    results = [_finish(p)["concurrent"] for p in [_start("concurrent"), _start("concurrent")]]
    assert results[0][1] == results[1][1]
    assert all(origin in ("compiled", "rebuilt", "disk") for origin, _ in results)
    assert _entry_is_sound(results[0][1])
    so, _, _ = cache.entry_paths(results[0][1])
    assert not [p for p in so.parent.iterdir() if p.name.startswith(".tmp-")]


def test_corrupt_entries_are_rebuilt() -> None:
    names = ["corrupt_garbage", "corrupt_truncated", "corrupt_record", "corrupt_missing"]
    first = _finish(_start(*names))
    assert all(origin == "compiled" for origin, _ in first.values())
    paths = {n: cache.entry_paths(first[n][1]) for n in names}
    paths["corrupt_garbage"][0].write_bytes(b"\x7fELF this is not a shared object")
    so = paths["corrupt_truncated"][0]
    so.write_bytes(so.read_bytes()[:100])
    paths["corrupt_record"][2].write_text("{not json")
    paths["corrupt_missing"][0].unlink()
    second = _finish(_start(*names))
    for n in names:
        assert second[n] == ("rebuilt", first[n][1])
        assert _entry_is_sound(first[n][1])


def test_in_process_cache_then_disk() -> None:
    k = pliant.tc.define("def inproc(float(N) X) -> (Y) { Y(i) = X(i) - 1.0 }")
    first = k.compile(None).loaded
    assert first.origin in ("compiled", "disk")
    assert k.compile(None).loaded.origin == "memory"
    cache.clear_memory()
    assert k.compile(None).loaded.origin == "disk"


def test_specialisation_and_schedule_are_part_of_the_key() -> None:
    k = pliant.tc.define("def keyed(float(N) X) -> (Y) { Y(i) = X(i) * 2.0 }")
    keys = {
        k.compile(None).loaded.key,
        k.compile({"N": 8}).loaded.key,
        k.compile({"N": 9}).loaded.key,
        k.compile({"N": 8}, pliant.tc.Schedule(unroll=4)).loaded.key,
    }
    assert len(keys) == 4


def test_missing_compiler_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    monkeypatch.setenv("PLIANT_CACHE_DIR", str(tmp_path))
    k = pliant.tc.define("def nocc(float(N) X) -> (Y) { Y(i) = X(i) }")
    with pytest.raises(
        CompilerNotFoundError,
        match=r"no C compiler: looked for '/nonexistent/bin/cc' \(\$CC\) and found nothing; install a C compiler "
        r"\(Debian/Ubuntu: apt-get install gcc;.*\) or set CC to the path of one",
    ):
        k(np.ones(3, np.float32))
    with pytest.raises(CompilerNotFoundError):
        find_toolchain()
