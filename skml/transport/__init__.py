"""Optimal transport: sliced-regularized OT plans, divergences and transformers."""

__all__ = []
