import numpy as np
import ot
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skml.transport import sliced_reference_plan, srot_plan
from skml.transport._sinkhorn import sinkhorn_log


@pytest.fixture
def clouds():
    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(60, 2))
    Xt = rng.normal(size=(50, 2)) + [1.0, 0.5]
    a = rng.random(60) + 0.1
    b = rng.random(50) + 0.1
    return Xs, Xt, a / a.sum(), b / b.sum(), ot.dist(Xs, Xt)


@pytest.mark.parametrize("rel_reg", [0.5, 0.05, 0.01])
def test_independent_reference_is_pot_entropic_ot(clouds, rel_reg):
    _, _, a, b, C = clouds
    reg = rel_reg * np.median(C)
    expected = ot.sinkhorn(
        a, b, C, reg, method="sinkhorn_log", stopThr=1e-13, numItermax=200_000
    )
    plan = srot_plan(a, b, C, "independent", reg, tol=1e-12, max_iter=200_000)
    np.testing.assert_allclose(plan, expected, atol=1e-8)


def test_reference_equals_entropic_ot_on_shifted_cost(clouds):
    Xs, Xt, a, b, C = clouds
    reg = 0.1 * np.median(C)
    R = sliced_reference_plan(Xs, Xt, a, b, random_state=0)
    plan = srot_plan(a, b, C, R, reg, tol=1e-12, max_iter=100_000)
    shifted = C - reg * np.log(R)
    expected = ot.sinkhorn(
        a, b, shifted, reg, method="sinkhorn_log", stopThr=1e-13, numItermax=100_000
    )
    np.testing.assert_allclose(plan, expected, atol=1e-8)


@pytest.mark.parametrize("rel_reg", [1.0, 0.1, 0.01])
def test_marginals_meet_tol(clouds, rel_reg):
    Xs, Xt, a, b, C = clouds
    R = sliced_reference_plan(Xs, Xt, a, b, random_state=0)
    tol = 1e-9
    plan = srot_plan(a, b, C, R, rel_reg * np.median(C), tol=tol, max_iter=100_000)
    err = np.abs(plan.sum(0) - b).sum() + np.abs(plan.sum(1) - a).sum()
    assert err <= 2 * tol


def test_small_reg_approaches_exact_cost(clouds):
    Xs, Xt, a, b, C = clouds
    exact = ot.emd2(a, b, C)
    R = sliced_reference_plan(Xs, Xt, a, b, random_state=0)
    gaps = []
    for rel in (0.1, 0.03, 0.01):
        plan = srot_plan(a, b, C, R, rel * np.median(C), tol=1e-9, max_iter=100_000)
        gaps.append(np.sum(plan * C) / exact - 1)
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-9
    assert gaps[2] < 0.05


def test_zero_weights_give_empty_rows(clouds):
    _, _, a, b, C = clouds
    a = a.copy()
    a[:5] = 0
    plan = srot_plan(a, b, C, "independent", 0.1 * np.median(C))
    assert np.all(np.isfinite(plan))
    assert np.all(plan[:5] == 0)
    rest = srot_plan(a[5:], b, C[5:], "independent", 0.1 * np.median(C))
    np.testing.assert_allclose(plan[5:], rest, atol=1e-12)


def test_log_info_value_is_dual_value(clouds):
    _, _, a, b, C = clouds
    plan, info = srot_plan(a, b, C, reg=0.1, tol=1e-12, max_iter=10_000, log=True)
    assert info["err"] <= 1e-12
    np.testing.assert_allclose(info["value"], a @ info["f"] + b @ info["g"], rtol=1e-8)


def test_bad_inputs(clouds):
    _, _, a, b, C = clouds
    bad = C.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite costs"):
        srot_plan(a, b, bad)
    with pytest.raises(ValueError, match="non-negative"):
        srot_plan(-a, b, C)
    with pytest.raises(ValueError, match="shape"):
        srot_plan(a[:3], b, C)
    with pytest.raises(ValueError, match="reference"):
        srot_plan(a, b, C, reference="sliced")
    with pytest.raises(ValueError, match="reg must be positive"):
        srot_plan(a, b, C, reg=0.0)


def test_non_convergence_warns(clouds):
    _, _, a, b, C = clouds
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        srot_plan(a, b, C, reg=1e-3 * np.median(C), max_iter=5, epsilon_scaling=False)


def test_nan_plan_raises():
    a = torch.full((2,), 0.5, dtype=torch.float64)
    C = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    log_R = torch.full((2, 2), -np.inf, dtype=torch.float64)  # no feasible plan
    with pytest.raises(ValueError, match="increase reg"):
        sinkhorn_log(a, a, C, 0.1, log_R, warn=False)


def test_plan_from_potentials_rebuilds_the_solver_plan():
    import torch

    from skml.transport._sinkhorn import plan_from_potentials, sinkhorn_log

    rng = np.random.default_rng(3)
    a = np.full(30, 1 / 30)
    b = rng.random(25)
    b[4] = 0.0  # a zero-weight column gets no mass
    b /= b.sum()
    C = rng.random((30, 25))
    a_t, b_t, C_t = (torch.as_tensor(v) for v in (a, b, C))
    out = sinkhorn_log(a_t, b_t, C_t, 0.1, None, max_iter=2000, tol=1e-10)
    log_R = torch.log(a_t)[:, None] + torch.log(b_t)[None, :]
    P = plan_from_potentials(a_t, b_t, C_t, log_R, out["f"], out["g"], 0.1)
    np.testing.assert_allclose(P.numpy(), out["plan"].numpy(), rtol=1e-12, atol=0)
    assert np.all(P.numpy()[:, 4] == 0.0)


def _mixture_problem(n=400, rel_reg=0.01):
    from skml.datasets import make_gaussian_mixtures

    Xs, Xt = make_gaussian_mixtures(n, 2, random_state=0)
    C = ot.dist(Xs, Xt)
    a = np.full(n, 1.0 / n)
    return a, C, rel_reg * np.median(C)


def test_overrelaxation_reaches_the_same_plan_in_fewer_iterations():
    a, C, eps = _mixture_problem()
    a_t, C_t = torch.as_tensor(a), torch.as_tensor(C)
    plain = sinkhorn_log(
        a_t, a_t, C_t, eps, solver="sinkhorn", tol=1e-9, max_iter=10**5
    )
    fast = sinkhorn_log(a_t, a_t, C_t, eps, tol=1e-9, max_iter=10**5)
    np.testing.assert_allclose(fast["plan"].numpy(), plain["plan"].numpy(), atol=1e-9)
    # plain Sinkhorn's rate is close to 1 here: the relaxation pays off
    assert fast["n_iter"] < plain["n_iter"] / 2
    expected = ot.sinkhorn(
        a, a, C, eps, method="sinkhorn_log", stopThr=1e-12, numItermax=10**5
    )
    np.testing.assert_allclose(fast["plan"].numpy(), expected, atol=1e-8)


def test_lazy_blocks_fit_the_cache_on_cpu_only():
    from skml.transport._sinkhorn import _CPU_BLOCK_BYTES, _budget_rows

    m = 50_000
    # the CPU block is capped near the cache size, whatever the budget
    cpu = _budget_rows(m, 2**28)
    assert cpu == _CPU_BLOCK_BYTES // (8 * m) < 2**28 // (32 * m)
    assert _budget_rows(m, 2**28, device="cpu") == cpu
    # a smaller budget still wins; an accelerator keeps the whole budget
    assert _budget_rows(m, 2**20) == max(1, 2**20 // (32 * m))
    assert _budget_rows(m, 2**28, device="cuda") == 2**28 // (32 * m)
    # never below one row
    assert _budget_rows(10**9, 2**28) == 1


def test_lazy_kernel_products_equal_the_dense_ones():
    from skml.transport._sinkhorn import TransportKernel

    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(70, 3)), rng.normal(size=(50, 3))
    a, b = rng.random(70) + 0.1, rng.random(50) + 0.1
    a, b = torch.as_tensor(a / a.sum()), torch.as_tensor(b / b.sum())
    X, Y = torch.as_tensor(X), torch.as_tensor(Y)
    C = torch.as_tensor(ot.dist(X.numpy(), Y.numpy()))
    # (0, 3) twice: duplicate entries add up
    rows, cols = torch.tensor([0, 5, 69, 0]), torch.tensor([3, 3, 49, 3])
    values = torch.tensor([0.2, 0.3, 0.4, 0.1], dtype=torch.float64)
    sparse = (rows, cols, values)
    u, v = torch.as_tensor(rng.normal(size=70)), torch.as_tensor(rng.normal(size=50))
    dense = TransportKernel(a, b, cost=C, alpha=0.3, sparse=sparse)
    # a small block budget: several row blocks
    lazy = TransportKernel(
        a, b, points=(X, Y, "sqeuclidean"), alpha=0.3, sparse=sparse, memory=2**12
    )
    assert lazy.block < 70
    for kernel in (dense, lazy):
        kernel.set_scale(0.5, u, v)
    x, y = torch.rand(70, dtype=torch.float64), torch.rand(50, dtype=torch.float64)
    np.testing.assert_allclose(lazy.mv(y).numpy(), dense.mv(y).numpy(), rtol=1e-12)
    np.testing.assert_allclose(lazy.rmv(x).numpy(), dense.rmv(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        lazy.log_mv(torch.log(y)).numpy(), np.log(dense.mv(y).numpy()), rtol=1e-12
    )
    # the kernel is R exp(-C / eps + u + v), R = alpha a b' + (1 - alpha) S
    R = 0.3 * np.outer(a, b)
    np.add.at(R, (rows.numpy(), cols.numpy()), 0.7 * values.numpy())
    K = R * np.exp(-C.numpy() / 0.5 + u.numpy()[:, None] + v.numpy()[None, :])
    np.testing.assert_allclose(dense.mv(y).numpy(), K @ y.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dense.rmv(x).numpy(), x.numpy() @ K, rtol=1e-12)
    # the plan x_i K_ij y_j, S counted once in the dense and the lazy form
    for kernel in (dense, lazy):
        # clone: lazy blocks reuse one buffer
        plan = torch.cat([P.clone() for _, _, P, _ in kernel.plan_blocks(x, y)])
        np.testing.assert_allclose(
            plan.numpy(), x.numpy()[:, None] * K * y.numpy()[None, :], rtol=1e-12
        )
    # one pass for K y, the new row scaling and K' x (lazy iterations)
    a0 = a.clone()
    a0[3] = 0.0  # a zero weight keeps its scaling at 1
    Ky, x_new, Ktx = lazy.mv_scale_rmv(y, a0, 1.5)
    expected_x = torch.where(a0 > 0, a0 / dense.mv(y), 1.0) ** 1.5
    np.testing.assert_allclose(Ky.numpy(), dense.mv(y).numpy(), rtol=1e-12)
    np.testing.assert_allclose(x_new.numpy(), expected_x.numpy(), rtol=1e-12)
    np.testing.assert_allclose(Ktx.numpy(), dense.rmv(expected_x).numpy(), rtol=1e-12)
    # the stored kernel's plan statistics, without forming the plan
    P = x.numpy()[:, None] * K * y.numpy()[None, :]
    assert dense.stored and not lazy.stored
    rows_sum, cols_sum, src_img, tgt_img = dense.plan_images(x, y, X, Y)
    np.testing.assert_allclose(rows_sum.numpy(), P.sum(1), rtol=1e-12)
    np.testing.assert_allclose(cols_sum.numpy(), P.sum(0), rtol=1e-12)
    # image coordinates near 0 come from cancelling sums whose order depends
    # on BLAS's thread count: an absolute tolerance at the images' scale
    for got, ref in ((src_img, P @ Y.numpy()), (tgt_img, P.T @ X.numpy())):
        atol = 1e-13 * np.abs(ref).max()
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=atol)
    assert dense.plan_cost(x, y) == pytest.approx(np.sum(P * C.numpy()), rel=1e-12)
    # the entries' costs passed in with S give the same kernel
    given = TransportKernel(a, b, cost=C, alpha=0.3, sparse=(*sparse, C[rows, cols]))
    given.set_scale(0.5, u, v)
    np.testing.assert_array_equal(given.mv(y).numpy(), dense.mv(y).numpy())
    # a pure sliced reference (alpha = 0): only S
    only = TransportKernel(a, b, cost=C, alpha=0.0, sparse=sparse)
    only.set_scale(0.5, u, v)
    S = np.zeros((70, 50))
    np.add.at(S, (rows.numpy(), cols.numpy()), values.numpy())
    K0 = S * np.exp(-C.numpy() / 0.5 + u.numpy()[:, None] + v.numpy()[None, :])
    np.testing.assert_allclose(only.mv(y).numpy(), K0 @ y.numpy(), rtol=1e-12)


def test_max_iter_warning_says_how_far_it_got():
    a, C, eps = _mixture_problem(100)
    a_t = torch.as_tensor(a)
    with pytest.warns(ConvergenceWarning, match=r"in 7 iterations \(marginal error"):
        sinkhorn_log(a_t, a_t, torch.as_tensor(C), eps, max_iter=7)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
def test_soft_rank_tilt_is_the_same_kernel_dense_and_lazy(metric):
    from skml.transport._sinkhorn import TransportKernel
    from skml.transport._validation import pairwise_cost

    rng = np.random.default_rng(2)
    X, Y = (
        torch.as_tensor(rng.normal(size=(60, 3))),
        torch.as_tensor(rng.normal(size=(45, 3))),
    )
    U, V = torch.as_tensor(rng.random((60, 8))), torch.as_tensor(rng.random((45, 8)))
    a, b = (
        torch.full((60,), 1 / 60, dtype=torch.float64),
        torch.full((45,), 1 / 45, dtype=torch.float64),
    )
    C = pairwise_cost(X, Y, metric)
    # weight in cost units: sharpness 40 at eps 0.7
    dense = TransportKernel(a, b, cost=C, tilt=(U, V, 40.0 * 0.7))
    lazy = TransportKernel(
        a, b, points=(X, Y, metric), tilt=(U, V, 40.0 * 0.7), memory=2**12
    )
    assert lazy.block < 60
    u, v = torch.as_tensor(rng.normal(size=60)), torch.as_tensor(rng.normal(size=45))
    for kernel in (dense, lazy):
        kernel.set_scale(0.7, u, v)
    # K = a b' exp(-40 mean_l (U_il - V_jl)^2) exp(-C / eps + u + v), by hand
    gap = ((U.numpy()[:, None, :] - V.numpy()[None, :, :]) ** 2).mean(axis=2)
    R = np.outer(a, b) * np.exp(-40.0 * gap)
    K = R * np.exp(-C.numpy() / 0.7 + u.numpy()[:, None] + v.numpy()[None, :])
    x, y = torch.rand(60, dtype=torch.float64), torch.rand(45, dtype=torch.float64)
    for kernel in (dense, lazy):
        np.testing.assert_allclose(kernel.mv(y).numpy(), K @ y.numpy(), rtol=1e-11)
        np.testing.assert_allclose(kernel.rmv(x).numpy(), x.numpy() @ K, rtol=1e-11)
        np.testing.assert_allclose(
            kernel.log_mv(torch.log(y)).numpy(), np.log(K @ y.numpy()), rtol=1e-11
        )
    # the transport cost reads C, not the tilted cost
    for kernel in (dense, lazy):
        blocks = [Cb.clone() for _, _, _, Cb in kernel.plan_blocks(x, y)]
        np.testing.assert_allclose(torch.cat(blocks).numpy(), C.numpy(), rtol=1e-12)
    P = x.numpy()[:, None] * K * y.numpy()[None, :]
    assert dense.plan_cost(x, y) == pytest.approx(np.sum(P * C.numpy()), rel=1e-11)
