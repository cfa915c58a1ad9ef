"""Multicalibration error: ECCE per segment and MCGrad's MCE summary.

References: Arrieta-Ibarra et al., JMLR 23(351), 2022 (ECCE); Guy et al.,
"Measuring multi-calibration", arXiv:2506.11251 (MCE, successive-differences
sigma); Feller, Ann. Math. Statist. 22(3), 1951 (range of Brownian motion).
"""

import itertools
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import ndtr
from sklearn.utils import Bunch, check_array, check_consistent_length
from sklearn.utils.validation import _check_sample_weight, _num_samples, column_or_1d

from ..utils import cell_sums, encode_groups

# Below this the alternating series cancels badly; P(R > 0.25) = 1 - 1e-15 anyway.
_SF_SERIES_MIN_X = 0.25
_SF_SERIES_TERMS = 200


def _check_targets(y_true, y_pred, sample_weight):
    """Validate the 1-D targets and weights; return float64 arrays."""
    y_true = column_or_1d(
        check_array(y_true, ensure_2d=False, dtype=np.float64, input_name="y_true")
    )
    y_pred = column_or_1d(
        check_array(y_pred, ensure_2d=False, dtype=np.float64, input_name="y_pred")
    )
    check_consistent_length(y_true, y_pred)
    sample_weight = _check_sample_weight(
        sample_weight, y_pred, dtype=np.float64, ensure_non_negative=True
    )
    if not sample_weight.sum() > 0:
        raise ValueError("sample_weight sums to zero; at least one must be > 0.")
    return y_true, y_pred, sample_weight


def _check_param(name, value, kind, low, high=None):
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")


def _ecce_sorted(residual, weight):
    """ECCE and its null sigma for residuals already sorted by prediction."""
    total = weight.sum()
    if not total > 0:
        return np.nan, np.nan
    path = np.cumsum(weight * residual) / total
    # The path starts at C_0 = 0, which is not stored in ``path``.
    value = max(path.max(), 0.0) - min(path.min(), 0.0)
    if residual.size < 2:
        return float(value), np.nan
    numerator = np.sum(np.diff(residual) ** 2 * (weight[:-1] + weight[1:]) ** 2)
    # w_1 + w_n + 2 * sum(w_2..w_{n-1}) == 2W - w_1 - w_n
    denominator = 4.0 * total * (2.0 * total - weight[0] - weight[-1])
    return float(value), float(np.sqrt(numerator / denominator))


def ecce(y_true, y_pred, *, sample_weight=None):
    """Estimated Cumulative Calibration Error and its null standard deviation.

    Rows are sorted by prediction (stable, so ties keep their input order);
    with ``C_0 = 0`` and ``C_k = sum_{i<=k} w_i (y_i - f_i) / sum(w)``, ECCE is
    ``max_k C_k - min_k C_k``: the range of the cumulative residual path. It
    needs no binning and works for regression and binary outcomes.

    ``sigma`` is the successive-differences estimate of the standard
    deviation of that path's endpoint under perfect calibration (Guy et al.
    2025, eq. 6); with unit weights ``sigma**2`` is about ``var(y - f) / n``.
    Under the null, ``ecce / sigma`` is distributed like the range of a
    standard Brownian motion on [0, 1].

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed outcomes.
    y_pred : array-like of shape (n_samples,)
        Predictions of ``E[y | x]``.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights.

    Returns
    -------
    ecce_value : float
        Range of the cumulative weighted residual path.
    sigma : float
        Null standard deviation; ``nan`` with fewer than two rows.

    Examples
    --------
    >>> from skml.metrics import ecce
    >>> value, sigma = ecce([0, 1, 1, 0], [0.2, 0.4, 0.6, 0.8])
    >>> round(value, 4), round(sigma, 4)
    (0.25, 0.2972)
    """
    y_true, y_pred, sample_weight = _check_targets(y_true, y_pred, sample_weight)
    order = np.argsort(y_pred, kind="stable")
    return _ecce_sorted((y_true - y_pred)[order], sample_weight[order])


def _brownian_range_sf(x):
    """P(R > x) for R the range (max - min) of standard Brownian motion on [0, 1].

    Feller (1951): the density of R is ``8 sum_k (-1)**(k-1) k**2 phi(k r)``,
    so ``P(R > x) = 8 sum_{k>=1} (-1)**(k-1) k Q(k x)`` with Q the standard
    normal upper tail. Checked against a Monte Carlo of 20000 paths and the
    theta-function form in MCGrad's ``_ecce_cdf`` (agreement to 1e-14).

    Parameters
    ----------
    x : float or array-like
        Points at which to evaluate the survival function.

    Returns
    -------
    float or ndarray
        Same shape as ``x``.

    Examples
    --------
    >>> from skml.metrics._multicalibration import _brownian_range_sf
    >>> round(_brownian_range_sf(2.0), 4)
    0.1815
    """
    x = np.asarray(x, dtype=np.float64)
    k = np.arange(1, _SF_SERIES_TERMS + 1)
    signs = np.where(k % 2 == 1, 1.0, -1.0)
    tails = ndtr(-np.multiply.outer(np.maximum(x, _SF_SERIES_MIN_X), k))
    sf = np.clip(8.0 * (tails * (signs * k)).sum(axis=-1), 0.0, 1.0)
    sf = np.where(x < _SF_SERIES_MIN_X, 1.0, sf)
    return float(sf) if sf.ndim == 0 else sf


def _check_rows(name, array, n_samples):
    n_rows = _num_samples(array)
    if n_rows != n_samples:
        raise ValueError(
            f"{name} has {n_rows} rows but y_true and y_pred have {n_samples}."
        )


def _column_names(array, prefix, n_columns):
    columns = getattr(array, "columns", None)
    if columns is not None:
        return [str(c) for c in columns]
    return [f"{prefix}{j}" for j in range(n_columns)]


def _encode_groups(groups, n_samples):
    """Turn ``groups`` into segment features and named table rows.

    Returns ``(features, table_rows)``: features are ``(name, codes,
    value_labels)`` triples; table rows are ``(name, boolean mask)`` pairs.
    """
    if groups is None:
        return [], []
    _check_rows("groups", groups, n_samples)
    array = check_array(groups, ensure_2d=False, dtype=None, input_name="groups")
    if array.ndim == 2 and hasattr(groups, "columns"):
        array = groups
    indicators, _, names = encode_groups(array, n_samples, against="y_true")
    member = indicators == 1.0
    if np.ndim(array) == 1:
        # User-named groups are all kept: collapsing one into "other" would
        # hide exactly the group the caller asked about.
        codes = np.argmax(member, axis=1)
        table_rows = [(f"group={lab}", member[:, i]) for i, lab in enumerate(names)]
        return [("group", codes, names)], table_rows
    features = [
        (name, member[:, j].astype(np.intp), ["0", "1"]) for j, name in enumerate(names)
    ]
    return features, [(name, member[:, j]) for j, name in enumerate(names)]


def _as_numeric(column):
    if column.dtype.kind in "biuf":
        return column.astype(np.float64)
    if column.dtype.kind == "O" and all(isinstance(v, Real) for v in column):
        return column.astype(np.float64)
    return None


def _encode_X(X, n_samples, max_values_per_feature, n_bins):
    """Turn each column of ``X`` into a categorical segment feature."""
    if X is None:
        return []
    _check_rows("X", X, n_samples)
    array = check_array(X, dtype=None, input_name="X")
    features = []
    for name, column in zip(_column_names(X, "x", array.shape[1]), array.T):
        numeric = _as_numeric(column)
        # Unique on the raw column, so labels read as given (1, not 1.0).
        values, codes, counts = np.unique(
            column, return_inverse=True, return_counts=True
        )
        if len(values) <= max_values_per_feature:
            labels = [str(v) for v in values]
        elif numeric is not None:
            quantiles = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
            # Heavy ties can merge quantiles; unique edges keep bins ordered.
            edges = np.unique(np.quantile(numeric, quantiles))
            codes = np.searchsorted(edges, numeric, side="right")
            labels = [f"bin{b}" for b in range(len(edges) + 1)]
        else:
            top = np.argsort(-counts, kind="stable")[:max_values_per_feature]
            keep = np.sort(top)
            remap = np.full(len(values), len(keep))
            remap[keep] = np.arange(len(keep))
            codes = remap[codes]
            labels = [str(values[i]) for i in keep] + ["other"]
        features.append((name, codes, labels))
    return features


def _iter_segments(value_masks, max_depth, min_segment_size):
    """Yield ``(feature_indices, value_indices, mask)`` in enumeration order.

    Order: each depth in turn, feature combinations in lexicographic order,
    value tuples in lexicographic order. Extensions of a prefix that is
    already too small are skipped; they would be dropped anyway.
    """

    def extend(combo, position, prefix, chosen):
        for value, mask in enumerate(value_masks[combo[position]]):
            if prefix is not None:
                mask = prefix & mask
            if np.count_nonzero(mask) < min_segment_size:
                continue
            if position == len(combo) - 1:
                yield combo, (*chosen, value), mask
            else:
                yield from extend(combo, position + 1, mask, (*chosen, value))

    for depth in range(1, max_depth + 1):
        for combo in itertools.combinations(range(len(value_masks)), depth):
            yield from extend(combo, 0, None, ())


def _group_bucket_table(y_true, y_pred, sample_weight, table_rows, n_buckets):
    """Weighted residual and mass per (group, prediction-quantile bucket)."""
    edges = np.quantile(y_pred, np.linspace(0.0, 1.0, n_buckets + 1))
    bucket = np.searchsorted(edges[1:-1], y_pred, side="right")
    rows = [("all", np.ones(y_pred.shape[0], dtype=bool)), *table_rows]
    H = np.column_stack([member for _, member in rows]).astype(np.float64)
    values = np.column_stack([sample_weight, sample_weight * (y_true - y_pred)])
    count, residual_sum = cell_sums(
        *map(torch.from_numpy, (H, bucket)), n_buckets, torch.from_numpy(values)
    ).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_residual = np.where(count > 0, residual_sum / count, np.nan)
    return {
        "groups": [name for name, _ in rows],
        "bucket_edges": edges,
        "weighted_count": count,
        "mean_residual": mean_residual,
        "mass": count / sample_weight.sum(),
    }


def _worst_cell(table, min_cell_fraction):
    eligible = (table["mass"] >= min_cell_fraction) & (table["weighted_count"] > 0)
    if not eligible.any():
        return np.nan
    return float(np.abs(table["mean_residual"][eligible]).max())


def worst_group_bucket_residual(
    y_true,
    y_pred,
    *,
    groups=None,
    sample_weight=None,
    n_buckets=10,
    min_cell_fraction=0.01,
):
    """Largest absolute mean residual over (group, prediction bucket) cells.

    The HKRR-style l-infinity multicalibration error: predictions are cut into
    ``n_buckets`` quantile buckets; for every group (plus the whole
    population) and bucket holding at least ``min_cell_fraction`` of the total
    weight, take ``|weighted mean of (y - f)|``; return the maximum.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed outcomes.
    y_pred : array-like of shape (n_samples,)
        Predictions.
    groups : array-like of shape (n_samples, n_groups) or (n_samples,), \
            default=None
        0/1 indicator matrix, or one group label per row.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights.
    n_buckets : int, default=10
        Number of quantile buckets of ``y_pred``.
    min_cell_fraction : float, default=0.01
        Cells with a smaller share of the total weight are ignored.

    Returns
    -------
    float
        ``nan`` when no cell is heavy enough.

    Examples
    --------
    >>> from skml.metrics import worst_group_bucket_residual
    >>> y = [0.0, 1.0, 0.0, 1.0]
    >>> f = [0.0, 0.5, 0.5, 1.0]
    >>> worst_group_bucket_residual(y, f, groups=[0, 0, 1, 1], n_buckets=2)
    0.5
    """
    y_true, y_pred, sample_weight = _check_targets(y_true, y_pred, sample_weight)
    _check_param("n_buckets", n_buckets, Integral, 1)
    _check_param("min_cell_fraction", min_cell_fraction, Real, 0.0, 1.0)
    _, table_rows = _encode_groups(groups, y_true.shape[0])
    table = _group_bucket_table(y_true, y_pred, sample_weight, table_rows, n_buckets)
    return _worst_cell(table, min_cell_fraction)


def multicalibration_error(
    y_true,
    y_pred,
    *,
    groups=None,
    X=None,
    sample_weight=None,
    max_depth=3,
    n_bins=3,
    max_values_per_feature=3,
    min_segment_size=10,
    max_segments=1000,
    n_buckets=10,
    min_cell_fraction=0.01,
    return_details=False,
):
    """Multicalibration error (MCE) over intersecting segments.

    MCGrad's "Measuring multi-calibration" statistic. Segment features are
    the columns of ``groups`` and of ``X``; numeric ``X`` columns with more
    than ``max_values_per_feature`` distinct values are cut into ``n_bins``
    quantile bins, other columns keep their ``max_values_per_feature`` most
    frequent values and merge the rest into ``"other"``. Segments are the
    whole population, then every conjunction of one feature value, of two
    values of distinct features, ... up to ``max_depth`` features, in that
    order, until ``max_segments`` segments with at least
    ``min_segment_size`` rows are collected. For each segment,
    ``ecce / sigma`` (see :func:`ecce`) is a z-like score; the MCE is the
    largest one.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed outcomes (real-valued or 0/1).
    y_pred : array-like of shape (n_samples,)
        Predictions of ``E[y | x]``.
    groups : array-like of shape (n_samples, n_groups) or (n_samples,), \
            default=None
        0/1 indicator matrix (one segment feature per column), or one label
        per row (one categorical feature; every label is kept).
    X : array-like of shape (n_samples, n_features), default=None
        Further segment features.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights.
    max_depth : int, default=3
        Largest number of features in one conjunction; 0 audits only the
        whole population.
    n_bins : int, default=3
        Quantile bins for numeric features.
    max_values_per_feature : int, default=3
        Distinct values kept per categorical feature.
    min_segment_size : int, default=10
        Segments with fewer rows are dropped.
    max_segments : int, default=1000
        Stop once this many segments are collected.
    n_buckets : int, default=10
        Prediction buckets of the group x bucket table (details only).
    min_cell_fraction : float, default=0.01
        Least weight share of a table cell counted in ``worst_cell_residual``.
    return_details : bool, default=False
        Return a :class:`~sklearn.utils.Bunch` instead of a float.

    Returns
    -------
    float or Bunch
        ``mce_sigma = max_s ecce_s / sigma_s`` over segments with a positive
        finite sigma (``nan`` if there is none); lower is better. With
        ``return_details=True`` a Bunch with ``mce_sigma``, ``mce``
        (``mce_sigma * sigma_global``, in units of ``y``), ``mde``
        (``5 * sigma_global``), ``p_value`` (smallest per-segment p-value,
        not adjusted for multiplicity), ``sigma_global``, ``n_segments``,
        ``worst_segment``, ``segments`` (list of dicts with ``description``,
        ``size``, ``ecce``, ``sigma``, ``ecce_sigma``), ``table`` (dict with
        ``groups``, ``bucket_edges``, ``weighted_count``, ``mean_residual``
        and ``mass``, arrays of shape (n_groups + 1, n_buckets), first row
        ``"all"``) and ``worst_cell_residual``.

    Notes
    -----
    The defaults are MCGrad's (``min_segment_size=10``, depth 3, 1000
    segments). A segment's sigma comes from the successive differences of
    its own residuals, so in a segment of a few rows whose outcomes happen
    to tie (a top-coded or zero-inflated ``y``) sigma can be far smaller
    than the outcome's spread in the population, and a small bias there
    reads as a large z-score. On such data one such segment can set the
    maximum; the ``segments`` of ``return_details=True`` show its size, and
    a larger ``min_segment_size`` (say 100) measures the calibration of
    segments big enough to estimate their own noise.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.metrics import multicalibration_error
    >>> rng = np.random.default_rng(0)
    >>> f = rng.uniform(size=2000)
    >>> group = rng.integers(0, 2, size=2000)
    >>> y = f + 0.5 * group + rng.normal(scale=0.1, size=2000)
    >>> details = multicalibration_error(y, f, groups=group, return_details=True)
    >>> details.worst_segment
    'group=1'
    >>> bool(details.mce_sigma > 100), bool(details.p_value < 1e-6)
    (True, True)
    """
    y_true, y_pred, sample_weight = _check_targets(y_true, y_pred, sample_weight)
    _check_param("max_depth", max_depth, Integral, 0)
    _check_param("n_bins", n_bins, Integral, 1)
    _check_param("max_values_per_feature", max_values_per_feature, Integral, 1)
    _check_param("min_segment_size", min_segment_size, Integral, 1)
    _check_param("max_segments", max_segments, Integral, 1)
    _check_param("n_buckets", n_buckets, Integral, 1)
    _check_param("min_cell_fraction", min_cell_fraction, Real, 0.0, 1.0)
    n_samples = y_true.shape[0]
    group_features, table_rows = _encode_groups(groups, n_samples)
    features = group_features + _encode_X(X, n_samples, max_values_per_feature, n_bins)

    # One sort; a segment's rows in sorted order are the sorted order masked.
    order = np.argsort(y_pred, kind="stable")
    residual = (y_true - y_pred)[order]
    weight = sample_weight[order]
    value_masks = [
        [codes[order] == v for v in range(len(labels))] for _, codes, labels in features
    ]

    segments = []
    if n_samples >= min_segment_size:
        value, sigma = _ecce_sorted(residual, weight)
        segments.append(("all", n_samples, value, sigma))
    candidates = _iter_segments(value_masks, max_depth, min_segment_size)
    while len(segments) < max_segments:
        combo_values = next(candidates, None)
        if combo_values is None:
            break
        combo, values, mask = combo_values
        description = " & ".join(
            f"{features[j][0]}={features[j][2][v]}" for j, v in zip(combo, values)
        )
        value, sigma = _ecce_sorted(residual[mask], weight[mask])
        segments.append((description, int(np.count_nonzero(mask)), value, sigma))

    scores = np.array(
        [v / s if s > 0 and np.isfinite(s) else np.nan for _, _, v, s in segments]
    )
    scored = np.isfinite(scores)
    mce_sigma = float(scores[scored].max()) if scored.any() else np.nan
    if not return_details:
        return mce_sigma

    sigma_global = _ecce_sorted(residual, weight)[1]
    table = _group_bucket_table(y_true, y_pred, sample_weight, table_rows, n_buckets)
    p_values = _brownian_range_sf(scores[scored])
    return Bunch(
        mce_sigma=mce_sigma,
        mce=mce_sigma * sigma_global,
        mde=5.0 * sigma_global,
        p_value=float(p_values.min()) if scored.any() else np.nan,
        sigma_global=sigma_global,
        n_segments=len(segments),
        worst_segment=segments[int(np.nanargmax(scores))][0] if scored.any() else None,
        segments=[
            {
                "description": description,
                "size": size,
                "ecce": value,
                "sigma": sigma,
                "ecce_sigma": float(score),
            }
            for (description, size, value, sigma), score in zip(segments, scores)
        ],
        table=table,
        worst_cell_residual=_worst_cell(table, min_cell_fraction),
    )
