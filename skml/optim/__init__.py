"""Symmetry-compatible optimizers for torch models (Lau and Su, 2026)."""

from ._blocks import block_param_groups, label_blocks
from ._maps import (
    center_rows,
    centered_left_spectral,
    centered_row_norm,
    col_norm,
    hybrid,
    left_spectral,
    polar,
    right_spectral,
    row_norm,
)
from ._optimizer import (
    BLOCKS,
    MUON_RULES,
    OPTIMIZER_NAMES,
    RULES,
    SYMMETRY_RULES,
    BlockOptimizer,
    make_optimizer,
    optimizer_class,
)

__all__ = [
    "BLOCKS",
    "MUON_RULES",
    "OPTIMIZER_NAMES",
    "RULES",
    "SYMMETRY_RULES",
    "BlockOptimizer",
    "block_param_groups",
    "center_rows",
    "centered_left_spectral",
    "centered_row_norm",
    "col_norm",
    "hybrid",
    "label_blocks",
    "left_spectral",
    "make_optimizer",
    "optimizer_class",
    "polar",
    "right_spectral",
    "row_norm",
]
