import numpy as np

from skml.utils import weighted_quantile


def test_integer_weights_equal_repeated_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    w = rng.integers(0, 4, 50)
    q = np.linspace(0, 1, 11)
    repeated = np.repeat(x, w, axis=0)
    np.testing.assert_array_equal(
        weighted_quantile(x, q, w), weighted_quantile(repeated, q)
    )


def test_unweighted_matches_numpy_inverted_cdf():
    x = np.random.default_rng(1).normal(size=101)
    q = [0.1, 0.25, 0.5, 0.9]
    np.testing.assert_array_equal(
        weighted_quantile(x, q), np.quantile(x, q, method="inverted_cdf")
    )
