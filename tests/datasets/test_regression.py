import numpy as np
import pytest

from skml.datasets import make_multi_index_regression


@pytest.mark.parametrize("family", ["additive", "interaction", "radial"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_target_depends_on_the_indices_only(family, k):
    X, y, f, B = make_multi_index_regression(20000, 6, k, family=family, random_state=0)
    np.testing.assert_allclose(B.T @ B, np.eye(k), atol=1e-12)
    # moving x orthogonally to B leaves f unchanged
    X2, _, f2, B2 = make_multi_index_regression(
        20000, 6, k, family=family, random_state=0
    )
    np.testing.assert_array_equal(f, f2)
    # the noise level matches the SNR: var(y - f) = var(f) / 4
    ratio = np.var(f) / np.var(y - f)
    assert ratio == pytest.approx(4.0, rel=0.1)


def test_orthogonal_moves_do_not_change_the_target():
    X, y, f, B = make_multi_index_regression(
        50, 5, 2, family="radial", snr=np.inf, random_state=1
    )
    np.testing.assert_array_equal(y, f)
    P = np.eye(5) - B @ B.T
    Z = X @ B
    moved = X + np.random.default_rng(0).normal(size=X.shape) @ P
    np.testing.assert_allclose(moved @ B, Z, atol=1e-12)


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
