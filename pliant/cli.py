"""The ``pliant`` command line: show, run, analyze, ops, demo (and tune, bench)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pliant.errors import PliantError
from pliant.ir.dims import Sym
from pliant.ir.types import OptionalType, SequenceType, TensorType, Type


class CLIError(PliantError):
    """A bad command-line argument."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except PliantError as e:
        msg = str(e)
        print(f"pliant: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pliant", description="A compiler and runtime for dynamic neural networks.")
    sub = p.add_subparsers(metavar="COMMAND")

    s = sub.add_parser("show", help="print a model's IR")
    s.add_argument("model", help="an ONNX file")
    s.add_argument("--full", action="store_true", help="print large constants in full (parseable text)")
    s.set_defaults(func=_show)

    r = sub.add_parser("run", help="run a model with the reference interpreter")
    r.add_argument("model", help="an ONNX file")
    r.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy", help="an input from a .npy file")
    r.add_argument("--dim", "-d", action="append", default=[], metavar="SYMBOL=N", help="the size of a symbolic dim (for --random)")
    r.add_argument("--random", action="store_true", help="make random values for the inputs not given with --input")
    r.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    r.add_argument("--save", metavar="OUT.npz", help="write the outputs to an .npz file")
    r.set_defaults(func=_run)

    a = sub.add_parser("analyze", help="symbolic shape analysis (RDP): shapes, dim shares, symbols, peak memory")
    a.add_argument("model", help="an ONNX file")
    a.add_argument("--json", action="store_true", help="print the analysis as JSON")
    a.add_argument("--all", action="store_true", help="list every value (the text report shows the first 50)")
    a.add_argument("--ir", action="store_true", help="print the IR with the inferred types instead of the report")
    a.add_argument("--dim", "-d", action="append", default=[], metavar="SYMBOL=N",
                   help="evaluate the peak memory at these input sizes")
    a.add_argument("--no-backward", action="store_true", help="forward propagation only")
    a.add_argument("--compiled", action="store_true",
                   help="report on the module pliant.compile runs (after its passes: fusion, shape chains...)")
    a.set_defaults(func=_analyze)

    o = sub.add_parser("ops", help="list the operators pliant defines")
    o.add_argument("--family", help="only this family (e.g. unary, control, shape)")
    o.set_defaults(func=_ops)

    d = sub.add_parser("demo", help="import and run the bundled dynamic model")
    d.set_defaults(func=_demo)

    from pliant.bench.cli import add_bench_command
    from pliant.kernels.cli import add_tune_command

    add_tune_command(sub)
    add_bench_command(sub)
    return p


def _show(args: argparse.Namespace) -> int:
    import pliant
    from pliant.ir.printer import print_module

    module = pliant.load(args.model)
    sys.stdout.write(print_module(module, elide_tensors=not args.full))
    return 0


def _analyze(args: argparse.Namespace) -> int:
    import json

    import pliant
    from pliant.analysis.rdp import analyze
    from pliant.analysis.report import analysis_json, text_report
    from pliant.ir.dims import compile_dims, parse_dim
    from pliant.ir.printer import print_module

    module = pliant.load(args.model)
    analysis = analyze(module, backward=not args.no_backward)
    if args.compiled:
        # NOTE: the module pliant.compile runs (after its passes), so the planned peak is the one
        # CompiledModel.report() gives for the same sizes
        exe = pliant.compile(module, specialize=False)
        module, analysis = exe.module, exe.analysis
    if args.ir:
        sys.stdout.write(print_module(module, elide_tensors=True))
        return 0
    doc = analysis_json(module, analysis)
    dims = {k: _int_arg(k, v, "--dim") for k, v in _parse_assignments(args.dim, "--dim").items()}
    if dims:
        unknown = sorted(set(dims) - set(analysis.input_symbols))
        if unknown:
            raise CLIError(f"--dim {unknown[0]}: the model has no input symbol '{unknown[0]}' "
                           f"(its symbols: {', '.join(analysis.input_symbols) or 'none'})")
        peak = doc["summary"]["peak_memory_bytes"]
        d = parse_dim(str(peak))
        try:
            value = compile_dims([d])(dims)[0]
        except KeyError as e:
            raise CLIError(f"the peak memory {peak} needs a size for {e.args[0]}: add --dim {e.args[0]}=N") from None
        doc["summary"]["peak_memory_at"] = {"dims": dims, "bytes": value}
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    sys.stdout.write(text_report(module, analysis, doc, limit=None if args.all else 50))
    if dims:
        at = doc["summary"]["peak_memory_at"]
        print(f"peak activation memory at {', '.join(f'{k}={v}' for k, v in dims.items())}: {at['bytes']} bytes")
    return 0


def _int_arg(name: str, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise CLIError(f"bad {what} {name}={value}: the size must be an integer") from None


def _parse_assignments(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise CLIError(f"bad {what} '{item}': write it as NAME=VALUE")
        out[name] = value
    return out


def _run(args: argparse.Namespace) -> int:
    import pliant

    module = pliant.load(args.model)
    fn = module.entry
    dims: dict[str, int] = {}
    for k, v in _parse_assignments(args.dim, "--dim").items():
        try:
            dims[k] = int(v)
        except ValueError:
            raise CLIError(f"bad --dim {k}={v}: the size must be an integer") from None
    feeds: dict[str, Any] = {}
    for name, path in _parse_assignments(args.input, "--input").items():
        if name not in fn.input_names:
            raise CLIError(f"--input {name}: the model has no input '{name}' (its inputs: {', '.join(fn.input_names)})")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CLIError(f"--input {name}: cannot read '{path}' as a .npy file: {e}") from None
    missing = [n for n in fn.input_names if n not in feeds]
    if missing and not args.random:
        raise CLIError(f"no value for input(s) {', '.join(missing)}: give --input NAME=FILE.npy or --random")
    rng = np.random.default_rng(args.seed)
    for input_name, arg in zip(fn.input_names, fn.inputs):
        if input_name not in feeds:
            feeds[input_name] = random_value(input_name, arg.type, dims, rng)
    t0 = time.perf_counter()
    outs = pliant.interpret(module, feeds)
    dt = time.perf_counter() - t0
    for name, value in outs.items():
        print(f"{name}: {describe_value(value)}")
    print(f"ran in {dt * 1e3:.2f} ms (reference interpreter)")
    if args.save:
        arrays = {k: np.asarray(v) for k, v in outs.items() if isinstance(v, np.ndarray)}
        for k, v in outs.items():
            if isinstance(v, list):
                for i, elem in enumerate(v):
                    arrays[f"{k}.{i}"] = np.asarray(elem)
        np.savez(args.save, **arrays)  # type: ignore[arg-type]
        print(f"saved {len(arrays)} array(s) to {args.save}")
    return 0


def random_value(name: str, t: Type, dims: dict[str, int], rng: np.random.Generator) -> Any:
    """A random value of type ``t``; symbolic dims take their sizes from ``dims``."""
    if isinstance(t, OptionalType):
        return random_value(name, t.elem, dims, rng)
    if isinstance(t, SequenceType):
        return [random_value(name, t.elem, dims, rng) for _ in range(2)]
    if not isinstance(t, TensorType) or t.dtype is None or t.shape is None:
        raise CLIError(f"input '{name}' has type {t}; --random needs a known dtype and rank: pass it with --input")
    shape = []
    for d in t.shape:
        if isinstance(d, int):
            shape.append(d)
        elif isinstance(d, Sym):
            size = d.evaluate(dims)
            if size is None:
                need = sorted(d.symbols - set(dims))
                raise CLIError(f"input '{name}' ({t}) has symbolic dim '{d}': give {' '.join(f'--dim {s}=N' for s in need)}")
            shape.append(size)
        else:
            raise CLIError(f"input '{name}' ({t}) has an unknown dim: pass it with --input")
    dt = t.dtype.numpy
    if t.dtype.is_float:
        return rng.standard_normal(shape).astype(dt)
    if t.dtype.is_int:
        return rng.integers(0, 10, size=shape).astype(dt)
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if dt == np.object_:
        out = np.empty(shape, dtype=object)
        out.reshape(-1)[:] = [f"s{k}" for k in range(out.size)]
        return out
    raise CLIError(f"input '{name}' has dtype {t.dtype.short}, for which --random cannot make values")


def describe_value(v: Any) -> str:
    if v is None:
        return "empty optional"
    if isinstance(v, list):
        return f"sequence of {len(v)}: [" + "; ".join(describe_value(e) for e in v[:4]) + (" ..." if len(v) > 4 else "") + "]"
    a = np.asarray(v)
    head = f"{a.dtype} {list(a.shape)}"
    if a.size == 0:
        return head + " (empty)"
    if a.dtype.kind in "fiu" and a.dtype.isnative:
        f = a.astype(np.float64)
        stats = f"min {f.min():.4g} max {f.max():.4g} mean {f.mean():.4g}"
        sample = np.array2string(a.reshape(-1)[:6], precision=4, separator=", ")
        return f"{head} {stats} first {sample}"
    return f"{head} first {a.reshape(-1)[:6].tolist()}"


def _ops(args: argparse.Namespace) -> int:
    from pliant.ops.registry import all_ops

    defs = [d for d in all_ops() if args.family is None or args.family in d.family]
    if not defs:
        raise CLIError(f"no ops in family '{args.family}'")
    for d in defs:
        rule = "own shape rule" if d.infer is not None else "ONNX shape inference"
        fam = ",".join(sorted(d.family))
        print(f"{d.qualname:40s} {d.dynamism.value:7s} {fam:14s} {rule}" + (f"  ({d.note})" if d.note else ""))
    print(f"{len(defs)} ops")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pliant.demo import run_demo

    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
