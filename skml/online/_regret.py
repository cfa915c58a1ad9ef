"""Regret of a fitted online learner against the best feasible fixed model."""

import math

import numpy as np
from scipy.optimize import minimize
from sklearn.utils import Bunch
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ._coco import COCOClassifier, _as_constraints
from ._constraints import HalfSpaces
from ._engine import LOSSES


def hindsight_regret(
    estimator, X, y, sample_weight=None, *, max_rounds=50, **fit_params
):
    """Regret of a fitted COCO learner on its stream, against the best feasible model.

    The comparator minimises the sum of the rounds' regularised losses over
    every model that satisfies *all* the constraints the stream revealed
    (and the domain): affine constraints exactly, others through cuts at the
    comparator added until it satisfies them (a cutting-plane loop around
    SLSQP on the constraints that bind).

    Parameters
    ----------
    estimator : COCOLearner or COCOClassifier
        Fitted on exactly this stream since its last reset (``fit`` or the
        first ``partial_fit``), so that ``estimator.loss_trace_`` lines up.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), default=None
    max_rounds : int, default=50
        Cutting-plane rounds at most.
    **fit_params : array-like
        The per-row fit parameters the stream was fitted with
        (``sensitive_features``, ``constraint_A``, ``constraint_b``).

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``regret`` (float), ``regret_trace`` (cumulative, one per round),
        ``coef`` and ``intercept`` of the comparator, ``comparator_losses``
        (per round), ``max_violation`` (of the comparator, over every
        constraint of the stream) and ``success`` (the solver's flag; for the
        non-smooth losses ``"absolute"`` and ``"hinge"`` the comparator is
        approximate).

    Examples
    --------
    >>> import numpy as np
    >>> from skml.online import COCOLearner, hindsight_regret
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 2))
    >>> y = X @ np.array([1.0, -1.0])
    >>> model = COCOLearner().fit(X, y)
    >>> result = hindsight_regret(model, X, y)
    >>> bool(result.regret > 0), result.regret_trace.shape
    (True, (300,))
    """
    check_is_fitted(estimator)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n, d = X.shape
    if d != estimator.n_features_in_:
        raise ValueError(
            f"X has {d} features; the estimator has {estimator.n_features_in_}"
        )
    bs = estimator.batch_size
    rounds = math.ceil(n / bs)
    if rounds != estimator.t_:
        raise ValueError(
            f"the stream has {rounds} rounds but the estimator played {estimator.t_}: "
            "pass the rows it was fitted on since its last reset"
        )
    if isinstance(estimator, COCOClassifier):
        y = np.where(y == estimator.classes_[1], 1.0, -1.0)
    else:
        y = y.astype(np.float64)
    sw = np.ones(n) if sample_weight is None else _check_sample_weight(sample_weight, X)
    starts = np.arange(0, n, bs)
    counts = np.minimum(starts + bs, n) - starts
    omega = sw / np.repeat(counts, counts)  # each row's weight in its round's mean
    fi = estimator.fit_intercept
    dim = d + (1 if fi else 0)
    alpha = estimator.alpha
    loss, _ = LOSSES[estimator.loss]

    def scores(w):
        return X @ w[:d] + (w[d] if fi else 0.0)

    def objective(w):
        values, ds = loss(scores(w), y, 1.35)
        g = omega * ds
        grad = np.empty(dim)
        grad[:d] = g @ X
        if fi:
            grad[d] = g.sum()
        value = float(omega @ values) + 0.5 * rounds * alpha * float(w @ w)
        return value / rounds, (grad + rounds * alpha * w) / rounds

    params = {k: np.asarray(v) for k, v in fit_params.items() if v is not None}
    constraints = _as_constraints(estimator.constraint)
    if "constraint_A" in params:
        constraints.append(HalfSpaces())
        params["constraint_A"] = params["constraint_A"].astype(np.float64)
        params["constraint_b"] = params["constraint_b"].astype(np.float64)

    def revealed(w, affine):
        """Every constraint value and gradient the stream reveals, at ``w``."""
        rows, offs = [], []
        for s, c in zip(starts, counts, strict=True):
            sl = slice(s, s + c)
            kw = {k: v[sl] for k, v in params.items()}
            for con in constraints:
                if bool(con.affine) != affine:
                    continue
                args = kw if con.requires is None else {k: kw[k] for k in con.requires}
                v, gc, gi = con.evaluate(
                    w[:d], float(w[d]) if fi else 0.0, X[sl], y[sl], **args
                )
                v = np.atleast_1d(np.asarray(v, dtype=np.float64))
                if not len(v):
                    continue
                G = np.zeros((len(v), dim))
                G[:, :d] = np.asarray(gc, dtype=np.float64).reshape(len(v), d)
                if fi:
                    G[:, d] = np.atleast_1d(gi)
                # Half-space g(w) + G (x - w) <= 0, i.e. G x <= G w - g(w).
                rows.append(G)
                offs.append(G @ w - v)
        if not rows:
            return np.empty((0, dim)), np.empty(0)
        return np.concatenate(rows), np.concatenate(offs)

    A_aff, c_aff = revealed(np.zeros(dim), affine=True)
    radius = estimator.domain_radius
    bounds = None if radius is None else [(-radius, radius)] * dim
    A_work, c_work = np.empty((0, dim)), np.empty(0)
    w = estimator.state_.w.copy()
    success = False
    max_violation = np.inf
    for _ in range(max_rounds):
        cons = []
        if len(c_work):
            Aw, cw = A_work.copy(), c_work.copy()
            cons = [
                {
                    "type": "ineq",
                    "fun": lambda v, A=Aw, c=cw: c - A @ v,
                    "jac": lambda v, A=Aw: -A,
                }
            ]
        res = minimize(
            objective,
            w,
            jac=True,
            method="SLSQP",
            bounds=bounds,
            constraints=cons,
            options={"maxiter": 1000, "ftol": 1e-12},
        )
        w = res.x
        success = bool(res.success)
        A_non, c_non = revealed(w, affine=False)
        A_all = np.concatenate([A_aff, A_non])
        c_all = np.concatenate([c_aff, c_non])
        viol = A_all @ w - c_all if len(c_all) else np.empty(0)
        max_violation = float(viol.max(initial=0.0))
        bad = np.flatnonzero(viol > 1e-9 * (1.0 + np.abs(c_all)))
        if len(bad) == 0:
            break
        worst = bad[np.argsort(viol[bad])[::-1][:100]]
        A_work = np.concatenate([A_work, A_all[worst]])
        c_work = np.concatenate([c_work, c_all[worst]])
    values, _ = loss(scores(w), y, 1.35)
    per_row = omega * values
    comparator = np.add.reduceat(per_row, starts) + 0.5 * alpha * float(w @ w)
    trace = np.cumsum(estimator.loss_trace_ - comparator)
    return Bunch(
        regret=float(trace[-1]),
        regret_trace=trace,
        coef=w[:d].copy(),
        intercept=float(w[d]) if fi else 0.0,
        comparator_losses=comparator,
        max_violation=max_violation,
        success=success,
    )
