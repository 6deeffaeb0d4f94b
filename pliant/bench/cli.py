"""``pliant bench``: run the dynamic model suite, or one ONNX model, on pliant and its peers.

    pliant bench                                  # the whole suite, all systems, 2 threads
    pliant bench --models bert_encoder,yolo_nms --systems pliant,onnxruntime
    pliant bench model.onnx --dim N=1,8 --dim L=128

Writes ``<name>.md``, ``<name>.json`` and ``<name>.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from pliant.bench.spec import BenchError

SUITE_SYSTEMS = "pliant,onnxruntime,torch-eager,torch-compile"
USER_SYSTEMS = "pliant,onnxruntime"


def add_bench_command(subparsers: Any) -> None:
    """Register ``bench`` on an argparse subparsers object (from ``ArgumentParser.add_subparsers``)."""
    b = subparsers.add_parser(
        "bench", help="benchmark pliant against ONNX Runtime and PyTorch",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(b)


def configure_parser(b: argparse.ArgumentParser) -> None:
    b.add_argument("model", nargs="?", help="an ONNX file to benchmark with random inputs (default: the suite)")
    b.add_argument("--suite", metavar="DIR", help="the suite directory (default: benchmarks/models)")
    b.add_argument("--models", metavar="A,B", help="only these suite models")
    b.add_argument("--cases", metavar="A,B", help="only the cases with these names")
    b.add_argument("--systems", metavar="A,B",
                   help=f"systems to run (default: {SUITE_SYSTEMS}; for a single model {USER_SYSTEMS})")
    b.add_argument("--threads", default="2", metavar="N[,N]", help="thread counts, one full run each (default 2)")
    b.add_argument("--dim", "-d", action="append", default=[], metavar="SYM=N[,N]",
                   help="sizes of a symbolic dim of the model's inputs; one case per combination")
    b.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy", help="an input from a file")
    b.add_argument("--seed", type=int, default=0, help="seed for random inputs (default 0)")
    b.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance for a single model's outputs")
    b.add_argument("--rtol", type=float, default=1e-3, help="tolerance relative to max|reference|")
    b.add_argument("--out", metavar="DIR", default="benchmarks/results", help="where results go (default benchmarks/results)")
    b.add_argument("--name", metavar="STEM", help="file name stem of the results (default: suite, or the model's name)")
    b.add_argument("--quick", action="store_true", help="few repetitions: checks that everything runs, figures are rough")
    b.add_argument("--min-time", type=float, metavar="S", help="time each case for at least S seconds (default 1)")
    b.add_argument("--max-time", type=float, metavar="S", help="stop repeating a case after S seconds (default 4)")
    b.add_argument("--min-reps", type=int, metavar="N", help="time each case at least N times (default 10)")
    b.add_argument("--warmup", type=float, metavar="S", help="warm-up seconds per case (default 0.3)")
    b.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="run every system on every model N times, alternating; each case reports its median round, "
                        "and the geometric mean is given again over each system's fastest round")
    b.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="limit for one system on one model, all its cases (default 300)")
    b.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE (which registers more systems with pliant.bench.register_system)")
    b.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    b.add_argument("--list", action="store_true", help="list the suite's models and the known systems, then stop")
    b.add_argument("--note", metavar="TEXT", help="a remark printed in the report (e.g. what else ran on the machine)")
    b.add_argument("--render", metavar="RESULTS.json", help="write the Markdown and PNG again from a results file, run nothing")
    b.set_defaults(func=run_bench_command)


def default_suite_dir() -> Path:
    for candidate in (Path.cwd() / "benchmarks" / "models", Path(__file__).resolve().parents[2] / "benchmarks" / "models"):
        if (candidate / "suite.json").is_file():
            return candidate
    raise BenchError("no benchmark suite found (looked for benchmarks/models/suite.json here and beside pliant): pass --suite DIR")


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        raise BenchError(f"bad {what} '{text}': write integers separated by commas") from None
    if not values or any(v <= 0 for v in values):
        raise BenchError(f"bad {what} '{text}': give one or more positive integers")
    return values


def _assignments(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise BenchError(f"bad {what} '{item}': write it as NAME=VALUE")
        out[name] = value
    return out


def run_bench_command(args: argparse.Namespace) -> int:
    from pliant.bench.harness import BenchConfig, run_benchmark
    from pliant.bench.measure import TimingPolicy
    from pliant.bench.report import write_report
    from pliant.bench.spec import load_suite
    from pliant.bench.systems import import_plugins, system_names
    from pliant.bench.usermodel import prepare_user_model

    import_plugins(args.plugin)
    policy = TimingPolicy.quick() if args.quick else TimingPolicy()
    overrides = {"min_time_s": args.min_time, "max_time_s": args.max_time, "min_reps": args.min_reps, "warmup_s": args.warmup}
    policy = TimingPolicy.from_json({**policy.to_json(), **{k: v for k, v in overrides.items() if v is not None}})
    threads = tuple(_ints(args.threads, "--threads"))
    if args.rounds < 1:
        raise BenchError(f"--rounds must be at least 1, got {args.rounds}")
    systems = _csv(args.systems) or _csv(USER_SYSTEMS if args.model else SUITE_SYSTEMS)
    unknown = [s for s in systems if s not in system_names()]
    if unknown:
        raise BenchError(f"unknown system(s) {', '.join(unknown)} (known: {', '.join(system_names())}; add one with --plugin)")

    if args.render:
        return _render(Path(args.render), args)
    if args.list:
        for m in load_suite(Path(args.suite) if args.suite else default_suite_dir()):
            print(f"{m.name:18s} {m.spec.title}: {m.spec.dynamism}; cases {', '.join(c.name for c in m.spec.cases)}")
        print("systems: " + ", ".join(system_names()))
        return 0

    with tempfile.TemporaryDirectory(prefix="pliant-bench-feeds-") as tmp:
        if args.model:
            if args.models:
                raise BenchError("--models picks suite models; it cannot be combined with a model file")
            dims = {k: _ints(v, f"--dim {k}") for k, v in _assignments(args.dim, "--dim").items()}
            inputs = {k: Path(v) for k, v in _assignments(args.input, "--input").items()}
            model, reference = prepare_user_model(args.model, Path(tmp), dims=dims, inputs=inputs, seed=args.seed,
                                                  atol=args.atol, rtol=args.rtol)
            models = [model]
            title = f"pliant bench: {Path(args.model).name}"
            reference_text = f"{reference} outputs on the same random inputs"
            stem = args.name or model.name
        else:
            if args.dim or args.input:
                raise BenchError("--dim and --input apply to a model file: the suite's models bring their own inputs")
            models = load_suite(Path(args.suite) if args.suite else default_suite_dir(), _csv(args.models) or None)
            title = "pliant benchmark: the dynamic model suite"
            reference_text = "PyTorch eager (float32) outputs stored by the export script"
            stem = args.name or "suite"
        config = BenchConfig(systems=tuple(systems), threads=threads, policy=policy, timeout_s=args.timeout,
                             plugins=tuple(args.plugin), cases=tuple(_csv(args.cases)), title=title,
                             reference=reference_text, rounds=args.rounds)
        report = run_benchmark(models, config)
    if args.note:
        report["settings"]["note"] = args.note
    for path in write_report(report, args.out, stem, plot=not args.no_plot):
        print(f"wrote {path}")
    bad = [c for c in report["cells"] if c["status"] == "mismatch"]
    if bad:
        print(f"{len(bad)} cell(s) with outputs outside tolerance: see the report", file=sys.stderr)
    return 0


def _render(path: Path, args: argparse.Namespace) -> int:
    import json

    from pliant.bench.report import write_report

    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"cannot read results '{path}': {e}") from None
    if args.note:
        report["settings"]["note"] = args.note
    out = Path(args.out) if args.out != "benchmarks/results" else path.parent
    for written in write_report(report, out, args.name or path.stem, plot=not args.no_plot):
        print(f"wrote {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pliant.bench``: the same command, for use before ``pliant bench`` is wired in."""
    from pliant.errors import PliantError

    parser = argparse.ArgumentParser(prog="pliant bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except PliantError as e:
        print(f"pliant bench: error: {e}", file=sys.stderr)
        return 2
