"""Shared machinery: the torch-estimator base, devices, threads, conversion,
discovery, tables.

Nothing here knows about any paper.
"""

from ._dask import is_dask_collection
from ._device import (
    ACCEPTED_DEVICES,
    make_generator,
    resolve_device,
    resolve_dtype,
    to_numpy,
    to_tensor,
)
from ._discovery import all_estimators
from ._estimator import DeviceFallbackWarning, TorchEstimatorMixin, find_tensors
from ._groups import cell_sums, encode_groups
from ._memory import release_memory
from ._stats import hide_entries, weighted_quantile
from ._table import format_table, progress
from ._threads import thread_budget, threads_for, torch_threads

__all__ = [
    "ACCEPTED_DEVICES",
    "DeviceFallbackWarning",
    "TorchEstimatorMixin",
    "all_estimators",
    "cell_sums",
    "encode_groups",
    "find_tensors",
    "format_table",
    "hide_entries",
    "is_dask_collection",
    "make_generator",
    "progress",
    "release_memory",
    "resolve_device",
    "resolve_dtype",
    "thread_budget",
    "threads_for",
    "to_numpy",
    "to_tensor",
    "torch_threads",
    "weighted_quantile",
]
