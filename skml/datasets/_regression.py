"""Multi-index regression: targets that depend on a few directions of x."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state

FAMILIES = ("additive", "interaction", "radial")


def make_multi_index_regression(
    n_samples,
    n_features=20,
    n_indices=2,
    family="additive",
    snr=4.0,
    random_state=None,
):
    """Regression on ``z = B' x`` for a random orthonormal ``B`` (d x k).

    ``x ~ N(0, I_d)``; ``B`` is the first k columns of a Haar-random
    rotation, so the relevant directions are not aligned with the axes. The
    noiseless target ``f(z)`` is one of

    - ``"additive"``: ``sum_l sin(2 z_l)`` (several single-index parts);
    - ``"interaction"``: ``z_1 z_2`` (``prod`` over pairs for k > 2:
      ``z_1 z_2 + z_3 z_4 + ...``; k = 1 gives ``z_1^2``);
    - ``"radial"``: ``||z||^2``;

    plus Gaussian noise of variance ``var(f) / snr`` (``var(f)`` from the
    closed form under ``x ~ N(0, I)``). This is the synthetic design of the
    NW-attention benchmark (``python -m skml bench nw_attention``).

    Parameters
    ----------
    n_samples : int
        Number of rows.
    n_features : int, default=20
        Dimension d of x.
    n_indices : int, default=2
        Number k of relevant directions (``k <= d``).
    family : {"additive", "interaction", "radial"}, default="additive"
        The link f.
    snr : float, default=4.0
        Signal-to-noise ratio ``var(f) / var(noise)``; ``np.inf`` for none.
    random_state : int, RandomState instance or None, default=None
        Seeds B, x and the noise.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    f : ndarray of shape (n_samples,)
        The noiseless target (its MSE to a prediction is the excess risk).
    B : ndarray of shape (n_features, n_indices)
        The relevant directions.

    Examples
    --------
    >>> from skml.datasets import make_multi_index_regression
    >>> X, y, f, B = make_multi_index_regression(100, 10, 2, random_state=0)
    >>> X.shape, B.shape
    ((100, 10), (10, 2))
    """
    if not isinstance(n_samples, Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    if not isinstance(n_features, Integral) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}.")
    if not isinstance(n_indices, Integral) or not 1 <= n_indices <= n_features:
        raise ValueError(
            f"n_indices must be an integer in [1, n_features={n_features}], got "
            f"{n_indices!r}."
        )
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}.")
    if not isinstance(snr, Real) or not snr > 0:
        raise ValueError(f"snr must be positive, got {snr!r}.")
    rng = check_random_state(random_state)
    Q, R = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    B = (Q * np.sign(np.diag(R)))[:, :n_indices]
    X = rng.standard_normal((n_samples, n_features))
    Z = X @ B
    k = n_indices
    if family == "additive":
        f = np.sin(2 * Z).sum(1)
        # var sin(2z) = (1 - e^{-8}) / 2 for z ~ N(0, 1)
        var_f = k * (1 - np.exp(-8.0)) / 2
    elif family == "interaction":
        if k == 1:
            f, var_f = Z[:, 0] ** 2, 2.0
        else:
            pairs = k // 2
            f = sum(Z[:, 2 * p] * Z[:, 2 * p + 1] for p in range(pairs))
            var_f = float(pairs)
            if k % 2:  # the last index enters squared
                f = f + Z[:, -1] ** 2
                var_f += 2.0
    else:
        f = (Z**2).sum(1)
        var_f = 2.0 * k
    noise = 0.0 if np.isinf(snr) else np.sqrt(var_f / snr)
    y = f + noise * rng.standard_normal(n_samples)
    return X, y, f, B
