"""Small statistics helpers that numpy lacks."""

import numpy as np


def weighted_quantile(values, quantiles, sample_weight=None):
    """Weighted quantiles of each column (inverted CDF, no interpolation).

    A row with integer weight k counts as k copies of the row, and a row with
    weight 0 is ignored, so fitted quantities built on these quantiles honour
    ``sample_weight`` exactly.

    Parameters
    ----------
    values : array-like of shape (n_samples,) or (n_samples, n_columns)
        Data.
    quantiles : array-like of shape (n_quantiles,)
        Levels in [0, 1].
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights; ``None`` means equal weights.

    Returns
    -------
    ndarray of shape (n_quantiles,) or (n_quantiles, n_columns)

    Examples
    --------
    >>> from skml.utils import weighted_quantile
    >>> weighted_quantile([1.0, 2.0, 3.0, 4.0], [0.5], sample_weight=[1, 1, 1, 5])
    array([4.])
    """
    values = np.asarray(values, dtype=np.float64)
    one_d = values.ndim == 1
    if one_d:
        values = values[:, None]
    q = np.atleast_1d(np.asarray(quantiles, dtype=np.float64))
    w = np.ones(len(values)) if sample_weight is None else np.asarray(sample_weight)
    order = np.argsort(values, axis=0, kind="stable")
    cum = np.cumsum(w[order], axis=0)
    out = np.empty((len(q), values.shape[1]))
    for j in range(values.shape[1]):
        # first sorted row whose cumulative weight reaches q * total (and is
        # positive, so q = 0 skips leading zero-weight rows)
        target = np.maximum(q * cum[-1, j], np.finfo(np.float64).tiny)
        idx = np.searchsorted(cum[:, j], target, side="left")
        idx = np.minimum(idx, len(values) - 1)
        out[:, j] = values[order[idx, j], j]
    return out[:, 0] if one_d else out
