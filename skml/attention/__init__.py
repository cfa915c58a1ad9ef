"""Attention as kernel regression: multi-head Nadaraya-Watson estimators."""

from ._decomposition import head_decomposition
from ._diversity import head_diversity_index
from ._nw import NWAttentionRegressor

__all__ = ["NWAttentionRegressor", "head_decomposition", "head_diversity_index"]
