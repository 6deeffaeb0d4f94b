"""The systems the harness runs: pliant and its peers, behind one small interface.

A :class:`System` is created in a worker process that runs nothing else. Its
``load`` builds whatever runs the model (a pliant Module, an ONNX Runtime
session, a PyTorch module, a compiled wrapper) and returns a :class:`Runner`;
the harness times ``load`` and every call of the runner separately.

More peers plug in with :func:`register_system` in a module the harness is told
to import (``pliant bench --plugin mypkg.mysystem``)::

    class MySystem(System):
        name = "mine"
        ...
    register_system(MySystem)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pliant.bench.spec import ModelSpec, SuiteModel
from pliant.errors import PliantError

Runner = Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]


class SystemUnavailable(PliantError):
    """A system cannot run here (a package is missing) or cannot run this model (no PyTorch definition)."""


class System(ABC):
    """One way of running a model. Subclasses set ``name`` and ``description``."""

    name: str = ""
    description: str = ""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    @staticmethod
    def thread_env(threads: int) -> dict[str, str]:
        """Environment variables the worker process starts with (thread pools read them at import)."""
        n = str(threads)
        return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}

    def import_runtime(self) -> None:  # noqa: B027  (optional hook)
        """Import the system's libraries, so the idle baseline memory includes them."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """The versions of what this system runs on."""

    @abstractmethod
    def load(self, model: SuiteModel) -> Runner:
        """Build what runs ``model``; returns a function from feeds to outputs by name."""

    def settings(self) -> dict[str, Any]:
        """What was configured, for the record (threads and the like)."""
        return {"threads": self.threads}

    def allocator_peak(self, runner: Runner, feeds: Mapping[str, np.ndarray]) -> int | None:
        """The system allocator's own peak for one call, in bytes, where it reports one."""
        return None

    def notes(self) -> dict[str, Any]:
        """Anything learnt while running that a reader should know (recompiles, graph breaks)."""
        return {}


_REGISTRY: dict[str, type[System]] = {}


def register_system(cls: type[System]) -> type[System]:
    """Make ``cls`` available to the harness under ``cls.name`` (usable as a class decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def system_names() -> list[str]:
    return list(_REGISTRY)


def get_system(name: str) -> type[System]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SystemUnavailable(f"unknown system '{name}' (known: {', '.join(_REGISTRY)}; add one with --plugin)") from None


def import_plugins(modules: list[str]) -> None:
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise SystemUnavailable(f"cannot import plugin module '{m}': {e}") from None


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


@register_system
class PliantInterpreter(System):
    name = "pliant-interpreter"
    description = "pliant's reference NumPy interpreter (pliant.load + pliant.interpret)"

    def import_runtime(self) -> None:
        import pliant  # noqa: F401

    def versions(self) -> dict[str, str]:
        import pliant

        return {"pliant": pliant.__version__, "numpy": np.__version__}

    def load(self, model: SuiteModel) -> Runner:
        import pliant

        module = pliant.load(str(model.onnx_path))

        def run(feeds: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
            return pliant.interpret(module, feeds)

        return run

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, "how": "BLAS/OpenMP thread variables; the interpreter itself is single-threaded"}

    def allocator_peak(self, runner: Runner, feeds: Mapping[str, np.ndarray]) -> int | None:
        import tracemalloc

        # NOTE: NumPy reports its buffers to tracemalloc, so this is the interpreter's peak of live arrays
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            runner(feeds)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


@register_system
class PliantCompiled(PliantInterpreter):
    name = "pliant"
    description = "pliant's compiled execution (pliant.compile: shape analysis, passes, host program, native kernels)"

    def load(self, model: SuiteModel) -> Runner:
        import pliant

        exe = pliant.compile(str(model.onnx_path), threads=self.threads)

        def run(feeds: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
            out = exe.run(feeds)
            # NOTE: a hot input signature gets a specialised version built in the background; waiting for it
            # (during warm-up) keeps that compile out of the timed runs
            exe.wait_for_versions()
            return out

        return run

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, "how": "pliant.compile(threads=...): BLAS/OpenMP thread variables"}


@register_system
class OnnxRuntime(System):
    name = "onnxruntime"
    description = "ONNX Runtime, CPU execution provider, all graph optimizations"

    def import_runtime(self) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise SystemUnavailable(f"onnxruntime is not installed ({e}): pip install 'pliant[bench]'") from None

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": _version("onnxruntime")}

    def load(self, model: SuiteModel) -> Runner:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(model.onnx_path), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]

        def run(feeds: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
            return dict(zip(names, sess.run(names, dict(feeds))))

        return run

    def settings(self) -> dict[str, Any]:
        return {"intra_op_num_threads": self.threads, "inter_op_num_threads": 1, "execution_mode": "sequential",
                "graph_optimization_level": "all", "spinning": "default (on)"}


def import_source(path: Path) -> Any:
    """Import a suite model's PyTorch definition (its directory goes on ``sys.path`` for shared helpers)."""
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = f"pliant_bench_model_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemUnavailable(f"cannot import the PyTorch definition '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Torch(System):
    def import_runtime(self) -> None:
        try:
            import torch
        except ImportError as e:
            raise SystemUnavailable(f"torch is not installed ({e}): pip install 'pliant[bench]'") from None
        torch.set_num_threads(self.threads)
        torch.set_num_interop_threads(1)

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__}

    def settings(self) -> dict[str, Any]:
        return {"torch.set_num_threads": self.threads, "interop_threads": 1, "mode": "torch.inference_mode"}

    def module(self, model: SuiteModel) -> Any:
        if model.source is None or not model.source.is_file():
            raise SystemUnavailable(f"'{model.name}' has no PyTorch definition: only suite models run on PyTorch")
        return import_source(model.source).build()

    def runner(self, fn: Callable[..., Any], spec: ModelSpec) -> Runner:
        import torch

        names = [i.name for i in spec.inputs]

        def run(feeds: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]
            with torch.inference_mode():
                out = fn(*args)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            return {name: o.numpy() for name, o in zip(spec.outputs, outs)}

        return run


@register_system
class TorchEager(_Torch):
    name = "torch-eager"
    description = "PyTorch eager: the model's own Python (control flow runs in Python)"

    def load(self, model: SuiteModel) -> Runner:
        return self.runner(self.module(model), model.spec)


@register_system
class TorchCompile(_Torch):
    name = "torch-compile"
    description = "torch.compile(dynamic=True), inductor, graph breaks allowed; a fresh compile cache per run"

    def import_runtime(self) -> None:
        super().import_runtime()
        import logging

        # NOTE: dynamo logs every graph break as a warning; they are counted in notes() instead
        logging.getLogger("torch._dynamo").setLevel(logging.ERROR)

    def load(self, model: SuiteModel) -> Runner:
        import torch

        compiled = torch.compile(self.module(model), dynamic=True)
        return self.runner(compiled, model.spec)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "backend": "inductor", "dynamic": True, "fullgraph": False, "cache": "fresh per worker"}

    def notes(self) -> dict[str, Any]:
        try:
            from torch._dynamo.utils import counters
        except ImportError:
            return {}
        breaks = sum(counters["graph_break"].values())
        return {
            "graph_breaks": int(breaks),
            "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
            "frames_compiled": int(counters["frames"].get("ok", 0)),
            "recompiles": int(counters["recompiles"].get("total", 0)) if "recompiles" in counters else None,
        }
