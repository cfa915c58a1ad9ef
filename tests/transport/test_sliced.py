import numpy as np
import ot
import pytest
import torch

from skml.transport import sliced_reference_plan
from skml.transport._sliced import (
    _directions,
    compute_sliced_plans,
    covariance_directions,
    query_reference_log,
)
from skml.transport._validation import pairwise_cost
from skml.utils import find_tensors


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
    with pytest.raises(ValueError, match='directions must be "uniform" or'):
        sliced_reference_plan(X, X, directions="sphere")


def test_covariance_directions_find_the_axis_the_clouds_spread_on():
    # 20-D clouds whose spread is all on one axis: uniform slices mostly see
    # the 19 unit-variance axes, covariance slices follow the wide one, so
    # their reference plan is far closer to the optimal one.
    rng = np.random.default_rng(0)
    n, d = 200, 20
    scale = np.r_[10.0, np.ones(d - 1)]
    Xs = rng.normal(size=(n, d)) * scale
    Xt = rng.normal(size=(n, d)) * scale
    C = ot.dist(Xs, Xt)
    a = np.full(n, 1 / n)
    exact = np.sum(C * ot.emd(a, a, C))
    gaps = {}
    for law in ("uniform", "covariance"):
        R = sliced_reference_plan(
            Xs, Xt, directions=law, reference_smoothing=0.0, random_state=0
        )
        np.testing.assert_allclose(R.sum(axis=1), a, atol=1e-12)
        np.testing.assert_allclose(R.sum(axis=0), a, atol=1e-12)
        # share of the way from the exact plan's cost to the product's
        gaps[law] = (np.sum(C * R) - exact) / (C.mean() - exact)
    assert gaps["covariance"] < 0.5 * gaps["uniform"]
    # "uniform" is the default
    np.testing.assert_array_equal(
        sliced_reference_plan(Xs, Xt, random_state=0),
        sliced_reference_plan(Xs, Xt, directions="uniform", random_state=0),
    )


def _plans(n, m, d, *, a=None, b=None, seed=0, **kw):
    rng = np.random.default_rng(seed)
    Xs = torch.as_tensor(rng.normal(size=(n, d)))
    Xt = torch.as_tensor(rng.normal(size=(m, d)) + 0.5)
    a = torch.full((n,), 1 / n, dtype=torch.float64) if a is None else a
    b = torch.full((m,), 1 / m, dtype=torch.float64) if b is None else b
    kw = {"n_projections": 16, "beta": 2.0, "metric": "sqeuclidean", **kw}
    plans = compute_sliced_plans(Xs, Xt, a, b, random_state=seed, **kw)
    return Xs, Xt, a, b, plans


def _random_weights(size, seed):
    w = torch.as_tensor(np.random.default_rng(seed).random(size) + 0.1)
    return w / w.sum()


def test_numpy_form_round_trips():
    _, _, _, _, plans = _plans(20, 15, 3)
    stored = plans.to_numpy()
    assert find_tensors(stored) == []
    back = stored.to("cpu")
    for name, value in vars(plans).items():
        assert isinstance(getattr(stored, name), np.ndarray)
        restored = getattr(back, name)
        # integer fields (orders, COO indices) stay int64 for gather/index_add
        assert restored.dtype == value.dtype
        assert torch.equal(restored, value)
    assert back.order_s.dtype == torch.int64 and back.src.dtype == torch.int64


@pytest.mark.parametrize("forward", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_query_reference_on_fitted_points_is_the_dense_row(forward, smoothing):
    n, m = 25, 18
    a, b = _random_weights(n, 1), _random_weights(m, 2)
    Xs, Xt, a, b, plans = _plans(n, m, 3, a=a, b=b)
    R = plans.dense(n, m, smoothing, a, b)
    if forward:
        log_ref = query_reference_log(plans, Xs, b, smoothing, True)
        expected = R / a[:, None]
    else:
        log_ref = query_reference_log(plans, Xt, a, smoothing, False)
        expected = (R / b[None, :]).T
    np.testing.assert_allclose(torch.exp(log_ref), expected, atol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.05])
def test_query_reference_rows_are_normalised(smoothing):
    # Each slice sends the query's cdf interval onto destination intervals
    # that cover it, so every row sums to 1 for any normalised weights, also
    # for points far outside the clouds.
    n, m = 12, 40
    a = _random_weights(n, 3)
    b = torch.zeros(m, dtype=torch.float64)
    # exact (dyadic) weights with zero-weight destinations between the
    # positive ones: the overlap window must count the empty ranks too
    b[np.random.default_rng(4).choice(m, 8, replace=False)] = 1 / 8
    _, _, _, _, plans = _plans(n, m, 2, a=a, b=b)
    q = torch.as_tensor(np.random.default_rng(5).normal(size=(200, 2)) * 3)
    ref = torch.exp(query_reference_log(plans, q, b, smoothing, True))
    assert torch.all(ref >= 0)
    np.testing.assert_allclose(ref.sum(1), 1.0, atol=1e-12)
    # zero-weight destinations receive nothing
    assert torch.all(ref[:, b == 0] == 0)


def test_query_reference_interpolates_between_neighbours_in_one_dimension():
    # 1-D, uniform, n = m: every slice matches the k-th smallest source point
    # to the k-th smallest target point, and a point between two neighbouring
    # source points splits its row between their targets in proportion.
    n = 10
    Xs, Xt, a, b, plans = _plans(n, n, 1, beta=0.0, n_projections=3)
    xs = torch.sort(Xs[:, 0]).values
    target_of_rank = torch.argsort(Xt[:, 0])
    k = 4
    for lam in [0.0, 0.3, 0.7, 1.0]:
        q = ((1 - lam) * xs[k] + lam * xs[k + 1]).reshape(1, 1)
        ref = torch.exp(query_reference_log(plans, q, b, 0.0, True))[0]
        expected = torch.zeros(n, dtype=torch.float64)
        expected[target_of_rank[k]] += 1 - lam
        expected[target_of_rank[k + 1]] += lam
        np.testing.assert_allclose(ref, expected, atol=1e-12)


def test_query_reference_is_continuous():
    # Piecewise linear in the point: away from the kinks the change is
    # proportional to the step, so it vanishes with it.
    _, _, _, b, plans = _plans(50, 40, 3)
    rng = np.random.default_rng(6)
    q = torch.as_tensor(rng.normal(size=(20, 3)))
    u = torch.as_tensor(rng.normal(size=(20, 3)))
    base = torch.exp(query_reference_log(plans, q, b, 0.01, True))
    rates = []
    for h in (1e-7, 1e-9):
        moved = torch.exp(query_reference_log(plans, q + h * u, b, 0.01, True))
        change = torch.abs(moved - base).sum(1)
        assert torch.all(change < 1e3 * h)
        rates.append(change / h)
    assert torch.all(rates[0] > 0)
    np.testing.assert_allclose(rates[1], rates[0], rtol=1e-4, atol=1e-6)


def test_query_reference_from_the_numpy_form():
    Xs, _, _, b, plans = _plans(30, 20, 2)
    q = Xs + 0.05
    expected = query_reference_log(plans, q, b, 0.01, True)
    got = query_reference_log(plans.to_numpy().to(q.device), q, b, 0.01, True)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("n, m", [(40, 40), (37, 55)])
def test_slice_plans_match_the_merged_cdf_search(n, m):
    # Ranks are counted in the merged order; on every interval of positive
    # mass they must be the binary search of the interval's midpoint, and
    # the lifted costs looked up in C must be the pairs' costs.
    rng = np.random.default_rng(3)
    Xs = torch.as_tensor(rng.normal(size=(n, 3)))
    Xt = torch.as_tensor(rng.normal(size=(m, 3)) + 0.5)
    a = torch.as_tensor(rng.integers(0, 3, n).astype(float))
    a[0] = 0.0  # zero weights make repeated breakpoints
    a = a / a.sum()
    b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    C = pairwise_cost(Xs, Xt)
    kw = {"n_projections": 9, "beta": 1.0, "metric": "sqeuclidean"}
    plans = compute_sliced_plans(Xs, Xt, a, b, random_state=0, **kw)
    looked_up = compute_sliced_plans(
        Xs, Xt, a, b, random_state=None, directions=plans.directions, cost=C, **kw
    )
    cdf_s, cdf_t = plans.cdf_s, plans.cdf_t
    points = torch.sort(torch.cat([cdf_s, cdf_t], 1), 1).values
    lower = torch.cat([points.new_zeros(9, 1), points[:, :-1]], 1)
    mid = 0.5 * (points + lower)
    rank_s = torch.clamp(torch.searchsorted(cdf_s, mid), max=n - 1)
    rank_t = torch.clamp(torch.searchsorted(cdf_t, mid), max=m - 1)
    live = plans.mass > 0
    assert live.sum() >= n  # at least one pair per source point per slice
    np.testing.assert_array_equal(
        plans.src[live], torch.gather(plans.order_s, 1, rank_s)[live]
    )
    np.testing.assert_array_equal(
        plans.tgt[live], torch.gather(plans.order_t, 1, rank_t)[live]
    )
    np.testing.assert_allclose(looked_up.slice_costs, plans.slice_costs, rtol=1e-12)
    np.testing.assert_allclose(looked_up.weights, plans.weights, rtol=1e-12)


@pytest.mark.parametrize("n, m", [(40, 40), (37, 55)])
def test_uniform_weights_keep_the_positive_intervals_of_the_general_merge(n, m):
    # Uniform weights merge the cdfs once for every slice and keep only the
    # intervals of positive mass; they must be the general per-slice merge's.
    rng = np.random.default_rng(4)
    Xs = torch.as_tensor(rng.normal(size=(n, 3)))
    Xt = torch.as_tensor(rng.normal(size=(m, 3)))
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    kw = {"n_projections": 7, "beta": 2.0, "metric": "sqeuclidean"}
    plans = compute_sliced_plans(Xs, Xt, a, b, random_state=0, **kw)
    assert plans.src.shape[1] < n + m  # zero-mass intervals dropped
    # the general merge: sort the cdfs of each slice, ranks by binary search
    cdf_s = torch.cumsum(a[plans.order_s], 1).clamp(max=1.0)
    cdf_t = torch.cumsum(b[plans.order_t], 1).clamp(max=1.0)
    cdf_s[:, -1], cdf_t[:, -1] = 1.0, 1.0
    points = torch.sort(torch.cat([cdf_s, cdf_t], 1), 1).values
    lower = torch.cat([points.new_zeros(7, 1), points[:, :-1]], 1)
    live = points - lower > 0
    mid = 0.5 * (points + lower)
    src = torch.gather(
        plans.order_s, 1, torch.searchsorted(cdf_s, mid).clamp(max=n - 1)
    )
    tgt = torch.gather(
        plans.order_t, 1, torch.searchsorted(cdf_t, mid).clamp(max=m - 1)
    )
    for slice_ in range(7):
        expected = sorted(
            zip(
                src[slice_][live[slice_]].tolist(),
                tgt[slice_][live[slice_]].tolist(),
                (points - lower)[slice_][live[slice_]].tolist(),
            )
        )
        got = sorted(
            zip(
                plans.src[slice_].tolist(),
                plans.tgt[slice_].tolist(),
                plans.mass[slice_].tolist(),
            )
        )
        assert [e[:2] for e in expected] == [g[:2] for g in got]
        np.testing.assert_allclose([e[2] for e in expected], [g[2] for g in got])
    np.testing.assert_allclose(plans.cdf_s, cdf_s, rtol=1e-15)
    # the lifted costs are those of the pairs
    C = pairwise_cost(Xs, Xt)
    costs = (plans.mass * C[plans.src, plans.tgt]).sum(1)
    np.testing.assert_allclose(plans.slice_costs, costs, rtol=1e-12)


def test_covariance_directions_follow_the_clouds_span():
    # Clouds inside a 2-D subspace of R^6: every direction lies in it.
    rng = np.random.default_rng(5)
    basis, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    Xs = torch.as_tensor(rng.normal(size=(40, 2)) @ basis.T)
    Xt = torch.as_tensor(rng.normal(size=(30, 2)) @ basis.T + 3 * basis[:, 0])
    a = torch.full((40,), 1 / 40, dtype=torch.float64)
    b = torch.full((30,), 1 / 30, dtype=torch.float64)
    theta = covariance_directions(Xs, Xt, a, b, 50, 0)
    assert theta.shape == (6, 50)
    np.testing.assert_allclose(torch.linalg.norm(theta, dim=0), 1.0, rtol=1e-12)
    off_span = theta - torch.as_tensor(basis @ basis.T) @ theta
    assert float(off_span.abs().max()) < 1e-6


def test_covariance_directions_are_uniform_for_isotropic_clouds():
    # Points +-e_k: zero mean and second moment I / d, so S^(1/2) is a
    # multiple of I and the directions are the uniform draws of that seed.
    d = 4
    X = torch.cat([torch.eye(d), -torch.eye(d)]).double()
    w = torch.full((2 * d,), 1 / (2 * d), dtype=torch.float64)
    theta = covariance_directions(X, X, w, w, 16, 3)
    uniform = _directions(d, 16, 3, X.device, X.dtype)
    np.testing.assert_allclose(theta, uniform, atol=1e-12)


def test_covariance_directions_of_constant_clouds_are_uniform():
    X = torch.ones(5, 3, dtype=torch.float64)
    w = torch.full((5,), 0.2, dtype=torch.float64)
    theta = covariance_directions(X, X, w, w, 8, 1)
    np.testing.assert_allclose(theta, _directions(3, 8, 1, X.device, X.dtype))


def test_quantile_embedding_is_the_rank_midpoint():
    from skml.transport._sliced import quantile_embedding, slice_plans

    rng = np.random.default_rng(3)
    Xs, Xt = rng.normal(size=(30, 2)), rng.normal(size=(20, 2))
    w = rng.random(30) + 0.1
    w /= w.sum()
    a = torch.as_tensor(w)
    b = torch.full((20,), 1 / 20, dtype=torch.float64)
    plans = slice_plans(
        torch.as_tensor(Xs), torch.as_tensor(Xt), a, b, n_projections=5, random_state=0
    )
    U = quantile_embedding(plans.order_s, plans.cdf_s, a).numpy()
    V = quantile_embedding(plans.order_t, plans.cdf_t, b).numpy()
    theta = plans.directions.numpy()
    for k in range(5):
        pt = Xt @ theta[:, k]
        # uniform weights: (rank + 1/2) / m
        ranks = np.argsort(np.argsort(pt))
        np.testing.assert_allclose(V[:, k], (ranks + 0.5) / 20, rtol=1e-12)
        # weights: the mass below the point plus half its own
        ps = Xs @ theta[:, k]
        below = np.array([w[ps < p].sum() for p in ps])
        np.testing.assert_allclose(U[:, k], below + w / 2, rtol=1e-12)


def test_query_quantiles_are_continuous_and_exact_on_fitted_points():
    from skml.transport._sliced import (
        quantile_embedding,
        query_quantiles,
        slice_plans,
    )

    rng = np.random.default_rng(4)
    Xs = torch.as_tensor(rng.normal(size=(25, 3)))
    a = torch.full((25,), 1 / 25, dtype=torch.float64)
    plans = slice_plans(Xs, Xs, a, a, n_projections=7, random_state=1)
    U = quantile_embedding(plans.order_s, plans.cdf_s, a)
    tables = (plans.proj_s, plans.order_s, plans.cdf_s, a)
    got = query_quantiles(*tables, (Xs @ plans.directions).T)
    np.testing.assert_allclose(got.numpy(), U.numpy(), rtol=1e-12)
    # a small move moves the quantiles a little; far points take the ends
    q = Xs + 1e-7
    near = query_quantiles(*tables, (q @ plans.directions).T)
    assert np.abs(near.numpy() - U.numpy()).max() < 1e-4
    for sign in (1.0, -1.0):
        far = torch.full((1, 3), sign * 1e6, dtype=torch.float64)
        ends = query_quantiles(*tables, (far @ plans.directions).T).numpy()
        assert np.all(np.isclose(ends, 0.5 / 25) | np.isclose(ends, 1 - 0.5 / 25))
