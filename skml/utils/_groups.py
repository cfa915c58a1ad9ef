"""Subgroups: one encoder for group arguments and one group x bucket table."""

import numpy as np
import torch


def encode_groups(groups, n_samples, *, categories=None, name="groups", against="X"):
    """0/1 indicators from group labels or an indicator matrix.

    Parameters
    ----------
    groups : array-like of shape (n_samples,) or (n_samples, n_groups)
        One label per row, or 0/1 indicators (overlapping groups allowed;
        DataFrame column names become the group names).
    n_samples : int
        Expected number of rows.
    categories : ndarray, int or None, default=None
        What a previous call returned as ``categories`` (the labels of 1-D
        groups, the column count of 2-D ones): the new rows are encoded the
        same way. ``None`` learns them, and then an empty indicator column
        is an error.
    name : str, default="groups"
        The argument's name, for error messages.
    against : str, default="X"
        What ``n_samples`` counts, for error messages.

    Returns
    -------
    indicators : ndarray of shape (n_samples, n_groups), float64
    categories : ndarray or int
    names : list of str

    Examples
    --------
    >>> from skml.utils import encode_groups
    >>> G, categories, names = encode_groups(["a", "b", "a"], 3)
    >>> G.tolist(), names
    ([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], ['a', 'b'])
    """
    columns = getattr(groups, "columns", None)
    array = np.asarray(groups)
    if array.ndim == 0 or array.shape[0] != n_samples:
        rows = 0 if array.ndim == 0 else array.shape[0]
        raise ValueError(
            f"{name} has {rows} rows but {against} has {n_samples}; pass one row "
            "per sample."
        )
    if array.ndim == 1:
        if categories is None:
            categories = np.unique(array)
        indicators = (array[:, None] == np.asarray(categories)[None, :]).astype(
            np.float64
        )
        return indicators, categories, [str(c) for c in categories]
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 1-D labels or an (n_samples, n_groups) 0/1 indicator "
            "array."
        )
    try:
        indicators = array.astype(np.float64)
    except (TypeError, ValueError):
        indicators = None
    if indicators is None or not np.all((indicators == 0) | (indicators == 1)):
        raise ValueError(
            f"{name} as a 2-D array must hold 0/1 indicators (one column per "
            "group); pass a 1-D array for group labels."
        )
    if columns is not None:
        names = [str(c) for c in columns]
    else:
        names = [f"group{j}" for j in range(indicators.shape[1])]
    if categories is None:
        empty = np.flatnonzero(indicators.sum(axis=0) == 0)
        if len(empty):
            raise ValueError(
                f"{name} column(s) {[names[j] for j in empty]} are an empty group "
                "(no sample belongs to them); drop them."
            )
        categories = indicators.shape[1]
    elif indicators.shape[1] != categories:
        raise ValueError(
            f"{name} has {indicators.shape[1]} columns, expected {categories} as in "
            "fit."
        )
    return indicators, categories, names


def cell_sums(H, bucket, n_buckets, values):
    """Sums of each column of ``values`` over every (group, bucket) cell.

    Parameters
    ----------
    H : Tensor of shape (n, g)
        0/1 group indicators (a column of ones gives the whole population).
    bucket : Tensor of shape (n,), int64
        Bucket of each row, in ``[0, n_buckets)``.
    n_buckets : int
    values : Tensor of shape (n, k)

    Returns
    -------
    Tensor of shape (k, g, n_buckets)

    Examples
    --------
    >>> import torch
    >>> from skml.utils import cell_sums
    >>> H = torch.tensor([[1.0], [1.0], [1.0]])
    >>> cell_sums(H, torch.tensor([0, 1, 1]), 2, torch.ones(3, 1))
    tensor([[[1., 2.]]])
    """
    out = 0
    # Row blocks keep the (rows, k * m) product a few MB at any n.
    block = max(1, (1 << 21) // max(1, values.shape[1] * n_buckets))
    for start in range(0, len(bucket), block):
        rows = slice(start, start + block)
        B = torch.nn.functional.one_hot(bucket[rows], n_buckets).to(values.dtype)
        # (g, rows) @ (rows, k * m): one product for every statistic
        prod = (values[rows, :, None] * B[:, None, :]).reshape(B.shape[0], -1)
        out = out + H[rows].T.to(values.dtype) @ prod
    return out.reshape(H.shape[1], values.shape[1], n_buckets).transpose(0, 1)
