"""Imputers (missing entries filled by a nonlinear factor model)."""

from ._nonlinear_factor import NonlinearFactorImputer

__all__ = ["NonlinearFactorImputer"]
