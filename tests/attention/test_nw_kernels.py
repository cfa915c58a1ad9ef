"""The tensor kernels of NWAttentionRegressor against closed forms and numpy."""

import math

import numpy as np
import pytest
import torch

from skml.attention import _nw_kernels as K


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _softmax_rows(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _numpy_heads(Xq, W, Xk, Yk, wk, kernel):
    """Softmax-weighted averages of Yk, one per head, written out in numpy."""
    out = []
    for Wh in W:
        Zq, Zk = Xq @ Wh.T, Xk @ Wh.T
        if kernel == "gaussian":
            logits = -0.5 * ((Zq[:, None] - Zk[None]) ** 2).sum(-1)
        else:
            logits = Zq @ Zk.T
        out.append(_softmax_rows(logits + np.log(wk)) @ Yk)
    return np.stack(out)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] ** 2])
    W = 0.8 * rng.normal(size=(2, 2, 3))
    wk = rng.integers(1, 4, size=40).astype(float)
    return X, Y, W, wk, rng.normal(size=(15, 3))


@pytest.mark.parametrize("kernel", ["gaussian", "dot"])
def test_degree_0_heads_are_softmax_weighted_averages(problem, kernel):
    X, Y, W, wk, Xq = problem
    Wt = _t(W)
    pred, A = K._heads(
        K._project(Wt, _t(Xq)), K._project(Wt, _t(X)), _t(Y), _t(np.log(wk)), kernel, 0
    )
    np.testing.assert_allclose(pred.numpy(), _numpy_heads(Xq, W, X, Y, wk, kernel))
    np.testing.assert_allclose(A.sum(-1).numpy(), 1.0)


def test_leave_one_out_averages_over_the_other_copies(problem):
    X, Y, W, wk, _ = problem
    Wt, Xt, Yt = _t(W), _t(X), _t(Y)
    n = len(X)
    with np.errstate(divide="ignore"):
        shift = np.log(np.maximum(wk - 1.0, 0.0)) - np.log(wk)
    Z = K._project(Wt, Xt)
    pred, A = K._heads(
        Z, Z, Yt, _t(np.log(wk)), "gaussian", 0, torch.arange(n), _t(shift)
    )
    # row i sees every row, itself with one copy (of wk[i]) removed
    for h, Wh in enumerate(W):
        Zh = X @ Wh.T
        weights = np.exp(-0.5 * ((Zh[:, None] - Zh[None]) ** 2).sum(-1)) * wk
        weights[np.arange(n), np.arange(n)] *= (wk - 1.0) / wk
        expected = weights @ Y / weights.sum(1, keepdims=True)
        np.testing.assert_allclose(pred[h].numpy(), expected, rtol=1e-10)
    # rows of weight 1 give their own key no weight at all
    ones = np.flatnonzero(wk == 1)
    assert len(ones) > 0
    assert torch.all(A[:, ones, ones] == 0)


def test_loo_pass_equals_unchunked_heads_with_self_keys(problem):
    X, Y, W, wk, _ = problem
    Wt, Xt, Yt = _t(W), _t(X), _t(Y)
    with np.errstate(divide="ignore"):
        shift = _t(np.log(np.maximum(wk - 1.0, 0.0)) - np.log(wk))
    log_wk = _t(np.log(wk))
    Z = K._project(Wt, Xt)
    full, _ = K._heads(Z, Z, Yt, log_wk, "gaussian", 1, torch.arange(len(X)), shift)
    loo = K._loo_heads(Wt, Xt, Yt, log_wk, shift, "gaussian", 1, chunk=6)
    np.testing.assert_allclose(loo.numpy(), full.numpy(), rtol=1e-12, atol=1e-14)


def _polynomial_problem(degree, n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    Xq = 0.8 * rng.normal(size=(30, 2))

    def f(Z):
        y = 0.5 + Z[:, 0] - 2.0 * Z[:, 1]
        if degree == 2:
            y = y + Z[:, 0] * Z[:, 1] + 0.5 * Z[:, 1] ** 2
        return y[:, None]

    # one head, identity projection at a wide bandwidth: z = x / 1.5
    W = np.eye(2)[None] / 1.5
    return X, f(X), Xq, f(Xq), W


@pytest.mark.parametrize("degree", [1, 2])
def test_local_polynomial_reproduces_polynomials_of_its_degree(monkeypatch, degree):
    X, Y, Xq, fq, W = _polynomial_problem(degree)
    args = (_t(Xq), _t(W), _t(X), _t(Y), torch.zeros(len(X), dtype=torch.float64))

    def predict(deg):
        return K._predict_heads(*args, "gaussian", deg, chunk=len(Xq))[0][0].numpy()

    # the fits' ridge and slope prior (its own test below) are the only
    # departures from exactness
    monkeypatch.setattr(K, "_SLOPE_PRIOR", 0.0)
    biased = np.abs(predict(degree) - fq).max()
    monkeypatch.setattr(K, "_LOCAL_RIDGE", 0.0)
    exact = np.abs(predict(degree) - fq).max()
    lower = np.abs(predict(degree - 1) - fq).max()
    assert exact < 1e-9 * np.abs(fq).max()
    assert biased < 1e-2 * np.abs(fq).max()
    # and the degree below is not exact on the same target
    assert lower > 1e3 * exact and lower > 0.05


@pytest.mark.parametrize("degree", [1, 2])
def test_slope_prior_bias_vanishes_as_keys_get_denser(monkeypatch, degree):
    # The prior's ridge is _SLOPE_PRIOR / n_eff^2: on an exact polynomial,
    # ten times the keys at the same bandwidth cut its bias at least tenfold.
    monkeypatch.setattr(K, "_LOCAL_RIDGE", 0.0)

    def bias(n):
        X, Y, Xq, fq, W = _polynomial_problem(degree, n=n)
        args = (_t(Xq), _t(W), _t(X), _t(Y), torch.zeros(n, dtype=torch.float64))
        pred = K._predict_heads(*args, "gaussian", degree, chunk=len(Xq))[0][0]
        return np.abs(pred.numpy() - fq).max()

    assert bias(20_000) < 0.1 * bias(2_000)


@pytest.mark.parametrize("degree", [1, 2])
def test_slope_prior_keeps_sparse_queries_near_nadaraya_watson(monkeypatch, degree):
    # Queries a little outside a small, noisy cloud: a handful of keys carry
    # the attention and their local polynomial extrapolates far beyond the
    # values; the prior pulls the head back towards their average.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(25, 2))
    Y = np.sin(2 * X[:, :1]) + 0.3 * rng.normal(size=(25, 1))
    Xq = 2.5 * rng.normal(size=(200, 2))
    W = np.eye(2)[None] / 0.6
    args = (_t(Xq), _t(W), _t(X), _t(Y), torch.zeros(len(X), dtype=torch.float64))

    def predict(deg):
        return K._predict_heads(*args, "gaussian", deg, chunk=len(Xq))[0][0].numpy()

    def beyond():
        # how far the head goes outside the range of the values
        pred = predict(degree)
        return np.maximum(pred - Y.max(), Y.min() - pred).max()

    spread = Y.max() - Y.min()
    with_prior = beyond()
    monkeypatch.setattr(K, "_SLOPE_PRIOR", 0.0)
    without = beyond()
    assert without > 2 * spread
    assert with_prior < 0.2 * without


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_chunked_prediction_pass_equals_unchunked(problem, degree):
    X, Y, W, wk, Xq = problem
    args = (_t(Xq), _t(W), _t(X), _t(Y), _t(np.log(wk)), "gaussian", degree)
    omega = _t([0.3, 0.7])
    full, spread = K._predict_heads(*args, chunk=len(Xq), omega=omega)
    chunked, spread_chunked = K._predict_heads(*args, chunk=4, omega=omega)
    np.testing.assert_allclose(chunked.numpy(), full.numpy(), rtol=1e-12)
    np.testing.assert_allclose(spread_chunked.numpy(), spread.numpy(), rtol=1e-12)
    plain, none = K._predict_heads(*args, chunk=4)
    assert none is None
    np.testing.assert_array_equal(plain.numpy(), chunked.numpy())


def test_spread_is_the_mixture_second_moment_about_the_ensemble(problem):
    X, Y, W, wk, Xq = problem
    omega = np.array([0.3, 0.7])
    preds, spread = K._predict_heads(
        _t(Xq), _t(W), _t(X), _t(Y), _t(np.log(wk)), "gaussian", 0, 7, _t(omega)
    )
    heads = _numpy_heads(Xq, W, X, Y, wk, "gaussian")
    ens = np.einsum("h,hqt->qt", omega, heads)
    expected = 0.0
    for h, Wh in enumerate(W):
        Zq, Zk = Xq @ Wh.T, X @ Wh.T
        A = _softmax_rows(-0.5 * ((Zq[:, None] - Zk[None]) ** 2).sum(-1) + np.log(wk))
        dev2 = (Y[None] - ens[:, None]) ** 2  # (q, m, t)
        expected = expected + omega[h] * np.einsum("qm,qmt->qt", A, dev2)
    np.testing.assert_allclose(spread.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_prediction_kernels_stay_on_the_inputs_device(problem):
    # a tensor made on the CPU and combined with "meta" inputs raises, so
    # this is the CPU's stand-in for the GPU's device-mismatch error
    X, Y, W, wk, Xq = problem
    meta = torch.device("meta")
    args = [_t(a).to(meta) for a in (Xq, W, X, Y, np.log(wk))]
    for degree in (0, 1, 2):
        preds, spread = K._predict_heads(
            *args, "gaussian", degree, 4, _t([0.5, 0.5]).to(meta)
        )
        assert preds.device == meta and spread.device == meta
        assert preds.shape == (2, len(Xq), 2)
    V = args[1]
    for bandwidth in ("learned", "sqrt_dk", 0.7):
        assert K._effective(V, 2, bandwidth).device == meta
    assert K._penalty(V, 1.0).device == meta


def test_effective_projections_are_orthonormal_rows_over_the_bandwidth(problem):
    _, _, W, _, _ = problem
    V = _t(W)
    assert K._effective(V, 2, "learned") is V
    for bandwidth, h in ((0.7, 0.7), ("sqrt_dk", 2**0.25)):
        E = K._effective(V, 2, bandwidth).numpy()
        np.testing.assert_allclose(
            E @ E.transpose(0, 2, 1) * h**2, [np.eye(2)] * 2, atol=1e-12
        )
        # the same row space as V
        for Eh, Vh in zip(E, W):
            P = Eh.T @ Eh * h**2
            np.testing.assert_allclose(P @ Vh.T, Vh.T, atol=1e-12)


def test_diversity_penalty_closed_forms():
    eye = np.eye(4)
    same = _t(np.stack([2.0 * eye[:2], eye[:2] - eye[2:]]))
    assert float(K._penalty(same[:1], 3.0)) == 0.0  # one head
    # identical subspaces: every overlap is 1, so the penalty is its factor
    twins = _t(np.stack([eye[:2], 3.0 * eye[[1, 0]]]))
    assert float(K._penalty(twins, 3.0)) == pytest.approx(3.0)
    # orthogonal subspaces do not overlap
    apart = _t(np.stack([eye[:2], eye[2:]]))
    assert float(K._penalty(apart, 3.0)) == pytest.approx(0.0, abs=1e-12)


def test_gradient_outer_product_finds_the_index_direction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    b = np.array([1.0, -1.0, 0.5, 0.0, 0.0]) / 1.5
    Y = np.sin(X @ b)[:, None]
    sw = rng.uniform(0.5, 2.0, size=300)
    G = K._gradient_outer_product(_t(X), _t(Y), _t(sw), _t(sw / sw.sum())).numpy()
    np.testing.assert_allclose(G, G.T, atol=1e-14)
    evals, evecs = np.linalg.eigh(G)
    assert evals.min() > -1e-12
    assert abs(evecs[:, -1] @ b) / np.linalg.norm(b) > 0.95
    assert evals[-2] < 0.2 * evals[-1]


def _training_problem(n=120):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 4))
    Y = np.sin(2 * X[:, :1]) + 0.05 * rng.normal(size=(n, 1))
    # a start that sees the signal only weakly
    V0 = np.array([[[0.3, 0.8, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
    w = np.full(n, 1.0 / n)
    ones = np.ones(n)
    shift = np.full(n, -math.inf)
    return _t(V0), _t(X), _t(Y), _t(w), _t(np.log(ones)), _t(shift)


_SETTINGS = {
    "kernel": "gaussian",
    "degree": 0,
    "bandwidth": "learned",
    "output": "affine",
    "diversity_penalty": 0.0,
    "learning_rate": 0.05,
    "batch_size": None,
    "tol": 1e-9,
    "n_iter_no_change": 5,
    "chunk": 50,
}


def _loo_loss(V, out, X, Y, w, log_wk, shift):
    n = len(X)
    return float(
        K._loss_terms(
            V, out, X, Y, w, X, Y, log_wk, torch.arange(n), shift, "gaussian", 0
        )
    )


@pytest.mark.parametrize("optimizer", [torch.optim.LBFGS, torch.optim.Adam])
def test_training_decreases_the_loo_loss(optimizer):
    V0, X, Y, w, log_wk, shift = _training_problem()
    V0_before = V0.clone()
    result = K._train(
        V0,
        X,
        Y,
        w,
        log_wk,
        shift,
        optimizer=optimizer,
        max_iter=15,
        seed=0,
        **_SETTINGS,
    )
    start = _loo_loss(V0, torch.tensor([[0.0], [1.0]]).double(), X, Y, w, log_wk, shift)
    end = _loo_loss(result.V, result.out, X, Y, w, log_wk, shift)
    assert end < 0.5 * start
    assert result.n_iter == len(result.curve) > 0
    if optimizer is torch.optim.LBFGS:
        # full batch: the curve starts at the LOO loss of the start
        assert result.curve[0] == pytest.approx(start, rel=1e-12)
    assert not result.diverged and result.validation_scores == []
    torch.testing.assert_close(V0, V0_before, rtol=0, atol=0)


def test_training_scores_the_validation_rows_and_keeps_the_start_at_max_iter_0():
    V0, X, Y, w, log_wk, shift = _training_problem()
    common = {"optimizer": torch.optim.LBFGS, **_SETTINGS}
    still = K._train(V0, X, Y, w, log_wk, shift, max_iter=0, **common)
    assert still.V is V0 and still.n_iter == 0 and still.converged
    np.testing.assert_array_equal(still.out.numpy(), [[0.0], [1.0]])
    validation = (X[:30], Y[:30], w[:30] / w[:30].sum())
    rows = slice(30, None)
    fit = (X[rows], Y[rows], w[rows] / w[rows].sum(), log_wk[rows], shift[rows])
    result = K._train(V0, *fit, validation, max_iter=8, **common)
    assert len(result.validation_scores) == result.n_iter + 1
    assert min(result.validation_scores[1:]) < result.validation_scores[0]


def test_training_accepts_a_non_contiguous_start():
    # L-BFGS flattens the gradient with .view(-1), which a gradient laid out
    # like a transposed V0 does not allow
    V0, X, Y, w, log_wk, shift = _training_problem()
    V0_t = V0.transpose(1, 2).contiguous().transpose(1, 2)
    assert not V0_t.is_contiguous()
    common = {"optimizer": torch.optim.LBFGS, "max_iter": 3, **_SETTINGS}
    a = K._train(V0_t, X, Y, w, log_wk, shift, **common)
    b = K._train(V0, X, Y, w, log_wk, shift, **common)
    torch.testing.assert_close(a.V, b.V, rtol=0, atol=0)


def test_train_result_flags_a_non_finite_loss():
    V = torch.zeros((1, 1, 1))
    assert K.TrainResult(V, V, [1.0, math.nan]).diverged
    assert K.TrainResult(V, V, [1.0, math.inf]).diverged
    assert not K.TrainResult(V, V, [2.0, 1.0]).diverged
    assert not K.TrainResult(V, V, []).diverged


def test_early_stopping_returns_the_state_with_the_best_validation_score():
    # validation only watches the path, so the best state of a run with
    # validation is the state after that many iterations of a run without it
    V0, X, Y, w, log_wk, shift = _training_problem()
    common = {"optimizer": torch.optim.LBFGS, **_SETTINGS}
    validation = (X[:30], Y[:30], w[:30] / w[:30].sum())
    rows = slice(30, None)
    fit = (X[rows], Y[rows], w[rows] / w[rows].sum(), log_wk[rows], shift[rows])
    watched = K._train(V0, *fit, validation, max_iter=25, **common)
    best = int(np.argmin(watched.validation_scores))
    assert 0 < best < watched.n_iter  # the best is neither the start nor the end
    replay = K._train(V0, *fit, max_iter=best, **common)
    torch.testing.assert_close(watched.V, replay.V, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(watched.out, replay.out, rtol=1e-12, atol=1e-12)
