"""Attention as kernel regression: multi-head Nadaraya-Watson estimators."""

__all__ = []
