"""``pliant tune FILE.tc --sizes M=512,N=512,K=512``: autotune a kernel from the command line.

``add_tune_command(subparsers)`` registers the subcommand on the ``pliant``
argument parser; the command sets ``func`` to a function of the parsed
arguments returning the exit status, and raises ``PliantError`` subclasses for
bad input (the ``pliant`` entry point prints them).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pliant.kernels.errors import TCError


def add_tune_command(subparsers: Any) -> None:
    """Register ``tune`` on ``subparsers`` (the result of ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "tune",
        help="autotune a kernel-language (.tc) kernel at given sizes",
        description="Search schedules for a kernel at the given sizes, time the library path for contractions, "
        "and store the best choices in the cache (PLIANT_CACHE_DIR, default ~/.cache/pliant), where later "
        "calls with these sizes find them. Inputs are random; integer inputs lie in [0, smallest size).",
    )
    p.add_argument("file", help="a file of kernel-language source")
    p.add_argument("--sizes", required=True, metavar="M=512,N=512", help="the value of every size symbol")
    p.add_argument("--kernel", help="which kernel, when the file defines several")
    p.add_argument("--generations", type=int, default=3, help="generations of the genetic search (default 3)")
    p.add_argument("--population", type=int, default=8, help="schedules per generation (default 8)")
    p.add_argument("--top-k", type=int, default=3, help="schedules kept in the cache (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of the random inputs")
    p.add_argument("--force", action="store_true", help="tune again even if the cache has a result")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_tune)


def parse_sizes(text: str) -> dict[str, int]:
    """``"M=512,N=256"`` -> ``{"M": 512, "N": 256}``; raises ``TCError`` on bad text."""
    out: dict[str, int] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            n = int(value)
        except ValueError:
            n = -1
        if not sep or not name.strip() or n < 0:
            raise TCError(f"bad size '{item}': write NAME=N with N a non-negative integer, e.g. M=512,N=512")
        out[name.strip()] = n
    return out


def random_inputs(kernel: Any, sizes: dict[str, int], seed: int | np.random.Generator,
                  int_range: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Random arrays for ``kernel``'s inputs at ``sizes``.

    Integers are drawn from ``int_range`` (default [0, smallest size), so they are valid indices).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    low, high = int_range if int_range is not None else (0, max(1, min(sizes.values(), default=1)))
    out = []
    for t in kernel.signature.inputs:
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in t.dims)
        dt = t.dtype.numpy
        if dt.kind == "f":
            out.append(rng.standard_normal(shape).astype(dt))
        elif dt.kind == "b":
            out.append(rng.random(shape) < 0.5)
        else:
            out.append(rng.integers(low, high, shape).astype(dt))
    return out


def run_tune(args: argparse.Namespace) -> int:
    """The ``tune`` command: prints the tuning result; returns the exit status."""
    from pliant.tc import define_all

    try:
        source = Path(args.file).read_text()
    except OSError as e:
        raise TCError(f"cannot read kernel file '{args.file}': {e.strerror or e}") from e
    kernels = define_all(source)
    if args.kernel is None:
        if len(kernels) != 1:
            raise TCError(
                f"'{args.file}' defines {len(kernels)} kernels ({', '.join(kernels)}): choose one with --kernel"
            )
        (kernel,) = kernels.values()
    elif args.kernel in kernels:
        kernel = kernels[args.kernel]
    else:
        raise TCError(f"'{args.file}' defines no kernel '{args.kernel}' (it defines {', '.join(kernels)})")
    sizes = parse_sizes(args.sizes)
    missing = [s for s in kernel.sizes if s not in sizes]
    if missing:
        raise TCError(
            f"kernel '{kernel.name}' needs sizes {', '.join(kernel.sizes)}; --sizes lacks {', '.join(missing)}"
        )
    extra = [s for s in sizes if s not in kernel.sizes]
    if extra:
        raise TCError(f"kernel '{kernel.name}' has no size {', '.join(extra)} (its sizes: {', '.join(kernel.sizes)})")
    result = kernel.autotune(
        *random_inputs(kernel, sizes, args.seed),
        generations=args.generations,
        population=args.population,
        top_k=args.top_k,
        seed=args.seed,
        progress=not args.no_progress,
        force=args.force,
    )
    print(result)
    return 0
