"""The link objects: IdentityLink, KnownLink and MonotoneLink."""

import pickle

import numpy as np
import pytest
from scipy.stats import norm

from skml.decomposition import IdentityLink, KnownLink, MonotoneLink


def _monotone(rng, n_knots=5):
    knots = np.sort(rng.uniform(-2.0, 2.0, n_knots))
    coef = rng.exponential(size=2 + 3 * n_knots)
    coef[0] = -0.7
    return MonotoneLink(coef, knots, rng.uniform(0.2, 0.5, n_knots))


def test_identity_link():
    link = IdentityLink()
    z = np.linspace(-3, 3, 12).reshape(3, 4)
    np.testing.assert_array_equal(link(z), z)
    np.testing.assert_array_equal(link.derivative(z), np.ones_like(z))
    np.testing.assert_array_equal(link.inverse(z), z)
    assert link(z).shape == z.shape


def test_known_link_derivative_and_inverse():
    link = KnownLink(np.tanh)
    z = np.linspace(-3.0, 3.0, 61)
    np.testing.assert_allclose(link(z), np.tanh(z), rtol=1e-15)
    # central difference with h = 1e-6 (1 + |z|): truncation h^2 / 3 ~ 1e-12,
    # rounding eps / h ~ 1e-10
    np.testing.assert_allclose(link.derivative(z), 1 - np.tanh(z) ** 2, atol=1e-8)
    # the slope is >= 1e-2 on [-3, 3]: bisection to 1e-12 in z
    np.testing.assert_allclose(link.inverse(np.tanh(z)), z, atol=1e-9)
    # shape kept
    assert link.inverse(np.tanh(z).reshape(61, 1)).shape == (61, 1)


def test_known_link_beyond_its_range_maps_to_the_bracket_ends():
    link = KnownLink(np.tanh)
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    z = link.inverse(x)
    assert np.isfinite(z).all() and (np.diff(z) > 0).all()
    # the documented bracket reaches 1e6 around the start
    assert z[0] < -1e5 and z[-1] > 1e5


def test_monotone_link_closed_form():
    # f(z) = b + a z + beta Phi((z - c) / s) for one knot, no ramps
    link = MonotoneLink(np.array([0.5, 0.3, 2.0, 0.0, 0.0]), np.array([0.2]), 0.4)
    z = np.linspace(-3, 3, 31)
    t = (z - 0.2) / 0.4
    np.testing.assert_allclose(link(z), 0.5 + 0.3 * z + 2.0 * norm.cdf(t), rtol=1e-12)
    np.testing.assert_allclose(
        link.derivative(z), 0.3 + 2.0 * norm.pdf(t) / 0.4, rtol=1e-12
    )
    assert link.intercept_ == 0.5 and link.slope_ == 0.3
    np.testing.assert_array_equal(link.bandwidth_, [0.4])


def test_monotone_link_inverse_inside_and_beyond_the_knots():
    link = _monotone(np.random.default_rng(0))
    z = np.r_[np.linspace(-4, 4, 81), [-1e3, -50.0, 50.0, 1e3]]
    # the link is linear beyond the knots, so the inverse is exact there too
    np.testing.assert_allclose(link.inverse(link(z)), z, rtol=1e-9, atol=1e-9)


def test_monotone_link_inverse_far_beyond_stays_finite_and_monotone():
    link = _monotone(np.random.default_rng(1))
    x = np.array([-1e15, -1e9, -1e3, link(0.0), 1e3, 1e9, 1e15])
    z = link.inverse(x)
    assert np.isfinite(z).all()
    assert (np.diff(z) >= 0).all()
    assert (np.diff(z[1:-1]) > 0).all()
    # within the bracket the inverse solves f(z) = x
    np.testing.assert_allclose(link(z[2:5]), x[2:5], rtol=1e-9)


def test_links_pickle():
    link = _monotone(np.random.default_rng(2))
    z = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(link))(z), link(z))
    known = pickle.loads(pickle.dumps(KnownLink(np.exp)))
    np.testing.assert_allclose(known(z), np.exp(z))


@pytest.mark.parametrize(
    "link",
    [
        MonotoneLink(np.array([0.0, 1.0, 2.0, 0.5, 0.3]), np.array([0.0]), 0.5),
        KnownLink(np.tanh),
    ],
    ids=["monotone", "known"],
)
def test_inverse_of_nan_is_nan(link):
    z = link.inverse(np.array([np.nan, 0.5]))
    assert np.isnan(z[0]) and np.isfinite(z[1])
