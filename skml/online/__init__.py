"""Constrained online convex optimisation learners (NP-OGD)."""

from ._coco import COCOClassifier, COCOLearner
from ._constraints import (
    CallableConstraint,
    Constraint,
    DemographicParity,
    EqualOpportunity,
    NormBall,
)
from ._projection import InfeasibleConstraintsError
from ._regret import hindsight_regret

__all__ = [
    "COCOClassifier",
    "COCOLearner",
    "CallableConstraint",
    "Constraint",
    "DemographicParity",
    "EqualOpportunity",
    "InfeasibleConstraintsError",
    "NormBall",
    "hindsight_regret",
]
