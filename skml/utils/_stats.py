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


def hide_entries(mask, fraction, rng):
    """A random ``fraction`` of the observed entries, leaving every row and
    column that has one at least one.

    The entries are drawn without replacement; a row (then a column) left
    with nothing observed gets one of its hidden entries back, so the
    hidden share can fall short of ``fraction``.

    Parameters
    ----------
    mask : ndarray of shape (n_rows, n_columns), dtype bool
        True where an entry is observed.
    fraction : float
        Share of the observed entries to hide, in [0, 1].
    rng : numpy.random.RandomState
        Source of the draw.

    Returns
    -------
    hidden : ndarray of shape (n_rows, n_columns), dtype bool
        True where an observed entry is hidden.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.utils import hide_entries
    >>> mask = np.ones((4, 3), dtype=bool)
    >>> hidden = hide_entries(mask, 0.25, np.random.RandomState(0))
    >>> int(hidden.sum()), bool((mask & ~hidden).any(axis=1).all())
    (3, True)
    """
    observed = np.flatnonzero(mask)
    k = int(round(fraction * observed.size))
    hidden = np.zeros(mask.size, dtype=bool)
    hidden[rng.choice(observed, size=k, replace=False)] = True
    hidden = hidden.reshape(mask.shape)
    for axis in (1, 0):
        kept = mask & ~hidden
        for line in np.flatnonzero(~kept.any(axis=axis) & mask.any(axis=axis)):
            cells = hidden[line] if axis == 1 else hidden[:, line]
            pick = rng.choice(np.flatnonzero(cells))
            if axis == 1:
                hidden[line, pick] = False
            else:
                hidden[pick, line] = False
    return hidden
