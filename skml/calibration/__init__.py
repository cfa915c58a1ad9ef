"""Multicalibration: post-processing that makes predictions calibrated on subgroups."""

__all__ = []
