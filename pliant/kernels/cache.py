"""The compilation cache: C source -> loaded shared object, on disk and in process.

An entry's key is a digest of the C text (which embeds the canonical kernel
source, the specialisation and the schedule), the compiler's identity and
flags, and ``FORMAT``.  On disk (``<cache>/kernels/<k[:2]>/``) an entry is
``<key>.so``, ``<key>.c`` and ``<key>.json`` (the object's SHA-256).

- Writers compile to a temporary file in the same directory and ``os.replace``
  it into place, object first, then the record, so readers never see a
  partial one; two processes building one kernel take turns (an advisory lock
  on ``<key>.lock``), the second finding the first's entry: objects of one
  source differ between builds (they name the temporary source file), and
  interleaved, one's object with the other's record looked corrupt.
- Readers check the record's digest against the object and that it loads and
  exports the entry point; anything else (truncated, garbage, missing record)
  is rebuilt in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pliant.kernels.emit_c import ENTRY
from pliant.kernels.errors import CompileError

if TYPE_CHECKING:
    from pliant.kernels.toolchain import Toolchain

FORMAT = "pliant-kernel-1"


@dataclass(frozen=True)
class Loaded:
    """A loaded kernel: the C entry point and where it came from (memory, disk, compiled, rebuilt)."""

    key: str
    fn: Any  # ctypes function: int(void *const *, const int64_t *)
    path: Path
    origin: str


def cache_dir() -> Path:
    """Where compiled kernels and tuning records live: ``$PLIANT_CACHE_DIR`` or ``~/.cache/pliant``."""
    env = os.environ.get("PLIANT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "pliant"


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary file and a rename; False when the cache is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace(data, path)
        return True
    except OSError:
        return False  # NOTE: a cache that cannot be written only costs time


_LOCK = threading.Lock()
_KEY_LOCKS: dict[str, threading.Lock] = {}
_LOADED: dict[str, Loaded] = {}
_LOADED_PATHS: set[str] = set()


def cache_key(c_source: str, tc: Toolchain) -> str:
    h = hashlib.sha256()
    for part in (FORMAT, tc.identity, " ".join(tc.flags), c_source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def entry_paths(key: str) -> tuple[Path, Path, Path]:
    """The object, source and record paths of ``key``."""
    d = cache_dir() / "kernels" / key[:2]
    return d / f"{key}.so", d / f"{key}.c", d / f"{key}.json"


def clear_memory() -> None:
    """Forget kernels loaded in this process (the next load goes to disk); for tests."""
    with _LOCK:
        _LOADED.clear()


def load(c_source: str, tc: Toolchain) -> Loaded:
    """The shared object of ``c_source``: from this process, from disk, or compiled now."""
    key = cache_key(c_source, tc)
    with _LOCK:
        hit = _LOADED.get(key)
        if hit is not None:
            return Loaded(key, hit.fn, hit.path, "memory")
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _LOCK:
            hit = _LOADED.get(key)
        if hit is not None:
            return Loaded(key, hit.fn, hit.path, "memory")
        so, src, record = entry_paths(key)
        loaded = _from_disk(key, so, record)
        if loaded is None:
            with _entry_lock(so):
                # NOTE: another process may have built it while this one waited
                loaded = _from_disk(key, so, record)
                if loaded is None:
                    existed = so.exists() or record.exists()
                    _build(c_source, tc, so, src, record)
                    fn = _dlopen(so)
                    if fn is None:
                        raise OSError(f"a freshly compiled kernel does not load: {so}")
                    loaded = Loaded(key, fn, so, "rebuilt" if existed else "compiled")
        with _LOCK:
            _LOADED[key] = loaded
        return loaded


@contextlib.contextmanager
def _entry_lock(so: Path) -> Iterator[None]:
    """Held by one process at a time per entry (an advisory lock on ``<key>.lock`` beside it), so that two
    processes compiling the same kernel do not interleave their object and record: the object of one with
    the other's digest made a sound build look corrupt to the next process.  Without ``fcntl`` (Windows), or
    where the lock file cannot be made, builds are not serialised (each is still correct on its own)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        so.parent.mkdir(parents=True, exist_ok=True)
        f = open(so.with_suffix(".lock"), "a")  # NOTE: held open while the lock is
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _from_disk(key: str, so: Path, record: Path) -> Loaded | None:
    try:
        meta = json.loads(record.read_text())
        if meta.get("format") != FORMAT or meta.get("sha256") != _digest(so):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    fn = _dlopen(so)
    return None if fn is None else Loaded(key, fn, so, "disk")


def _dlopen(so: Path) -> Any:
    path = str(so)
    if path in _LOADED_PATHS:
        # NOTE: the dynamic loader returns the library already loaded under a path; a rebuilt entry
        # must be loaded from a fresh name to be seen at all.
        fd, tmp = tempfile.mkstemp(prefix="pliant-", suffix=".so")
        os.close(fd)
        shutil.copyfile(so, tmp)
        path = tmp
    try:
        lib = ctypes.CDLL(path)
        fn = getattr(lib, ENTRY)
    except (OSError, AttributeError):
        return None
    _LOADED_PATHS.add(str(so))
    fn.restype = ctypes.c_int
    # NOTE: no argtypes: callers pass a ctypes array of void pointers and one of int64 (arrays go
    # as pointers), and having ctypes check them would cost a third of the call.
    return fn


def _replace(data: bytes, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=dest.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build(c_source: str, tc: Toolchain, so: Path, src: Path, record: Path) -> None:
    so.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_c = tempfile.mkstemp(dir=so.parent, prefix=".tmp-", suffix=".c")
    with os.fdopen(fd, "w") as f:
        f.write(c_source)
    fd, tmp_so = tempfile.mkstemp(dir=so.parent, prefix=".tmp-", suffix=".so")
    os.close(fd)
    try:
        try:
            tc.compile(Path(tmp_c), Path(tmp_so))
        except CompileError as e:
            raise CompileError(f"{e}\n(the C source is kept at {src})") from e
        finally:
            os.replace(tmp_c, src)  # kept beside the entry, also when compiling failed
        digest = _digest(Path(tmp_so))
        os.replace(tmp_so, so)
    finally:
        Path(tmp_so).unlink(missing_ok=True)
    meta = {"format": FORMAT, "sha256": digest, "compiler": tc.version, "flags": list(tc.flags)}
    _replace(json.dumps(meta, indent=1).encode(), record)
