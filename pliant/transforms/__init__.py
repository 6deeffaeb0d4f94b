"""Passes over the IR, one per file, and the manager that runs them (verifying after each)."""
