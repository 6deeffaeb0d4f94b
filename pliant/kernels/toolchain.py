"""The system C compiler: found, probed once, and invoked.

The compiler is ``$CC`` (default ``cc``; it may carry arguments, e.g.
``CC="ccache gcc"``).  Probing compiles a few tiny programs to learn whether it
takes ``-march=native``, ``-fopenmp`` (and the OpenMP runtime loads),
``-fopenmp-simd`` and ``_Float16``, and which math functions glibc's libmvec
vectorises.  Probes cost a fraction of a second; their answer is kept for the
process and on disk (``<cache>/toolchain-<hash>.json``, keyed by the compiler's
path, size and mtime), so later processes skip them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from pliant.kernels.builtins import BUILTINS
from pliant.kernels.cache import cache_dir, write_atomic
from pliant.kernels.errors import CompileError, CompilerNotFoundError

PROBE_VERSION = 1
BASE_FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno")
COMPILE_TIMEOUT_S = 300

_INSTALL_HINT = (
    "install a C compiler (Debian/Ubuntu: apt-get install gcc; Fedora/RHEL: dnf install gcc; "
    "Alpine: apk add gcc musl-dev; macOS: xcode-select --install) or set CC to the path of one"
)


@dataclass(frozen=True)
class Toolchain:
    """A probed C compiler: its command, identity and the features generated code may use."""

    command: tuple[str, ...]
    path: str
    version: str
    flags: tuple[str, ...]
    openmp: bool
    openmp_simd: bool
    float16: bool
    vector_math: frozenset[str]

    @property
    def identity(self) -> str:
        """A digest of everything about the compiler that changes generated objects (part of cache keys)."""
        text = json.dumps([self.path, self.version, self.flags, self.openmp, self.float16, sorted(self.vector_math)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def compile(self, c_file: Path, out: Path) -> None:
        """Compile ``c_file`` into the shared object ``out``; raises ``CompileError`` with the compiler's output."""
        argv = [*self.command, *self.flags, "-o", str(out), str(c_file), "-lm"]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CompileError(f"running the C compiler failed ({' '.join(argv)}): {e}") from e
        if res.returncode != 0:
            raise CompileError(
                f"the C compiler rejected generated code (a pliant bug; please report it): "
                f"{' '.join(argv)} exited with {res.returncode}:\n{res.stderr.strip()[:4000]}"
            )


_LOCK = threading.Lock()
_MEMO: dict[str, Toolchain] = {}


def find_toolchain() -> Toolchain:
    """The compiler ``$CC`` names, probed; raises ``CompilerNotFoundError`` saying what was looked for."""
    cc = os.environ.get("CC") or "cc"
    with _LOCK:
        if cc not in _MEMO:
            _MEMO[cc] = _probe(cc)
        return _MEMO[cc]


def _resolve(cc: str) -> tuple[list[str], str]:
    try:
        argv = shlex.split(cc)
    except ValueError:
        argv = [cc]
    if not argv:
        argv = ["cc"]
    path = shutil.which(argv[0])
    if path is None:
        source = "$CC" if os.environ.get("CC") else "the default 'cc' (set CC to choose another)"
        raise CompilerNotFoundError(f"no C compiler: looked for '{cc}' ({source}) and found nothing; {_INSTALL_HINT}")
    if len(argv) == 1:
        argv = [path]
    return argv, path


def _probe(cc: str) -> Toolchain:
    argv, path = _resolve(cc)
    try:
        res = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompilerNotFoundError(f"the C compiler '{cc}' ({path}) does not run: {e}; {_INSTALL_HINT}") from e
    lines = (res.stdout or res.stderr).strip().splitlines()
    version = lines[0] if lines else "unknown"
    st = os.stat(path)
    key_text = json.dumps([PROBE_VERSION, cc, path, st.st_size, st.st_mtime_ns, version, platform.machine()])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    record = cache_dir() / f"toolchain-{key}.json"
    try:
        d = json.loads(record.read_text())
        return Toolchain(
            tuple(d["command"]),
            d["path"],
            d["version"],
            tuple(d["flags"]),
            d["openmp"],
            d["openmp_simd"],
            d["float16"],
            frozenset(d["vector_math"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    tc = _run_probes(tuple(argv), path, version)
    d = asdict(tc)
    d["vector_math"] = sorted(tc.vector_math)
    write_atomic(record, json.dumps(d, indent=1).encode())
    return tc


def _try(argv: tuple[str, ...], flags: list[str], code: str, load: str | None = None) -> bool:
    with tempfile.TemporaryDirectory(prefix="pliant-probe-") as d:
        src, out = Path(d) / "probe.c", Path(d) / "probe.so"
        src.write_text(code)
        try:
            res = subprocess.run(
                [*argv, *flags, "-o", str(out), str(src)], capture_output=True, timeout=120, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if res.returncode != 0:
            return False
        if load is None:
            return True
        try:
            return int(getattr(ctypes.CDLL(str(out)), load)()) > 0
        except (OSError, AttributeError):
            return False


def _run_probes(argv: tuple[str, ...], path: str, version: str) -> Toolchain:
    trivial = "int pl_probe(void) { return 1; }\n"
    if not _try(argv, [*BASE_FLAGS], trivial, "pl_probe"):
        raise CompilerNotFoundError(
            f"the C compiler {' '.join(argv)} ({version}) cannot build a shared library with {' '.join(BASE_FLAGS)}; "
            f"{_INSTALL_HINT}"
        )
    flags = list(BASE_FLAGS)
    if _try(argv, [*flags, "-march=native"], trivial):
        flags.append("-march=native")
    omp_code = "#include <omp.h>\nint pl_probe(void) { return omp_get_max_threads(); }\n"
    openmp = _try(argv, [*flags, "-fopenmp"], omp_code, "pl_probe")
    if openmp:
        flags.append("-fopenmp")
    simd_code = "void f(int n, float *restrict a) {\n#pragma omp simd\nfor (int i = 0; i < n; i++) a[i] += 1;\n}\n"
    openmp_simd = openmp or _try(argv, [*flags, "-fopenmp-simd", "-Werror"], simd_code)
    if openmp_simd and not openmp:
        flags.append("-fopenmp-simd")
    float16 = _try(argv, flags, "_Float16 h(float x) { return (_Float16)x; }\n")
    return Toolchain(argv, path, version, tuple(flags), openmp, openmp_simd, float16, _vector_math())


def _vector_math() -> frozenset[str]:
    """Math functions libmvec provides in every x86-64 SIMD width, for float and double."""
    if platform.machine() not in ("x86_64", "AMD64") or platform.system() != "Linux":
        return frozenset()
    name = ctypes.util.find_library("mvec")
    if name is None:
        return frozenset()
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return frozenset()
    out = set()
    for b in BUILTINS.values():
        fn = b.libm
        if fn is None:
            continue
        arity = "v" * b.arity
        names = [f"_ZGV{isa}N{n32}{arity}_{fn}f" for isa, n32 in zip("bcde", (4, 8, 8, 16))]
        names += [f"_ZGV{isa}N{n64}{arity}_{fn}" for isa, n64 in zip("bcde", (2, 4, 4, 8))]
        if all(hasattr(lib, n) for n in names):
            out.add(fn)
    return frozenset(out)
