"""A covariate-shift design for the transfer diagnostics of multicalibration.

The source law is design S1 of :func:`make_multicalibration_regression` plus a
signed-square effect of ``x4`` that the base model never saw; the target law
differs from the source only in the covariates, by a known density ratio that
lies either along the audited group or along ``x4``.
"""

from numbers import Real

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.utils import Bunch, check_random_state

SHIFTS = ("inside", "outside")

_N_FEATURES = 10
_SHARE = 0.15  # P(a = 1) in the source
_NOISE = 0.5
_X4_EFFECT = 0.8
_X4 = 3  # column of x4
# exp(_GAMMA) is the odds ratio that takes the group share from 15% to 45%.
_GAMMA = float(np.log((0.45 / 0.55) / (_SHARE / (1 - _SHARE))))
# Mean of x4 under the "outside" target at strength=1.
_BETA = 0.3


def _true_mean(X, x4_effect=_X4_EFFECT):
    """E[y | x]; the group indicator ``a`` is the last column of X."""
    x1, x2, x3, x4, a = X[:, 0], X[:, 1], X[:, 2], X[:, _X4], X[:, -1]
    return np.sin(x1) + 0.5 * x2**2 + x3 + a * (1.5 + x3) + x4_effect * x4 * np.abs(x4)


def make_covariate_shift_regression(
    n_samples=8000, *, shift="inside", strength=1.0, random_state=None
):
    """Source and covariate-shifted target samples, and a biased base model.

    The features are ``x ~ N(0, I)`` (9 columns) and a group indicator
    ``a ~ Bernoulli(0.15)`` as the last (10th) column;
    ``y = f*(x) + 0.5 eps`` with::

        f*(x) = sin x1 + x2^2 / 2 + x3 + a (1.5 + x3) + 0.8 x4 |x4|.

    The base model, a :class:`~sklearn.ensemble.HistGradientBoostingRegressor`,
    is fitted on a training split that keeps only 2% of the group's rows (as
    in design S1), with leaves of at least 1% of its rows so that it cannot
    split those few rows off, and whose outcomes lack the ``x4`` term (the
    training population had no ``x4`` effect). Its residual on the source therefore
    depends both on ``a`` (a level of about 1.5 in the group) and on ``x4``.

    The audit split is drawn from the source law ``p``. The target split is
    drawn from ``q(x) = w(x) p(x) / E_p[w]`` with the same conditional law of
    ``y`` given ``x`` and a density ratio

    - ``shift="inside"``: ``w(x) = exp(strength * gamma * a)``, a shift along
      the group, with ``gamma = log(4.64)`` so that at ``strength=1`` the
      group share goes from 15% to 45%. A
      :class:`~skml.calibration.MCBoostRegressor` with ``auditor="groups"``
      fitted on ``groups_audit`` audits exactly this direction.
    - ``shift="outside"``: ``w(x) = exp(strength * beta * x4)`` with
      ``beta = 0.3``: the target has ``x4 ~ N(0.3 * strength, 1)``. A
      group-only audit does not see ``x4``, while the residual grows with
      ``x4``, so such a model is biased on this target.

    Both ratios tilt one independent coordinate exponentially, which keeps it
    in its family (a Bernoulli with a larger share, a Gaussian with a shifted
    mean), so the target rows are drawn exactly from ``q`` without a
    rejection step. ``strength=0`` gives a target from the source law.

    Parameters
    ----------
    n_samples : int, default=8000
        Total rows over the three splits: 50% base-model training, 25% audit
        (source) and 25% target.
    shift : {"inside", "outside"}, default="inside"
        Direction of the covariate shift: along the group indicator or along
        ``x4``.
    strength : float, default=1.0
        Multiplies the log density ratio; 0 means no shift.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        X_train : ndarray of shape (n_train, 10)
            Rows the base model was fitted on (group indicator last).
        y_train : ndarray of shape (n_train,)
            Their outcomes, without the ``x4`` term.
        X_audit : ndarray of shape (n_audit, 10)
            Source rows for auditing / post-processing.
        y_audit : ndarray of shape (n_audit,)
            Their outcomes.
        groups_audit : ndarray of shape (n_audit, 1)
            The group indicator of the audit rows.
        f_audit : ndarray of shape (n_audit,)
            ``E[y | x]`` on the audit rows.
        true_density_ratio_audit : ndarray of shape (n_audit,)
            ``dq/dp`` on the audit rows (its population mean is 1).
        X_target : ndarray of shape (n_target, 10)
            Rows from the shifted target law.
        y_target : ndarray of shape (n_target,)
            Their outcomes.
        groups_target : ndarray of shape (n_target, 1)
            The group indicator of the target rows.
        f_target : ndarray of shape (n_target,)
            ``E[y | x]`` on the target rows.
        estimator : :class:`~sklearn.frozen.FrozenEstimator`
            The fitted base model.
        group_feature : int
            Column index of the group indicator (9).
        shift : str
            The ``shift`` argument.
        log_ratio_coef : float
            ``strength * gamma`` ("inside") or ``strength * beta``
            ("outside"): the coefficient of ``a`` or ``x4`` in ``log w``.

    See Also
    --------
    make_multicalibration_regression : The source design S1 without a shift.
    skml.calibration._transfer.transfer_report : Estimates the target bias
        of a fitted model from the source rows and unlabelled target rows.

    Examples
    --------
    >>> from skml.datasets._shift import make_covariate_shift_regression
    >>> data = make_covariate_shift_regression(2000, random_state=0)
    >>> data.X_audit.shape, data.X_target.shape
    ((500, 10), (500, 10))
    >>> bool(data.groups_audit.mean() < 0.25 < 0.35 < data.groups_target.mean())
    True
    """
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}.")
    if (
        not isinstance(strength, Real)
        or isinstance(strength, bool)
        or not np.isfinite(strength)
    ):
        raise ValueError(f"strength must be a finite real number, got {strength!r}.")
    if n_samples < 40:
        raise ValueError(f"n_samples must be >= 40, got {n_samples}.")
    rng = check_random_state(random_state)
    n_train = n_samples // 2
    n_audit = n_samples // 4
    n_target = n_samples - n_train - n_audit

    def draw(n, share=_SHARE, x4_mean=0.0, x4_effect=_X4_EFFECT):
        X = rng.standard_normal((n, _N_FEATURES))
        X[:, _X4] += x4_mean
        X[:, -1] = rng.random_sample(n) < share
        f = _true_mean(X, x4_effect)
        return X, f + _NOISE * rng.standard_normal(n), f

    # Extra candidates so that keeping 2% of the group leaves n_train rows.
    X, y, _ = draw(3 * n_train, x4_effect=0.0)
    keep = (X[:, -1] == 0) | (rng.random_sample(len(y)) < 0.02)
    X_train, y_train = X[keep][:n_train], y[keep][:n_train]
    X_audit, y_audit, f_audit = draw(n_audit)

    if shift == "inside":
        coef = strength * _GAMMA
        odds = _SHARE / (1 - _SHARE) * np.exp(coef)
        X_target, y_target, f_target = draw(n_target, share=odds / (1 + odds))
        mean_w = 1 - _SHARE + _SHARE * np.exp(coef)
        ratio = np.exp(coef * X_audit[:, -1]) / mean_w
    else:
        coef = strength * _BETA
        X_target, y_target, f_target = draw(n_target, x4_mean=coef)
        ratio = np.exp(coef * X_audit[:, _X4] - 0.5 * coef**2)

    # Leaves of at least 1% of the rows (more than the ~0.35% group rows kept)
    # so that the base model cannot split the group off and learn its level.
    base = HistGradientBoostingRegressor(
        max_iter=200,
        min_samples_leaf=max(20, n_train // 100),
        random_state=rng.randint(2**31),
    )
    base = base.fit(X_train, y_train)
    return Bunch(
        X_train=X_train,
        y_train=y_train,
        X_audit=X_audit,
        y_audit=y_audit,
        groups_audit=X_audit[:, [-1]].copy(),
        f_audit=f_audit,
        true_density_ratio_audit=ratio,
        X_target=X_target,
        y_target=y_target,
        groups_target=X_target[:, [-1]].copy(),
        f_target=f_target,
        estimator=FrozenEstimator(base),
        group_feature=_N_FEATURES - 1,
        shift=shift,
        log_ratio_coef=float(coef),
    )
