"""Optimal transport: sliced-regularized OT plans, divergences and transformers."""

from ._divergence import srot_divergence
from ._sliced import sliced_reference_plan
from ._srot import SROTransport, srot_plan

__all__ = ["SROTransport", "sliced_reference_plan", "srot_divergence", "srot_plan"]
