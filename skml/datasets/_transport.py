"""Point clouds for optimal-transport benchmarks: source and target mixtures."""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state


def _random_mixture(rng, n_features, n_components):
    """Means in [-5, 5]^d and SPD covariances ``Q diag(s) Q'``, s in [0.1, 1]."""
    means = rng.uniform(-5.0, 5.0, size=(n_components, n_features))
    factors = []
    for _ in range(n_components):
        q, r = np.linalg.qr(rng.standard_normal((n_features, n_features)))
        q = q * np.sign(np.diag(r))  # Haar-distributed rotation
        scales = np.sqrt(rng.uniform(0.1, 1.0, size=n_features))
        factors.append(q * scales)  # cov = (q * s)(q * s)' = q diag(s^2) q'
    return means, factors


def _draw(rng, n_samples, means, factors):
    labels = rng.randint(len(means), size=n_samples)
    noise = rng.standard_normal((n_samples, means.shape[1]))
    X = np.empty_like(noise)
    for k, (mean, factor) in enumerate(zip(means, factors)):
        rows = labels == k
        X[rows] = mean + noise[rows] @ factor.T
    return X


def make_gaussian_mixtures(n_samples, n_features, n_components=5, random_state=None):
    """Source and target samples from two different random Gaussian mixtures.

    Each mixture has ``n_components`` equally likely components with means
    drawn uniformly in ``[-5, 5]^n_features`` and covariances ``Q diag(s) Q'``
    (``Q`` a random rotation, ``s`` uniform in ``[0.1, 1]``). The source and
    the target mixtures are drawn independently, so the optimal transport
    between the two clouds is non-trivial (it splits and merges clusters).
    This is the synthetic design of the SROT benchmark (``python -m skml
    bench srot``).

    Parameters
    ----------
    n_samples : int
        Number of points in each cloud.
    n_features : int
        Dimension of the points.
    n_components : int, default=5
        Number of Gaussian components of each mixture.
    random_state : int, RandomState instance or None, default=None
        Seeds the mixtures and the samples.

    Returns
    -------
    Xs : ndarray of shape (n_samples, n_features)
        Source samples.
    Xt : ndarray of shape (n_samples, n_features)
        Target samples.

    Examples
    --------
    >>> from skml.datasets import make_gaussian_mixtures
    >>> Xs, Xt = make_gaussian_mixtures(200, 3, random_state=0)
    >>> Xs.shape, Xt.shape
    ((200, 3), (200, 3))
    >>> bool(abs(Xs).max() < 10)
    True
    """
    for name, value in (
        ("n_samples", n_samples),
        ("n_features", n_features),
        ("n_components", n_components),
    ):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    rng = check_random_state(random_state)
    source = _random_mixture(rng, n_features, n_components)
    target = _random_mixture(rng, n_features, n_components)
    Xs = _draw(rng, n_samples, *source)
    Xt = _draw(rng, n_samples, *target)
    return Xs, Xt
