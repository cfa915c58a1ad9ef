"""The tensor kernels of NonlinearFactorModel against closed forms and numpy."""

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear
from scipy.stats import norm, rankdata

from skml.decomposition import _nonlinear_factor_kernels as K


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _tanh_link(z):
    value = torch.tanh(z)
    return value, 1.0 - value * value


def _random_link(rng, n_knots=6, per_knot=False):
    """Knots on [-2, 2], a free intercept and non-negative other weights."""
    knots = np.sort(rng.uniform(-2.0, 2.0, n_knots))
    bandwidth = rng.uniform(0.2, 0.6, n_knots) if per_knot else np.array(0.35)
    coef = rng.exponential(size=K.n_link_coef(n_knots))
    coef[0] = rng.normal()
    # some weights exactly at their bound, as the bounded fit leaves them
    coef[2:][rng.uniform(size=3 * n_knots) < 0.3] = 0.0
    return _t(coef), _t(knots), _t(bandwidth)


def _blocks(rng, n_blocks=12, q=3, per_block=(4, 15)):
    """A random separable problem: entries owned by blocks, features, offsets."""
    sizes = rng.integers(*per_block, size=n_blocks)
    block = np.repeat(np.arange(n_blocks), sizes)
    rng.shuffle(block)
    feats = rng.normal(size=(len(block), q))
    offset = rng.normal(size=len(block))
    x = rng.normal(size=len(block))
    theta = rng.normal(size=(n_blocks, q))
    return theta, block, feats, offset, x


def _ridge_solution(block, feats, target, ridge, n_blocks):
    """Per block ``argmin |F t - target|^2 + sum_k ridge_k t_k^2``, in numpy."""
    out = []
    for b in range(n_blocks):
        F, y = feats[block == b], target[block == b]
        out.append(np.linalg.solve(F.T @ F + np.diag(ridge), F.T @ y))
    return np.array(out)


# ------------------------------------------------------------------ links


@pytest.mark.parametrize("per_knot", [False, True])
def test_monotone_link_value_is_the_basis_times_coef(per_knot):
    rng = np.random.default_rng(0)
    coef, knots, bandwidth = _random_link(rng, per_knot=per_knot)
    z = _t(rng.uniform(-5.0, 5.0, 300))
    value, _ = K.monotone_link(z, coef, knots, bandwidth)
    basis = K.monotone_basis(z, knots, bandwidth)
    assert basis.shape == (300, len(coef))
    np.testing.assert_allclose(
        value.numpy(), (basis @ coef).numpy(), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("per_knot", [False, True])
def test_monotone_link_slope_is_its_derivative(per_knot):
    rng = np.random.default_rng(1)
    coef, knots, bandwidth = _random_link(rng, per_knot=per_knot)
    z = _t(rng.uniform(-5.0, 5.0, 300))
    h = 1e-5
    up = K.monotone_link(z + h, coef, knots, bandwidth)[0]
    down = K.monotone_link(z - h, coef, knots, bandwidth)[0]
    slope = K.monotone_link(z, coef, knots, bandwidth)[1]
    # central difference: truncation h^2 f''' / 6 ~ 1e-9 (f''' ~ coef / s^2),
    # rounding ~ 1e-16 |f| / h ~ 1e-10
    np.testing.assert_allclose(
        slope.numpy(), ((up - down) / (2 * h)).numpy(), atol=1e-7
    )


@pytest.mark.parametrize("per_knot", [False, True])
def test_monotone_link_slope_is_at_least_the_linear_term(per_knot):
    rng = np.random.default_rng(2)
    coef, knots, bandwidth = _random_link(rng, per_knot=per_knot)
    z = torch.linspace(-40.0, 40.0, 20001, dtype=torch.float64)
    value, slope = K.monotone_link(z, coef, knots, bandwidth)
    # f' = a + sum beta phi / s + gamma Phi + delta (1 - Phi) >= a exactly;
    # 1e-12 covers rounding of the sums
    assert float(slope.min()) >= float(coef[1]) - 1e-12
    assert bool((torch.diff(value) > 0).all())


def test_monotone_link_on_flat_basis_pieces():
    # one knot: step, convex ramp and concave ramp in closed form
    z = _t(np.linspace(-3, 3, 61))
    s, c = 0.5, 0.4
    t = (z.numpy() - c) / s
    step, ramp = norm.cdf(t), s * (t * norm.cdf(t) + norm.pdf(t))
    for coef, expected in [
        ([1.0, 0.0, 1.0, 0.0, 0.0], 1.0 + step),
        ([0.0, 0.0, 0.0, 1.0, 0.0], ramp),
        ([0.0, 0.0, 0.0, 0.0, 1.0], (z.numpy() - c) - ramp),
    ]:
        value = K.monotone_link(z, _t(coef), _t([c]), _t(s))[0]
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_knot", [False, True])
def test_tabulated_link_agrees_inside_and_beyond_its_range(per_knot):
    rng = np.random.default_rng(3)
    coef, knots, bandwidth = _random_link(rng, per_knot=per_knot)
    exact = lambda z: K.monotone_link(z, coef, knots, bandwidth)  # noqa: E731
    reach = 8.0 * float(bandwidth.max())
    low, high = float(knots[0]) - reach, float(knots[-1]) + reach
    table = K.tabulate_link(exact, low, high)
    z = torch.linspace(low - 30.0, high + 30.0, 40001, dtype=torch.float64)
    want, want_slope = exact(z)
    got, got_slope = table(z)
    # Hermite error h^4 / 384 max|f''''| with h ~ 5e-3 and f'''' ~ coef / s^3
    # is ~1e-11 inside; beyond, the link is linear to phi(8) ~ 5e-15 relative
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(got_slope.numpy(), want_slope.numpy(), rtol=0, atol=1e-6)
    assert bool(((z < low) | (z > high)).sum() > 1000)  # the tails were probed


def _standardised(x):
    return (x - x.mean()) / x.std()


@pytest.mark.parametrize(
    "truth", [lambda z: np.tanh(2 * z), np.exp], ids=["tanh", "exp"]
)
def test_fit_monotone_link_recovers_the_link(truth):
    rng = np.random.default_rng(4)
    n, sigma = 4000, 0.1
    z = rng.standard_normal(n)
    clean = truth(z)
    x = clean + sigma * clean.std() * rng.standard_normal(n)
    center, scale = x.mean(), x.std()
    coef, knots, bandwidth, _ = K.fit_monotone_link(
        _t(z), _t((x - center) / scale), 20, 10, 1.5, 1e-6, 1e-3
    )
    fitted = K.monotone_link(_t(z), coef, knots, bandwidth)[0].numpy()
    rmse = np.sqrt(np.mean((fitted - (clean - center) / scale) ** 2))
    # the standard error of an unconstrained least-squares fit with k
    # weights is sigma sqrt(k / n); bounds and ridge only lower it, and the
    # bias of 40 smooth knots on a smooth link is far below it
    noise = sigma * clean.std() / scale
    assert rmse < noise * np.sqrt(len(coef) / n)


def test_fit_monotone_link_keeps_its_bounds():
    rng = np.random.default_rng(5)
    z = rng.standard_normal(3000)
    # a decreasing target drives every weight onto its bound
    for x in (np.tanh(2 * z), -z, np.where(z > 0, 1.0, -1.0)):
        coef = K.fit_monotone_link(_t(z), _t(_standardised(x)), 15, 5, 1.5, 1e-6, 0.05)[
            0
        ]
        coef = coef.numpy()
        # BVLS leaves free variables to rounding (~1e-18 seen) near a bound
        assert coef[1] >= 0.05 - 1e-12
        assert coef[2:].min() >= -1e-12


@pytest.mark.parametrize(
    "truth", [lambda z: np.tanh(2 * z), np.exp], ids=["tanh", "exp"]
)
def test_binned_link_fit_reaches_the_unbinned_minimum(truth):
    rng = np.random.default_rng(6)
    n, alpha, slope_min = 4000, 1e-4, 1e-3
    z = rng.standard_normal(n)
    x = _standardised(truth(z) + 0.2 * rng.standard_normal(n))
    coef, knots, bandwidth, loss = K.fit_monotone_link(
        _t(z), _t(x), 20, 10, 1.5, alpha, slope_min
    )
    B = K.monotone_basis(_t(z), knots, bandwidth).numpy()
    k = B.shape[1]

    def objective(c):
        return np.mean((x - B @ c) ** 2) + alpha * np.sum(c[1:] ** 2)

    # reference: the same bounded ridge problem on every entry, no bins
    A = np.vstack([B / np.sqrt(n), np.sqrt(alpha) * np.eye(k)[1:]])
    b = np.r_[x / np.sqrt(n), np.zeros(k - 1)]
    lower = np.r_[-np.inf, slope_min, np.zeros(k - 2)]
    ref = lsq_linear(A, b, bounds=(lower, np.inf), method="bvls", tol=1e-12).x
    best = objective(ref)
    # bins are 1/8192 of the range (w ~ 1e-3): the binned minimiser is O(w)
    # off, so its objective is O(w^2) ~ 1e-6 relative above the minimum
    assert objective(coef.numpy()) <= best * (1 + 1e-6)
    assert objective(coef.numpy()) >= best * (1 - 1e-9)  # the reference is optimal
    # the reported loss is the binned objective: first order in the bin
    # width, |2 mean(x_e (B(center) - B(z_e)) c)| <= 2 rms(x) max f' w
    width = (z.max() - z.min()) / K._LINK_BINS
    slope = K.monotone_link(_t(z), coef, knots, bandwidth)[1].max()
    bound = 2 * np.sqrt(np.mean(x**2)) * float(slope) * width
    assert abs(loss - objective(coef.numpy())) <= bound


def test_link_knots_are_sorted_and_cover_the_data():
    rng = np.random.default_rng(7)
    z = _t(rng.exponential(size=2000))
    knots, bandwidth = K.link_knots(z, 10, 4, 1.5)
    assert len(knots) == 10 + 2 * 4 and bandwidth.shape == knots.shape
    assert bool((torch.diff(knots) > 0).all())
    np.testing.assert_allclose(
        [float(knots[0]), float(knots[-1])], [float(z.min()), float(z.max())]
    )
    assert bool((bandwidth > 0).all())


def test_link_inverse_inverts_a_monotone_link():
    rng = np.random.default_rng(8)
    coef, knots, bandwidth = _random_link(rng)
    link = lambda z: K.monotone_link(z, coef, knots, bandwidth)  # noqa: E731
    z = _t(rng.uniform(-6.0, 6.0, 200))
    back = K.link_inverse(link(z)[0], link, -10.0, 10.0)
    # 60 halvings of a width-20 bracket: 2e-17, far below the 1e-9 asked
    np.testing.assert_allclose(back.numpy(), z.numpy(), atol=1e-9)
    # beyond the link's values on the bracket: the ends of the bracket
    ends = K.link_inverse(_t([-1e9, 1e9]), link, -10.0, 10.0)
    np.testing.assert_allclose(ends.numpy(), [-10.0, 10.0], atol=1e-9)


# ---------------------------------------------------------------- factors


def test_observed_from_dense_round_trip():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(7, 5))
    X[rng.uniform(size=X.shape) < 0.4] = np.nan
    obs = K.Observed.from_dense(_t(X))
    assert (obs.n_rows, obs.n_cols) == X.shape
    assert len(obs.x) == int((~np.isnan(X)).sum())
    back = np.full(X.shape, np.nan)
    back[obs.rows.numpy(), obs.cols.numpy()] = obs.x.numpy()
    np.testing.assert_array_equal(back, X)


def test_index_is_the_factor_product_plus_intercepts():
    rng = np.random.default_rng(10)
    U, V, w = rng.normal(size=(6, 2)), rng.normal(size=(4, 2)), rng.normal(size=4)
    X = np.where(rng.uniform(size=(6, 4)) < 0.5, np.nan, 0.0)
    obs = K.Observed.from_dense(_t(X))
    full = U @ V.T + w
    np.testing.assert_allclose(
        K.index(obs, _t(U), _t(V), _t(w)).numpy(),
        full[obs.rows.numpy(), obs.cols.numpy()],
    )


def test_rotate_and_balance_keeps_predictions_and_balances():
    rng = np.random.default_rng(11)
    U = rng.normal(size=(50, 3)) * [3.0, 0.5, 1.0]
    V = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 3))
    U2, V2, sigma = K.rotate_and_balance(_t(U), _t(V))
    U2, V2, sigma = U2.numpy(), V2.numpy(), sigma.numpy()
    np.testing.assert_allclose(U2 @ V2.T, U @ V.T, atol=1e-10)
    np.testing.assert_allclose(U2.T @ U2, np.diag(sigma), atol=1e-10)
    np.testing.assert_allclose(V2.T @ V2, np.diag(sigma), atol=1e-10)
    assert (np.diff(sigma) < 0).all()
    # sigma are the singular values of U V'
    np.testing.assert_allclose(sigma, np.linalg.svd(U @ V.T, compute_uv=False)[:3])
    # the sign rule: the largest entry of each column of U is positive
    assert (U2[np.abs(U2).argmax(0), np.arange(3)] > 0).all()


def test_gauss_newton_step_with_identity_link_is_ridge_least_squares():
    rng = np.random.default_rng(12)
    theta, block, feats, offset, x = _blocks(rng)
    ridge = np.array([0.3, 0.0, 1.5])
    new, loss = K.gauss_newton_step(
        _t(theta), torch.as_tensor(block), _t(feats), _t(offset), _t(x),
        K.identity_link, _t(ridge),
    )  # fmt: skip
    expected = _ridge_solution(block, feats, x - offset, ridge, len(theta))
    # one Newton step solves a quadratic; the 1e-10 diagonal floor is the
    # only difference
    np.testing.assert_allclose(new.numpy(), expected, rtol=1e-8, atol=1e-8)
    resid = (expected[block] * feats).sum(1) + offset - x
    want = np.bincount(block, resid**2) + (expected**2 * ridge).sum(1)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-8)


def test_gauss_newton_step_never_raises_a_block_loss():
    rng = np.random.default_rng(13)
    theta, block, feats, offset, x = _blocks(rng, n_blocks=30)
    theta = 2.0 * theta  # far from the optimum: full steps overshoot
    x = np.tanh(x)
    args = (torch.as_tensor(block), _t(feats), _t(offset), _t(x), _tanh_link)
    ridge = _t([0.01, 0.01, 0.01])
    before = K.block_losses(_t(theta), *args, ridge, len(theta))[0]
    new, after = K.gauss_newton_step(_t(theta), *args, ridge)
    assert bool((after <= before).all())
    assert bool((after < before).sum() >= 25)  # and it does move
    recomputed = K.block_losses(new, *args, ridge, len(theta))[0]
    np.testing.assert_allclose(after.numpy(), recomputed.numpy(), rtol=1e-12)
    # rows outside `active` keep their parameters
    active = torch.as_tensor(np.arange(30) % 2 == 0)
    partial = K.gauss_newton_step(_t(theta), *args, ridge, active=active)[0]
    np.testing.assert_array_equal(partial[~active].numpy(), theta[~active.numpy()])
    np.testing.assert_array_equal(partial[active].numpy(), new[active].numpy())


def test_gradient_step_never_raises_the_total_loss():
    rng = np.random.default_rng(14)
    theta, block, feats, offset, x = _blocks(rng, n_blocks=30)
    args = (torch.as_tensor(block), _t(feats), _t(offset), _t(np.tanh(x)), _tanh_link)
    ridge = _t([0.01, 0.01, 0.01])
    before = K.block_losses(_t(theta), *args, ridge, len(theta))[0]
    new, after = K.gradient_step(_t(theta), *args, ridge)
    assert float(after.sum()) < float(before.sum())
    recomputed = K.block_losses(new, *args, ridge, len(theta))[0]
    np.testing.assert_allclose(after.numpy(), recomputed.numpy(), rtol=1e-12)


def test_clip_row_norms_caps_long_rows_only():
    rng = np.random.default_rng(15)
    U = rng.normal(size=(40, 3))
    U[:3] *= 10.0
    bound = 1.5 * np.linalg.norm(U) / np.sqrt(40)
    clipped = K.clip_row_norms(_t(U), 1.5).numpy()
    norms = np.linalg.norm(U, axis=1)
    long = norms > bound
    assert long.sum() >= 3
    np.testing.assert_allclose(np.linalg.norm(clipped[long], axis=1), bound)
    np.testing.assert_array_equal(clipped[~long], U[~long])
    # directions kept
    np.testing.assert_allclose(
        clipped[long] / bound, U[long] / norms[long, None], rtol=1e-12
    )
    # None turns the projection off
    assert K.clip_row_norms(_t(U), None) is not None
    np.testing.assert_array_equal(K.clip_row_norms(_t(U), None).numpy(), U)


def _fold_problem(rng, n=25, p=30, r=2, missing=0.4):
    V, w = rng.normal(size=(p, r)), rng.normal(size=p)
    U = rng.normal(size=(n, r))
    X = np.tanh(U @ V.T + w) + 0.05 * rng.normal(size=(n, p))
    X[rng.uniform(size=X.shape) < missing] = np.nan
    X[:, 0] = np.where(np.isnan(X[:, 0]), 0.0, X[:, 0])  # no empty row
    return X, V, w


def test_fold_in_with_identity_link_is_ridge_least_squares():
    rng = np.random.default_rng(16)
    X, V, w = _fold_problem(rng)
    obs = K.Observed.from_dense(_t(X))
    start = _t(rng.normal(size=(X.shape[0], 2)))
    U, _ = K.fold_in(obs, _t(V), _t(w), K.identity_link, 0.7, start)
    rows, cols = obs.rows.numpy(), obs.cols.numpy()
    expected = _ridge_solution(
        rows, V[cols], obs.x.numpy() - w[cols], np.full(2, 0.7), X.shape[0]
    )
    np.testing.assert_allclose(U.numpy(), expected, rtol=1e-8, atol=1e-10)


def test_fold_in_with_a_ridge_per_component_is_its_map():
    rng = np.random.default_rng(17)
    X, V, w = _fold_problem(rng)
    obs = K.Observed.from_dense(_t(X))
    start = _t(rng.normal(size=(X.shape[0], 2)))
    ridge = np.array([0.05, 3.0])
    U, _ = K.fold_in(obs, _t(V), _t(w), K.identity_link, _t(ridge), start)
    rows, cols = obs.rows.numpy(), obs.cols.numpy()
    expected = _ridge_solution(
        rows, V[cols], obs.x.numpy() - w[cols], ridge, X.shape[0]
    )
    np.testing.assert_allclose(U.numpy(), expected, rtol=1e-8, atol=1e-10)


def _prior_problem(seed, n=30, p=12, r=2):
    """Identity-link data with a weak second component, 30% missing.

    Returns the observed entries, the true ``U, V, w`` and the closed-form
    noise variance: the true residuals' sum of squares over their degrees of
    freedom.
    """
    rng = np.random.default_rng(seed)
    U, V, w = rng.normal(size=(n, r)), rng.normal(size=(p, r)), rng.normal(size=p)
    U[:, 1] *= 0.1  # a weak component gets a larger ridge
    noise = 0.3 * rng.normal(size=(n, p))
    X = U @ V.T + w + noise
    X[rng.uniform(size=X.shape) < 0.3] = np.nan
    resid = noise[~np.isnan(X)]
    sigma2 = resid @ resid / (resid.size - (n + p) * r - p)
    return K.Observed.from_dense(_t(X)), U, V, w, sigma2


def test_factor_prior_ridge_is_noise_variance_over_factor_variance():
    obs, U, V, w, sigma2 = _prior_problem(18)
    got = K.factor_prior_ridge(obs, _t(U), _t(V), _t(w), K.identity_link).numpy()
    np.testing.assert_allclose(got, sigma2 / (U**2).mean(0), rtol=1e-12)
    assert got[1] > 50 * got[0]


def test_fit_prior_ridge_is_the_balanced_form_of_both_priors():
    obs, U, V, w, sigma2 = _prior_problem(19)
    ridge = K.fit_prior_ridge(obs, _t(U), _t(V), _t(w), K.identity_link).numpy()
    # the priors' own ridges on U and on V
    ridge_u, ridge_v = sigma2 / (U**2).mean(0), sigma2 / (V**2).mean(0)
    su, sv = (U**2).sum(0), (V**2).sum(0)
    # their penalty at the best balance c: min_c ridge_u c^2 su + ridge_v sv / c^2
    best = 2 * np.sqrt(ridge_u * su * ridge_v * sv)
    # one common ridge reaches it at the balanced point |U_k| = |V_k|
    balanced = np.sqrt(su * sv)
    np.testing.assert_allclose(ridge * 2 * balanced, best, rtol=1e-12)
    # and it does not depend on how the scale is split between U and V
    again = K.fit_prior_ridge(obs, _t(U * 3.0), _t(V / 3.0), _t(w), K.identity_link)
    np.testing.assert_allclose(again.numpy(), ridge, rtol=1e-12)
    assert ridge[1] > 5 * ridge[0]


def test_prior_ridges_stay_finite_for_an_absent_component():
    rng = np.random.default_rng(20)
    U, V, w = rng.normal(size=(20, 2)), rng.normal(size=(8, 2)), np.zeros(8)
    X = U @ V.T + 10.0 * rng.normal(size=(20, 8))
    U[:, 1] = 0.0
    V[:, 1] = 0.0
    obs = K.Observed.from_dense(_t(X))
    for ridge in (K.factor_prior_ridge, K.fit_prior_ridge):
        got = ridge(obs, _t(U), _t(V), _t(w), K.identity_link).numpy()
        assert np.isfinite(got).all()
        assert got[1] > 1e10 * got[0]


def test_prior_ridges_stay_finite_when_every_component_is_zero():
    # one row: its centred, rank-based start is zero on both blocks; a floor
    # relative to the largest component was zero and the ridge inf
    rng = np.random.default_rng(21)
    X = rng.normal(size=(1, 6))
    U, V, w = np.zeros((1, 2)), np.zeros((6, 2)), np.zeros(6)
    obs = K.Observed.from_dense(_t(X))
    for ridge in (K.factor_prior_ridge, K.fit_prior_ridge):
        got = ridge(obs, _t(U), _t(V), _t(w), K.identity_link).numpy()
        assert np.isfinite(got).all() and (got > 0).all()


def test_fold_in_of_a_subset_gives_the_same_rows():
    rng = np.random.default_rng(17)
    X, V, w = _fold_problem(rng)
    Vt, wt = _t(V), _t(w)
    start = _t(np.zeros((X.shape[0], 2)))
    U_all, _ = K.fold_in(K.Observed.from_dense(_t(X)), Vt, wt, _tanh_link, 0.1, start)
    subset = [3, 7, 8, 20]
    U_sub, _ = K.fold_in(
        K.Observed.from_dense(_t(X[subset])), Vt, wt, _tanh_link, 0.1, start[subset]
    )
    # each row stops on its own loss change: the batch does not matter
    np.testing.assert_allclose(
        U_sub.numpy(), U_all[subset].numpy(), rtol=1e-12, atol=1e-14
    )
    # and the rows reached a stationary point of their own problem: a stop
    # at a relative loss change of 1e-10 leaves |grad| ~ sqrt(1e-10 L H)
    # ~ 1e-5 (loss L ~ 0.05, curvature H ~ 20 per row)
    grad_scale = np.abs(U_all.numpy()).max()
    obs = K.Observed.from_dense(_t(X))
    z = K.index(obs, U_all, Vt, wt)
    value, slope = _tanh_link(z)
    g = (
        torch.zeros_like(U_all).index_add_(
            0, obs.rows, ((value - obs.x) * slope)[:, None] * Vt[obs.cols]
        )
        + 0.1 * U_all
    )
    assert float(g.abs().max()) < 1e-4 * max(grad_scale, 1.0)


def test_normal_scores_are_invariant_to_increasing_maps():
    rng = np.random.default_rng(18)
    x = rng.normal(size=500)
    scores = K.normal_scores(_t(x)).numpy()
    for g in (np.exp, lambda v: v**3 + 5.0, lambda v: np.arctan(4 * v)):
        np.testing.assert_array_equal(K.normal_scores(_t(g(x))).numpy(), scores)
    expected = norm.ppf((rankdata(x) - 0.5) / len(x))
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(60, 40), (600, 500)], ids=["exact", "randomised"])
def test_top_singular_on_an_exactly_low_rank_matrix(shape):
    rng = np.random.default_rng(19)
    rank = 3
    M = rng.normal(size=(shape[0], rank)) @ (
        rng.normal(size=(rank, shape[1])) * [[5.0], [2.0], [1.0]]
    )
    A, s, B = K.top_singular(_t(M), rank, torch.Generator().manual_seed(0))
    A, s, B = A.numpy(), s.numpy(), B.numpy()
    ref = torch.linalg.svd(_t(M), full_matrices=False).S.numpy()[:rank]
    np.testing.assert_allclose(s, ref, rtol=1e-10)
    np.testing.assert_allclose((A * s) @ B.T, M, atol=1e-9 * np.abs(M).max())
    np.testing.assert_allclose(A.T @ A, np.eye(rank), atol=1e-10)
    np.testing.assert_allclose(B.T @ B, np.eye(rank), atol=1e-10)


def test_spectral_start_recovers_a_complete_low_rank_matrix():
    rng = np.random.default_rng(20)
    n, p, r = 30, 20, 2
    X = rng.normal(size=(n, r)) @ rng.normal(size=(r, p))
    X = X - X.mean(0) + rng.normal(size=p)  # column means are the intercepts
    obs = K.Observed.from_dense(_t(X))
    U, V, w = K.spectral_start(obs, obs.x, r, True, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(w.numpy(), X.mean(0), rtol=1e-12)
    np.testing.assert_allclose((U @ V.T + w).numpy(), X, atol=1e-10)
