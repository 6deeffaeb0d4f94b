"""Analyses over the IR: what can be known about a program's shapes and values before it runs."""
