"""Synthetic data generators with known ground truth, shared by tests,
examples and benchmarks."""

__all__ = []
