import numpy as np
import ot
import pytest
import torch

from skml.transport import sliced_reference_plan
from skml.transport._sliced import compute_sliced_plans


@pytest.mark.parametrize("n, m", [(30, 30), (30, 17)])
def test_reference_is_a_coupling(n, m):
    rng = np.random.default_rng(0)
    a = rng.random(n)
    b = rng.random(m)
    R = sliced_reference_plan(
        rng.normal(size=(n, 3)), rng.normal(size=(m, 3)), a, b, random_state=0
    )
    assert np.all(R >= 0)
    np.testing.assert_allclose(R.sum(1), a / a.sum(), atol=1e-12)
    np.testing.assert_allclose(R.sum(0), b / b.sum(), atol=1e-12)


def test_one_dimensional_sliced_plan_is_exact_ot():
    # In 1-D every direction is +-1 and the monotone plan is optimal.
    rng = np.random.default_rng(1)
    xs, xt = rng.normal(size=(40, 1)), rng.normal(size=(25, 1)) * 2
    a, b = rng.random(40), rng.random(25)
    a, b = a / a.sum(), b / b.sum()
    R = sliced_reference_plan(xs, xt, a, b, reference_smoothing=0.0, random_state=0)
    C = ot.dist(xs, xt)
    np.testing.assert_allclose(np.sum(R * C), ot.emd2(a, b, C), rtol=1e-10)


def test_uniform_equal_sizes_give_permutations():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    R = sliced_reference_plan(
        X, Y, n_projections=1, reference_smoothing=0.0, random_state=3
    )
    np.testing.assert_array_equal(np.sort(R, axis=1)[:, :-1], 0.0)
    np.testing.assert_allclose(R.max(axis=1), 1 / 20)


def test_identical_clouds_give_the_diagonal():
    X = np.random.default_rng(3).normal(size=(15, 4))
    R = sliced_reference_plan(X, X, reference_smoothing=0.0, random_state=0)
    np.testing.assert_allclose(R, np.eye(15) / 15)


def test_smoothing_mixes_in_the_product():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(10, 2)), rng.normal(size=(12, 2))
    R0 = sliced_reference_plan(X, Y, reference_smoothing=0.0, random_state=0)
    R = sliced_reference_plan(X, Y, reference_smoothing=0.2, random_state=0)
    np.testing.assert_allclose(R, 0.8 * R0 + 0.2 / (10 * 12))
    R1 = sliced_reference_plan(X, Y, reference_smoothing=1.0, random_state=0)
    np.testing.assert_allclose(R1, np.full((10, 12), 1 / 120))


def test_beta_concentrates_on_cheap_slices():
    rng = np.random.default_rng(5)
    X = torch.as_tensor(rng.normal(size=(50, 5)))
    Y = torch.as_tensor(rng.normal(size=(50, 5)) + 1)
    a = torch.full((50,), 1 / 50, dtype=torch.float64)
    kw = {"n_projections": 32, "metric": "sqeuclidean", "random_state": 0}
    flat = compute_sliced_plans(X, Y, a, a, beta=0.0, **kw)
    sharp = compute_sliced_plans(X, Y, a, a, beta=100.0, **kw)
    np.testing.assert_allclose(flat.weights.numpy(), 1 / 32)
    best = int(torch.argmin(sharp.slice_costs))
    assert sharp.weights[best] > 0.5
    # the weighted cost of the sharp reference is below the flat average
    assert torch.sum(sharp.weights * sharp.slice_costs) < flat.slice_costs.mean()


def test_bad_inputs():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="same number of columns"):
        sliced_reference_plan(X, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="reference_smoothing"):
        sliced_reference_plan(X, X, reference_smoothing=2.0)
    with pytest.raises(ValueError, match="metric"):
        sliced_reference_plan(X, X, metric="cosine")
