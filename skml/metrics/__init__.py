"""Metrics that scikit-learn lacks (multicalibration error, ...)."""

from ._multicalibration import (
    ecce,
    multicalibration_error,
    worst_group_bucket_residual,
)

__all__ = ["ecce", "multicalibration_error", "worst_group_bucket_residual"]
