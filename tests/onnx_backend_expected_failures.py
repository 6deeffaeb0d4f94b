"""ONNX backend tests pliant does not pass yet, each with the reason."""

EXPECTED_FAILURES: dict[str, str] = {}
