"""Benchmark scripts: each prints a ratio or count measured in one run."""
