"""A streaming fair-classification generator with a known sensitive attribute."""

import numpy as np
from sklearn.utils import check_random_state


def _log_gauss(X, mean, cov):
    diff = X - mean
    sol = np.linalg.solve(cov, diff.T).T
    return -0.5 * np.einsum("ij,ij->i", diff, sol) - 0.5 * np.log(np.linalg.det(cov))


def make_fair_classification(n_samples=10000, *, rotation=np.pi / 4, random_state=None):
    """Two Gaussian classes and a sensitive attribute tied to them (Zafar et al.).

    The generator of Zafar et al. (AISTATS 2017) used in the fairness
    literature: ``x | y=1 ~ N([2, 2], [[5, 1], [1, 5]])`` and
    ``x | y=0 ~ N([-2, -2], [[10, 1], [1, 3]])``; the sensitive attribute is
    drawn with probability ``p(x' | y=1) / (p(x' | y=1) + p(x' | y=0))``
    where ``x'`` is ``x`` rotated by ``rotation``, so the attribute is
    correlated with the label (smaller rotation: stronger correlation) and a
    plain classifier's scores differ by group.

    Parameters
    ----------
    n_samples : int, default=10000
    rotation : float, default=pi/4
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
        0/1 labels, balanced.
    sensitive : ndarray of shape (n_samples,)
        0/1 sensitive attribute.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.datasets import make_fair_classification
    >>> X, y, s = make_fair_classification(1000, random_state=0)
    >>> X.shape, np.unique(y).tolist(), np.unique(s).tolist()
    ((1000, 2), [0, 1], [0, 1])
    """
    rng = check_random_state(random_state)
    means = (np.array([-2.0, -2.0]), np.array([2.0, 2.0]))
    covs = (np.array([[10.0, 1.0], [1.0, 3.0]]), np.array([[5.0, 1.0], [1.0, 5.0]]))
    y = rng.randint(0, 2, n_samples)
    X = np.empty((n_samples, 2))
    for label in (0, 1):
        rows = y == label
        X[rows] = rng.multivariate_normal(means[label], covs[label], rows.sum())
    c, s = np.cos(rotation), np.sin(rotation)
    Xr = X @ np.array([[c, -s], [s, c]]).T
    log1 = _log_gauss(Xr, means[1], covs[1])
    log0 = _log_gauss(Xr, means[0], covs[0])
    p = 1.0 / (1.0 + np.exp(log0 - log1))
    sensitive = (rng.uniform(size=n_samples) < p).astype(int)
    return X, y, sensitive
