"""Synthetic data generators with known ground truth, and loaders of data that
ships inside installed packages; shared by tests, examples and benchmarks."""

from ._loaders import load_randhie
from ._multicalibration import make_multicalibration_regression

__all__ = ["load_randhie", "make_multicalibration_regression"]
