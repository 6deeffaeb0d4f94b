"""Compile time per suite model, cold (empty kernel cache) and warm (cache filled, new process).

    python benchmarks/runtime/bench_compile.py [--models a,b]

Each measurement runs in a fresh Python process: ``pliant.compile`` plus the
first call on the model's first stored case (the first call compiles the
generated kernels the model needs, or loads them from the disk cache).  Cold
uses an empty ``PLIANT_CACHE_DIR``; warm reuses it.  Targets: cold < 10 s,
warm < 1 s.  Writes ``benchmarks/results/compile_time.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ["bert_encoder", "gpt_decode_step", "gpt_generate", "skipnet_resnet", "early_exit_bert", "blockdrop_resnet",
          "gru_seq2seq", "yolo_nms", "conformer", "moe_transformer", "ranet_cnn"]
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pliant
t1 = time.perf_counter()
name = sys.argv[1]
data = np.load(f"benchmarks/models/{name}.npz")
case = sorted({k.split('.')[0] for k in data.files if '.in.' in k})[0]
feeds = {k.split('.', 2)[2]: data[k] for k in data.files if k.startswith(case + '.in.')}
t2 = time.perf_counter()
exe = pliant.compile(f"benchmarks/models/{name}.onnx")
t3 = time.perf_counter()
exe.run(feeds)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "compile": t3 - t2, "first_call": t4 - t3, "kernels": exe.report()["kernels"]}))
"""


def measure(name: str, cache: str) -> dict[str, float]:
    env = {**os.environ, "PLIANT_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", CHILD, name], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as cache:
            cold = measure(name, cache)
            warm = measure(name, cache)
        rows.append((name, cold, warm))
        print(f"{name}: cold {cold['compile'] + cold['first_call']:.2f} s, warm {warm['compile'] + warm['first_call']:.2f} s",
              flush=True)
    lines = ["# Compile time (pliant.compile + first call), fresh process each", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M')}; `benchmarks/runtime/bench_compile.py`. Cold: empty kernel cache; "
             "warm: the same cache, a new process. Python and pliant import time (about "
             f"{rows[0][1]['import']:.1f} s) is not included.", "",
             "| model | cold: compile s | cold: first call s | cold total s | warm total s |", "|---|---|---|---|---|"]
    for name, cold, warm in rows:
        lines.append(f"| {name} | {cold['compile']:.2f} | {cold['first_call']:.2f} | {cold['compile'] + cold['first_call']:.2f} "
                     f"| {warm['compile'] + warm['first_call']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        with open(os.path.join(ROOT, "benchmarks", "results", "compile_time.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
