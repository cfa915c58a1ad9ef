import numpy as np
import pytest
import torch

from skml.transport._sinkhorn import TransportKernel
from skml.transport._sliced import compute_sliced_plans
from skml.transport._srot_fit import SlicedReference, plan_summary, transport_cost
from skml.transport._validation import pairwise_cost


def _clouds(n, m, uniform, seed=0):
    rng = np.random.default_rng(seed)
    Xs = torch.as_tensor(rng.normal(size=(n, 3)))
    Xt = torch.as_tensor(rng.normal(size=(m, 3)) + 0.3)
    if uniform:
        a, b = np.ones(n), np.ones(m)
    else:
        a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
        a[0] = 0.0  # a zero weight repeats a breakpoint
    return Xs, Xt, torch.as_tensor(a / a.sum()), torch.as_tensor(b / b.sum())


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("n, m", [(40, 40), (37, 55)])
@pytest.mark.parametrize("looked_up", [True, False])
def test_sliced_reference_is_the_expected_sliced_plan(n, m, uniform, looked_up):
    Xs, Xt, a, b = _clouds(n, m, uniform)
    C = pairwise_cost(Xs, Xt)
    ref = SlicedReference(
        Xs,
        Xt,
        a,
        b,
        n_projections=300,  # more slices than one chunk of the build
        metric="sqeuclidean",
        seed=0,
        cost=C if looked_up else None,
    )
    # entries in memory order, all of positive mass
    flat = ref.rows * m + ref.cols
    assert torch.all(flat[1:] >= flat[:-1]) and torch.all(ref.mass > 0)
    plans = compute_sliced_plans(
        Xs,
        Xt,
        a,
        b,
        n_projections=None,
        beta=3.0,
        metric="sqeuclidean",
        random_state=None,
        directions=ref.directions,
    )
    np.testing.assert_allclose(ref.slice_costs, plans.slice_costs, rtol=1e-12)
    np.testing.assert_allclose(ref.weights(3.0), plans.weights, rtol=1e-12)
    sparse = ref.sparse(3.0)
    assert len(sparse) == (4 if looked_up else 3)
    if looked_up:
        np.testing.assert_array_equal(sparse[3], C[ref.rows, ref.cols])
    R = torch.zeros(n * m, dtype=torch.float64).index_add_(0, flat, sparse[2])
    np.testing.assert_allclose(
        R.reshape(n, m), plans.dense(n, m, 0.0, a, b), rtol=1e-12, atol=1e-15
    )
    # a coupling of a and b
    np.testing.assert_allclose(R.reshape(n, m).sum(1), a, atol=1e-12)
    np.testing.assert_allclose(R.reshape(n, m).sum(0), b, atol=1e-12)


def test_plan_summary_is_the_same_for_stored_and_lazy_kernels():
    Xs, Xt, a, b = _clouds(30, 20, uniform=False, seed=2)
    C = pairwise_cost(Xs, Xt)
    ref = SlicedReference(
        Xs, Xt, a, b, n_projections=16, metric="sqeuclidean", seed=0, cost=C
    )
    rng = np.random.default_rng(5)
    u, v = torch.as_tensor(rng.normal(size=30)), torch.as_tensor(rng.normal(size=20))
    out = {
        "x": torch.rand(30, dtype=torch.float64),
        "y": torch.rand(20, dtype=torch.float64),
    }
    dense = TransportKernel(a, b, cost=C, alpha=0.2, sparse=ref.sparse(1.0))
    lazy = TransportKernel(
        a, b, points=(Xs, Xt, "sqeuclidean"), alpha=0.2, sparse=ref.sparse(1.0)[:3]
    )
    for kernel in (dense, lazy):
        kernel.set_scale(0.7, u, v)
    assert dense.stored and not lazy.stored
    got, expected = plan_summary(dense, out, Xs, Xt), plan_summary(lazy, out, Xs, Xt)
    assert got[0] == pytest.approx(expected[0], rel=1e-12)
    assert transport_cost(dense, out) == pytest.approx(got[0], rel=1e-12)
    for g, e in zip(got[1:], expected[1:]):
        # the two kernels sum in different orders (and BLAS's order depends
        # on the thread count): entries near 0 need an absolute tolerance
        np.testing.assert_allclose(
            g, e, rtol=1e-12, atol=1e-13 * np.nanmax(np.abs(np.asarray(e)))
        )
