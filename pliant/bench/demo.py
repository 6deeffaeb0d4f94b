"""A quick tour of the suite for ``pliant demo``: three dynamic models, every case, checked against PyTorch.

For each model it compiles the committed ONNX with ``pliant.compile``, runs
each case compiled (best of three calls) and with the reference interpreter,
shows the path the control flow took and checks the compiled outputs against
the PyTorch eager outputs stored with the suite.  Needs only the suite's files
(no PyTorch, no ONNX Runtime).

>>> run_suite_demo()  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pliant.bench.compare import compare_outputs
from pliant.bench.spec import load_case, load_suite

DEMO_MODELS = ("gpt_generate", "skipnet_resnet", "yolo_nms")


def run_suite_demo(suite_dir: str | Path | None = None, models: Sequence[str] = DEMO_MODELS,
                   say: Callable[[str], None] = print) -> int:
    """Run ``models`` of the suite compiled (and interpreted, for the time); returns 0 when every output matched.
    A case's compiled time is its fastest of five calls once its first calls are done and any specialised version
    they started is built (``CompiledModel.wait_for_versions``) and through its trial calls."""
    import pliant
    from pliant.bench.cli import default_suite_dir
    from pliant.runtime.compiled import SPECIALIZE_AFTER, TRIAL_CALLS

    root = Path(suite_dir) if suite_dir is not None else default_suite_dir()
    failures = 0
    for model in load_suite(root, list(models)):
        spec = model.spec
        t0 = time.perf_counter()
        module = pliant.load(str(model.onnx_path))
        exe = pliant.compile(module)
        say(f"{spec.name}: {spec.title} - {spec.dynamism} (imported and compiled in {time.perf_counter() - t0:.2f} s)")
        for i, case in enumerate(spec.cases):
            feeds, reference = load_case(model.reference_path, i, spec)  # type: ignore[arg-type]
            # NOTE: the first calls build the units' kernels and start a specialised version in the background,
            # which then runs its trial calls; timed right after, YOLO at 320 px showed 11 ms instead of 2.6
            t0 = time.perf_counter()
            exe.run(feeds)
            first_ms = (time.perf_counter() - t0) * 1e3
            for _ in range(SPECIALIZE_AFTER):
                exe.run(feeds)
            exe.wait_for_versions()
            for _ in range(2 * TRIAL_CALLS + 2):
                exe.run(feeds)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                outs = exe.run(feeds)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pliant.interpret(module, feeds)
            interp_ms = (time.perf_counter() - t0) * 1e3
            diff = compare_outputs(outs, reference, atol=spec.atol, rtol=spec.rtol)
            failures += not diff.ok
            path = f", {spec.path_output} = {outs[spec.path_output].tolist()}" if spec.path_output else ""
            say(f"  {case.name:16s} {min(times) * 1e3:7.1f} ms compiled (first call {first_ms:6.1f} ms; "
                f"{interp_ms:6.1f} ms interpreted){path}; "
                f"vs PyTorch: {'ok' if diff.ok else 'MISMATCH'} ({diff.summary()})")
    return 1 if failures else 0
