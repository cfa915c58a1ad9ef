"""NonlinearFactorImputer: the model behind the imputer convention."""

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from skml.datasets import make_nonlinear_factor_matrix
from skml.decomposition import NonlinearFactorModel
from skml.impute import NonlinearFactorImputer


@pytest.fixture(scope="module")
def data():
    return make_nonlinear_factor_matrix(
        120, 80, rank=2, link="tanh", missing=0.3, noise=0.1, random_state=0
    )


PARAMS = {"n_components": 2, "random_state": 0}


@pytest.fixture(scope="module")
def imputer(data):
    return NonlinearFactorImputer(**PARAMS).fit(data.data)


def test_transform_fills_every_nan_and_keeps_observed_entries(data, imputer):
    filled = imputer.transform(data.data)
    assert filled.shape == data.data.shape and not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[data.mask], data.data[data.mask])
    # the fills are close to the signal: below the noise sd
    missing = ~data.mask
    rmse = np.sqrt(np.mean((filled[missing] - data.signal[missing]) ** 2))
    assert rmse < 0.1 * data.signal.std()


def test_imputer_is_the_model_completion(data, imputer):
    model = NonlinearFactorModel(**PARAMS).fit(data.data)
    assert imputer.get_params() == model.get_params()
    # new rows with their own NaNs, and the training rows
    new = data.data[:10].copy()
    new[:, :5] = np.nan
    X = np.vstack([new, data.data])
    np.testing.assert_array_equal(imputer.transform(X), model.complete(X))


def test_imputer_in_a_regression_pipeline(data):
    rng = np.random.default_rng(0)
    y = data.signal @ rng.normal(size=data.signal.shape[1]) + rng.normal(size=120)
    X_train, X_test, y_train, y_test = data.data[:90], data.data[90:], y[:90], y[90:]
    pipe = make_pipeline(NonlinearFactorImputer(**PARAMS), Ridge()).fit(
        X_train, y_train
    )
    # the pipeline is the composition: Ridge fitted on the imputer's output
    # (fit_transform = fit then transform), predicting from transform
    imputer, fitted_ridge = pipe[0], pipe[-1]
    ridge = Ridge().fit(imputer.transform(X_train), y_train)
    np.testing.assert_allclose(fitted_ridge.coef_, ridge.coef_, rtol=1e-10)
    filled_test = imputer.transform(X_test)
    assert not np.isnan(filled_test).any()
    np.testing.assert_allclose(
        pipe.predict(X_test), ridge.predict(filled_test), rtol=1e-10
    )
    # and the filled features predict better than mean-filled ones
    means = make_pipeline(SimpleImputer(), Ridge()).fit(X_train, y_train)
    ours = np.mean((pipe.predict(X_test) - y_test) ** 2)
    assert ours < np.mean((means.predict(X_test) - y_test) ** 2)


def test_pandas_output_keeps_the_column_names(data, imputer):
    columns = [f"v{j}" for j in range(data.data.shape[1])]
    frame = pd.DataFrame(data.data, columns=columns, index=np.arange(120) + 1000)
    model = NonlinearFactorImputer(**PARAMS).set_output(transform="pandas")
    out = model.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == columns and out.index.equals(frame.index)
    assert model.get_feature_names_out().tolist() == columns
    # the same numbers as the fit on the bare array
    np.testing.assert_array_equal(out.to_numpy(), imputer.transform(data.data))
