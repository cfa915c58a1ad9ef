"""The constraint protocol and the built-in constraints."""

import numpy as np
import pytest

from skml.online import (
    CallableConstraint,
    DemographicParity,
    EqualOpportunity,
    NormBall,
)
from skml.online._constraints import HalfSpaces


def test_demographic_parity_is_the_gap_of_mean_scores():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    groups = np.repeat([0, 1], 20)
    coef = rng.normal(size=3)
    values, gc, gi = DemographicParity(0.1).evaluate(
        coef, 0.7, X, np.ones(40), sensitive_features=groups
    )
    scores = X @ coef + 0.7
    gap = scores[groups == 0].mean() - scores[groups == 1].mean()
    np.testing.assert_allclose(np.sort(values), np.sort([gap - 0.1, -gap - 0.1]))
    np.testing.assert_allclose(gc @ coef - 0.1, values)
    assert not gi.any()  # the intercept cancels


def test_parity_without_both_groups_is_no_constraint():
    X = np.ones((5, 2))
    values, gc, gi = DemographicParity().evaluate(
        np.ones(2), 0.0, X, np.ones(5), sensitive_features=np.zeros(5)
    )
    assert values.shape == (0,) and gc.shape == (0, 2) and gi.shape == (0,)


def test_equal_opportunity_uses_positive_rows_only():
    X = np.array([[1.0], [3.0], [10.0], [0.0]])
    y = np.array([1.0, 1.0, -1.0, -1.0])
    groups = np.array([0, 1, 0, 1])
    values, gc, _ = EqualOpportunity(0.0).evaluate(
        np.array([1.0]), 0.0, X, y, sensitive_features=groups
    )
    np.testing.assert_allclose(np.sort(values), [-2.0, 2.0])


@pytest.mark.parametrize("norm", [1, 2])
def test_norm_ball_value_and_subgradient(norm):
    coef = np.array([3.0, -4.0])
    values, gc, _ = NormBall(2.0, norm=norm).evaluate(coef, 0.0, None, None)
    expected = np.linalg.norm(coef, ord=norm)
    assert values[0] == pytest.approx(expected - 2.0)
    # A subgradient: g(v) >= g(coef) + gc . (v - coef) for any v.
    rng = np.random.default_rng(0)
    for v in rng.normal(size=(20, 2)):
        assert (
            np.linalg.norm(v, ord=norm) - 2.0 >= values[0] + gc[0] @ (v - coef) - 1e-12
        )


def test_half_spaces_skip_rows_without_a_bound():
    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([0.5, np.nan])
    values, gc, _ = HalfSpaces().evaluate(np.array([1.0, 1.0]), 0.0, None, None, A, b)
    np.testing.assert_allclose(values, [0.5])
    np.testing.assert_allclose(gc, [[1.0, 0.0]])


def _budget(coef, intercept, X, y, **params):
    return np.array([coef.sum() - 1.0]), np.ones((1, len(coef))), np.zeros(1)


def test_callable_constraint_passes_through():
    c = CallableConstraint(_budget, affine=True)
    values, _, _ = c.evaluate(np.array([1.0, 1.0]), 0.0, None, None)
    assert values[0] == 1.0
    assert "CallableConstraint" in repr(c)
