import numpy as np
import pytest

from skml.datasets import make_multi_index_regression

N_SAMPLES = 20000
# Margin, in standard errors, of the statistical checks below.
Z_MARGIN = 5.0


def _sin2_variance():
    """var sin(2z) for z ~ N(0, 1), by Gauss-Hermite quadrature (E sin(2z) = 0)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    return np.sum(weights * np.sin(2 * nodes) ** 2) / np.sqrt(2 * np.pi)


# The docstring's link of each (family, k), written out term by term, with its
# variance under z ~ N(0, I): var(z_i z_j) = 1 and var(z^2) = E z^4 - 1 = 2 for
# independent standard normals.
CLOSED_FORMS = {
    ("additive", 1): (lambda z: np.sin(2 * z[:, 0]), _sin2_variance()),
    ("additive", 2): (
        lambda z: np.sin(2 * z[:, 0]) + np.sin(2 * z[:, 1]),
        2 * _sin2_variance(),
    ),
    ("additive", 3): (
        lambda z: np.sin(2 * z[:, 0]) + np.sin(2 * z[:, 1]) + np.sin(2 * z[:, 2]),
        3 * _sin2_variance(),
    ),
    ("interaction", 1): (lambda z: z[:, 0] ** 2, 2.0),
    ("interaction", 2): (lambda z: z[:, 0] * z[:, 1], 1.0),
    ("interaction", 3): (lambda z: z[:, 0] * z[:, 1] + z[:, 2] ** 2, 3.0),
    ("interaction", 4): (lambda z: z[:, 0] * z[:, 1] + z[:, 2] * z[:, 3], 2.0),
    ("radial", 1): (lambda z: z[:, 0] ** 2, 2.0),
    ("radial", 2): (lambda z: z[:, 0] ** 2 + z[:, 1] ** 2, 4.0),
    ("radial", 3): (lambda z: z[:, 0] ** 2 + z[:, 1] ** 2 + z[:, 2] ** 2, 6.0),
}


class _ShiftedDraws(np.random.RandomState):
    """A RandomState that adds ``shift`` to every draw of ``shift``'s shape.

    Passed as ``random_state``, it moves the design X (the only draw of shape
    (n_samples, n_features) when n_samples != n_features) while B and the
    noise stay those of the same seed, so the generator itself evaluates its
    target at the moved points.
    """

    def __init__(self, seed, shift):
        super().__init__(seed)
        self.shift = shift

    def standard_normal(self, size=None):
        draw = super().standard_normal(size)
        if np.shape(draw) == self.shift.shape:
            draw = draw + self.shift
        return draw


@pytest.mark.parametrize("family, k", sorted(CLOSED_FORMS))
def test_target_is_the_documented_link_of_the_indices(family, k):
    link, var_f = CLOSED_FORMS[family, k]
    X, y, f, B = make_multi_index_regression(
        N_SAMPLES, 6, k, family=family, snr=np.inf, random_state=0
    )
    assert X.shape == (N_SAMPLES, 6) and B.shape == (6, k)
    np.testing.assert_allclose(B.T @ B, np.eye(k), atol=1e-12)
    np.testing.assert_array_equal(y, f)
    np.testing.assert_allclose(f, link(X @ B), rtol=1e-12, atol=1e-12)
    # x ~ N(0, I_d): the sample variance of f agrees with the closed form
    # within a few standard errors of the variance estimate.
    se = np.std((f - f.mean()) ** 2) / np.sqrt(N_SAMPLES)
    assert abs(np.var(f) - var_f) <= Z_MARGIN * se


@pytest.mark.parametrize("snr", [4.0, 0.5])
@pytest.mark.parametrize(
    "family, k", [("additive", 2), ("interaction", 3), ("radial", 1)]
)
def test_noise_is_gaussian_with_the_documented_level(family, k, snr):
    _, var_f = CLOSED_FORMS[family, k]
    # 10x the rows of the other checks: a 2% error in the noise variance
    # is then more than Z_MARGIN standard errors away.
    n = 10 * N_SAMPLES
    _, y, f, _ = make_multi_index_regression(
        n, 6, k, family=family, snr=snr, random_state=1
    )
    noise = y - f
    sigma2 = var_f / snr
    # Standard errors of the moments of n i.i.d. N(0, sigma2) draws:
    # var(e) = sigma2, var(e^2) = 2 sigma2^2, var(e^4) = (105 - 9) sigma2^4.
    assert abs(np.mean(noise)) <= Z_MARGIN * np.sqrt(sigma2 / n)
    assert abs(np.mean(noise**2) / sigma2 - 1) <= Z_MARGIN * np.sqrt(2 / n)
    assert abs(np.mean(noise**4) / sigma2**2 - 3) <= Z_MARGIN * np.sqrt(96 / n)
    # the noise is independent of the signal
    assert abs(np.corrcoef(noise, f)[0, 1]) <= Z_MARGIN / np.sqrt(n)


@pytest.mark.parametrize("family", ["additive", "interaction", "radial"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_target_depends_on_x_only_through_the_indices(family, k):
    n, d = 500, 6
    X, y, f, B = make_multi_index_regression(n, d, k, family=family, random_state=0)
    move = np.random.default_rng(1).normal(size=X.shape)
    inside = B @ B.T
    for projector, changes in [(np.eye(d) - inside, False), (inside, True)]:
        shift = move @ projector
        X2, y2, f2, B2 = make_multi_index_regression(
            n, d, k, family=family, random_state=_ShiftedDraws(0, shift)
        )
        np.testing.assert_array_equal(B2, B)
        np.testing.assert_allclose(
            X2, X + shift, err_msg="the shift did not reach the generator's X"
        )
        np.testing.assert_allclose(y2 - f2, y - f, atol=1e-12)
        if changes:
            # a move inside span(B) changes z = B'x, and f with it
            assert np.mean(np.abs(f2 - f) > 1e-6) > 0.99
            np.testing.assert_allclose(f2, CLOSED_FORMS[family, k][0](X2 @ B))
        else:
            # a move orthogonal to span(B) leaves z = B'x, hence f, unchanged
            assert np.abs(shift).max() > 0.1
            np.testing.assert_allclose(f2, f, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family", ["additive", "interaction", "radial"])
def test_random_state_reproduces_and_seeds_differ(family):
    first = make_multi_index_regression(200, 5, 5, family=family, random_state=3)
    again = make_multi_index_regression(200, 5, 5, family=family, random_state=3)
    via_instance = make_multi_index_regression(
        200, 5, 5, family=family, random_state=np.random.RandomState(3)
    )
    other = make_multi_index_regression(200, 5, 5, family=family, random_state=4)
    for a, b, c, d in zip(first, again, via_instance, other):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        assert not np.allclose(a, d)
    # with k = d, B is a full rotation: orthonormal rows and columns
    B = first[3]
    np.testing.assert_allclose(B.T @ B, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(B @ B.T, np.eye(5), atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_indices": 7}, "n_indices"),
        ({"family": "cubic"}, "family"),
        ({"snr": 0.0}, "snr"),
    ],
)
def test_bad_arguments(kwargs, match):
    params = {"n_samples": 10, "n_features": 6, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_multi_index_regression(**params)
