"""ONNX's operator schemas for the ops pliant defines, as a table shipped with pliant.

Looking up one schema through ``onnx.defs`` makes ONNX build its whole schema
registry, which keeps about 6.5 MB resident for the rest of the process (2.5 MB
of its C++ library paged in, the rest heap). Loading a model only needs, per op
and opset, the inputs, the outputs and the attribute defaults, so those are read
from ``onnx_schemas.json`` instead: a header line, then one line per op (its
key, a tab, its schema versions as JSON), decoded when the op is looked up. The
table covers each domain up to the opset the ONNX release that
wrote it knows; anything past that (a newer ONNX, a newer model) is still asked
of ``onnx.defs``.

Regenerate the table after upgrading ONNX or registering ops::

    python -m pliant.ops.schema_table

A test checks every registered op at every covered opset against ``onnx.defs``.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
from pathlib import Path
from typing import Any, Literal

TABLE_PATH = Path(__file__).with_name("onnx_schemas.json")

Entry = list[Any]
"""[since_version, inputs, outputs, {attribute: base64 AttributeProto or None}, [required attributes]];
a parameter is its name, with '?' appended when optional and '*' when variadic."""


def _param(p: Any) -> str:
    import onnx.defs

    opt = onnx.defs.OpSchema.FormalParameterOption
    return p.name + ("?" if p.option == opt.Optional else "*" if p.option == opt.Variadic else "")


def schema_entry(s: Any) -> Entry:
    """An ``onnx.defs.OpSchema`` as the table's entry."""
    attrs = {
        name: base64.b64encode(a.default_value.SerializeToString()).decode() if a.default_value.name else None
        for name, a in sorted(s.attributes.items())
    }
    required = sorted(name for name, a in s.attributes.items() if a.required)
    return [s.since_version, [_param(p) for p in s.inputs], [_param(p) for p in s.outputs], attrs, required]


def build_table() -> dict[str, Any]:
    """The table for the ops registered now, from the installed ``onnx.defs``."""
    import onnx
    import onnx.defs

    from pliant.ops import registry

    wanted = {(d.domain, d.name) for d in registry.all_ops() if d.schema_override is None}
    ops: dict[str, list[Entry]] = {}
    for s in onnx.defs.get_all_schemas_with_history():
        domain = "" if s.domain == "ai.onnx" else s.domain
        if (domain, s.name) not in wanted:
            continue
        ops.setdefault(f"{domain}/{s.name}", []).append(schema_entry(s))
    for entries in ops.values():
        entries.sort(key=lambda e: int(e[0]))
    return {
        "onnx": onnx.__version__,
        "opsets": {d: hi for d, (_, hi) in sorted(onnx.defs.C.schema_version_map().items())},
        "ops": dict(sorted(ops.items())),
    }


@functools.cache
def _table() -> tuple[dict[str, int], dict[str, str]]:
    """The covered opset per domain, and each op's entries as JSON text (decoded when the op is looked up, so
    the table costs a few hundred small strings, not tens of thousands of objects)."""
    try:
        lines = TABLE_PATH.read_text().splitlines()
        opsets: dict[str, int] = json.loads(lines[0])["opsets"]
    except (OSError, ValueError, IndexError, KeyError):
        return {}, {}
    ops = dict(line.split("\t", 1) for line in lines[1:] if "\t" in line)
    return opsets, ops


@functools.cache
def _entries(key: str) -> list[Entry] | None:
    text = _table()[1].get(key)
    return None if text is None else list(json.loads(text))


def covered(name: str, domain: str, opset: int) -> Entry | Literal[False] | None:
    """The table's entry for ``name`` at ``opset``; False where the table says ONNX has no such op at that
    opset; None where the table does not cover the question (ask ``onnx.defs``)."""
    top = _table()[0].get(domain)
    entries = _entries(f"{domain}/{name}")
    if top is None or opset > top or entries is None:
        return None
    found = None
    for e in entries:
        if int(e[0]) <= opset:
            found = e
    return found if found is not None else False


def main() -> int:
    table = build_table()
    head = json.dumps({"onnx": table["onnx"], "opsets": table["opsets"]})
    rows = [f"{key}\t{json.dumps(entries, separators=(',', ':'))}" for key, entries in table["ops"].items()]
    TABLE_PATH.write_text("\n".join([head, *rows]) + "\n")
    n = sum(len(v) for v in table["ops"].values())
    print(f"wrote {TABLE_PATH.name}: {len(table['ops'])} ops, {n} schema versions, ONNX {table['onnx']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
