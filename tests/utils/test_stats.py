import numpy as np

from skml.utils import hide_entries, weighted_quantile


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


def test_hide_entries_keeps_a_value_in_every_row_and_column():
    rng = np.random.RandomState(0)
    mask = rng.uniform(size=(50, 40)) < 0.1
    mask[0] = False
    mask[0, 3] = True  # a row with one observed entry
    hidden = hide_entries(mask, 0.5, rng)
    assert not (hidden & ~mask).any()
    kept = mask & ~hidden
    assert (kept.any(axis=1) == mask.any(axis=1)).all()
    assert (kept.any(axis=0) == mask.any(axis=0)).all()
    assert abs(hidden.sum() - 0.5 * mask.sum()) <= mask.shape[0] + mask.shape[1]
