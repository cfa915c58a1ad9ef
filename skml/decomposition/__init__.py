"""Matrix factor models (nonlinear factor models with monotone links)."""

from ._monotone_link import IdentityLink, KnownLink, MonotoneLink
from ._nonlinear_factor import NonlinearFactorModel

__all__ = ["IdentityLink", "KnownLink", "MonotoneLink", "NonlinearFactorModel"]
