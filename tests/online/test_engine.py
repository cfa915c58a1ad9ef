"""The online engine: losses, step rules, the algorithms' invariants."""

import math

import numpy as np
import pytest

from skml.online._engine import LOSSES, OnlineState, batch_loss, plain_rounds
from skml.online._projection import InfeasibleConstraintsError


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_batch_loss_gradient_matches_finite_differences(loss, fit_intercept):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 3))
    y = (
        rng.choice([-1.0, 1.0], 7)
        if loss in ("logistic", "hinge")
        else rng.normal(size=7)
    )
    sw = rng.uniform(0.5, 2.0, 7)
    w = rng.normal(size=3 + fit_intercept)
    _, grad, _ = batch_loss(loss, X, y, w, fit_intercept, sw, 1.35)
    eps = 1e-6
    for j in range(len(w)):
        e = np.zeros_like(w)
        e[j] = eps
        up = batch_loss(loss, X, y, w + e, fit_intercept, sw, 1.35)[0]
        down = batch_loss(loss, X, y, w - e, fit_intercept, sw, 1.35)[0]
        assert grad[j] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7)


def test_without_constraints_it_is_projected_ogd_written_out():
    rng = np.random.default_rng(0)
    d, T, alpha, radius = 4, 200, 0.5, 0.3
    targets = rng.normal(size=(T, d))
    state = OnlineState(d, alpha=alpha, radius=radius)
    w = np.zeros(d)
    L = 0.0
    for t in range(T):
        grad = -alpha * targets[t]  # (alpha/2)||w - a||^2 = alpha/2 ||w||^2 - alpha a.w
        state.round(grad, 0.0, np.empty(0), np.empty((0, d)))
        L = max(L, alpha)
        eta = 1.0 / (alpha * (t + 1) + L)
        w = np.clip(w - eta * (alpha * w - alpha * targets[t]), -radius, radius)
        np.testing.assert_allclose(state.w, w, atol=1e-14)


def test_ccv_is_at_most_g_times_movement_and_cuts_hold():
    rng = np.random.default_rng(0)
    d, T = 6, 400
    targets = rng.uniform(-1, 1, (T, d))
    W = rng.uniform(-1, 1, (T, d))
    state = OnlineState(d, alpha=0.0, modulus=1.0, radius=1.0)
    ccv = 0.0
    G = 0.0
    for t in range(T):
        x = state.w
        g = W[t : t + 1]
        ccv += state.round(x - targets[t], 0.0, g @ x - 0.1, g)
        G = max(G, float(np.linalg.norm(g)))
        # After each round the model satisfies every stored cut.
        assert state.cuts.max_violation(state.w) <= 1e-9
    assert state.ccv == pytest.approx(ccv)
    assert ccv <= G * state.movement + T * 1e-9
    assert 0 < state.cuts.n <= T


def test_strongly_convex_regret_is_within_the_log_bound():
    from skml.benchmarks.coco import B2, play

    T = 2000
    inst = B2(T, d=5, seed=1)
    run = play(inst, "nested_projection", T)
    regret = inst.comparator_regret(run["losses"], [T])[0]
    G = inst.lipschitz()
    # The textbook bound for steps 1/(m t) (ours are 1/(m (t + 1))).
    assert (
        regret <= (G**2 / (2 * inst.modulus)) * (1 + math.log(T)) + G**2 / inst.modulus
    )


def test_infeasible_cuts_raise_naming_the_round_and_keep_the_model():
    state = OnlineState(1, alpha=0.0, modulus=1.0, radius=10.0)
    # x >= 1 first ...
    state.round(np.array([0.0]), 0.0, np.array([1.0]), np.array([[-1.0]]))
    w = state.w.copy()
    assert w[0] == pytest.approx(1.0)
    # ... then x <= -1: no common point.
    with pytest.raises(InfeasibleConstraintsError, match="round 2"):
        state.round(np.array([0.0]), 0.0, np.array([2.0]), np.array([[1.0]]))
    np.testing.assert_array_equal(state.w, w)
    assert state.t == 1 and state.cuts.n == 1


def test_zero_subgradient_with_violation_is_infeasible():
    state = OnlineState(2, radius=1.0)
    with pytest.raises(InfeasibleConstraintsError, match="zero subgradient"):
        state.round(np.zeros(2), 0.0, np.array([0.5]), np.zeros((1, 2)))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_divergence_is_reported():
    state = OnlineState(1, alpha=0.0, modulus=1.0, step_size=1e308)
    with pytest.raises(FloatingPointError, match="diverged at round 1"):
        state.round(np.array([1e10]), 0.0, np.empty(0), np.empty((0, 1)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"algorithm": "sinha_vaze"}, "bounded domain"),
        ({"alpha": 0.0}, "diameter"),
        ({"alpha": 0.0, "step_size": "optimal"}, "alpha > 0"),
        ({"algorithm": "nope"}, "algorithm must be"),
    ],
)
def test_settings_that_cannot_work_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OnlineState(3, **kwargs)


@pytest.mark.parametrize(
    "algorithm", ["latest_only", "domain_only", "penalty", "switch"]
)
def test_baselines_run_and_count_violations(algorithm):
    rng = np.random.default_rng(0)
    d, T = 3, 300
    state = OnlineState(d, algorithm=algorithm, alpha=0.0, modulus=1.0, radius=1.0)
    target = np.full(d, 1.0)
    total = 0.0
    for _ in range(T):
        x = state.w
        g = rng.uniform(-1, 1, (1, d))
        total += state.round(x - target, 0.0, g @ x - 0.05, g)
    assert state.ccv == pytest.approx(total)
    assert np.all(np.abs(state.w) <= 1.0 + 1e-12)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"radius": 0.2},
        {"radius": 1.0, "step_size": "adagrad"},
        {"radius": 1.0, "step_size": "invscaling"},
        {"step_size": 0.01, "alpha": 0.0, "modulus": 0.0},
    ],
)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_plain_rounds_equal_the_general_rounds(loss, kwargs, fit_intercept):
    rng = np.random.default_rng(0)
    n, d = 300, 4
    X = rng.normal(size=(n, d))
    y = (
        rng.choice([-1.0, 1.0], n)
        if loss in ("logistic", "hinge")
        else X @ rng.normal(size=d)
    )
    sw = rng.uniform(0.5, 2.0, n)
    dim = d + fit_intercept
    general = OnlineState(dim, **kwargs)
    losses = []
    for i in range(n):
        w = general.w
        value, grad, curvature = batch_loss(
            loss, X[i : i + 1], y[i : i + 1], w, fit_intercept, sw[i : i + 1], 1.35
        )
        losses.append(value + 0.5 * general.alpha * float(w @ w))
        general.round(grad, curvature, np.empty(0), np.empty((0, dim)))
    fast = OnlineState(dim, **kwargs)
    fast_losses = plain_rounds(fast, loss, X, y, fit_intercept, sw, 1.35)
    np.testing.assert_allclose(fast.w, general.w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast_losses, losses, rtol=1e-10, atol=1e-12)
    assert fast.t == general.t == n
    assert fast.movement == pytest.approx(general.movement, rel=1e-9)
    assert fast.curvature == pytest.approx(general.curvature)
    assert fast.grad_sq == pytest.approx(general.grad_sq, rel=1e-9)
