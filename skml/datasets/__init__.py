"""Synthetic data generators with known ground truth, and loaders of data that
ships inside installed packages; shared by tests, examples and benchmarks."""

from ._factor import make_nonlinear_factor_matrix
from ._fairness import make_fair_classification
from ._loaders import (
    load_affairs,
    load_cps1988,
    load_diamonds,
    load_fertility,
    load_randhie,
)
from ._multicalibration import make_multicalibration_regression
from ._persona import PersonaToyNet, make_persona_drift, persona_metrics
from ._regression import make_multi_index_regression
from ._shift import make_covariate_shift_regression
from ._style_text import make_style_sentiment
from ._transport import load_point_cloud_pairs, make_gaussian_mixtures

__all__ = [
    "load_affairs",
    "load_cps1988",
    "load_diamonds",
    "load_fertility",
    "load_point_cloud_pairs",
    "load_randhie",
    "make_covariate_shift_regression",
    "make_fair_classification",
    "make_gaussian_mixtures",
    "make_multi_index_regression",
    "make_multicalibration_regression",
    "make_nonlinear_factor_matrix",
    "make_persona_drift",
    "make_style_sentiment",
    "persona_metrics",
    "PersonaToyNet",
]
