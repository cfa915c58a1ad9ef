"""The MCBoost benchmark's transfer part (S4) and its summary."""

import numpy as np
from scipy.stats import norm

from skml.benchmarks._mcboost_extra import (
    transfer_rate_summary,
    transfer_rows,
    transfer_summary,
    true_ratio_bound,
)
from skml.calibration import MCBoostRegressor
from skml.datasets import make_covariate_shift_regression


def _row(shift, bound, realised, se, inside, true_bound=0.1):
    z = norm.ppf(0.975)
    return {
        "shift": shift,
        "seed": 7,
        "realised_se": se,
        "realised_ucb": abs(realised) + z * se,
        "span_share": 0.95 if inside else 0.01,
        "inside_span": inside,
        "bias_bound": bound,
        "true_ratio_bound": true_bound,
        "realised_bias": realised,
        "bound_holds": bound >= abs(realised),
        "within_2x_ucb": bound <= 2 * (abs(realised) + z * se),
        "within_2x_literal": bound <= 2 * abs(realised),
        "within_2x_se": bound <= 2 * abs(realised) + 2 * se,
    }


def test_transfer_summary_counts_each_reading():
    rows = [
        # a noise-level bias: only the reading against the labelled
        # target's own upper bound accepts the bound
        _row("inside", 0.1, 0.003, 0.036, True),
        _row("inside", 0.1, 0.06, 0.036, True, true_bound=0.2),
        _row("outside", 0.5, 0.45, 0.036, False),
        _row("outside", 0.3, 0.45, 0.036, True),
    ]
    inside, outside = transfer_summary(rows).splitlines()
    assert "classified inside 2/2" in inside
    assert "upper bound 2/2 (bound <= 2 |realised| 1/2" in inside
    assert "true density ratio 0/2" in inside
    assert "+ 2 SE 1/2" in inside
    assert "classified outside 1/2" in outside
    assert "realised |bias| 1/2" in outside


def test_transfer_rate_summary_reads_both_bounds():
    rows = [
        _row("inside", 0.1, 0.003, 0.036, True, true_bound=0.05),
        _row("inside", 0.1, 0.06, 0.036, True, true_bound=0.2),
    ]
    (line,) = transfer_rate_summary(rows).splitlines()
    report, true = line.split("; ")[1:]
    assert report == (
        "report bound: holds 2/2, <= 2 x upper bound 2/2, <= 2 |realised| 1/2, "
        "<= 2 |realised| + 2 SE 1/2"
    )
    # 0.05 is within 2 |realised| + 2 SE = 0.078 of the first row; 0.2 is
    # above the second's 0.192 but within 2 (0.06 + 1.96 x 0.036) = 0.261
    assert true == (
        "true ratio bound: holds 2/2, <= 2 x upper bound 2/2, <= 2 |realised| 0/2, "
        "<= 2 |realised| + 2 SE 1/2"
    )


def test_transfer_rows_read_their_own_columns():
    (inside,) = transfer_rows(seeds=(0,), n_samples=2000)[:1]
    z = norm.ppf(0.975)
    realised, se = inside["realised_bias"], inside["realised_se"]
    assert np.isclose(inside["realised_ucb"], abs(realised) + z * se)
    bound = inside["bias_bound"]
    assert inside["within_2x_ucb"] == (bound <= 2 * inside["realised_ucb"])
    assert inside["within_2x_literal"] == (bound <= 2 * abs(realised))
    assert inside["bound_holds"] == (bound >= abs(realised))


def test_true_ratio_bound_without_a_shift_is_the_plain_bound():
    # strength 0: the density ratio is 1, so the bound is the residuals'
    # own mean and standard error
    data = make_covariate_shift_regression(2000, strength=0.0, random_state=1)
    assert np.allclose(data.true_density_ratio_audit, 1.0)
    model = MCBoostRegressor(data.estimator, auditor="groups", random_state=1)
    model.fit(data.X_audit, data.y_audit, groups=data.groups_audit)
    resid = data.y_audit - model.predict(data.X_audit, groups=data.groups_audit)
    want = abs(resid.mean()) + norm.ppf(0.95) * resid.std(ddof=1) / np.sqrt(len(resid))
    assert np.isclose(true_ratio_bound(model, data, 0.9), want)
