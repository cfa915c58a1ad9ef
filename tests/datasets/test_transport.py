import numpy as np

from skml.datasets import make_gaussian_mixtures


def test_shapes_and_seed():
    Xs, Xt = make_gaussian_mixtures(300, 4, random_state=0)
    assert Xs.shape == Xt.shape == (300, 4)
    again = make_gaussian_mixtures(300, 4, random_state=0)
    np.testing.assert_array_equal(Xs, again[0])
    other = make_gaussian_mixtures(300, 4, random_state=1)
    assert not np.allclose(Xs, other[0])


def test_source_and_target_differ():
    Xs, Xt = make_gaussian_mixtures(2000, 3, random_state=0)
    assert np.linalg.norm(Xs.mean(0) - Xt.mean(0)) > 0.1 or not np.allclose(
        np.cov(Xs.T), np.cov(Xt.T), atol=0.5
    )
