"""The benchmark report: the JSON record, the Markdown tables, and the files they go to.

The report (a plain dict, JSON-ready) holds ``machine``, ``settings``, ``load``,
``models``, ``runs`` (one per worker: versions, settings, load time, idle memory,
notes) and ``cells`` (one per model, case, system and thread count: status,
latency statistics in seconds, first call, peak memory, output difference).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MB = 1e6
MISMATCH = "✗"
LOADED = "*"
LOADED_CORES = 0.5  # other processes' average busy cores during a cell above which the cell is marked


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}" if abs(x) < 10 else f"{x:.0f}"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _index(report: dict[str, Any]) -> dict[tuple[int, str, str, str], dict[str, Any]]:
    return {(c["threads"], c["model"], c["case"], c["system"]): c for c in report["cells"]}


def _rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(model, case, path) in suite order."""
    return [(m["name"], c["name"], c.get("path", "")) for m in report["models"] for c in m["cases"]]


def median_s(cell: dict[str, Any] | None) -> float | None:
    """A cell's median latency, or None when it has none (failed, unavailable, timed out)."""
    if not cell or cell.get("status") not in ("ok", "mismatch") or "latency" not in cell:
        return None
    return float(cell["latency"]["median"])


def fastest_round_s(cell: dict[str, Any] | None) -> float | None:
    """The median latency of a cell's fastest round (its own median without rounds), or None."""
    if median_s(cell) is None:
        return None
    assert cell is not None
    medians = [float(r["median"]) for r in cell.get("rounds") or [] if r.get("median") is not None
               and r.get("status") in ("ok", "mismatch")]
    return min(medians) if medians else median_s(cell)


def ratio_to(report: dict[str, Any], baseline: str,
             measure: Callable[[dict[str, Any] | None], float | None] | None = None) -> dict[tuple[int, str, str, str], float]:
    """measure(system) / measure(baseline) per (threads, model, case, system); the measure is the median latency
    unless given (``peak_memory`` for memory)."""
    of = measure or median_s
    idx = _index(report)
    out = {}
    for (t, m, case, s), cell in idx.items():
        a, b = of(cell), of(idx.get((t, m, case, baseline)))
        if a is not None and b:
            out[(t, m, case, s)] = a / b
    return out


def peak_memory(cell: dict[str, Any] | None) -> float | None:
    """A cell's resident-set peak above the idle worker and the case's data, in bytes (None if not measured)."""
    if cell is None or cell.get("status") != "ok" or cell.get("peak_rss_above_idle") is None:
        return None
    return float(cell["peak_rss_above_idle"])


def _short_status(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return ""
    return {"failed": "failed", "unavailable": "n/a", "timeout": "timeout", "crashed": "crashed"}.get(cell["status"], cell["status"])


def _latency_cell(cell: dict[str, Any] | None) -> str:
    med = median_s(cell)
    if med is None:
        return _short_status(cell)
    assert cell is not None
    lat = cell["latency"]
    text = f"{_ms(med)} [{_ms(lat['min'])}-{_ms(lat['max'])}]"
    if _other_cores(cell) > LOADED_CORES:
        text += LOADED
    return text + (f" {MISMATCH}" if cell["status"] == "mismatch" else "")


def _other_cores(cell: dict[str, Any] | None) -> float:
    return float(((cell or {}).get("cpu") or {}).get("other_cores", 0.0))


def _failures(report: dict[str, Any]) -> list[str]:
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for c in report["cells"]:
        if c["status"] in ("failed", "timeout", "crashed", "unavailable"):
            groups[(c["system"], c["status"], c.get("error", ""))].append(f"{c['model']} {c['case']}")
    out = []
    for (system, status, error), where in sorted(groups.items()):
        models = sorted({w.split(" ", 1)[0] for w in where})
        what = ", ".join(models) if len(where) > len(models) else ", ".join(where)
        out.append(f"- **{system}** {status} ({len(where)} cells: {what}): {error}")
    for c in report["cells"]:
        if c["status"] == "mismatch":
            problems = "; ".join(f"{k}: {v}" for k, v in c.get("diff", {}).get("mismatches", {}).items())
            path = f" (path {c.get('path')}, reference {c.get('expected_path')})" if c.get("path") != c.get("expected_path") else ""
            out.append(f"- **{c['system']}** output mismatch on {c['model']} {c['case']}{path}: {problems}")
    return out


def _load_sentence(report: dict[str, Any]) -> str:
    load = report.get("load", {})
    cores = report["machine"].get("cores_usable") or report["machine"].get("cores")
    other = load.get("other_cores")
    if other is None:
        return ""
    per_cell = [c["cpu"]["other_cores"] for c in report["cells"] if c.get("cpu")]
    worst = max(per_cell, default=other)
    text = (f"**Load from other processes during the run:** {other:.2f} cores busy on average (of {cores}), "
            f"up to {worst:.2f} during a single cell; steal {load.get('steal_cores', 0):.2f} cores; "
            f"load average {load.get('loadavg_start')} at the start, {load.get('loadavg_end')} at the end.")
    if other > 0.25:
        text += (" The machine was shared: absolute figures are inflated and noisy, so compare systems through the "
                 "ratios measured in this same run, and do not read a difference under ~20% as a result.")
    return text


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: settings, then latency, ratio, first-call, memory and correctness tables."""
    m = report["machine"]
    st = report["settings"]
    v = m["versions"]
    systems = st["systems"]
    pol = st["policy"]
    out = [f"# {report['title']}", ""]
    out.append(
        f"Measured {m['date']} on {m['cpu']} ({m['cores_usable']} usable cores"
        f"{', virtualized' if m.get('virtualized') else ''}{', ' + '/'.join(m['simd']) if m.get('simd') else ''}, "
        f"{m['memory_gib']} GiB), {m['os']}; pliant {v.get('pliant')} (revision {m.get('revision')}), "
        f"Python {v.get('python')}, NumPy {v.get('numpy')}, ONNX {v.get('onnx')}, ONNX Runtime {v.get('onnxruntime')}, "
        f"PyTorch {v.get('torch')}."
    )
    out.append("")
    out.append(
        f"Threads fixed per run (thread counts: {', '.join(map(str, st['threads']))}) for every system. {st['isolation']}. "
        f"Latency: milliseconds, median [min-max] over at least {pol['min_reps']} runs and {pol['min_time_s']} s "
        f"(at most {pol['max_time_s']} s) after {pol['warmup_s']} s of warm-up"
        + (f"; each system ran {st['rounds']} times per model, alternating with the others, and a case shows its "
           f"median round" if st.get("rounds", 1) > 1 else "")
        + f". Reference outputs: {st['reference']}; "
        f"{MISMATCH} marks outputs outside the model's tolerance; {LOADED} marks a cell during which other processes "
        f"kept more than {LOADED_CORES} cores busy on average (its figures are the least trustworthy)."
    )
    out.append("")
    for run_desc in _system_descriptions(report):
        out.append(run_desc)
    out.append("")
    load = _load_sentence(report)
    if load:
        out += [load, ""]
    if st.get("note"):
        out += [f"**Note:** {st['note']}", ""]
    idx = _index(report)
    rows = _rows(report)
    base = "onnxruntime" if "onnxruntime" in systems else None
    ratios = ratio_to(report, base) if base else {}
    for t in st["threads"]:
        suffix = f", {t} thread{'s' if t != 1 else ''}"
        out += [f"## Latency (ms){suffix}", ""]
        out.append(_table(["model", "case", "path (reference)", *systems],
                          ([mo, ca, pa, *(_latency_cell(idx.get((t, mo, ca, s))) for s in systems)] for mo, ca, pa in rows)))
        out.append("")
        if base:
            others = [s for s in systems if s != base]
            out += [f"## Latency relative to {base}{suffix}", "",
                    f"median / {base} median: below 1 is faster than {base}.", ""]
            out.append(_table(["model", "case", *others],
                              ([mo, ca, *(f"{ratios[(t, mo, ca, s)]:.2f}" if (t, mo, ca, s) in ratios
                                          else _short_status(idx.get((t, mo, ca, s))) for s in others)]
                               for mo, ca, _ in rows)))
            out.append("")
            out.append(_geomean_line(report, t, base, others))
            out.append("")
            if st.get("rounds", 1) > 1:
                # NOTE: a system's rounds run minutes apart; a slow spell of the machine (which the load figures do
                # not show when it comes from outside the guest) can fall on some rounds of one system and not on
                # the other's: the fastest rounds compared say how far that moved the ratios
                out.append(_geomean_line(report, t, base, others, fastest_round_s,
                                         lead="The same over each system's fastest round"))
                out.append("")
        out += [f"## First call and load{suffix}", "",
                "First call (ms) at each size; load (s, in the first row of a model): reading the model and building "
                "the session, module or compiled wrapper (torch.compile compiles lazily, in the first call).", ""]
        runs = {(r["threads"], r["model"], r["system"]): r for r in report["runs"]}
        body = []
        for mo, ca, _ in rows:
            first_case = next(c["name"] for mm in report["models"] if mm["name"] == mo for c in mm["cases"])
            row = [mo, ca]
            for s in systems:
                cell = idx.get((t, mo, ca, s))
                text = _ms(cell.get("first_call_s")) if cell and cell.get("first_call_s") is not None else _short_status(cell)
                r = runs.get((t, mo, s))
                if ca == first_case and r and r.get("load", {}).get("ok"):
                    text += f" (load {r['load']['seconds']:.2f} s)"
                row.append(text)
            body.append(row)
        out.append(_table(["model", "case", *systems], body))
        out.append("")
        out += [f"## Peak memory above the idle process (MB){suffix}", "",
                "Resident-set peak of the first call and of the timed calls, minus the worker's RSS before it loaded "
                "the model (so weights count; torch.compile's first case includes compiling) and minus what reading "
                "the case's inputs and reference outputs added (the harness's memory, not the system's; the "
                "comparison with the reference is left out too); in brackets, the allocator's own peak for one call "
                "where the system reports one.", ""]
        body = []
        for mo, ca, _ in rows:
            row = [mo, ca]
            for s in systems:
                cell = idx.get((t, mo, ca, s))
                if cell and cell.get("peak_rss_above_idle") is not None:
                    text = f"{cell['peak_rss_above_idle'] / MB:.0f}"
                    if cell.get("allocator_peak") is not None:
                        text += f" [{cell['allocator_peak'] / MB:.1f}]"
                else:
                    text = _short_status(cell)
                row.append(text)
            body.append(row)
        out.append(_table(["model", "case", *systems], body))
        out.append("")
        if base:
            out.append(_geomean_line(report, t, base, [s for s in systems if s != base], peak_memory)
                       .replace("the ratio to", "the peak memory's ratio to"))
            out.append("")
        out += [f"## Output difference from the reference{suffix}", "", "Largest absolute difference over all outputs.", ""]
        body = []
        for mo, ca, _ in rows:
            row = [mo, ca]
            for s in systems:
                cell = idx.get((t, mo, ca, s))
                d = (cell or {}).get("diff")
                if d:
                    text = "inf" if d.get("max_abs") is None else f"{d['max_abs']:.1e}"
                    row.append(text + (f" {MISMATCH}" if not d["ok"] else ""))
                else:
                    row.append(_short_status(cell))
            body.append(row)
        out.append(_table(["model", "case", *systems], body))
        out.append("")
    out += ["## Load from other processes per cell", "",
            "Average number of cores other processes kept busy while the cell ran (from /proc/stat, less the worker's "
            "own CPU time); with 2 threads on a 2-core machine, any of it takes a core from the system measured.", ""]
    for t in st["threads"]:
        out.append(_table(["model", "case", *(f"{s} ({t}t)" for s in systems)],
                          ([mo, ca, *(f"{_other_cores(idx.get((t, mo, ca, s))):.2f}" if idx.get((t, mo, ca, s), {}).get("cpu")
                                      else "-" for s in systems)] for mo, ca, _ in rows)))
        out.append("")
    fails = _failures(report)
    out += ["## Failures and mismatches", ""]
    out += fails or ["None."]
    out.append("")
    notes = [f"- {r['system']} on {r['model']}: " + ", ".join(f"{k} {v}" for k, v in r["notes"].items() if v is not None)
             for r in report["runs"] if r.get("notes")]
    if notes:
        out += ["## Notes from the systems", "", *notes, ""]
    out += ["## Models", ""]
    out.append(_table(["model", "what", "dynamism", "ONNX (MB)", "details"],
                      ([mm["name"], mm["title"], mm["dynamism"], _num((mm.get("onnx_bytes") or 0) / MB), mm.get("notes", "")]
                       for mm in report["models"])))
    out.append("")
    return "\n".join(out)


def _system_descriptions(report: dict[str, Any]) -> list[str]:
    seen: dict[str, dict[str, Any]] = {}
    for r in report["runs"]:
        if r.get("settings") and r["system"] not in seen:
            seen[r["system"]] = r
    out = []
    for s in report["settings"]["systems"]:
        r = seen.get(s)
        if r is None:
            continue
        vers = ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items())
        sets = ", ".join(f"{k}={v}" for k, v in r.get("settings", {}).items())
        out.append(f"- **{s}** ({vers}): {sets}")
    return out


def geomean(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def _geomean_line(report: dict[str, Any], threads: int, base: str, systems: list[str],
                  measure: Callable[[dict[str, Any] | None], float | None] | None = None,
                  lead: str | None = None) -> str:
    ratios = ratio_to(report, base, measure)
    parts = []
    for s in systems:
        vals = [r for (t, _, _, sys_), r in ratios.items() if t == threads and sys_ == s]
        g = geomean(vals)
        if g is not None:
            parts.append(f"{s} {g:.2f} ({len(vals)} cases)")
    return (lead or f"Geometric mean of the ratio to {base}") + ", per system over the cases it ran: " + ("; ".join(parts) if parts else "none") + "."


def write_report(report: dict[str, Any], out_dir: str | Path, stem: str, *, plot: bool = True) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and (with ``plot``) ``<stem>.png`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(report, indent=1, default=_jsonable) + "\n")
    paths[1].write_text(render_markdown(report))
    if plot:
        from pliant.bench.plot import plot_ratios

        png = out / f"{stem}.png"
        plot_ratios(report, png)
        paths.append(png)
    return paths


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to JSON")
