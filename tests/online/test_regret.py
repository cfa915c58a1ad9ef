"""hindsight_regret: the best feasible fixed model of a stream."""

import numpy as np
import pytest

from skml.online import COCOClassifier, COCOLearner, DemographicParity, hindsight_regret


def _stream(n=400, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ np.array([1.0, -1.0, 2.0])[:d] + 0.1 * rng.normal(size=n)
    return X, y


def test_unconstrained_comparator_is_the_ridge_solution():
    X, y = _stream()
    alpha = 0.01
    model = COCOLearner(alpha=alpha, fit_intercept=False).fit(X, y)
    result = hindsight_regret(model, X, y)
    T = len(y)
    expected = np.linalg.solve(X.T @ X + T * alpha * np.eye(3), X.T @ y)
    np.testing.assert_allclose(result.coef, expected, atol=1e-5)
    assert result.regret == pytest.approx(result.regret_trace[-1])
    assert result.regret_trace.shape == (T,)
    # The comparator is the minimiser, so no fixed model does better.
    assert result.regret >= hindsight_regret(model, X, y).regret - 1e-9


def test_constrained_comparator_is_feasible_and_no_worse_than_a_feasible_model():
    X, y = _stream()
    rng = np.random.default_rng(1)
    A = rng.uniform(-1, 1, (400, 3))
    b = np.full(400, 0.3)
    model = COCOLearner(cuts="all").fit(X, y, constraint_A=A, constraint_b=b)
    result = hindsight_regret(model, X, y, constraint_A=A, constraint_b=b)
    assert result.max_violation <= 1e-8
    assert np.max(A @ result.coef - b) <= 1e-8
    # The learner's last model satisfies every half-space (cuts="all"): the
    # comparator's total loss is at most the last model's.
    w = np.append(model.coef_, model.intercept_)
    last = np.sum(0.5 * (X @ w[:3] + w[3] - y) ** 2 + 0.5 * model.alpha * w @ w)
    assert result.comparator_losses.sum() <= last + 1e-9


def test_parity_comparator_for_a_classifier():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 2, 1000)
    X = rng.normal(size=(1000, 2)) + s[:, None]
    y = (X.sum(axis=1) > 1).astype(int)
    clf = COCOClassifier(constraint=DemographicParity(0.2), batch_size=50)
    clf.fit(X, y, sensitive_features=s)
    result = hindsight_regret(clf, X, y, sensitive_features=s)
    assert result.max_violation <= 1e-8
    assert np.isfinite(result.regret)


def test_the_stream_must_match_the_rounds_played():
    X, y = _stream()
    model = COCOLearner().fit(X, y)
    with pytest.raises(ValueError, match="rounds"):
        hindsight_regret(model, X[:100], y[:100])
