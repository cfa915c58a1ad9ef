"""COCOLearner and COCOClassifier: the online contract, constraints, errors."""

import pickle

import numpy as np
import pytest
import sklearn
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skml.datasets import make_fair_classification
from skml.online import (
    COCOClassifier,
    COCOLearner,
    DemographicParity,
    InfeasibleConstraintsError,
    NormBall,
)
from skml.utils import find_tensors


def _stream(n=600, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    A = rng.uniform(-1, 1, (n, d))
    b = np.full(n, 0.2)
    return X, y, A, b


def test_fit_equals_partial_fit_over_chunks():
    X, y, A, b = _stream()
    full = COCOLearner(batch_size=3).fit(X, y, constraint_A=A, constraint_b=b)
    part = COCOLearner(batch_size=3)
    for lo in range(0, 600, 150):  # chunks of whole rounds
        sl = slice(lo, lo + 150)
        part.partial_fit(X[sl], y[sl], constraint_A=A[sl], constraint_b=b[sl])
    np.testing.assert_allclose(part.coef_, full.coef_, atol=1e-12)
    np.testing.assert_allclose(part.violation_trace_, full.violation_trace_, atol=1e-12)
    np.testing.assert_allclose(part.loss_trace_, full.loss_trace_, atol=1e-12)
    assert part.t_ == full.t_ == 200
    assert part.n_cuts_ == full.n_cuts_


def test_every_stored_cut_holds_after_every_round():
    X, y, A, b = _stream(n=300)
    model = COCOLearner()
    for i in range(300):
        model.partial_fit(
            X[i : i + 1],
            y[i : i + 1],
            constraint_A=A[i : i + 1],
            constraint_b=b[i : i + 1],
        )
        assert model.state_.cuts.max_violation(model.state_.w) <= 1e-9
    assert model.max_projection_residual_ <= 1e-9
    assert 0 < model.n_cuts_ == model.n_violations_
    # CCV <= G * movement (the rows of A have norm <= 2 here).
    G = np.linalg.norm(A, axis=1).max()
    assert model.cumulative_violation_ <= G * model.movement_ + 1e-6


def test_cuts_all_keeps_every_half_space_of_the_stream():
    X, y, A, b = _stream(n=300)
    model = COCOLearner(cuts="all").fit(X, y, constraint_A=A, constraint_b=b)
    assert model.n_cuts_ == 300
    assert np.max(A @ model.coef_ - b) <= 1e-8
    violated_only = COCOLearner().fit(X, y, constraint_A=A, constraint_b=b)
    assert violated_only.n_cuts_ < 300


def test_no_constraint_is_plain_online_gradient_descent():
    X, y, _, _ = _stream(n=50, d=2)
    model = COCOLearner(alpha=0.1, fit_intercept=False).fit(X, y)
    w, L = np.zeros(2), 0.0
    for t in range(50):
        x = X[t]
        L = max(L, x @ x + 0.1)
        w = w - ((x @ w - y[t]) * x + 0.1 * w) / (0.1 * (t + 1) + L)
    np.testing.assert_allclose(model.coef_, w, atol=1e-12)
    assert model.cumulative_violation_ == 0 and model.n_cuts_ == 0


def test_fit_restarts_unless_warm_start():
    X, y, A, b = _stream()
    model = COCOLearner().partial_fit(X[:300], y[:300])
    model.fit(X, y)
    assert model.t_ == 600
    fresh = COCOLearner().fit(X, y)
    np.testing.assert_allclose(model.coef_, fresh.coef_)
    warm = COCOLearner(warm_start=True).fit(X[:300], y[:300]).fit(X[300:], y[300:])
    assert warm.t_ == 600
    np.testing.assert_allclose(warm.coef_, fresh.coef_, atol=1e-12)


def test_pickle_mid_stream_continues_identically():
    X, y, A, b = _stream()
    model = COCOLearner().partial_fit(
        X[:300], y[:300], constraint_A=A[:300], constraint_b=b[:300]
    )
    copy = pickle.loads(pickle.dumps(model))
    for m in (model, copy):
        m.partial_fit(X[300:], y[300:], constraint_A=A[300:], constraint_b=b[300:])
    np.testing.assert_array_equal(model.coef_, copy.coef_)
    assert find_tensors(model) == []


def test_infeasible_constraints_raise_naming_the_round_and_keep_the_model():
    X, _, _, _ = _stream(n=20, d=2)
    y = 3.0 * X[:, 0]  # pulls coef0 above 0.5 in the first rounds
    A = np.tile([1.0, 0.0], (20, 1))
    b = np.full(20, 0.5)
    A[10:] = [-1.0, 0.0]  # from row 10 on: -coef0 <= -1, i.e. coef0 >= 1
    b[10:] = -1.0
    model = COCOLearner()
    with pytest.raises(ValueError, match="round 11: the constraints seen so far"):
        model.fit(X, y, constraint_A=A, constraint_b=b)
    assert model.t_ == 10 and model.n_cuts_ == 1
    assert model.coef_[0] <= 0.5 + 1e-9
    assert len(model.loss_trace_) == 10


def test_infeasible_error_is_also_the_specific_class():
    A = np.array([[1.0], [-1.0]])
    b = np.array([-1.0, -1.0])
    with pytest.raises(InfeasibleConstraintsError):
        COCOLearner().fit(np.ones((2, 1)), np.ones(2), constraint_A=A, constraint_b=b)


def _nan_constraint(coef, intercept, X, y, **params):
    return np.array([np.nan]), np.ones((1, len(coef))), np.zeros(1)


def _wrong_shape(coef, intercept, X, y, **params):
    return np.array([1.0, 2.0]), np.ones((3, len(coef))), np.zeros(2)


@pytest.mark.parametrize(
    "constraint, match",
    [(_nan_constraint, "non-finite"), (_wrong_shape, "expected \\(k,\\)")],
)
def test_bad_constraints_are_named(constraint, match):
    X, y, _, _ = _stream(n=10)
    with pytest.raises(ValueError, match=match):
        COCOLearner(constraint=constraint).fit(X, y)


def test_bad_fit_parameters_are_named():
    X, y, A, b = _stream(n=10)
    with pytest.raises(ValueError, match="constraint_A must have shape"):
        COCOLearner().fit(X, y, constraint_A=A[:, :2], constraint_b=b)
    with pytest.raises(ValueError, match="one entry per row"):
        COCOLearner().fit(X, y, constraint_A=A[:5], constraint_b=b[:5])
    with pytest.raises(ValueError, match="passed together"):
        COCOLearner().fit(X, y, constraint_A=A)
    with pytest.raises(ValueError, match="needs the fit parameter"):
        COCOLearner(constraint=DemographicParity()).fit(X, y)
    A[0, 0] = np.nan
    with pytest.raises(ValueError, match="constraint_A contains NaN"):
        COCOLearner().fit(X, y, constraint_A=A, constraint_b=b)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_divergence_is_a_clear_error():
    X, y, _, _ = _stream(n=50)
    with pytest.raises(ValueError, match="diverged"):
        COCOLearner(step_size=1e6).fit(X * 1e3, y)


def test_sample_weight_scales_a_rows_gradient():
    X, y, _, _ = _stream(n=100)
    ones = COCOLearner().fit(X, y, sample_weight=np.ones(100))
    none = COCOLearner().fit(X, y)
    np.testing.assert_array_equal(ones.coef_, none.coef_)
    # Zero-weight rows are rounds that do not move the model (alpha = 0+).
    w = np.zeros(100)
    w[0] = 1.0
    zero = COCOLearner(alpha=1e-12).fit(X, y, sample_weight=w)
    first = COCOLearner(alpha=1e-12).fit(X[:1], y[:1])
    np.testing.assert_allclose(zero.coef_, first.coef_, rtol=1e-8)
    assert zero.t_ == 100


def test_norm_ball_constraint_holds_up_to_its_linearisation():
    X, y, _, _ = _stream()
    model = COCOLearner(constraint=NormBall(0.5)).fit(X, y)
    # The ball is stored as cuts at the models played (an outer polytope),
    # which the model satisfies exactly; the ball itself up to their gap.
    assert model.state_.cuts.max_violation(model.state_.w) <= 1e-9
    assert np.linalg.norm(model.coef_) <= 0.5 * 1.01
    free = COCOLearner().fit(X, y)
    assert np.linalg.norm(free.coef_) > 1.0
    assert model.n_cuts_ > 0


def test_classifier_parity_in_a_pipeline_with_metadata_routing():
    X, y, s = make_fair_classification(3000, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = COCOClassifier(constraint=DemographicParity(0.2), batch_size=50)
        clf.set_fit_request(sensitive_features=True)
        pipe = make_pipeline(StandardScaler(), clf).fit(X, y, sensitive_features=s)
    scores = pipe.decision_function(X)
    assert abs(scores[s == 1].mean() - scores[s == 0].mean()) < 0.3
    free = make_pipeline(StandardScaler(), COCOClassifier(batch_size=50)).fit(X, y)
    free_scores = free.decision_function(X)
    assert abs(free_scores[s == 1].mean() - free_scores[s == 0].mean()) > 1.0
    assert pipe.score(X, y) > 0.6


def test_classifier_partial_fit_needs_classes_and_known_labels():
    X, y, s = make_fair_classification(200, random_state=0)
    clf = COCOClassifier()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1])
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X[100:], y[100:] + 5)
    with pytest.raises(ValueError, match="differs from classes_"):
        clf.partial_fit(X[100:], y[100:], classes=[0, 2])


def test_classifier_probabilities_are_the_logistic_of_the_score():
    X, y, _ = make_fair_classification(500, random_state=1)
    clf = COCOClassifier().fit(X, y)
    p = clf.predict_proba(X)
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-clf.decision_function(X))))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), p)
    assert clf.coef_.shape == (1, 2) and clf.intercept_.shape == (1,)
    assert not hasattr(COCOClassifier(loss="hinge").fit(X, y), "predict_proba")


def test_multiclass_through_one_vs_rest():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 4], [4, 0], [-4, -4]])
    y = rng.integers(0, 3, 600)
    X = centers[y] + rng.normal(size=(600, 2))
    with pytest.raises(ValueError, match="Only binary classification"):
        COCOClassifier().fit(X, y)
    ovr = OneVsRestClassifier(COCOClassifier()).fit(X, y)
    assert ovr.score(X, y) > 0.9


def test_sinha_vaze_needs_a_bounded_domain():
    X, y, A, b = _stream(n=10)
    with pytest.raises(ValueError, match="bounded domain"):
        COCOLearner(algorithm="sinha_vaze").fit(X, y)
    model = COCOLearner(algorithm="sinha_vaze", domain_radius=5.0).fit(
        X, y, constraint_A=A, constraint_b=b
    )
    assert np.abs(model.coef_).max() <= 5.0


@pytest.mark.cuda
def test_cuda_matches_cpu():
    X, y, A, b = _stream()
    cpu = COCOLearner().fit(X, y, constraint_A=A, constraint_b=b)
    gpu = COCOLearner(device="cuda").fit(X, y, constraint_A=A, constraint_b=b)
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, atol=1e-10)
    assert str(gpu.device_).startswith("cuda")


def _never_violated(coef, intercept, X, y, **params):
    return np.array([-1.0]), np.ones((1, len(coef))), np.zeros(1)


@pytest.mark.parametrize("Estimator", [COCOLearner, COCOClassifier])
def test_unconstrained_fast_path_equals_the_general_rounds(Estimator):
    X, y, _, _ = _stream(n=400)
    if Estimator is COCOClassifier:
        y = (y > 0).astype(int)
    fast = Estimator(domain_radius=0.5).fit(X, y)
    general = Estimator(domain_radius=0.5, constraint=_never_violated).fit(X, y)
    np.testing.assert_allclose(fast.coef_, general.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.loss_trace_, general.loss_trace_, rtol=1e-10)
    assert fast.movement_ == pytest.approx(general.movement_, rel=1e-9)
