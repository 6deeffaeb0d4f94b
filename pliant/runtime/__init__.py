"""The compiled runtime: the host program that runs a compiled model, and the native kernels it calls."""
