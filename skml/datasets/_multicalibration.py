"""Synthetic designs where a flexible base model is miscalibrated on subgroups.

The designs S1-S3 follow ``shared/research/mcboost.md`` §4.2. Each returns the
three splits the benchmark plan uses (base model training 50%, audit 25%,
test 25%) together with a fitted base model, so tests, examples and the
benchmark all start from the same miscalibrated predictor.
"""

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

DESIGNS = ("S1", "S2", "S3", "calibrated", "hidden", "interaction", "rare")
# Designs whose audit groups are meant to stay unnamed: the miscalibrated
# subgroup is a column of X, a feature interaction or a rare category.
UNNAMED = ("hidden", "interaction", "rare")


def _true_mean(X, design):
    """E[y | x] of the designs; the group indicator is the last column of X."""
    x1, x2, x3, a = X[:, 0], X[:, 1], X[:, 2], X[:, -1]
    base = np.sin(x1) + 0.5 * x2**2 + x3
    if design == "S1":
        return base + a * (1.5 + x3)
    return base


class _FixedModel(RegressorMixin, BaseEstimator):
    """A 'model' with nothing to learn: fit only records the input shape."""

    def fit(self, X, y=None):
        validate_data(self, X)
        self.fitted_ = True
        return self


class _LevelDistorted(_FixedModel):
    """A fitted model whose predictions are stretched about ``center``."""

    def __init__(self, model=None, center=0.0, slope=1.25):
        self.model = model
        self.center = center
        self.slope = slope

    def predict(self, X):
        check_is_fitted(self)
        return self.center + self.slope * (self.model.predict(X) - self.center)


def _unnamed(design, n_samples, n_features, noise, rng):
    """The designs whose miscalibrated subgroup is not passed as groups.

    Returns the splits, the group indicators of every split (for scoring
    only) and the fitted base model.
    """
    n_train, n_audit = n_samples // 2, n_samples // 4
    n_test = n_samples - n_train - n_audit
    d = n_features

    def draw(n, rare):
        X = rng.standard_normal((n, d))
        f = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + X[:, 2]
        if design == "hidden":
            X[:, -1] = rng.random_sample(n) < rare
            G = X[:, [-1]].copy()
            f = f + X[:, -1] * (1.5 + X[:, 2])
        elif design == "interaction":
            cell = (X[:, 4] > 0.5) & (X[:, 5] > 0.5)
            if rare is not None:
                # Thin the cell out of the training rows.
                keep = ~cell | (rng.random_sample(n) < rare)
                X, f, cell = X[keep], f[keep], cell[keep]
            G = cell[:, None].astype(np.float64)
            f = f + 1.5 * cell * (1.0 + X[:, 3])
        else:  # rare: an 8-level category, level 7 rare in training
            p = np.full(8, (1 - rare) / 7)
            p[7] = rare
            c = rng.choice(8, size=len(X), p=p)
            X[:, -1] = c
            G = (c[:, None] == np.arange(8)[None, :]).astype(np.float64)
            f = f + 0.3 * c / 7 + (c == 7) * (2.0 + X[:, 2])
        y = f + noise * rng.standard_normal(len(f))
        return X, y, f, G

    if design == "hidden":
        X, y, _, G = draw(3 * n_train, 0.3)
        keep = (G[:, 0] == 0) | (rng.random_sample(len(y)) < 0.02)
        X_train, y_train = X[keep][:n_train], y[keep][:n_train]
        share = 0.3
    elif design == "interaction":
        X_train, y_train, _, _ = draw(2 * n_train, 0.05)
        X_train, y_train = X_train[:n_train], y_train[:n_train]
        share = None
    else:
        X_train, y_train, _, _ = draw(n_train, 0.005)
        share = 0.08
    X_audit, y_audit, f_audit, G_audit = draw(n_audit, share)
    X_test, y_test, f_test, G_test = draw(n_test, share)
    base = HistGradientBoostingRegressor(max_iter=200, random_state=rng.randint(2**31))
    base = base.fit(X_train, y_train)
    if design == "hidden":
        base = _LevelDistorted(base, float(np.mean(y_train)), 1.25).fit(X_train)
    return Bunch(
        X_train=X_train,
        y_train=y_train,
        X_audit=X_audit,
        y_audit=y_audit,
        X_test=X_test,
        y_test=y_test,
        groups_audit=G_audit,
        groups_test=G_test,
        f_audit=f_audit,
        f_test=f_test,
        estimator=FrozenEstimator(base),
        group_feature=n_features - 1 if design != "interaction" else None,
        design=design,
    )


class _DistortedTruth(_FixedModel):
    """A 'model' that predicts a known distortion of the true mean (S2).

    ``mu + (1 + spread * (2a - 1)) * (f* - mu)``: over-dispersed in group
    a = 1, under-dispersed in a = 0, with every group mean left (almost)
    exact, so a group-only audit cannot see the distortion.
    """

    def __init__(self, spread=0.4, center=0.0, design="S2"):
        self.spread = spread
        self.center = center
        self.design = design

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        f = _true_mean(X, self.design)
        if self.spread == 0:
            return f
        scale = 1.0 + self.spread * (2.0 * X[:, -1] - 1.0)
        return self.center + scale * (f - self.center)


def make_multicalibration_regression(
    n_samples=8000, *, design="S1", n_features=10, noise=0.5, random_state=None
):
    """Train/audit/test splits and a base model miscalibrated on subgroups.

    Features are ``x ~ N(0, I)`` (``n_features - 1`` columns) plus a binary
    group indicator ``a`` as the last column; ``y = f*(x) + noise * eps``.

    - ``"S1"`` (under-represented group): ``f* = sin x1 + x2^2/2 + x3 +
      a (1.5 + x3)`` with ``P(a = 1) = 0.15``; the base gradient-boosting model
      is trained on a split that keeps only 2% of the group's rows, so it
      misses the group's level and slope.
    - ``"S2"`` (level-set distortion): the base predicts
      ``mu + (1 + 0.4 (2a - 1)) (f* - mu)``: every group mean is right, the
      spread is wrong in opposite directions for the two groups.
    - ``"S3"`` (accurate but miscalibrated): a random forest (R^2 about 0.8),
      whose averaging pulls its extreme predictions toward the mean, so the
      level sets at both ends are biased.
    - ``"calibrated"``: the base predicts ``f*`` exactly.

    Three designs are meant to be audited without naming the subgroup
    (``groups_*`` then serve for scoring only), as users usually have it:

    - ``"hidden"``: S1's truth with the group at 30% of the audit and test
      rows; the base model saw only 2% of the group's rows and its
      predictions are stretched by 1.25 about the mean (level distortion).
      The group is the last column of X.
    - ``"interaction"``: ``f* = sin x1 + x2^2/2 + x3 + 1.5 q (1 + x4)`` with
      the cell ``q = 1{x5 > 0.5} 1{x6 > 0.5}`` (about 10% of rows) thinned to
      5% of its rows in the base model's training data; the group is ``q``.
    - ``"rare"``: the last column is an 8-level category ``c`` (level 7 at 8%
      of the audit and test rows, 0.5% of the training rows) with
      ``f* = sin x1 + x2^2/2 + x3 + 0.3 c/7 + 1{c = 7} (2 + x3)``; the groups
      are the 8 levels' indicators.

    Parameters
    ----------
    n_samples : int, default=8000
        Total rows over the three splits (50% train, 25% audit, 25% test).
    design : {"S1", "S2", "S3", "calibrated", "hidden", "interaction", "rare"}, \
            default="S1"
        Which design.
    n_features : int, default=10
        Number of columns of X, the group indicator included (>= 4).
    noise : float, default=0.5
        Standard deviation of the Gaussian noise.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``X_train, y_train, X_audit, y_audit, X_test, y_test`` (the group
        indicator is the last column of X), ``groups_audit``, ``groups_test``
        (``(n, 1)`` indicator arrays), ``f_audit``, ``f_test`` (the true mean),
        ``estimator`` (the fitted base model wrapped in
        :class:`~sklearn.frozen.FrozenEstimator`), ``group_feature`` (the
        column index of the group indicator) and ``design``.

    Examples
    --------
    >>> from skml.datasets import make_multicalibration_regression
    >>> data = make_multicalibration_regression(2000, design="S2", random_state=0)
    >>> data.X_audit.shape, data.groups_audit.shape
    ((500, 10), (500, 1))
    """
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}.")
    if n_features < 4:
        raise ValueError(f"n_features must be >= 4, got {n_features}.")
    if n_samples < 40:
        raise ValueError(f"n_samples must be >= 40, got {n_samples}.")
    rng = check_random_state(random_state)
    if design in UNNAMED:
        return _unnamed(design, n_samples, n_features, noise, rng)
    n_train = n_samples // 2
    n_audit = n_samples // 4
    n_test = n_samples - n_train - n_audit
    share = 0.15 if design == "S1" else 0.3

    def draw(n):
        X = rng.standard_normal((n, n_features))
        X[:, -1] = rng.random_sample(n) < share
        f = _true_mean(X, "S1" if design == "S1" else design)
        return X, f + noise * rng.standard_normal(n), f

    if design == "S1":
        # Draw extra rows so that keeping only 2% of the group still leaves
        # n_train training rows.
        X, y, _ = draw(3 * n_train)
        keep = (X[:, -1] == 0) | (rng.random_sample(len(y)) < 0.02)
        X_train, y_train = X[keep][:n_train], y[keep][:n_train]
    else:
        X_train, y_train, _ = draw(n_train)
    X_audit, y_audit, f_audit = draw(n_audit)
    X_test, y_test, f_test = draw(n_test)

    seed = rng.randint(2**31)
    if design == "S1":
        base = HistGradientBoostingRegressor(max_iter=200, random_state=seed)
        base = base.fit(X_train, y_train)
    elif design == "S3":
        base = RandomForestRegressor(
            n_estimators=100, min_samples_leaf=10, max_features=0.3, random_state=seed
        )
        base = base.fit(X_train, y_train)
    else:
        spread = 0.4 if design == "S2" else 0.0
        base = _DistortedTruth(spread=spread, center=float(np.mean(f_audit)))
        base = base.fit(X_train)

    return Bunch(
        X_train=X_train,
        y_train=y_train,
        X_audit=X_audit,
        y_audit=y_audit,
        X_test=X_test,
        y_test=y_test,
        groups_audit=X_audit[:, [-1]].copy(),
        groups_test=X_test[:, [-1]].copy(),
        f_audit=f_audit,
        f_test=f_test,
        estimator=FrozenEstimator(base),
        group_feature=n_features - 1,
        design=design,
    )
