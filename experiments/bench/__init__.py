"""Micro-benchmarks of project components (`python -m experiments.bench.<name>`)."""
