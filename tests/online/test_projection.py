"""The exact projection onto stored cuts and a box, and its lazy screening."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from skml.online._projection import (
    InfeasibleConstraintsError,
    NestedCuts,
    ldp_project,
    project_onto_polytope,
)


def _unit_rows(rng, m, d):
    A = rng.normal(size=(m, d))
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def _slsqp(y, A, c, radius=None):
    bounds = None if radius is None else [(-radius, radius)] * len(y)
    res = minimize(
        lambda w: (0.5 * (w - y) @ (w - y), w - y),
        np.zeros(len(y)),
        jac=True,
        method="SLSQP",
        bounds=bounds,
        constraints=[{"type": "ineq", "fun": lambda w: c - A @ w, "jac": lambda w: -A}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return res.x


@pytest.mark.parametrize("seed", range(5))
def test_ldp_projection_matches_slsqp(seed):
    rng = np.random.default_rng(seed)
    d, m = 6, 12
    A = _unit_rows(rng, m, d)
    c = rng.uniform(0.1, 1.0, m)  # the origin is strictly feasible
    y = rng.normal(scale=3.0, size=d)
    w, lam = ldp_project(y, A, c)
    assert np.max(A @ w - c) <= 1e-10
    np.testing.assert_allclose(w, _slsqp(y, A, c), atol=1e-6)
    # KKT: y - w is a non-negative combination of the active normals.
    np.testing.assert_allclose(y - w, A.T @ lam, atol=1e-9)
    assert np.all(lam >= 0)


def test_ldp_projection_of_a_feasible_point_is_itself():
    rng = np.random.default_rng(0)
    A = _unit_rows(rng, 5, 3)
    w, lam = ldp_project(np.zeros(3), A, np.ones(5))
    np.testing.assert_array_equal(w, np.zeros(3))
    assert not lam.any()


def test_ldp_detects_infeasible_cuts():
    A = np.array([[1.0, 0.0], [-1.0, 0.0]])
    c = np.array([-1.0, -1.0])  # x <= -1 and x >= 1
    with pytest.raises(InfeasibleConstraintsError):
        ldp_project(np.zeros(2), A, c)


@pytest.mark.parametrize("radius", [None, 0.5])
def test_project_onto_polytope_matches_slsqp(radius):
    rng = np.random.default_rng(1)
    d = 4
    A = rng.uniform(-1, 1, (300, d))
    c = np.full(300, 0.3)
    y = rng.normal(scale=2.0, size=d)
    w = project_onto_polytope(y, A, c, radius=radius)
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    cn = c / np.linalg.norm(A, axis=1)
    np.testing.assert_allclose(w, _slsqp(y, An, cn, radius), atol=1e-6)


def _random_run(lazy, seed=0, rounds=300, d=5, radius=1.0, device=None):
    rng = np.random.default_rng(seed)
    bound = np.full(d, radius)
    cuts = NestedCuts(d, -bound, bound, lazy=lazy, device=device)
    w = np.zeros(d)
    history = []
    for _ in range(rounds):
        if rng.uniform() < 0.3:
            a = rng.uniform(-1, 1, d)
            cuts.add(a, 0.2)
        y = w + rng.normal(scale=0.3, size=d)
        w, residual = cuts.project(y, w)
        history.append((y, w.copy(), residual))
    return cuts, history


def test_nested_cuts_projection_is_exact_every_round():
    cuts, history = _random_run(lazy=True)
    A, c = cuts.cuts
    for _, _, residual in history[-20:]:
        assert residual <= 1e-9
    # The last projection agrees with a full solve over every stored cut.
    y, w, _ = history[-1]
    np.testing.assert_allclose(w, project_onto_polytope(y, A, c, radius=1.0), atol=1e-8)
    assert cuts.max_violation(w) <= 1e-9
    assert np.all(np.abs(w) <= 1.0 + 1e-12)


def test_lazy_screening_gives_the_same_iterates_with_fewer_checks():
    lazy, h_lazy = _random_run(lazy=True)
    full, h_full = _random_run(lazy=False)
    for (_, w1, _), (_, w2, _) in zip(h_lazy, h_full, strict=True):
        np.testing.assert_allclose(w1, w2, atol=1e-10)
    assert lazy.n_checked < full.n_checked


def test_large_screens_in_torch_agree(monkeypatch):
    _, h_np = _random_run(lazy=False, seed=3)
    monkeypatch.setattr(NestedCuts, "TORCH_SCREEN", 1)
    calls = []
    original = torch.as_tensor
    monkeypatch.setattr(
        torch, "as_tensor", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    _, h_torch = _random_run(lazy=False, seed=3, device=torch.device("cpu"))
    assert calls  # the torch path ran
    for (_, w1, _), (_, w2, _) in zip(h_np, h_torch, strict=True):
        np.testing.assert_allclose(w1, w2, atol=1e-10)
