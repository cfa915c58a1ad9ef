"""The reproduction checks of extras.md section 3.4, with fixed seeds."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import RidgeCV

from skml.kernel_approximation import (
    NoSpikeWarning,
    OneStepFeatureMap,
    SpikedRandomFeatures,
)


def _index_data(n, d, target, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    beta = rng.normal(size=d)
    beta /= np.linalg.norm(beta)
    z = X @ beta
    he2 = z**2 - 1
    y = {"he1+he2/2": z + 0.5 * he2, "he1+he2/sqrt2": z + he2 / np.sqrt(2), "he2": he2}[
        target
    ]
    return X, y, beta


def test_spike_aligns_with_the_index():
    # Run 1: d = 100, N = 400, tanh, He1 + He2 / 2 (2,000 rows for the step)
    X, y, beta = _index_data(4000, 100, "he1+he2/2", 0)
    fm = OneStepFeatureMap(400, activation="tanh", random_state=0).fit(X, y)
    assert fm.spike_ratio_ > 10
    assert abs(fm.spike_direction_ @ beta) > 0.7


def test_rows_variance_along_the_index_grows_with_the_step():
    X, y, beta = _index_data(4000, 100, "he1+he2/2", 1)
    rng = np.random.default_rng(1)
    ortho = rng.normal(size=100)
    ortho -= (ortho @ beta) * beta
    ortho /= np.linalg.norm(ortho)
    ratio = {}
    for step in (0.0, 4.0):
        fm = OneStepFeatureMap(400, activation="tanh", step_size=step, random_state=0)
        fm.fit(X, y)
        ratio[step] = np.var(fm.W_ @ beta) / np.var(fm.W_ @ ortho)
    assert 0.5 < ratio[0.0] < 2.0  # isotropic rows before the step
    assert ratio[4.0] > 3.0


def test_ridge_on_stepped_features_beats_the_initial_ones():
    # Run 2: ReLU, d = 100, N = 500, 2,000 rows for the step, 2,000 fresh
    # rows for the ridge, He1 + He2 / sqrt(2)
    X, y, _ = _index_data(6000, 100, "he1+he2/sqrt2", 2)
    step_rows, fit_rows, test_rows = (
        slice(0, 2000),
        slice(2000, 4000),
        slice(4000, None),
    )
    mse = {}
    for step in (0.0, 4.0):
        fm = OneStepFeatureMap(500, step_size=step, step_fraction=1.0, random_state=0)
        fm.fit(X[step_rows], y[step_rows])
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(
            fm.transform(X[fit_rows]), y[fit_rows]
        )
        pred = ridge.predict(fm.transform(X[test_rows]))
        mse[step] = np.mean((pred - y[test_rows]) ** 2)
    assert mse[4.0] < 0.8 * mse[0.0]


def test_no_spike_without_a_linear_component():
    # negative control: an even target (He2) has no first Hermite coefficient
    X, y, beta = _index_data(4000, 100, "he2", 3)
    with pytest.warns(NoSpikeWarning, match="no dominant direction"):
        fm = OneStepFeatureMap(400, random_state=0).fit(X, y)
    assert fm.linear_signal_[0] < 3.0
    # no spike along the index (ReLU: none stands out either)
    assert fm.spike_ratio_ < 3.0
    assert abs(fm.spike_direction_ @ beta) < 0.5
    # with the linear part back, the same network finds it without a warning
    X, y, beta = _index_data(4000, 100, "he1+he2/2", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoSpikeWarning)
        fm = OneStepFeatureMap(400, random_state=0).fit(X, y)
    assert fm.linear_signal_[0] > 30 and fm.spike_ratio_ > 10


def test_multi_output_gives_a_rank_k_spike():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4000, 60))
    B = np.linalg.qr(rng.normal(size=(60, 2)))[0].T
    Y = np.tanh(X @ B.T) + 0.05 * rng.normal(size=(4000, 2))
    fm = OneStepFeatureMap(400, random_state=0).fit(X, Y)
    assert fm.spike_directions_.shape == (2, 60)
    assert fm.spike_ratio_ > 5
    # the two learned directions span the two true ones
    overlap = np.linalg.svd(fm.spike_directions_ @ B.T, compute_uv=False)
    assert overlap.min() > 0.7
    # the tags say what fit accepts
    assert fm.__sklearn_tags__().target_tags.multi_output
    assert SpikedRandomFeatures().__sklearn_tags__().target_tags.multi_output


def test_step_zero_is_plain_random_features_and_seeds_are_shared():
    X, y, _ = _index_data(300, 8, "he1+he2/2", 5)
    fm = OneStepFeatureMap(32, step_size=0.0, random_state=7).fit(X, y)
    np.testing.assert_array_equal(fm.W_, fm.W0_)
    spiked = SpikedRandomFeatures(32, theta=0.0, random_state=7).fit(X, y)
    np.testing.assert_array_equal(spiked.W0_, fm.W0_)
    np.testing.assert_allclose(spiked.transform(X), fm.transform(X))


def test_transform_shape_names_and_pickle():
    X, y, _ = _index_data(200, 5, "he1+he2/2", 6)
    fm = OneStepFeatureMap(16, random_state=0).fit(X, y)
    Z = fm.transform(X)
    assert Z.shape == (200, 16) and np.all(Z >= 0)  # relu
    assert list(fm.get_feature_names_out())[:2] == [
        "onestepfeaturemap0",
        "onestepfeaturemap1",
    ]
    again = pickle.loads(pickle.dumps(fm))
    np.testing.assert_array_equal(again.transform(X), Z)
    np.testing.assert_array_equal(clone(fm).fit(X, y).transform(X), Z)


def test_spiked_directions():
    X, y, beta = _index_data(3000, 20, "he1+he2/2", 7)
    for direction in ("stein", "ols"):
        spiked = SpikedRandomFeatures(64, direction=direction, random_state=0)
        assert abs(spiked.fit(X, y).directions_[0] @ beta) > 0.9
    ortho = np.eye(20)[np.argmin(np.abs(beta))]
    spiked = SpikedRandomFeatures(2000, direction=beta, theta=8.0, random_state=0)
    W = spiked.fit(X).W_
    # the rows' variance along the direction is 1 + theta times the rest
    assert 7.0 < np.var(W @ beta) / np.var(W @ ortho) < 11.0


def test_bad_input():
    X, y, _ = _index_data(50, 4, "he1+he2/2", 8)
    with pytest.raises(ValueError, match="requires y to be passed"):
        SpikedRandomFeatures().fit(X)
    with pytest.raises(ValueError, match="4 finite entries"):
        SpikedRandomFeatures(direction=[1.0, 0.0]).fit(X)
    with pytest.raises(ValueError, match="direction is zero"):
        SpikedRandomFeatures(direction=np.zeros(4)).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        OneStepFeatureMap().fit(np.full((5, 2), np.nan), np.ones(5))
    with pytest.raises(ValueError):
        OneStepFeatureMap(step_fraction=0.0).fit(X, y)
