"""Bias, variance and covariance of the heads across training sets, by refits."""

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_array, check_X_y


def head_decomposition(
    estimator,
    X,
    y,
    X_eval,
    y_eval=None,
    *,
    n_resamples=50,
    sample_weight=None,
    random_state=None,
):
    """Bias-variance-covariance decomposition of a multi-head ensemble by refits.

    The decomposition of Ueda and Nakano (1996) that the paper states for
    multi-head attention: at fixed evaluation points, the ensemble
    ``fbar = sum_h w_h f_h`` varies with the training set, and its squared
    error splits into

    ``E (fbar - f)^2 = bias2 + variance + covariance``

    with ``bias2 = (E fbar - f)^2``, ``variance = sum_h Var(w_h f_h)`` and
    ``covariance = sum_{h != g} Cov(w_h f_h, w_g f_g)``, the expectations and
    (co)variances taken over training sets and averaged over the evaluation
    points (and targets). Decorrelated heads make the covariance term small.

    The training sets are half-samples: ``n_resamples`` subsets of
    ``n // 2`` rows drawn without replacement, each refitted with a clone of
    ``estimator``. For a linear smoother the variance across half-samples of
    a fixed set estimates the variance across independent sets of the full
    size n (the finite-population factor ``1 - m / n = 1/2`` offsets the
    halved size), so no rescaling is applied. Half-samples, not bootstrap
    resamples: a bootstrap resample holds copies of a row, and leave-one-out
    training would see the copy of each held-out row. ``E fbar`` is
    estimated by the mean over the refits; since that mean carries the noise
    of the one training set, ``bias2`` subtracts the estimated variance of
    ``fbar`` (times ``1 + 1 / n_resamples``), clipped at 0.

    Trained heads learn their projections from the ``n // 2`` rows of each
    half-sample, so their spread across half-samples is that of a metric
    learned from half the data: larger than at the full size, and the
    subtraction can then overshoot (hence the clip). The terms are exact in
    expectation only for fixed projections (``max_iter=0``).

    Parameters
    ----------
    estimator : estimator
        An unfitted or fitted multi-head regressor with ``predict_heads`` and a
        fitted ``head_weights_`` (such as :class:`NWAttentionRegressor`); it
        is cloned, and not modified. Fix its ``random_state`` to measure the
        variation due to the training set alone.
    X : array-like of shape (n_samples, n_features)
        The training set the half-samples are drawn from.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
    X_eval : array-like of shape (n_eval, n_features)
        The fixed evaluation points.
    y_eval : array-like of shape (n_eval,) or (n_eval, n_targets), default=None
        What the bias is measured against: the noiseless target where it is
        known (then ``mse`` estimates the excess risk), held-out y otherwise
        (then ``bias2`` also holds the noise variance). None: ``bias2`` and
        ``mse`` are NaN.
    n_resamples : int, default=50
        Number of half-samples (refits); at least 2.
    sample_weight : array-like of shape (n_samples,), default=None
        Passed to each refit for its rows.
    random_state : int, RandomState instance or None, default=None
        Draws the half-samples.

    Returns
    -------
    dict
        ``bias2``, ``variance``, ``covariance`` and their sum ``mse`` (floats);
        ``head_covariance`` (n_heads, n_heads): the covariance matrix of the
        weighted heads ``w_h f_h`` across refits, averaged over the points
        and targets (its trace is ``variance``, its off-diagonal sum
        ``covariance``); ``head_variance``, its diagonal; ``n_resamples`` and
        ``n_train`` (rows per refit).

    Notes
    -----
    The paper states the decomposition over training sets; its estimate by
    half-sample refits is ours. ``tests/attention/test_decomposition.py``
    checks it against the decomposition over independent training sets drawn
    from a known generator.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.attention import NWAttentionRegressor, head_decomposition
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> f = lambda X: np.sin(X[:, 0])
    >>> y = f(X) + 0.3 * rng.normal(size=200)
    >>> X_eval = rng.normal(size=(50, 3))
    >>> # two untrained heads (max_iter=0) on the gradient start's directions
    >>> model = NWAttentionRegressor(2, 1, degree=0, max_iter=0)
    >>> parts = head_decomposition(
    ...     model, X, y, X_eval, f(X_eval), n_resamples=10, random_state=0
    ... )
    >>> sorted(parts)[:4]
    ['bias2', 'covariance', 'head_covariance', 'head_variance']
    >>> bool(np.isclose(parts["mse"],
    ...      parts["bias2"] + parts["variance"] + parts["covariance"]))
    True
    """
    X, y = check_X_y(X, y, multi_output=True, y_numeric=True, dtype=np.float64)
    X_eval = check_array(X_eval, dtype=np.float64)
    if X_eval.shape[1] != X.shape[1]:
        raise ValueError(
            f"X_eval has {X_eval.shape[1]} features, but X has {X.shape[1]}."
        )
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be at least 2, got {n_resamples}.")
    n = X.shape[0]
    m = n // 2
    if m < 2:
        raise ValueError(f"head_decomposition needs at least 4 rows, got {n}.")
    if not hasattr(estimator, "predict_heads"):
        raise TypeError(
            f"{type(estimator).__name__} has no predict_heads: head_decomposition "
            "needs a multi-head estimator such as NWAttentionRegressor."
        )
    sw = None
    if sample_weight is not None:
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
    target = None
    if y_eval is not None:
        target = check_array(y_eval, dtype=np.float64, ensure_2d=False)
        if target.shape[0] != X_eval.shape[0]:
            raise ValueError(
                f"y_eval has {target.shape[0]} rows, but X_eval has {X_eval.shape[0]}."
            )
        target = target.reshape(len(X_eval), -1)
    rng = check_random_state(random_state)

    parts = []  # per refit: (n_eval, H, t) weighted head predictions
    for _ in range(n_resamples):
        rows = rng.choice(n, m, replace=False)
        model = clone(estimator)
        if sw is None:
            model.fit(X[rows], y[rows])
        else:
            model.fit(X[rows], y[rows], sample_weight=sw[rows])
        heads = np.asarray(model.predict_heads(X_eval), dtype=np.float64)
        heads = heads.reshape(len(X_eval), heads.shape[1], -1)
        parts.append(heads * np.asarray(model.head_weights_)[None, :, None])
    G = np.stack(parts)  # (B, q, H, t)
    B = G.shape[0]
    centred = G - G.mean(0)
    # covariance of the weighted heads across refits, per point and target
    C = np.einsum("bqht,bqgt->qtgh", centred, centred) / (B - 1)
    C = C.mean((0, 1))  # (H, H), averaged over points and targets
    variance = float(np.trace(C))
    covariance = float(C.sum() - np.trace(C))
    if target is None:
        bias2 = float("nan")
    else:
        if target.shape[1] != G.shape[3]:
            raise ValueError(
                f"y_eval has {target.shape[1]} targets, the refits predict "
                f"{G.shape[3]}."
            )
        fbar = G.sum(2)  # (B, q, t)
        spread = fbar.var(0, ddof=1)
        bias2 = float(
            max(
                np.mean((fbar.mean(0) - target) ** 2) - (1 + 1 / B) * np.mean(spread),
                0.0,
            )
        )
    return {
        "bias2": bias2,
        "variance": variance,
        "covariance": covariance,
        "mse": bias2 + variance + covariance,
        "head_covariance": C,
        "head_variance": np.diag(C).copy(),
        "n_resamples": B,
        "n_train": m,
    }
