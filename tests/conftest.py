"""Test-run wide hooks: the ONNX backend pass count is printed at the end."""

from __future__ import annotations

from typing import Any

_COUNTS: dict[str, dict[str, int]] = {}


def pytest_runtest_logreport(report: Any) -> None:
    if report.when != "call" and not (report.when == "setup" and report.skipped):
        return
    nodeid = report.nodeid
    if "test_onnx_backend.py" not in nodeid or nodeid.endswith("_cuda"):
        return  # NOTE: pliant runs on the CPU; the suite's CUDA copies are skipped and not counted
    cls = nodeid.split("::")[1] if "::" in nodeid else "?"
    kind = {"OnnxBackendNodeModelTest": "node", "OnnxBackendSimpleModelTest": "simple",
            "OnnxBackendPyTorchConvertedModelTest": "pytorch-converted",
            "OnnxBackendPyTorchOperatorModelTest": "pytorch-operator",
            "OnnxBackendRealModelTest": "real (downloads models; excluded)"}.get(cls, cls)
    c = _COUNTS.setdefault(kind, {"passed": 0, "xfailed": 0, "failed": 0, "skipped": 0})
    if hasattr(report, "wasxfail"):
        c["xfailed" if report.skipped else "failed"] += 1
    elif report.passed:
        c["passed"] += 1
    elif report.skipped:
        c["skipped"] += 1
    else:
        c["failed"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _COUNTS:
        return
    terminalreporter.section("ONNX backend test suite")
    for kind, c in sorted(_COUNTS.items()):
        total = sum(c.values())
        terminalreporter.write_line(
            f"{kind}: {c['passed']} passed of {total} ({c['xfailed']} expected failures, {c['failed']} failed, {c['skipped']} skipped)"
        )
