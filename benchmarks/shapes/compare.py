"""How many dims each shape-inference tool resolves on the model suite, against the shapes that actually run.

    python benchmarks/shapes/compare.py                       # every model in benchmarks/models/suite.json
    python benchmarks/shapes/compare.py --models bert_encoder,yolo_nms
    python benchmarks/shapes/compare.py path/to/model.onnx    # its cases from path/to/model.npz
    python benchmarks/shapes/compare.py --guess-output-rank   # ORT's guess_output_rank=True
    python benchmarks/shapes/compare.py --same-process        # every tool in this process (to debug)

Per model: each stored case runs in pliant's reference interpreter, which
records the shape of every named value (inside If/Loop/Scan bodies too);
then onnx's ``infer_shapes(data_prop=True)``, onnxruntime's symbolic shape
inference (``auto_merge=True``) and pliant's RDP (once
``pliant.analysis.rdp.analyze_json`` exists) name their shapes, each
(model, tool) in a fresh process of its own so that no tool sees another's
process state (sympy's caches, module globals), and
``pliant.analysis.peers.score`` counts the observed dims each one resolves
(an int equal to every run, or an expression of the input symbols that
evaluates to every run) and the dims it gets wrong. A tool's time is measured
inside its process (process start and imports not counted). Writes
``benchmarks/results/shapes.{md,json}`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pliant.analysis import peers
from pliant.bench.machine import describe_machine
from pliant.bench.spec import load_case, load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "models"
RESULTS = ROOT / "benchmarks" / "results"
TITLES = {"onnx-data_prop": "onnx data_prop", "ort-symbolic": "ORT symbolic", "pliant": "pliant"}
_FEED_KEY = re.compile(r"^c(\d+)\.in\.(.+)$")

Cases = list[tuple[str, Mapping[str, Any]]]


def suite_models(names: Sequence[str] | None) -> list[tuple[str, Path, Cases]]:
    """The suite's models (all, or ``names``) with every stored case's feeds."""
    out = []
    for m in load_suite(SUITE, names):
        assert m.reference_path is not None
        cases: Cases = [(c.name, load_case(m.reference_path, i, m.spec)[0]) for i, c in enumerate(m.spec.cases)]
        out.append((m.name, m.onnx_path, cases))
    return out


def path_model(path: Path) -> tuple[str, Path, Cases]:
    """A model file and the cases in the ``.npz`` next to it (keys ``c<i>.in.<input>``, as the suite stores them)."""
    npz = path.with_suffix(".npz")
    if not npz.is_file():
        raise SystemExit(f"error: no cases for '{path}': expected '{npz}' with arrays named c<i>.in.<input name>")
    by_case: dict[int, dict[str, np.ndarray]] = {}
    with np.load(npz, allow_pickle=False) as z:
        for key in z.files:
            m = _FEED_KEY.match(key)
            if m:
                by_case.setdefault(int(m.group(1)), {})[m.group(2)] = z[key]
    if not by_case:
        raise SystemExit(f"error: '{npz}' holds no feeds (arrays named c<i>.in.<input name>)")
    return path.stem, path, [(f"case {i}", by_case[i]) for i in sorted(by_case)]


def run(models: list[tuple[str, Path, Cases]], guess_output_rank: bool,
        same_process: bool = False) -> list[peers.ModelComparison]:
    """Trace and score every model; each (model, tool) analysis in a fresh process unless ``same_process``."""
    tools: dict[str, peers.ToolFn] = dict(peers.TOOLS)
    tools["ort-symbolic"] = functools.partial(peers.ort_symbolic, guess_output_rank=guess_output_rank)
    out = []
    with contextlib.ExitStack() as stack:
        fresh = None if same_process else stack.enter_context(peers.FreshProcesses())
        for name, path, cases in models:
            start = time.perf_counter()
            result = peers.compare_model(name, onnx.load(str(path)), cases, tools, fresh=fresh)
            print(f"{name}: {len(result.actual.cases)} case(s), {result.values} values, "
                  f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
            out.append(result)
    return out


def to_json(results: list[peers.ModelComparison], machine: dict[str, Any], guess_output_rank: bool,
            same_process: bool = False) -> dict[str, Any]:
    models = []
    for r in results:
        tools: dict[str, Any] = {}
        for key, answer in r.tools.items():
            entry: dict[str, Any] = {"status": answer.status, "note": answer.note, "seconds": round(answer.seconds, 4)}
            s = r.scores.get(key)
            if s is not None:
                entry.update(resolved=s.resolved, percent=round(s.percent, 2), wrong=s.wrong, wrong_rank=s.wrong_rank,
                             unchecked=s.unchecked, wrong_examples=list(s.examples))
            tools[key] = entry
        models.append({"name": r.name, "cases": list(r.actual.cases), "case_errors": list(r.actual.errors),
                       "values": r.values, "dims": r.dims, "tools": tools})
    isolation = "one process for all" if same_process else "a fresh process per model and tool"
    return {"machine": machine,
            "settings": {"ort": {"auto_merge": True, "guess_output_rank": guess_output_rank}, "onnx": {"data_prop": True},
                         "isolation": isolation,
                         "seconds": "measured inside the tool's process; process start and imports not counted"},
            "models": models}


def _cell(r: peers.ModelComparison, key: str) -> tuple[str, str]:
    answer = r.tools.get(key)
    s = r.scores.get(key)
    if answer is None or s is None:
        return "n/a", "n/a"
    mark = {"ok": "", "partial": " †", "failed": " ✗"}.get(answer.status, "")
    return f"{s.percent:.1f}%{mark}", str(s.wrong)


def render_markdown(report: dict[str, Any], results: list[peers.ModelComparison]) -> str:
    m = report["machine"]
    v = m["versions"]
    keys = list(TITLES)
    out = ["# Symbolic shapes: resolved dims, pliant against its peers", ""]
    out.append(
        f"Measured {m['date']} on {m['cpu']} ({m['cores_usable']} usable cores), {m['os']}; pliant {v.get('pliant')} "
        f"(revision {m.get('revision')}), Python {v.get('python')}, NumPy {v.get('numpy')}, ONNX {v.get('onnx')}, "
        f"ONNX Runtime {v.get('onnxruntime')}, SymPy {v.get('sympy')}."
    )
    out.append("")
    ort = report["settings"]["ort"]
    out.append(
        "Each model runs every stored case in pliant's reference interpreter, which records the shape of every "
        "value an ONNX node produces (in If/Loop/Scan bodies too, once per iteration). *dims* counts those values' "
        "actual dims once each. A tool *resolves* a dim when it gives an integer equal to every run, or an expression "
        "whose symbols are all input dim_params (pliant: also its loop iteration symbols) that evaluates to every run "
        "under that case's input sizes. *wrong* counts the dims a tool contradicts (a wrong integer or expression, or "
        "every dim of a value whose rank it gets wrong): soundness bugs in that tool. Tools: "
        "`onnx.shape_inference.infer_shapes(data_prop=True)`; onnxruntime's "
        f"`SymbolicShapeInference.infer_shapes(auto_merge={ort['auto_merge']}, "
        f"guess_output_rank={ort['guess_output_rank']})`; pliant's RDP (`pliant.analysis.rdp.analyze_json`). "
        + ("Every tool ran in one process, one after the other."
           if report["settings"].get("isolation") == "one process for all" else
           "Each tool ran on each model in a fresh process of its own, so no tool saw another's process state "
           "(sympy's caches, module globals).")
    )
    out.append("")
    head = ["model", "cases", "values", "dims"] + [f"{TITLES[k]} %" for k in keys] + [f"{TITLES[k]} wrong" for k in keys]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for r in results:
        cells = [_cell(r, k) for k in keys]
        row = [r.name, str(len(r.actual.cases)), str(r.values), str(r.dims)] + [c[0] for c in cells] + [c[1] for c in cells]
        out.append("| " + " | ".join(row) + " |")
    total_dims = sum(r.dims for r in results)
    totals = ["**all**", str(sum(len(r.actual.cases) for r in results)), str(sum(r.values for r in results)), str(total_dims)]
    pct, wrong = [], []
    for k in keys:
        scored = [r.scores[k] for r in results if k in r.scores]
        if len(scored) != len(results) or not total_dims:
            pct.append("n/a")
            wrong.append("n/a")
        else:
            pct.append(f"{100.0 * sum(s.resolved for s in scored) / total_dims:.1f}%")
            wrong.append(str(sum(s.wrong for s in scored)))
    out.append("| " + " | ".join(totals + pct + wrong) + " |")
    out.append("")
    out.append("† partial: the tool stopped early and its partial answer is scored. ✗ failed: the tool crashed; "
               "nothing it said is scored. n/a: the tool is not available.")
    out.append("")
    timed = [k for k in keys if any(k in r.scores for r in results)]
    seconds = {k: sum(r.tools[k].seconds for r in results if k in r.tools) for k in timed}
    out.append("Analysis time over all models: " + ", ".join(f"{TITLES[k]} {seconds[k]:.2f} s" for k in timed) + ".")
    out.append("")
    if timed:
        out.append("Analysis time per model, in seconds, as each tool measured it inside its process "
                   "(starting the process and importing the tool not counted):")
        out.append("")
        out.append("| model | " + " | ".join(f"{TITLES[k]} s" for k in timed) + " |")
        out.append("|" + "---|" * (len(timed) + 1))
        for r in results:
            out.append(f"| {r.name} | " + " | ".join(
                f"{r.tools[k].seconds:.3f}" if k in r.scores else "n/a" for k in timed) + " |")
        out.append("")
    notes = _notes(results, keys)
    if notes:
        out += ["## Notes", ""] + notes + [""]
    return "\n".join(out)


def _notes(results: list[peers.ModelComparison], keys: list[str]) -> list[str]:
    lines: list[str] = []
    for k in keys:
        notes = sorted({r.tools[k].note for r in results if k in r.tools and r.tools[k].status == "skipped"})
        if notes:
            lines.append(f"- {TITLES[k]}: not run ({'; '.join(notes)}).")
    for r in results:
        for e in r.actual.errors:
            lines.append(f"- {r.name}: the interpreter could not run case {e}; that case is left out.")
        for k in keys:
            answer = r.tools.get(k)
            if answer is not None and answer.status in ("partial", "failed"):
                lines.append(f"- {r.name}, {TITLES[k]}: {answer.status}: {answer.note}")
            s = r.scores.get(k)
            if s is not None and s.wrong:
                lines.append(f"- {r.name}, {TITLES[k]}: {s.wrong} wrong dim(s), e.g. "
                             + "; ".join(f"`{e}`" for e in s.examples[:4]))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="*", type=Path, help="ONNX models with a .npz of cases next to them (default: the suite)")
    ap.add_argument("--models", help="comma-separated suite model names (default: all)")
    ap.add_argument("--guess-output-rank", action="store_true", help="run ORT's tool with guess_output_rank=True")
    ap.add_argument("--out", type=Path, default=RESULTS / "shapes", help="write OUT.md and OUT.json (default: %(default)s)")
    ap.add_argument("--no-write", action="store_true", help="only print the table")
    ap.add_argument("--same-process", action="store_true",
                    help="run every tool in this process instead of a fresh one per model and tool (tools then "
                         "share process state, so an answer can depend on what ran before it)")
    args = ap.parse_args(argv)
    if args.paths and args.models:
        ap.error("give model paths or --models, not both")
    models = [path_model(p) for p in args.paths] if args.paths else suite_models(
        args.models.split(",") if args.models else None)
    results = run(models, args.guess_output_rank, args.same_process)
    machine = describe_machine()
    machine["versions"].update(peers_versions())
    report = to_json(results, machine, args.guess_output_rank, args.same_process)
    text = render_markdown(report, results)
    print(text)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


def peers_versions() -> dict[str, str]:
    import sympy

    return {"sympy": sympy.__version__}


if __name__ == "__main__":
    sys.exit(main())
