import numpy as np
import pytest

from skml.datasets import make_nonlinear_factor_matrix
from skml.datasets._factor import LINKS


def test_shapes_and_keys():
    d = make_nonlinear_factor_matrix(40, 30, rank=4, random_state=0)
    for key in ("data", "complete", "signal", "index", "mask"):
        assert d[key].shape == (40, 30), key
    assert d.embedding.shape == (40, 4) and d.components.shape == (4, 30)
    assert d.data.dtype == np.float64 and d.mask.dtype == bool
    np.testing.assert_allclose(d.index, d.embedding @ d.components)
    np.testing.assert_array_equal(np.isnan(d.data), ~d.mask)
    np.testing.assert_array_equal(d.data[d.mask], d.complete[d.mask])
    assert d.link_name == "tanh"


@pytest.mark.parametrize("missing", [0.2, 0.5, 0.8])
def test_missing_fraction(missing):
    n, p = 300, 200
    d = make_nonlinear_factor_matrix(n, p, missing=missing, random_state=0)
    # MCAR: the NaN count is binomial; forcing an entry per row or column
    # lowers it by at most n + p entries, which only matters at 0.8 here.
    sd = np.sqrt(missing * (1 - missing) / (n * p))
    assert abs(np.isnan(d.data).mean() - missing) < 4 * sd


def test_index_has_unit_variance():
    n, p, r = 1000, 500, 3
    d = make_nonlinear_factor_matrix(n, p, rank=r, random_state=0)
    # var(Z) = mean over k of (|u_k|^2 / n)(|v_k|^2 / p) / sd^4, each factor
    # 1 +- sqrt(2/n) and 1 +- sqrt(2/p): sd of the estimate sqrt((2/n + 2/p)/r)
    sd = np.sqrt((2 / n + 2 / p) / r)
    assert abs(d.index.var() - 1) < 4 * sd


@pytest.mark.parametrize("link", sorted(LINKS))
def test_signal_is_link_of_index(link):
    d = make_nonlinear_factor_matrix(30, 20, link=link, random_state=0)
    np.testing.assert_allclose(d.signal, d.link(d.index))
    assert d.link_name == link
    # every built-in link is increasing
    z = np.linspace(-3, 3, 101)
    assert np.all(np.diff(d.link(z)) >= 0)


def test_named_links():
    z = np.array([-1.0, 0.0, 0.5])
    np.testing.assert_allclose(LINKS["tanh"](z), np.tanh(2 * z))
    np.testing.assert_allclose(LINKS["exp"](z), np.exp(z))
    np.testing.assert_allclose(LINKS["cubic"](z), z**3)
    np.testing.assert_allclose(LINKS["sigmoid"](z), 1 / (1 + np.exp(-4 * z)))
    np.testing.assert_allclose(LINKS["softplus"](z), np.log1p(np.exp(3 * z)))
    # the stable forms do not overflow
    with np.errstate(over="raise"):
        assert np.isfinite(LINKS["softplus"](np.array([1e3])))
        assert LINKS["sigmoid"](np.array([-1e3]))[0] == 0


def test_callable_link():
    def square_plus(z):
        return z + z**3

    d = make_nonlinear_factor_matrix(30, 20, link=square_plus, random_state=0)
    assert d.link is square_plus and d.link_name == "square_plus"
    np.testing.assert_allclose(d.signal, d.index + d.index**3)


@pytest.mark.parametrize("noise", [0.0, 0.1, 0.5])
def test_noise_relative_to_signal(noise):
    n, p = 300, 200
    d = make_nonlinear_factor_matrix(n, p, noise=noise, missing=0.0, random_state=0)
    ratio = (d.complete - d.signal).std() / d.signal.std()
    # sample sd of n p Gaussians: relative sd about 1 / sqrt(2 n p)
    assert abs(ratio - noise) < 4 * noise / np.sqrt(2 * n * p) + 1e-12
    assert not np.isnan(d.data).any()


def test_reproducible():
    a = make_nonlinear_factor_matrix(50, 40, random_state=3)
    b = make_nonlinear_factor_matrix(50, 40, random_state=3)
    c = make_nonlinear_factor_matrix(50, 40, random_state=4)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert not np.allclose(a.index, c.index)


def test_noise_level_keeps_factors_and_mask():
    # same seed, different noise: same problem, so noise levels compare
    a = make_nonlinear_factor_matrix(50, 40, noise=0.0, random_state=1)
    b = make_nonlinear_factor_matrix(50, 40, noise=0.1, random_state=1)
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_every_row_and_column_observed():
    d = make_nonlinear_factor_matrix(300, 200, missing=0.99, random_state=0)
    assert d.mask.any(axis=1).all() and d.mask.any(axis=0).all()
    assert np.isnan(d.data).mean() > 0.98


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 25}, "rank must be at most min"),
        ({"rank": 0}, "rank must be a positive integer"),
        ({"n_samples": 2.5}, "n_samples must be a positive integer"),
        ({"missing": 1.0}, r"missing must be a fraction in \[0, 1\)"),
        ({"missing": -0.1}, r"missing must be a fraction in \[0, 1\)"),
        ({"noise": -1.0}, "noise must be"),
        ({"link": "logit"}, "'identity', 'tanh', 'exp', 'cubic', 'sigmoid'"),
    ],
)
def test_errors(kwargs, match):
    params = {"n_samples": 30, "n_features": 20, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_nonlinear_factor_matrix(**params)
