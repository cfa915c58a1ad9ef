"""Multicalibration: post-processing that makes predictions calibrated on subgroups."""

from ._mcboost import MCBoostClassifier, MCBoostRegressor

__all__ = ["MCBoostClassifier", "MCBoostRegressor"]
