"""Out-of-core MCBoost: the dask fit against the in-memory fit."""

import pickle

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression

from skml.calibration import MCBoostClassifier, MCBoostRegressor

da = pytest.importorskip("dask.array")


def _data(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[:, 3] = rng.integers(0, 3, n)
    groups = rng.choice(["a", "b", "c"], n)
    y = X[:, 0] + 0.6 * (groups == "b") * X[:, 1] + 0.3 * X[:, 2] ** 2
    y = y + 0.5 * rng.normal(size=n)
    base = X[:, 0] + 0.2 * rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    return X, y, groups, base, w


def _chunked(a, rows):
    return da.from_array(a, chunks=(rows,) + a.shape[1:])


CASES = {
    "ridge": {},
    "quantile-buckets": {"bucket_strategy": "quantile"},
    "base-buckets": {"bucket_strategy": "uniform", "rebucket": False},
    "groups-auditor": {"auditor": "groups"},
    "gcv-worst": {"alpha": "gcv", "update": "worst", "bucket_strategy": "quantile"},
    "poisson": {"loss": "poisson"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_dask_fit_equals_the_numpy_fit(case):
    X, y, groups, base, w = _data()
    params = {"auditor": "ridge", "early_stopping": False, "max_iter": 5}
    params.update(CASES[case], group_features=[3])
    if case == "poisson":
        y = np.random.default_rng(1).poisson(np.exp(0.3 * X[:, 0])).astype(float)
        base = np.exp(0.25 * X[:, 0])
    fit = {"sample_weight": w, "groups": groups, "base_predictions": base}
    numpy_model = MCBoostRegressor(**params).fit(X, y, **fit)
    # uneven chunks, different for every input: alignment is the fit's job
    dask_fit = {
        "sample_weight": _chunked(w, 1700),
        "groups": _chunked(groups, 2500),
        "base_predictions": base,  # numpy next to dask X is allowed
    }
    dask_model = MCBoostRegressor(**params).fit(
        _chunked(X, 1100), _chunked(y, 900), **dask_fit
    )
    assert dask_model.n_iter_ == numpy_model.n_iter_ == 5
    for a, b in zip(numpy_model.rounds_, dask_model.rounds_):
        np.testing.assert_allclose(b["coef"], a["coef"], rtol=0, atol=1e-8)
        np.testing.assert_allclose(b["edges"], a["edges"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(dask_model.knots_, numpy_model.knots_, atol=1e-12)
    np.testing.assert_allclose(dask_model.x_mean_, numpy_model.x_mean_, atol=1e-12)
    np.testing.assert_allclose(
        dask_model.train_score_, numpy_model.train_score_, rtol=1e-10
    )
    assert dask_model.mc_statistic_ == pytest.approx(numpy_model.mc_statistic_)
    assert dask_model.mc_certified_ == numpy_model.mc_certified_
    # predictions: lazily, block by block, equal to the in-memory ones
    pred = dask_model.predict(
        _chunked(X, 1500), groups=groups, base_predictions=_chunked(base, 800)
    )
    assert hasattr(pred, "compute") and pred.shape == (len(X),)
    np.testing.assert_allclose(
        pred.compute(),
        numpy_model.predict(X, groups=groups, base_predictions=base),
        atol=1e-8,
    )


def test_dask_classifier_equals_the_numpy_classifier():
    X, y, groups, base, w = _data(seed=2)
    labels = np.where(y > np.median(y), "yes", "no")
    proba = 1 / (1 + np.exp(-base))
    params = {"auditor": "ridge", "early_stopping": False, "max_iter": 4}
    a = MCBoostClassifier(**params).fit(X, labels, base_predictions=proba)
    b = MCBoostClassifier(**params).fit(
        _chunked(X, 1000), _chunked(labels, 1000), base_predictions=proba
    )
    np.testing.assert_array_equal(b.classes_, a.classes_)
    for ra, rb in zip(a.rounds_, b.rounds_):
        np.testing.assert_allclose(rb["coef"], ra["coef"], atol=1e-8)
    Xd = _chunked(X, 1300)
    np.testing.assert_allclose(
        b.predict_proba(Xd, base_predictions=proba).compute(),
        a.predict_proba(X, base_predictions=proba),
        atol=1e-10,
    )
    np.testing.assert_array_equal(
        b.predict(Xd, base_predictions=proba).compute(),
        a.predict(X, base_predictions=proba),
    )


def test_dask_dataframe_frozen_base_and_constant_base():
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X, y, *_ = _data(seed=3)
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frozen = FrozenEstimator(LinearRegression().fit(X[:500], y[:500]))
    for estimator in (frozen, None):
        params = {"auditor": "ridge", "early_stopping": False, "max_iter": 3}
        params.update(estimator=estimator, group_features=["d"])
        a = MCBoostRegressor(**params).fit(df, y)
        b = MCBoostRegressor(**params).fit(
            dd.from_pandas(df, npartitions=4), dd.from_pandas(pd.Series(y), 3)
        )
        assert list(b.feature_names_in_) == ["a", "b", "c", "d"]
        assert b.base_constant_ == a.base_constant_
        for ra, rb in zip(a.rounds_, b.rounds_):
            np.testing.assert_allclose(rb["coef"], ra["coef"], atol=1e-8)


def test_dask_holdout_stops_and_the_model_is_plain_state():
    X, y, *_ = _data(n=12000, seed=4)
    model = MCBoostRegressor(auditor="ridge", random_state=0)
    model.fit(_chunked(X, 3000), _chunked(y, 3000))
    assert model.stopping_rule_ == "holdout"
    assert 0 < model.n_iter_ < model.max_iter
    assert len(model.validation_score_) > model.n_iter_
    # the validation loss at the chosen round is the curve's best
    assert model.validation_score_[model.n_iter_] == model.validation_score_.min()
    for value in vars(model).values():
        assert "dask" not in type(value).__module__
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(X[:50]), model.predict(X[:50]))
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        MCBoostRegressor(auditor="ridge", max_iter=2, random_state=0).fit(
            _chunked(X, 3000), _chunked(y, 3000)
        )


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "auditor='ridge' or 'groups'"),
        ({"auditor": "ridge", "early_stopping": "cv"}, "early_stopping='holdout'"),
        ({"auditor": "ridge", "estimator": LinearRegression()}, "FrozenEstimator"),
    ],
)
def test_dask_fit_rejects_what_needs_the_rows(params, message):
    X, y, *_ = _data(n=200)
    with pytest.raises(ValueError, match=message):
        MCBoostRegressor(**params).fit(_chunked(X, 50), _chunked(y, 50))


def test_dask_bad_input_is_named():
    X, y, *_ = _data(n=200)
    X[17, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MCBoostRegressor(auditor="ridge").fit(_chunked(X, 50), y)
    with pytest.raises(TypeError, match="dask"):
        MCBoostRegressor(auditor="ridge").fit(np.nan_to_num(X), _chunked(y, 50))
    with pytest.raises(ValueError, match="rows"):
        MCBoostRegressor(auditor="ridge").fit(_chunked(X, 50), y[:-1])
    model = MCBoostRegressor(auditor="ridge", max_iter=2, early_stopping=False)
    model.fit(_chunked(np.nan_to_num(X), 50), y)
    with pytest.raises(TypeError, match="in memory"):
        next(model.staged_predict(_chunked(np.nan_to_num(X), 50)))


@pytest.mark.dask
def test_dask_fit_on_a_distributed_cluster_equals_the_threaded_one():
    distributed = pytest.importorskip("distributed")
    X, y, groups, base, w = _data(n=4000, seed=5)
    params = {"auditor": "ridge", "early_stopping": False, "max_iter": 3}
    args = (_chunked(X, 1000), _chunked(y, 1000))
    fit = {"groups": groups, "sample_weight": w}
    threaded = MCBoostRegressor(**params).fit(*args, **fit)
    with distributed.Client(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ):
        clustered = MCBoostRegressor(**params).fit(*args, **fit)
    for a, b in zip(threaded.rounds_, clustered.rounds_):
        np.testing.assert_allclose(b["coef"], a["coef"], atol=1e-10)
