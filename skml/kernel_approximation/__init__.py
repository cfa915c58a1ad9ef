"""Kernel approximation by random features that learn one direction."""

from ._one_step import NoSpikeWarning, OneStepFeatureMap, SpikedRandomFeatures

__all__ = ["NoSpikeWarning", "OneStepFeatureMap", "SpikedRandomFeatures"]
