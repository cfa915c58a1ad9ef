"""Constrained online convex optimisation learners."""

__all__ = []
