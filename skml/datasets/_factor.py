"""Incomplete noisy matrices from a low-rank index behind a monotone link."""

from numbers import Integral, Real

import numpy as np
from scipy.special import expit
from sklearn.utils import Bunch, check_random_state


def _identity(z):
    return np.asarray(z, dtype=np.float64)


def _tanh(z):
    return np.tanh(2.0 * np.asarray(z, dtype=np.float64))


def _exp(z):
    return np.exp(np.asarray(z, dtype=np.float64))


def _cubic(z):
    return np.asarray(z, dtype=np.float64) ** 3


def _sigmoid(z):
    # expit never overflows, unlike 1 / (1 + exp(-4z)) at large negative z
    return expit(4.0 * np.asarray(z, dtype=np.float64))


def _softplus(z):
    # log(1 + e^{3z}) without overflow: logaddexp(0, x) = log(e^0 + e^x)
    return np.logaddexp(0.0, 3.0 * np.asarray(z, dtype=np.float64))


LINKS = {
    "identity": _identity,
    "tanh": _tanh,
    "exp": _exp,
    "cubic": _cubic,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
}


def _positive_int(name, value):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _resolve_link(link):
    if callable(link):
        return link, getattr(link, "__name__", type(link).__name__)
    if isinstance(link, str) and link in LINKS:
        return LINKS[link], link
    accepted = ", ".join(repr(name) for name in LINKS)
    raise ValueError(f"Unknown link {link!r}; use one of {accepted} or a callable.")


def _mcar_mask(rng, shape, missing):
    """Observed-entry mask, MCAR, with at least one entry per row and column."""
    n, p = shape
    observed = rng.uniform(size=shape) >= missing
    # Forcing one entry in an empty row can only help the columns, and
    # forcing one in an empty column only helps the rows: one pass each.
    empty = np.flatnonzero(~observed.any(axis=1))
    observed[empty, rng.randint(p, size=empty.size)] = True
    empty = np.flatnonzero(~observed.any(axis=0))
    observed[rng.randint(n, size=empty.size), empty] = True
    return observed


def make_nonlinear_factor_matrix(
    n_samples=300,
    n_features=200,
    rank=3,
    link="tanh",
    missing=0.5,
    noise=0.1,
    random_state=None,
):
    """A matrix ``f(U* V*') + noise`` with entries missing completely at random.

    The index ``Z = U* V*'`` has rank ``rank``; the entries of ``U*`` and
    ``V*`` are i.i.d. normal with variance ``1 / sqrt(rank)``, so every entry
    of ``Z`` has variance 1 whatever the rank. The link ``f`` is applied
    entrywise, Gaussian noise is added and a fraction ``missing`` of the
    entries is hidden (set to NaN). This is the synthetic design of the
    nonlinear factor model benchmark (``python -m skml bench
    nonlinear_factor``).

    Parameters
    ----------
    n_samples : int, default=300
        Number of rows (units).
    n_features : int, default=200
        Number of columns (variables).
    rank : int, default=3
        Rank of the index ``Z``; at most ``min(n_samples, n_features)``.
    link : str or callable, default="tanh"
        The monotone link ``f``: ``"identity"`` (z), ``"tanh"`` (tanh(2z)),
        ``"exp"`` (exp(z)), ``"cubic"`` (z**3), ``"sigmoid"``
        (1 / (1 + exp(-4z))), ``"softplus"`` (log(1 + exp(3z))), or a
        vectorised callable taking and returning arrays.
    missing : float, default=0.5
        Probability that an entry is hidden, in [0, 1). Every row and every
        column keeps at least one observed entry (one is forced at random
        where none is left), so the realised fraction can be slightly lower.
    noise : float, default=0.1
        Standard deviation of the Gaussian noise relative to the standard
        deviation of the noiseless signal ``f(Z)`` over all entries; 0 gives
        noiseless data.
    random_state : int, RandomState instance or None, default=None
        Seeds the factors, the noise and the mask.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With the keys

        - ``data`` (n_samples, n_features): the observed matrix, NaN where
          missing;
        - ``complete`` (n_samples, n_features): the noisy values before
          masking;
        - ``signal`` (n_samples, n_features): the noiseless ``f(Z)``;
        - ``index`` (n_samples, n_features): ``Z = U* V*'``;
        - ``embedding`` (n_samples, rank): ``U*``;
        - ``components`` (rank, n_features): ``V*'``;
        - ``mask`` (n_samples, n_features): True where observed;
        - ``link``: the callable ``f``;
        - ``link_name``: its name.

    Raises
    ------
    ValueError
        If a size is not a positive integer, ``rank`` exceeds
        ``min(n_samples, n_features)``, ``missing`` is outside [0, 1),
        ``noise`` is negative or ``link`` is an unknown name.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.datasets import make_nonlinear_factor_matrix
    >>> d = make_nonlinear_factor_matrix(100, 50, rank=2, random_state=0)
    >>> d.data.shape, d.embedding.shape, d.components.shape
    ((100, 50), (100, 2), (2, 50))
    >>> bool(np.allclose(d.signal, np.tanh(2 * d.index)))
    True
    >>> bool(np.array_equal(np.isnan(d.data), ~d.mask))
    True
    """
    n = _positive_int("n_samples", n_samples)
    p = _positive_int("n_features", n_features)
    r = _positive_int("rank", rank)
    if r > min(n, p):
        raise ValueError(
            f"rank must be at most min(n_samples, n_features) = {min(n, p)}, "
            f"got {rank}."
        )
    if (
        not isinstance(missing, Real)
        or isinstance(missing, bool)
        or not 0 <= missing < 1
    ):
        raise ValueError(f"missing must be a fraction in [0, 1), got {missing!r}.")
    if (
        not isinstance(noise, Real)
        or isinstance(noise, bool)
        or not np.isfinite(noise)
        or noise < 0
    ):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
    f, link_name = _resolve_link(link)
    rng = check_random_state(random_state)

    # sd r^(-1/4) for both factors: var(z) = r * var(u) * var(v) = 1, balanced.
    scale = r**-0.25
    U = scale * rng.standard_normal((n, r))
    V = scale * rng.standard_normal((p, r))
    Z = U @ V.T
    signal = np.asarray(f(Z), dtype=np.float64)
    if signal.shape != Z.shape:
        raise ValueError(
            f"link must be vectorised: it returned shape {signal.shape} for an "
            f"input of shape {Z.shape}."
        )
    complete = signal + noise * signal.std() * rng.standard_normal((n, p))
    mask = _mcar_mask(rng, (n, p), missing)
    return Bunch(
        data=np.where(mask, complete, np.nan),
        complete=complete,
        signal=signal,
        index=Z,
        embedding=U,
        components=V.T,
        mask=mask,
        link=f,
        link_name=link_name,
    )
