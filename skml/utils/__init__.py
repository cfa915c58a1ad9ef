"""Shared machinery: device handling, conversion, discovery, tables.

Nothing here knows about any paper.
"""

from ._device import (
    ACCEPTED_DEVICES,
    make_generator,
    resolve_device,
    resolve_dtype,
    to_numpy,
    to_tensor,
)
from ._discovery import all_estimators
from ._stats import weighted_quantile
from ._table import format_table, progress

__all__ = [
    "ACCEPTED_DEVICES",
    "all_estimators",
    "format_table",
    "make_generator",
    "progress",
    "resolve_device",
    "resolve_dtype",
    "to_numpy",
    "to_tensor",
    "weighted_quantile",
]
