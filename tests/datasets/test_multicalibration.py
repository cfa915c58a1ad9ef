import numpy as np
import pytest

from skml.datasets import make_multicalibration_regression


@pytest.mark.parametrize("design", ["S1", "S2", "S3", "calibrated"])
def test_splits_and_shapes(design):
    data = make_multicalibration_regression(2000, design=design, random_state=0)
    assert data.X_train.shape[0] + len(data.y_audit) + len(data.y_test) == 2000
    assert data.X_audit.shape == (500, 10)
    np.testing.assert_array_equal(data.groups_test[:, 0], data.X_test[:, -1])
    assert set(np.unique(data.groups_audit)) <= {0.0, 1.0}


def test_seeded():
    a = make_multicalibration_regression(400, design="S2", random_state=3)
    b = make_multicalibration_regression(400, design="S2", random_state=3)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(
        a.estimator.predict(a.X_test), b.estimator.predict(b.X_test)
    )


def test_calibrated_base_predicts_the_truth():
    data = make_multicalibration_regression(800, design="calibrated", random_state=0)
    np.testing.assert_allclose(data.estimator.predict(data.X_test), data.f_test)


def test_s2_keeps_group_means_and_distorts_spread():
    data = make_multicalibration_regression(8000, design="S2", random_state=0)
    pred = data.estimator.predict(data.X_test)
    group = data.groups_test[:, 0] == 1
    for rows, direction in ((group, 1), (~group, -1)):
        slope = np.polyfit(data.f_test[rows], pred[rows], 1)[0]
        assert direction * (slope - 1) > 0.3
        assert abs(np.mean(pred[rows] - data.f_test[rows])) < 0.15


def test_s1_base_misses_the_group():
    data = make_multicalibration_regression(8000, design="S1", random_state=0)
    pred = data.estimator.predict(data.X_test)
    group = data.groups_test[:, 0] == 1
    assert group.mean() == pytest.approx(0.15, abs=0.03)
    assert abs(np.mean(data.f_test[group] - pred[group])) > 1.0
    assert np.mean(data.X_train[:, -1]) < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError, match="design"):
        make_multicalibration_regression(100, design="S9")
    with pytest.raises(ValueError, match="n_features"):
        make_multicalibration_regression(100, n_features=3)
    with pytest.raises(ValueError, match="n_samples"):
        make_multicalibration_regression(10)


@pytest.mark.parametrize("design", ["hidden", "interaction", "rare"])
def test_unnamed_designs_miscalibrate_their_group(design):
    data = make_multicalibration_regression(16000, design=design, random_state=0)
    base = data.estimator.predict(data.X_test)
    r = data.y_test - base
    G = data.groups_test
    # the base is far off on its miscalibrated group (last indicator): its
    # error there is at least 1.5 times the noise that E[y|x] leaves...
    rows = G[:, -1] == 1
    noise = np.mean((data.y_test[rows] - data.f_test[rows]) ** 2)
    assert np.mean(r[rows] ** 2) > 1.5 * noise
    # ...while the truth is recovered by E[y|x] up to the noise
    assert abs(np.mean(data.y_test - data.f_test)) < 0.05
    assert data.X_audit.shape == (4000, 10)
