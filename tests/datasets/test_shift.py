import numpy as np
import pytest

from skml.calibration import MCBoostRegressor
from skml.datasets._shift import make_covariate_shift_regression


@pytest.mark.parametrize("shift", ["inside", "outside"])
def test_splits_and_shapes(shift):
    data = make_covariate_shift_regression(2000, shift=shift, random_state=0)
    assert data.X_train.shape == (1000, 10)
    assert data.X_audit.shape == (500, 10)
    assert data.X_target.shape == (500, 10)
    assert data.y_audit.shape == data.f_audit.shape == (500,)
    assert data.y_target.shape == data.f_target.shape == (500,)
    assert data.true_density_ratio_audit.shape == (500,)
    np.testing.assert_array_equal(data.groups_audit[:, 0], data.X_audit[:, -1])
    np.testing.assert_array_equal(data.groups_target[:, 0], data.X_target[:, -1])
    assert data.group_feature == 9
    assert data.shift == shift
    assert data.estimator.predict(data.X_target).shape == (500,)


def test_seeded():
    a = make_covariate_shift_regression(400, shift="outside", random_state=3)
    b = make_covariate_shift_regression(400, shift="outside", random_state=3)
    np.testing.assert_array_equal(a.X_target, b.X_target)
    np.testing.assert_array_equal(
        a.estimator.predict(a.X_audit), b.estimator.predict(b.X_audit)
    )


def test_inside_shift_moves_the_group_share():
    data = make_covariate_shift_regression(8000, shift="inside", random_state=0)
    assert data.groups_audit.mean() == pytest.approx(0.15, abs=0.03)
    assert data.groups_target.mean() == pytest.approx(0.45, abs=0.04)
    # the ratio depends on the group only, with odds ratio exp(gamma)
    ratio, a = data.true_density_ratio_audit, data.X_audit[:, -1] == 1
    assert np.ptp(ratio[a]) == 0 and np.ptp(ratio[~a]) == 0
    assert ratio[a][0] / ratio[~a][0] == pytest.approx(np.exp(data.log_ratio_coef))
    assert ratio[a][0] / ratio[~a][0] == pytest.approx((0.45 / 0.55) / (0.15 / 0.85))
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.1)
    # x4 is not shifted
    assert abs(np.mean(data.X_target[:, 3])) < 0.1


def test_outside_shift_moves_x4_only():
    data = make_covariate_shift_regression(8000, shift="outside", random_state=0)
    assert np.mean(data.X_target[:, 3]) == pytest.approx(0.3, abs=0.08)
    assert np.std(data.X_target[:, 3]) == pytest.approx(1.0, abs=0.06)
    assert data.groups_target.mean() == pytest.approx(0.15, abs=0.03)
    x4 = data.X_audit[:, 3]
    np.testing.assert_allclose(
        data.true_density_ratio_audit, np.exp(0.3 * x4 - 0.045), rtol=1e-12
    )


@pytest.mark.parametrize("shift", ["inside", "outside"])
def test_strength_zero_is_no_shift(shift):
    data = make_covariate_shift_regression(400, shift=shift, strength=0.0)
    np.testing.assert_allclose(data.true_density_ratio_audit, 1.0)
    assert data.log_ratio_coef == 0.0


def test_base_is_biased_along_the_group_and_x4():
    data = make_covariate_shift_regression(8000, random_state=0)
    assert np.mean(data.X_train[:, -1]) < 0.01
    residual = data.y_audit - data.estimator.predict(data.X_audit)
    group = data.groups_audit[:, 0] == 1
    assert np.mean(residual[group]) > 1.0
    assert abs(np.mean(residual[~group])) < 0.15
    assert np.corrcoef(residual, data.X_audit[:, 3])[0, 1] > 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_group_audited_model_is_biased_only_on_the_outside_target(seed):
    bias, se = {}, {}
    for shift in ("inside", "outside"):
        data = make_covariate_shift_regression(8000, shift=shift, random_state=seed)
        model = MCBoostRegressor(
            data.estimator, auditor="groups", bucket_strategy="none", random_state=0
        ).fit(data.X_audit, data.y_audit, groups=data.groups_audit)
        residual = data.y_target - model.predict(
            data.X_target, groups=data.groups_target
        )
        bias[shift] = np.mean(residual)
        se[shift] = np.std(residual, ddof=1) / np.sqrt(len(residual))
    # the design's calibration: a clear bias along x4, which the group audit
    # cannot see, and a much smaller one when the shift is along the group
    assert bias["outside"] > 5 * se["outside"]
    assert abs(bias["inside"]) < 0.5 * bias["outside"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="shift"):
        make_covariate_shift_regression(100, shift="sideways")
    with pytest.raises(ValueError, match="strength"):
        make_covariate_shift_regression(100, strength=np.nan)
    with pytest.raises(ValueError, match="strength"):
        make_covariate_shift_regression(100, strength="1")
    with pytest.raises(ValueError, match="n_samples"):
        make_covariate_shift_regression(20)
