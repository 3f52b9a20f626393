"""Benchmarks of the jacnb package; run as modules: ``python -m benchmarks.regularizer_cost``."""
