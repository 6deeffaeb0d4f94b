"""Front ends: ONNX models (and, later, PyTorch programs and kernel sources) into pliant IR."""
