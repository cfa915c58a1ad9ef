"""Multicalibration: post-processing that makes predictions calibrated on subgroups."""

from ._mcboost import MCBoostClassifier, MCBoostRegressor
from ._transfer import transfer_report

__all__ = ["MCBoostClassifier", "MCBoostRegressor", "transfer_report"]
