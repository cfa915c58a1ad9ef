import numpy as np
import pytest
from scipy.stats import norm
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold

from skml.calibration import MCBoostRegressor
from skml.calibration._transfer import _audit_basis, transfer_report
from skml.datasets._shift import make_covariate_shift_regression

REPORT_KEYS = {
    "bias_estimate",
    "bias_se",
    "bias_bound",
    "clip_shift",
    "bias_in_span",
    "bias_out_of_span",
    "bias_out_of_span_se",
    "span_share",
    "inside_span",
    "n_basis",
    "density_ratio",
    "density_ratio_in_span",
    "effective_sample_size",
    "clip_value",
    "n_clipped",
    "domain_auc",
    "source_bias",
    "target_mean_prediction",
    "target_mean_estimate",
    "confidence",
    "n_source",
    "n_target",
    "summary",
}


def _case(shift, strength=1.0, seed=0):
    """Data, a group-audited MCBoostRegressor, its report and realised bias."""
    data = make_covariate_shift_regression(
        8000, shift=shift, strength=strength, random_state=seed
    )
    model = MCBoostRegressor(
        data.estimator, auditor="groups", bucket_strategy="none", random_state=0
    ).fit(data.X_audit, data.y_audit, groups=data.groups_audit)
    report = transfer_report(
        model,
        data.X_audit,
        data.y_audit,
        data.X_target,
        groups_source=data.groups_audit,
        groups_target=data.groups_target,
        random_state=0,
    )
    residual = data.y_target - model.predict(data.X_target, groups=data.groups_target)
    realised = np.mean(residual)
    se = np.std(residual, ddof=1) / np.sqrt(len(residual))
    return data, model, report, realised, se


@pytest.fixture(scope="module")
def inside():
    return _case("inside")


@pytest.fixture(scope="module")
def outside():
    return _case("outside")


def test_report_keys_and_invariants(inside):
    data, _, report, _, _ = inside
    assert set(report) == REPORT_KEYS
    n = len(data.y_audit)
    assert report.n_source == n and report.n_target == len(data.X_target)
    rho = report.density_ratio
    assert rho.shape == report.density_ratio_in_span.shape == (n,)
    assert np.all(rho > 0)
    assert np.mean(rho) == pytest.approx(1.0)
    assert np.max(rho) == pytest.approx(report.clip_value)
    assert 0 < report.n_clipped <= 0.01 * n
    assert 0 < report.effective_sample_size <= n
    assert 0 <= report.span_share <= 1
    assert report.bias_in_span + report.bias_out_of_span == pytest.approx(
        report.bias_estimate
    )
    assert report.target_mean_estimate == pytest.approx(
        report.target_mean_prediction + report.bias_estimate
    )
    assert isinstance(report.inside_span, bool)
    assert isinstance(report.summary, str) and "bias" in report.summary
    # the bound: estimate, normal quantile times SE, and the clipping's shift
    z = norm.ppf(0.5 + report.confidence / 2)
    assert report.bias_bound == pytest.approx(
        abs(report.bias_estimate) + z * report.bias_se + abs(report.clip_shift)
    )


def test_density_ratio_tracks_the_truth(inside, outside):
    for data, _, report, _, _ in (inside, outside):
        r = np.corrcoef(report.density_ratio, data.true_density_ratio_audit)[0, 1]
        assert r > 0.85


def test_inside_shift_is_in_span_and_bounded(inside):
    _, _, report, realised, _ = inside
    assert report.inside_span
    assert report.span_share >= 0.9
    # the group-audited model carries (almost) no bias along its own span
    assert abs(report.bias_in_span) < report.bias_se
    assert abs(realised) < report.bias_bound


def test_outside_shift_is_out_of_span_and_bounded(outside):
    _, _, report, realised, se = outside
    assert not report.inside_span
    assert report.span_share < 0.5
    assert realised > 5 * se  # the design's premise: a clear target bias
    assert abs(report.bias_out_of_span) > 5 * report.bias_out_of_span_se
    assert report.bias_bound >= realised
    assert report.bias_bound <= 2 * realised + 2 * se


def test_no_shift():
    data, _, report, realised, _ = _case("inside", strength=0.0)
    assert report.effective_sample_size >= 0.9 * report.n_source
    assert report.domain_auc < 0.6
    assert np.std(report.density_ratio) < 0.2
    assert report.span_share == 1.0 or abs(realised) <= report.bias_bound


def test_uncalibrated_base_model_on_the_inside_shift():
    # The base misses the group, so the group shift biases it; the report
    # sees that with the generic audit span (constant + level sets).
    data = make_covariate_shift_regression(8000, shift="inside", random_state=0)
    report = transfer_report(
        data.estimator, data.X_audit, data.y_audit, data.X_target, random_state=0
    )
    residual = data.y_target - data.estimator.predict(data.X_target)
    realised = np.mean(residual)
    se = np.std(residual, ddof=1) / np.sqrt(len(residual))
    assert realised > 10 * se
    assert report.n_basis == 11
    assert not report.inside_span
    assert report.bias_bound >= realised
    assert abs(report.bias_estimate - realised) <= 3 * np.hypot(report.bias_se, se)


def _small_model(**params):
    data = make_covariate_shift_regression(800, random_state=0)
    params = {"early_stopping": False, "max_iter": 2, "random_state": 0, **params}
    model = MCBoostRegressor(data.estimator, **params)
    return data, model.fit(data.X_audit, data.y_audit, groups=data.groups_audit)


@pytest.mark.parametrize(
    "params",
    [
        {"auditor": "groups", "bucket_strategy": "none"},
        {"auditor": "groups", "bucket_strategy": "quantile"},
        {"auditor": "ridge"},
    ],
)
def test_audit_basis_fallback(params):
    data, model = _small_model(**params)
    B = _audit_basis(model, data.X_audit, data.groups_audit, None)
    g = data.groups_audit[:, 0]
    np.testing.assert_array_equal(B[:, 0], 1.0)
    np.testing.assert_array_equal(B[:, 1], g)
    if params == {"auditor": "groups", "bucket_strategy": "none"}:
        assert B.shape[1] == 2
        return
    levels = B[:, 2:12]
    np.testing.assert_array_equal(levels.sum(axis=1), 1.0)
    assert np.all(np.abs(levels.mean(axis=0) - 0.1) < 0.02)
    # group x level-set products, without the empty (all-zero) cells
    hit = (levels * g[:, None]).any(axis=0)
    products = B[:, 12 : 12 + hit.sum()]
    np.testing.assert_array_equal(products, levels[:, hit] * g[:, None])
    extra = 10 if params["auditor"] == "ridge" else 0
    assert B.shape[1] == 12 + hit.sum() + extra
    if params["auditor"] == "ridge":
        np.testing.assert_allclose(B[:, -10:].mean(axis=0), 0.0, atol=1e-10)


class _LinearWithBasis(RegressorMixin, BaseEstimator):
    """A linear model whose audit span is [1, x_j]."""

    def __init__(self, column=0):
        self.column = column

    def fit(self, X, y):
        self.model_ = LinearRegression().fit(X, y)
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def audit_basis(self, X, groups=None, base_predictions=None):
        X = np.asarray(X)
        return np.column_stack([np.ones(len(X)), X[:, self.column]])


def test_audit_basis_method_is_used():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 3))
    y = X[:, 0] + 0.5 * X[:, 0] ** 2 + rng.standard_normal(3000)
    X_target = rng.standard_normal((3000, 3)) + [0.4, 0, 0]
    share = {}
    for column in (0, 1):
        model = _LinearWithBasis(column).fit(X, y)
        report = transfer_report(model, X, y, X_target, random_state=0)
        assert report.n_basis == 2
        share[column] = report.span_share
    # exp(0.4 x0) is nearly linear in x0, and unrelated to x1
    assert share[0] > 0.9
    assert share[1] < 0.1


def test_custom_classifier_and_splitter_and_seed():
    data, model = _small_model(auditor="groups")
    args = (model, data.X_audit, data.y_audit, data.X_target)
    kwargs = {"groups_source": data.groups_audit, "groups_target": data.groups_target}
    report = transfer_report(
        *args,
        classifier=LogisticRegression(max_iter=1000),
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        **kwargs,
    )
    assert report.density_ratio.shape == (len(data.y_audit),)
    assert report.domain_auc > 0.55
    a = transfer_report(*args, random_state=1, **kwargs)
    b = transfer_report(*args, random_state=1, **kwargs)
    np.testing.assert_array_equal(a.density_ratio, b.density_ratio)


def test_base_predictions_are_passed_through():
    data = make_covariate_shift_regression(800, random_state=0)
    base_s = data.estimator.predict(data.X_audit)
    base_t = data.estimator.predict(data.X_target)
    model = MCBoostRegressor(auditor="groups", random_state=0).fit(
        data.X_audit, data.y_audit, base_predictions=base_s
    )
    report = transfer_report(
        model,
        data.X_audit,
        data.y_audit,
        data.X_target,
        base_predictions_source=base_s,
        base_predictions_target=base_t,
        random_state=0,
    )
    pred_t = model.predict(data.X_target, base_predictions=base_t)
    assert report.target_mean_prediction == pytest.approx(np.mean(pred_t))
    with pytest.raises(ValueError, match="base_predictions"):
        transfer_report(model, data.X_audit, data.y_audit, data.X_target)


@pytest.fixture(scope="module")
def fitted():
    data, model = _small_model(auditor="groups")
    return data, model


def _bad(data, **changes):
    args = {
        "X_source": data.X_audit,
        "y_source": data.y_audit,
        "X_target": data.X_target,
        "groups_source": data.groups_audit,
        "groups_target": data.groups_target,
    }
    args.update(changes)
    return args


def _with_nan(X):
    X = X.copy()
    X[3, 2] = np.nan
    return X


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: {"y_source": d.y_audit[:-1]}, "y_source"),
        (lambda d: {"X_target": d.X_target[:, :-1]}, "features"),
        (lambda d: {"X_source": _with_nan(d.X_audit)}, "NaN"),
        (lambda d: {"X_target": _with_nan(d.X_target)}, "NaN"),
        (lambda d: {"y_source": np.r_[np.nan, d.y_audit[1:]]}, "NaN"),
        (
            lambda d: {
                "X_target": d.X_target[:9],
                "groups_target": d.groups_target[:9],
            },
            "at least 10",
        ),
        (
            lambda d: {
                "X_source": d.X_audit[:5],
                "y_source": d.y_audit[:5],
                "groups_source": d.groups_audit[:5],
            },
            "at least 10",
        ),
        (lambda d: {"groups_target": d.groups_target[:-1]}, "groups_target"),
        (lambda d: {"groups_target": None}, "both samples"),
        (lambda d: {"confidence": 1.0}, "confidence"),
        (lambda d: {"cv": 1}, "cv=1"),
        (lambda d: {"classifier": Ridge()}, "predict_proba"),
    ],
)
def test_input_validation(fitted, change, match):
    data, model = fitted
    with pytest.raises(ValueError, match=match):
        transfer_report(model, **_bad(data, **change(data)))


def test_unfitted_estimator(fitted):
    data, _ = fitted
    with pytest.raises(NotFittedError):
        transfer_report(MCBoostRegressor(), **_bad(data))
