"""detection operators."""
