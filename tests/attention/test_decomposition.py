import numpy as np
import pytest

from skml.attention import NWAttentionRegressor, head_decomposition

N_TRAIN, N_EVAL, NOISE = 300, 60, 0.5


def _f(X):
    return np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]


def _fixed_heads(angle, scale=2.0):
    """Two one-dimensional heads in the plane, ``angle`` apart: HDI = sin^2."""
    W = np.array([[[1.0, 0.0]], [[np.cos(angle), np.sin(angle)]]]) * scale
    return NWAttentionRegressor(
        2,
        1,
        head_allocation="fixed",
        init=W,
        max_iter=0,
        standardize=False,
        output="identity",
        early_stopping=False,
        degree=0,
    )


def _draw(rng, n, signal=True):
    X = rng.normal(size=(n, 2))
    f = _f(X) if signal else np.zeros(n)
    return X, f + NOISE * rng.normal(size=n)


def _over_training_sets(model, X_eval, f_eval, n_sets, rng, signal=True):
    """The decomposition over independent training sets from the generator."""
    G = []
    for _ in range(n_sets):
        X, y = _draw(rng, N_TRAIN, signal)
        fitted = model.fit(X, y)
        G.append(fitted.predict_heads(X_eval) * fitted.head_weights_)
    G = np.stack(G)  # (sets, points, heads)
    C = np.einsum("sqh,sqg->hg", G - G.mean(0), G - G.mean(0)) / (
        (n_sets - 1) * G.shape[1]
    )
    fbar = G.sum(2)
    bias2 = np.mean((fbar.mean(0) - f_eval) ** 2) - np.mean(fbar.var(0, ddof=1)) / (
        n_sets
    )
    return {
        "bias2": bias2,
        "variance": np.trace(C),
        "covariance": C.sum() - np.trace(C),
    }


def _close(a, b, rel=0.2, atol=1e-3):
    return abs(a - b) <= max(rel * abs(b), atol)


def test_half_sample_refits_match_independent_training_sets():
    rng = np.random.default_rng(0)
    X_eval = rng.normal(size=(N_EVAL, 2))
    f_eval = _f(X_eval)
    model = _fixed_heads(np.pi / 4)
    truth = _over_training_sets(model, X_eval, f_eval, 300, rng)
    # one training set of the same size, refitted on half-samples
    X, y = _draw(rng, N_TRAIN)
    est = head_decomposition(
        model, X, y, X_eval, f_eval, n_resamples=300, random_state=0
    )
    for term in ("bias2", "variance", "covariance"):
        assert _close(est[term], truth[term]), (term, est[term], truth[term])
    assert est["mse"] == pytest.approx(
        est["bias2"] + est["variance"] + est["covariance"]
    )
    assert est["n_train"] == N_TRAIN // 2


def test_covariance_falls_with_hdi_on_pure_noise():
    rng = np.random.default_rng(1)
    X_eval = rng.normal(size=(N_EVAL, 2))
    X, y = _draw(rng, N_TRAIN, signal=False)
    covs, hdis = [], []
    for angle in (0.0, np.pi / 6, np.pi / 3, np.pi / 2):
        model = _fixed_heads(angle)
        hdis.append(model.fit(X, y).hdi_)
        parts = head_decomposition(
            model, X, y, X_eval, np.zeros(N_EVAL), n_resamples=100, random_state=0
        )
        covs.append(parts["covariance"])
    assert np.allclose(hdis, np.sin([0.0, np.pi / 6, np.pi / 3, np.pi / 2]) ** 2)
    # the covariance term falls as the heads turn apart
    assert np.all(np.diff(covs) < 0), covs
    # identical heads: the covariance term equals the variance term
    assert covs[0] > 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_trained_heads_and_multi_output():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 3))
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1]]) + 0.1 * rng.normal(size=(120, 2))
    model = NWAttentionRegressor(2, 1, max_iter=3, random_state=0)
    parts = head_decomposition(model, X, Y, X[:10], Y[:10], n_resamples=3)
    assert parts["head_covariance"].shape == (2, 2)
    assert np.isfinite(parts["mse"])
    no_target = head_decomposition(model, X, Y, X[:10], n_resamples=2)
    assert np.isnan(no_target["bias2"]) and no_target["variance"] >= 0


def test_bad_input():
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.zeros(20)
    model = NWAttentionRegressor(1, 1, max_iter=0)
    with pytest.raises(ValueError, match="n_resamples"):
        head_decomposition(model, X, y, X, n_resamples=1)
    with pytest.raises(ValueError, match="features"):
        head_decomposition(model, X, y, X[:, :1])
    with pytest.raises(TypeError, match="predict_heads"):
        from sklearn.linear_model import Ridge

        head_decomposition(Ridge(), X, y, X)
    with pytest.raises(ValueError, match="targets"):
        head_decomposition(model, X, y, X, np.zeros((20, 2)), n_resamples=2)
    with pytest.raises(ValueError, match="rows"):
        head_decomposition(model, X, y, X, np.zeros(19), n_resamples=2)
    with pytest.raises(ValueError, match="NaN"):
        head_decomposition(model, X, y, X, np.full(20, np.nan), n_resamples=2)
