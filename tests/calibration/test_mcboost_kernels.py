import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from skml.calibration._mcboost_kernels import (
    apply_coef,
    batched_ridge,
    bucket_edges,
    bucket_moments,
    cell_audit,
    dynamic_design,
    quantile_audit_path,
    ridge_from_moments,
    scaled_cell_moments,
    static_design,
    unshrink_coefficients,
    weighted_gram,
)


def _t(*arrays):
    return [torch.as_tensor(a) for a in arrays]


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    n, d, g = 500, 3, 2
    xs = rng.normal(size=(n, d))
    fs = rng.normal(size=n)
    G = (rng.random((n, g)) < 0.4).astype(float)
    knots = np.sort(rng.normal(size=(d + 1, 2)), axis=1)
    z = rng.normal(size=n)
    W = rng.random(n) + 0.2
    return xs, fs, G, knots, z, W


def test_designs_match_their_closed_forms(problem):
    xs, fs, G, knots, _, _ = problem
    Zs = static_design(*_t(xs, G, knots[:-1]), interactions=True).numpy()
    Zd = dynamic_design(*_t(fs, G, knots[-1]), interactions=True).numpy()
    hinge = np.maximum(xs[:, :, None] - knots[None, :-1], 0).reshape(len(xs), -1)
    gx = (G[:, :, None] * xs[:, None, :]).reshape(len(xs), -1)
    expected_s = np.column_stack([np.ones(len(xs)), xs, hinge, G, gx])
    expected_d = np.column_stack(
        [fs, np.maximum(fs[:, None] - knots[-1][None], 0), G * fs[:, None]]
    )
    np.testing.assert_array_equal(Zs, expected_s)
    np.testing.assert_array_equal(Zd, expected_d)
    # without groups or knots only the linear part is left
    plain = static_design(*_t(xs), None, None, interactions=True).numpy()
    np.testing.assert_array_equal(plain, np.column_stack([np.ones(len(xs)), xs]))


@pytest.mark.parametrize("with_dynamic", [True, False])
def test_static_gram_reuse_equals_full_moments(problem, with_dynamic):
    xs, fs, G, knots, z, W = problem
    Zs = static_design(*_t(xs, G, knots[:-1]), interactions=True)
    Zd = dynamic_design(*_t(fs, G, knots[-1]), interactions=True)
    Zd = Zd if with_dynamic else None
    zt, Wt = _t(z, W)
    bucket = torch.zeros(len(z), dtype=torch.int64)
    fast = bucket_moments(Zs, Zd, zt, Wt, bucket, 1, weighted_gram(Zs, Wt))
    Z = Zs if Zd is None else torch.cat([Zs, Zd], 1)
    ZW = Z * Wt[:, None]
    expected = (ZW.T @ Z, ZW.T @ zt, torch.sum(Wt * zt**2))
    for got, ref in zip(fast, expected):
        np.testing.assert_allclose(got[0].numpy(), ref.numpy(), rtol=1e-12, atol=1e-9)


def test_cell_moments_equal_the_row_moments():
    # [1, g, u, g u] with g the one-hot columns of two categorical
    # attributes: per-cell sums give the same moments as the rows
    rng = np.random.default_rng(3)
    n = 700
    g = np.column_stack(
        [np.eye(3)[rng.integers(3, size=n)], np.eye(4)[rng.integers(4, size=n)]]
    )
    u, z, W = rng.normal(size=n), rng.normal(size=n), rng.random(n) + 0.1
    Zs = np.column_stack([np.ones(n), g])
    Z = np.column_stack([Zs, Zs * u[:, None]])
    G, cell = torch.unique(torch.as_tensor(g), dim=0, return_inverse=True)
    C = torch.cat([torch.ones(len(G), 1, dtype=G.dtype), G], 1)
    assert len(C) <= 12
    S2, Sz, zz = scaled_cell_moments(C, cell, *_t(z, W, u))
    np.testing.assert_allclose(S2[0].numpy(), (Z * W[:, None]).T @ Z, rtol=1e-12)
    np.testing.assert_allclose(Sz[0].numpy(), (Z * W[:, None]).T @ z, rtol=1e-12)
    np.testing.assert_allclose(zz.numpy(), [np.sum(W * z * z)], rtol=1e-12)


def test_bucket_moments_per_bucket(problem):
    xs, _, _, _, z, W = problem
    rng = np.random.default_rng(1)
    bucket = rng.integers(0, 3, len(z))
    Z = np.column_stack([np.ones(len(z)), xs])
    S2, Sz, zz = bucket_moments(*_t(Z), None, *_t(z, W, bucket), 3)
    for j in range(3):
        rows = bucket == j
        Zj, Wj = Z[rows], W[rows]
        np.testing.assert_allclose(S2[j].numpy(), (Zj * Wj[:, None]).T @ Zj)
        np.testing.assert_allclose(Sz[j].numpy(), (Zj * Wj[:, None]).T @ z[rows])
        np.testing.assert_allclose(zz[j].item(), np.sum(Wj * z[rows] ** 2))


def test_batched_ridge_matches_sklearn_ridge():
    rng = np.random.default_rng(0)
    n, d, m = 300, 5, 3
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 2.0 + rng.normal(size=n)
    w = rng.random(n) + 0.5
    bucket = rng.integers(0, m, n)
    Z = np.column_stack([np.ones(n), X])
    coef, _ = batched_ridge(*_t(Z, y, w, w, bucket), m=m, alpha=3.0)
    for j in range(m):
        rows = bucket == j
        ref = Ridge(alpha=3.0).fit(X[rows], y[rows], sample_weight=w[rows])
        np.testing.assert_allclose(coef[j, 1:].numpy(), ref.coef_, rtol=1e-9)
        np.testing.assert_allclose(coef[j, 0].item(), ref.intercept_, rtol=1e-9)


def test_gcv_alpha_shrinks_pure_noise():
    rng = np.random.default_rng(1)
    n, d = 400, 20
    X = rng.normal(size=(n, d))
    Z = np.column_stack([np.ones(n), X])
    noise = rng.normal(size=n)
    signal = noise + 3 * X[:, 0]
    ones = np.ones(n)
    bucket = np.zeros(n, dtype=int)
    args = _t(Z, noise, ones, ones, bucket)
    coef_noise, _ = batched_ridge(*args, m=1, alpha="gcv")
    coef_ols, _ = batched_ridge(*args, m=1, alpha=0.0)
    args[1] = torch.as_tensor(signal)
    coef_signal, _ = batched_ridge(*args, m=1, alpha="gcv")
    # GCV keeps the real slope and shrinks the fit to pure noise hard
    assert abs(coef_signal[0, 1].item() - 3.0) < 0.2
    norm = torch.linalg.norm
    assert norm(coef_noise[0, 1:]) < 0.5 * norm(coef_ols[0, 1:])


def test_ridge_gain_is_the_newton_decrease():
    # gain = sum W (z delta - delta^2 / 2) at the ridge solution when alpha = 0
    rng = np.random.default_rng(2)
    n = 200
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    z, W = rng.normal(size=n), rng.random(n) + 0.5
    S2, Sz, zz = bucket_moments(*_t(Z), None, *_t(z, W), torch.zeros(n, dtype=int), 1)
    coef, gain = ridge_from_moments(S2, Sz, zz, torch.tensor([W.sum()]), 0.0)
    delta = Z @ coef[0].numpy()
    np.testing.assert_allclose(gain.item(), np.sum(W * (z * delta - delta**2 / 2)))


def test_apply_coef_blocks_equal_the_full_design(problem):
    xs, fs, G, knots, _, _ = problem
    Zs = static_design(*_t(xs, G, knots[:-1]), interactions=True)
    Zd = dynamic_design(*_t(fs, G, knots[-1]), interactions=True)
    Z = torch.cat([Zs, Zd], 1).numpy()
    rng = np.random.default_rng(3)
    coef = rng.normal(size=(4, Z.shape[1]))
    bucket = rng.integers(0, 4, len(fs))
    got = apply_coef(Zs, Zd, *_t(coef, bucket)).numpy()
    np.testing.assert_allclose(got, np.sum(Z * coef[bucket], axis=1))
    one = apply_coef(Zs, Zd, *_t(coef[:1], np.zeros_like(bucket))).numpy()
    np.testing.assert_allclose(one, Z @ coef[0])


def test_quantile_edges_split_the_weight_and_ignore_zero_weights():
    rng = np.random.default_rng(4)
    F = rng.normal(size=1000)
    w = rng.random(1000)
    w[:100] = 0.0
    F[:100] = 50.0  # would drag the top edges if zero weights counted
    edges = bucket_edges(*_t(F, w), "quantile", 4).numpy()
    assert len(edges) == 3 and edges.max() < 5
    bounds = zip([-99, *edges], [*edges, 99])
    share = [w[(F > lo) & (F <= hi)].sum() for lo, hi in bounds]
    np.testing.assert_allclose(np.array(share) / w.sum(), 0.25, atol=0.01)
    # edges never sit on a row's score
    assert not np.isin(edges, F).any()
    uniform = bucket_edges(*_t(F[100:], w[100:]), "uniform", 4).numpy()
    lo, hi = F[100:].min(), F[100:].max()
    np.testing.assert_allclose(uniform, lo + (hi - lo) * np.array([0.25, 0.5, 0.75]))
    assert bucket_edges(*_t(F, w), "none", 4).numel() == 0


def test_cell_audit_matches_a_loop():
    rng = np.random.default_rng(5)
    n, m = 600, 3
    r, w = rng.normal(size=n), rng.random(n) + 0.1
    r[:50] += 1.5  # a biased corner of group 0 in bucket 0
    G = (rng.random((n, 2)) < 0.5).astype(float)
    G[:50, 0] = 1.0
    bucket = rng.integers(0, m, n)
    bucket[:50] = 0
    z_max, bias_max, n_cells = cell_audit(*_t(r, w, G, bucket), m, 0.02)
    H = np.column_stack([np.ones(n), G]).astype(bool)
    zs, biases, count = [], [], 0
    for g in range(3):
        for j in range(m):
            rows = H[:, g] & (bucket == j)
            if w[rows].sum() >= 0.02 * w.sum():
                s = np.sum(w[rows] * r[rows])
                zs.append(abs(s) / np.sqrt(np.sum((w[rows] * r[rows]) ** 2)))
                biases.append(abs(s) / w.sum())
                count += 1
    np.testing.assert_allclose(z_max, max(zs))
    np.testing.assert_allclose(bias_max, max(biases))
    assert n_cells == count


@pytest.mark.parametrize("with_cells", [False, True])
@pytest.mark.parametrize("unit_weights", [False, True])
def test_quantile_audit_path_matches_one_audit_per_round(with_cells, unit_weights):
    rng = np.random.default_rng(6)
    n, R, m = 400, 6, 10
    w = np.ones(n) if unit_weights else rng.random(n) + 0.1
    w[:20] = 0.0  # dropped rows move no edge
    G = (rng.random((n, 2)) < 0.5).astype(float)
    level = rng.normal(size=(R, n))
    level[1] = np.round(level[1], 1)  # tied scores
    level[2, :] = 0.3  # one distinct score: one bucket
    level[3, :200] = -1.0  # a large tie at the low end
    level[4] = np.where(rng.random(n) < 0.5, 0.0, 1.0)  # two distinct scores
    r = rng.normal(size=(R, n)) + 0.8 * (level > 0.5) * G[:, 0]
    cells = None
    if with_cells:
        H = torch.as_tensor(np.column_stack([np.ones(n), G]))
        cells = torch.unique(H, dim=0, return_inverse=True)
    got = quantile_audit_path(*_t(r, w, G, level), m, 0.02, cells).numpy()
    for k in range(R):
        rt, wt, Gt, Ft = _t(r[k], w, G, level[k])
        edges = bucket_edges(Ft, wt, "quantile", m)
        bucket = torch.bucketize(Ft, edges, right=True)
        want = cell_audit(rt, wt, Gt, bucket, len(edges) + 1, 0.02)[0]
        np.testing.assert_allclose(got[k], want, rtol=1e-12)


@pytest.mark.parametrize("upper", [10.0, 1.2])
def test_unshrink_coefficients_match_bounded_least_squares(upper):
    from scipy.optimize import lsq_linear

    from skml.calibration._losses import _Squared

    rng = np.random.default_rng(3)
    n = 400
    F0 = rng.normal(size=n)
    parts = rng.normal(size=(n, 2))
    w = rng.uniform(0.5, 2.0, size=n)
    # the truth needs 1.5 of the first part and none (below 0) of the second
    y = F0 + parts @ [1.5, -0.7] + 0.1 * rng.normal(size=n)
    c = unshrink_coefficients(*_t(F0, parts, y, w), _Squared, upper)
    sw = np.sqrt(w)
    ref = lsq_linear(parts * sw[:, None], (y - F0) * sw, bounds=(0, upper)).x
    np.testing.assert_allclose(c, ref, atol=1e-8)
    assert c[1] == 0.0 and (c[0] == upper if upper < 1.5 else c[0] > 1.3)


@pytest.mark.parametrize(
    "scale, truth", [(1.0, (3.0, 3.0)), (2.0, (2.0, 0.5)), (3.0, (0.5, 2.0))]
)
def test_unshrink_coefficients_poisson_far_from_the_start(scale, truth):
    # The minimiser is far from the start c = 1 and the link is exponential:
    # an undamped Newton step overshoots to where exp(F) is astronomically
    # large (it ended at c near 8, with a risk 1e3 to 1e44 times too high).
    from scipy.optimize import minimize

    from skml.calibration._losses import _Poisson

    rng = np.random.default_rng(2)
    n = 1000
    F0 = np.zeros(n)
    parts = scale * rng.normal(size=(n, 2))
    y = rng.poisson(np.exp(np.minimum(parts @ truth, 25.0))).astype(float)
    c = unshrink_coefficients(*_t(F0, parts, y, np.ones(n)), _Poisson, 10.0)

    def risk(coef):
        F = parts @ coef
        return np.sum(np.exp(F) - y * F)

    ref = minimize(
        risk,
        np.zeros(2),
        bounds=[(0, 10)] * 2,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-10},
    )
    np.testing.assert_allclose(c, ref.x, atol=1e-4)
    assert risk(c) <= ref.fun + 1e-9 * abs(ref.fun)


def test_unshrink_coefficients_poisson_match_a_bounded_minimiser():
    from scipy.optimize import minimize

    from skml.calibration._losses import _Poisson

    rng = np.random.default_rng(4)
    n = 2000
    F0 = 0.3 * rng.normal(size=n)
    parts = 0.5 * rng.normal(size=(n, 2))
    y = rng.poisson(np.exp(F0 + parts @ [2.0, 0.5])).astype(float)
    w = np.ones(n)
    c = unshrink_coefficients(*_t(F0, parts, y, w), _Poisson, 10.0)

    def risk(coef):
        F = F0 + parts @ coef
        return np.sum(np.exp(F) - y * F)

    ref = minimize(risk, np.ones(2), bounds=[(0, 10)] * 2, tol=1e-12).x
    np.testing.assert_allclose(c, ref, atol=1e-5)
    # a part that is zero on every row keeps its coefficient
    parts[:, 1] = 0.0
    c = unshrink_coefficients(*_t(F0, parts, y, w), _Poisson, 10.0)
    assert c[1] == 1.0
