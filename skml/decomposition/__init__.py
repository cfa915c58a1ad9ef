"""Matrix factor models (nonlinear factor models with monotone links)."""

__all__ = []
