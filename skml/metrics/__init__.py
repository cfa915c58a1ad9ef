"""Metrics that scikit-learn lacks (multicalibration error, ...)."""

__all__ = []
