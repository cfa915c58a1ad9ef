"""Constraints revealed with the data, for :class:`~skml.online.COCOLearner`.

The protocol is small: a constraint's :meth:`Constraint.evaluate` takes the
current model (``coef``, ``intercept``) and the round's rows, and returns
the values ``g_i`` (``g_i <= 0`` is satisfied) with their subgradients in
``coef`` and ``intercept``. The learner stores a first-order cut of every
violated value (exact for affine constraints). Fit parameters named in
:attr:`Constraint.requires` (such as ``sensitive_features``) are sliced per
round and passed as keyword arguments.
"""

import itertools

import numpy as np


class Constraint:
    """Base class of the constraints a round reveals.

    Subclasses set :attr:`requires` (names of per-row fit parameters they
    read) and :attr:`affine`, and implement :meth:`evaluate`.
    """

    #: Names of per-row fit parameters this constraint reads.
    requires = ()
    #: Whether every value is affine in the model (then cuts are exact).
    affine = False

    def evaluate(self, coef, intercept, X, y, **params):
        """Constraint values and subgradients at the current model.

        Parameters
        ----------
        coef : ndarray of shape (n_features,)
        intercept : float
        X : ndarray of shape (n_rows, n_features)
            The round's rows.
        y : ndarray of shape (n_rows,)
            The round's targets (``-1``/``+1`` for a classifier).
        **params : ndarray
            The round's slice of the fit parameters in :attr:`requires`.

        Returns
        -------
        values : ndarray of shape (k,)
        grad_coef : ndarray of shape (k, n_features)
        grad_intercept : ndarray of shape (k,)
        """
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class CallableConstraint(Constraint):
    """A function with :meth:`Constraint.evaluate`'s signature, as a constraint.

    Parameters
    ----------
    func : callable
        ``func(coef, intercept, X, y, **params) -> (values, grad_coef,
        grad_intercept)``. Use a module-level function: lambdas do not pickle.
    requires : tuple of str or None, default=None
        Fit parameters it reads; None passes every per-row fit parameter
        that was given.
    affine : bool, default=False
    """

    def __init__(self, func, requires=None, affine=False):
        self.func = func
        self.requires = None if requires is None else tuple(requires)
        self.affine = affine

    def evaluate(self, coef, intercept, X, y, **params):
        return self.func(coef, intercept, X, y, **params)


class HalfSpaces(Constraint):
    """Per-row half-spaces ``constraint_A[i] . coef <= constraint_b[i]``.

    Rows whose ``constraint_b`` is NaN carry no constraint. Built by the
    learner from the ``constraint_A`` and ``constraint_b`` fit parameters.
    """

    requires = ("constraint_A", "constraint_b")
    affine = True

    def evaluate(self, coef, intercept, X, y, constraint_A, constraint_b):
        keep = ~np.isnan(constraint_b)
        A = constraint_A[keep]
        return A @ coef - constraint_b[keep], A, np.zeros(len(A))


class NormBall(Constraint):
    """``||coef||_p <= radius``, revealed every round (not affine: linearised).

    A norm bound known in advance is better as the learner's
    ``domain_radius`` (a box, exact); this one is for a budget that is part
    of the stream's constraints.

    Parameters
    ----------
    radius : float
    norm : {1, 2}, default=2
    """

    def __init__(self, radius, norm=2):
        self.radius = radius
        self.norm = norm

    def evaluate(self, coef, intercept, X, y):
        if self.norm == 1:
            value = np.abs(coef).sum()
            grad = np.sign(coef)
        elif self.norm == 2:
            value = float(np.linalg.norm(coef))
            grad = coef / value if value > 0 else np.zeros_like(coef)
        else:
            raise ValueError(f"NormBall: norm must be 1 or 2, got {self.norm!r}")
        return np.array([value - self.radius]), grad[None, :], np.zeros(1)


def _group_gaps(X, groups):
    """Differences of group mean rows ``mean_g - mean_h``, one per ordered pair."""
    labels = np.unique(groups)
    means = {g: X[groups == g].mean(axis=0) for g in labels}
    rows = [means[g] - means[h] for g, h in itertools.permutations(labels, 2)]
    return np.asarray(rows).reshape(len(rows), X.shape[1])


class DemographicParity(Constraint):
    """Per-round parity of the mean score between sensitive groups.

    For every pair of groups present in the round's rows, the difference of
    their mean linear scores ``coef . x + intercept`` is at most
    ``tolerance`` (the intercept cancels). Affine, and always feasible
    (``coef = 0``). Rounds with a single group carry no constraint.

    Parameters
    ----------
    tolerance : float, default=0.05
        Largest allowed gap in mean score.

    Notes
    -----
    Parity of the linear score is the convex stand-in for parity of
    positive rates (as in Zafar et al.'s decision-boundary covariance);
    parity of mean predicted probabilities is not convex in the model.
    """

    requires = ("sensitive_features",)
    affine = True

    def __init__(self, tolerance=0.05):
        self.tolerance = tolerance

    def _rows(self, X, y, groups):
        return X, groups

    def evaluate(self, coef, intercept, X, y, sensitive_features):
        Xs, groups = self._rows(X, y, np.asarray(sensitive_features))
        D = _group_gaps(Xs, groups)
        return D @ coef - self.tolerance, D, np.zeros(len(D))


class EqualOpportunity(DemographicParity):
    """:class:`DemographicParity` restricted to the round's positive rows.

    The positive rows are those with ``y > 0`` (the positive class of a
    :class:`~skml.online.COCOClassifier`, which encodes labels as -1/+1).

    Parameters
    ----------
    tolerance : float, default=0.05
    """

    def _rows(self, X, y, groups):
        pos = y > 0
        return X[pos], groups[pos]
