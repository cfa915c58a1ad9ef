"""Link functions of the nonlinear factor model, as reusable fitted objects.

Each link is a non-decreasing map from the latent index ``z`` to the units
of the data. It evaluates numpy arrays (``link(z)``, ``link.derivative(z)``,
``link.inverse(x)``) and hands the estimator's kernels a tensor version
through ``_on(device, dtype)``. Fitted state is numpy only.
"""

import functools

import numpy as np
import torch

from ._nonlinear_factor_kernels import (
    identity_link,
    link_inverse,
    monotone_link,
    tabulate_link,
)


def _numpy_call(link, z, which):
    z = np.asarray(z, dtype=np.float64)
    with torch.no_grad():
        out = link._on("cpu", torch.float64)(torch.from_numpy(z.reshape(-1).copy()))
    return out[which].numpy().reshape(z.shape)


class _Link:
    def __call__(self, z):
        """Evaluate the link at ``z`` (array-like, any shape)."""
        return _numpy_call(self, z, 0)

    def derivative(self, z):
        """The link's slope ``f'(z)`` (array-like, any shape)."""
        return _numpy_call(self, z, 1)

    def inverse(self, x):
        """The index ``z`` with ``f(z) = x``, by bisection.

        Values beyond the link's range map to the end of the search bracket
        (``+-1e6`` around the knots for a bounded known link).
        """
        x = np.asarray(x, dtype=np.float64)
        low, high = self._bracket(np.nanmin(x, initial=0.0), np.nanmax(x, initial=0.0))
        tensor_link = self._fast("cpu", torch.float64)
        with torch.no_grad():
            z = link_inverse(
                torch.from_numpy(x.reshape(-1).copy()), tensor_link, low, high
            )
        return z.numpy().reshape(x.shape)

    def _bracket(self, x_low, x_high, start=(-1.0, 1.0)):
        low, high = start
        width = high - low
        for _ in range(40):
            f_low, f_high = self([low, high])
            if f_low <= x_low and f_high >= x_high:
                break
            width *= 2.0
            low, high = (
                (low - width if f_low > x_low else low),
                (high + width if f_high < x_high else high),
            )
            if width > 1e6:
                break
        return low, high

    def _fast(self, device, dtype):
        """The tensor callable used for fitting and prediction."""
        return self._on(device, dtype)


class IdentityLink(_Link):
    """``f(z) = z``: the linear factor model.

    Examples
    --------
    >>> from skml.decomposition import IdentityLink
    >>> IdentityLink()([0.5, 2.0])
    array([0.5, 2. ])
    """

    def _on(self, device, dtype):
        return identity_link

    def inverse(self, x):
        return np.asarray(x, dtype=np.float64).copy()

    def __repr__(self):
        return "IdentityLink()"


class KnownLink(_Link):
    """A fixed, user-given non-decreasing link (a vectorised numpy function).

    The derivative is a central difference and the inverse a bisection; the
    link is never re-estimated (the "oracle" of the benchmark).

    Parameters
    ----------
    func : callable
        ``func(z) -> array`` on numpy arrays, non-decreasing.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.decomposition import KnownLink
    >>> link = KnownLink(np.tanh)
    >>> round(float(link.derivative(0.0)), 6)
    1.0
    >>> round(float(link.inverse(np.tanh(0.3))), 6)
    0.3
    """

    def __init__(self, func):
        self.func = func

    def _on(self, device, dtype):
        return functools.partial(_known, func=self.func)

    def __repr__(self):
        return f"KnownLink({getattr(self.func, '__name__', self.func)!r})"


def _known(z, func):
    values = np.asarray(z.detach().cpu().numpy(), dtype=np.float64)
    h = 1e-6 * (1.0 + np.abs(values))
    f = np.asarray(func(values), dtype=np.float64)
    slope = (np.asarray(func(values + h)) - np.asarray(func(values - h))) / (2 * h)
    return (
        torch.as_tensor(f, dtype=z.dtype, device=z.device),
        torch.as_tensor(slope, dtype=z.dtype, device=z.device),
    )


class MonotoneLink(_Link):
    """A linear term plus non-negative smooth steps and ramps: monotone everywhere.

    ``f(z) = b + a z + sum_m [beta_m S_m(z) + gamma_m R_m(z) + delta_m
    L_m(z)]`` with knots ``c_m`` and bandwidth ``s``: ``S_m = Phi((z - c_m) /
    s)`` is a smooth step, ``R_m`` a convex ramp whose slope is ``S_m``, and
    ``L_m`` a concave ramp whose slope is ``1 - S_m``. With ``a, beta, gamma,
    delta >= 0`` the link is non-decreasing for every ``z`` (``f'(z) >=
    a``), strictly increasing when ``a > 0``, and linear far from the knots,
    with its own slope on each side. It is the finite-dimensional RKHS
    spanned by these functions.

    Parameters
    ----------
    coef : ndarray of shape (3 * n_knots + 2,)
        ``[b, a, beta_1..beta_M, gamma_1..gamma_M, delta_1..delta_M]``.
    knots : ndarray of shape (n_knots,)
    bandwidth : float or ndarray of shape (n_knots,)

    Attributes
    ----------
    coef_ : ndarray of shape (3 * n_knots + 2,)
    knots_ : ndarray of shape (n_knots,)
    bandwidth_ : ndarray of shape (n_knots,)
    intercept_ : float
        ``b``.
    slope_ : float
        ``a``, the smallest slope of the link.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.decomposition import MonotoneLink
    >>> link = MonotoneLink(np.array([0.0, 1.0, 2.0, 0.0, 0.0]), np.array([0.0]), 0.5)
    >>> float(link(0.0)), float(link.inverse(link(0.7)).round(6))
    (1.0, 0.7)
    """

    def __init__(self, coef, knots, bandwidth):
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.knots_ = np.asarray(knots, dtype=np.float64)
        self.bandwidth_ = np.broadcast_to(
            np.asarray(bandwidth, dtype=np.float64), self.knots_.shape
        ).copy()

    @property
    def intercept_(self):
        return float(self.coef_[0])

    @property
    def slope_(self):
        return float(self.coef_[1])

    def _on(self, device, dtype):
        return functools.partial(
            monotone_link,
            coef=torch.as_tensor(self.coef_, dtype=dtype, device=device),
            knots=torch.as_tensor(self.knots_, dtype=dtype, device=device),
            bandwidth=torch.as_tensor(self.bandwidth_, dtype=dtype, device=device),
        )

    def _fast(self, device, dtype):
        # Tabulated on a grid a tenth of the narrowest bandwidth apart, out to
        # where the link is linear; agrees with __call__ to rounding.
        reach = 8.0 * float(self.bandwidth_.max())
        return tabulate_link(
            self._on(device, dtype),
            float(self.knots_[0]) - reach,
            float(self.knots_[-1]) + reach,
            resolution=float(self.bandwidth_.min()),
        )

    def _bracket(self, x_low, x_high, start=None):
        spread = self.knots_[-1] - self.knots_[0] + 4 * self.bandwidth_.max()
        center = 0.5 * (self.knots_[0] + self.knots_[-1])
        return super()._bracket(x_low, x_high, (center - spread, center + spread))

    def __repr__(self):
        return f"MonotoneLink(n_knots={len(self.knots_)}, slope={self.slope_:.3g})"
