import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from skml.attention import NWAttentionRegressor, _nw, _nw_kernels
from skml.datasets import make_multi_index_regression
from skml.utils import DeviceFallbackWarning, find_tensors


@pytest.fixture(scope="module")
def index_data():
    X, y, f, _ = make_multi_index_regression(
        700, 8, 2, family="additive", random_state=0
    )
    return X[:400], y[:400], X[400:], f[400:]


def _numpy_nw(Xq, Xk, y, h):
    d2 = ((Xq[:, None, :] - Xk[None, :, :]) ** 2).sum(-1)
    K = np.exp(-d2 / (2 * h**2) + d2.min(1, keepdims=True) / (2 * h**2))
    return K @ y / K.sum(1)


def test_single_identity_head_is_plain_nadaraya_watson():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] ** 2 + 0.1 * rng.normal(size=60)
    Xq = rng.normal(size=(25, 3))
    h = 0.7
    model = NWAttentionRegressor(
        1,
        3,
        head_allocation="fixed",
        init=np.eye(3)[None],
        bandwidth=h,
        output="identity",
        standardize=False,
        degree=0,
    ).fit(X, y)
    # orthonormal projection of full rank: training cannot change the kernel
    np.testing.assert_allclose(model.predict(Xq), _numpy_nw(Xq, X, y, h), rtol=1e-10)
    np.testing.assert_allclose(model.bandwidths_, [h])
    # and the leave-one-out fit on the training rows
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    K = np.exp(-d2 / (2 * h**2))
    np.fill_diagonal(K, 0.0)
    loo = K @ y / K.sum(1)
    assert model.loo_mse_ == pytest.approx(np.mean((loo - y) ** 2), rel=1e-10)


def test_loo_training_beats_the_untrained_start(index_data):
    X, y, Xq, fq = index_data
    params = {"n_heads": 2, "head_dim": 2, "random_state": 0}
    start = NWAttentionRegressor(max_iter=0, **params).fit(X, y)
    trained = NWAttentionRegressor(**params).fit(X, y)
    mse_start = np.mean((start.predict(Xq) - fq) ** 2)
    mse_trained = np.mean((trained.predict(Xq) - fq) ** 2)
    assert mse_trained < 0.7 * mse_start
    assert trained.loss_curve_[-1] < trained.loss_curve_[0]
    assert trained.n_iter_ == len(trained.loss_curve_)


def test_predictions_do_not_depend_on_row_order(index_data):
    X, y, Xq, _ = index_data
    perm = np.random.default_rng(1).permutation(len(y))
    params = {"n_heads": 2, "head_dim": 2, "random_state": 0, "max_iter": 30}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = NWAttentionRegressor(**params).fit(X, y).predict(Xq)
        b = NWAttentionRegressor(**params).fit(X[perm], y[perm]).predict(Xq)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("degree", [0, 1])
def test_chunked_prediction_matches_unchunked(index_data, monkeypatch, degree):
    X, y, Xq, _ = index_data
    model = NWAttentionRegressor(2, 2, degree=degree, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    full, std = model.predict(Xq, return_std=True)
    monkeypatch.setattr(_nw, "_BLOCK", 2 * len(X) * 7)  # 7 query rows per chunk
    chunked, std_chunked = model.predict(Xq, return_std=True)
    np.testing.assert_allclose(chunked, full, rtol=1e-12)
    np.testing.assert_allclose(std_chunked, std, rtol=1e-12)


def test_local_linear_reduces_bias_on_interaction():
    X, y, f, _ = make_multi_index_regression(
        900, 6, 2, family="interaction", random_state=3
    )
    Xtr, ytr, Xte, fte = X[:600], y[:600], X[600:], f[600:]
    mse = {}
    for degree in (0, 1):
        model = NWAttentionRegressor(1, 2, degree=degree, random_state=0)
        mse[degree] = np.mean((model.fit(Xtr, ytr).predict(Xte) - fte) ** 2)
    assert mse[1] < mse[0]


def test_early_stopping_keeps_loo_honest_on_noise():
    # a freely trained metric overfits the LOO error on pure noise
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 6)), rng.normal(size=400)
    params = {"n_heads": 1, "head_dim": 2, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        free = NWAttentionRegressor(early_stopping=False, **params).fit(X, y)
    stopped = NWAttentionRegressor(**params).fit(X, y)
    assert free.loo_mse_ < 0.95 * np.var(y)
    assert stopped.loo_mse_ > 0.98 * np.var(y)
    assert len(stopped.validation_scores_) == stopped.n_iter_ + 1


def test_constant_target_is_predicted():
    X = np.random.default_rng(0).normal(size=(20, 3))
    model = NWAttentionRegressor(random_state=0).fit(X, np.full(20, 2.5))
    pred, std = model.predict(X[:5] + 0.3, return_std=True)
    np.testing.assert_allclose(pred, 2.5)
    np.testing.assert_allclose(std, 0.0, atol=1e-12)
    assert model.n_iter_ == 0


def test_bvc_terms_sum_to_loo_mse_and_simplex_weights_help(index_data):
    X, y, _, _ = index_data
    uniform = NWAttentionRegressor(3, 2, random_state=0).fit(X, y)
    bvc = uniform.loo_bvc_
    assert bvc["bias2"] + bvc["variance"] + bvc["covariance"] == pytest.approx(
        bvc["mse"]
    )
    assert bvc["mse"] == pytest.approx(uniform.loo_mse_)
    simplex = NWAttentionRegressor(3, 2, head_weights="simplex", random_state=0)
    simplex.fit(X, y)
    assert simplex.head_weights_.min() >= 0
    assert simplex.head_weights_.sum() == pytest.approx(1.0)
    assert simplex.loo_mse_ <= uniform.loo_mse_ + 1e-12


def test_diversity_penalty_raises_hdi(index_data):
    X, y, _, _ = index_data
    # nearly aligned heads (exactly equal ones get equal gradients forever)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, X.shape[1]))
    init = np.stack([base + 0.05 * rng.normal(size=base.shape) for _ in range(3)])
    # the penalty acts on the training path; early stopping would pick the
    # state with the best validation error instead
    params = {
        "n_heads": 3,
        "head_dim": 2,
        "init": init,
        "early_stopping": False,
        # The heads part within the first 50 of the default 200 iterations
        # (hdi 0.66 against 1.00); the rest only costs time.
        "max_iter": 50,
        "random_state": 0,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = NWAttentionRegressor(**params).fit(X, y)
        diverse = NWAttentionRegressor(diversity_penalty=1.0, **params).fit(X, y)
    assert diverse.hdi_ > plain.hdi_ + 0.1


def test_integer_weights_equal_repeated_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=30)
    w = rng.integers(1, 4, size=30)
    params = {
        "n_heads": 2,
        "head_dim": 1,
        "head_allocation": "fixed",
        "standardize": False,
        "max_iter": 20,
        "random_state": 0,
    }
    params["init"] = np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.5]]])
    Xq = rng.normal(size=(10, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = NWAttentionRegressor(**params).fit(X, y, sample_weight=w)
        repeated = NWAttentionRegressor(**params).fit(
            np.repeat(X, w, axis=0), np.repeat(y, w)
        )
    np.testing.assert_allclose(weighted.predict(Xq), repeated.predict(Xq), rtol=1e-6)
    assert weighted.loo_mse_ == pytest.approx(repeated.loo_mse_, rel=1e-6)
    w0 = w.copy()
    w0[:5] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        zero = NWAttentionRegressor(**params).fit(X, y, sample_weight=w0)
        dropped = NWAttentionRegressor(**params).fit(X[5:], y[5:], sample_weight=w[5:])
    np.testing.assert_allclose(zero.predict(Xq), dropped.predict(Xq), rtol=1e-10)


def test_multi_output_and_shapes(index_data):
    X, y, Xq, _ = index_data
    Y = np.column_stack([y, 2 * y + 1])
    model = NWAttentionRegressor(2, 2, random_state=0).fit(X, Y)
    assert model.predict(Xq).shape == (len(Xq), 2)
    assert model.predict(Xq, return_std=True)[1].shape == (len(Xq), 2)
    assert model.predict_heads(Xq).shape == (len(Xq), 2, 2)
    assert model.transform(Xq).shape == (len(Xq), 4)
    np.testing.assert_allclose(
        model.predict(Xq)[:, 1], 2 * model.predict(Xq)[:, 0] + 1, rtol=1e-5
    )
    single = NWAttentionRegressor(2, 2, random_state=0).fit(X, y)
    assert single.predict_heads(Xq).shape == (len(Xq), 2)
    np.testing.assert_allclose(
        single.predict_heads(Xq) @ single.head_weights_, single.predict(Xq)
    )


def test_scaling_law_head_dim_grows_with_n():
    rng = np.random.default_rng(0)
    dims = []
    for n in (20, 400, 3000):
        X = rng.normal(size=(n, 32))
        y = X[:, 0]
        model = NWAttentionRegressor(
            head_allocation="scaling_law", degree=0, max_iter=0, random_state=0
        ).fit(X, y)
        assert model.n_heads_ * model.head_dim_ <= 32
        dims.append(model.head_dim_)
    assert dims == sorted(dims) and dims[0] < dims[-1]


def test_cv_allocation_scores_every_divisor_pair(index_data):
    X, y, _, _ = index_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = NWAttentionRegressor(
            budget=4, head_allocation="cv", max_iter=10, random_state=0
        ).fit(X, y)
    alloc = model.allocation_
    assert alloc["candidates"] == [(4, 1), (2, 2), (1, 4)]
    best = alloc["candidates"][int(np.argmin(alloc["holdout_mse"]))]
    assert (model.n_heads_, model.head_dim_) == best


def test_max_keys_subsamples_training_but_predicts_with_all_rows(index_data):
    X, y, Xq, fq = index_data
    model = NWAttentionRegressor(2, 2, max_keys=100, random_state=0).fit(X, y)
    assert model.X_fit_.shape[0] == len(X)
    mse = np.mean((model.predict(Xq) - fq) ** 2)
    assert mse < np.var(fq)


@pytest.mark.parametrize(
    "extra",
    [
        {"solver": "adam"},
        {"optimizer": torch.optim.SGD, "learning_rate": 0.01},
        {"optimizer": "muon"},
        {"optimizer": "symmetry"},
        {"optimizer": "symmetry", "optimizer_kwargs": {"momentum": 0.9}},
    ],
    ids=["adam", "sgd", "muon", "symmetry", "symmetry_kwargs"],
)
def test_minibatch_optimizers(index_data, extra):
    X, y, Xq, fq = index_data
    params = {
        "n_heads": 2,
        "head_dim": 2,
        "batch_size": 64,
        "max_iter": 15,
        "random_state": 0,
        **extra,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = NWAttentionRegressor(**params).fit(X, y)
    assert model.n_iter_ == len(model.loss_curve_) <= 15
    assert model.loss_curve_[-1] < model.loss_curve_[0]


@pytest.mark.parametrize(
    "params, X, match",
    [
        ({}, np.ones((1, 3)), "minimum of 2"),
        ({"head_dim": 5}, np.ones((10, 3)), "head_dim=5 is larger than n_features=3"),
        ({"head_allocation": "fixed"}, np.ones((10, 3)), "needs integer n_heads"),
        ({"init": np.ones((2, 2, 2))}, np.ones((10, 3)), "init has shape"),
        (
            {
                "n_heads": 1,
                "head_dim": 2,
                "head_allocation": "fixed",
                "init": np.full((1, 2, 3), np.nan),
            },
            np.ones((10, 3)),
            "init contains NaN",
        ),
        ({}, np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
    ],
)
def test_bad_input(params, X, match):
    with pytest.raises(ValueError, match=match):
        NWAttentionRegressor(**params).fit(X, np.arange(len(X), dtype=float))


def test_bad_optimizer_and_weights():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(TypeError, match="torch.optim.Optimizer subclass"):
        NWAttentionRegressor(optimizer=dict).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="non-negative"):
        NWAttentionRegressor().fit(X, X[:, 0], sample_weight=-np.ones(10))


def test_non_convergence_warns(index_data):
    X, y, _, _ = index_data
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = NWAttentionRegressor(2, 2, max_iter=2, random_state=0).fit(X, y)
    assert model.n_iter_ == 2


def test_pickle_and_device(index_data):
    X, y, Xq, _ = index_data
    model = NWAttentionRegressor(2, 2, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.device == "cpu" and model.device_ == torch.device("cpu")
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(Xq), model.predict(Xq))


@pytest.mark.parametrize(
    "params",
    [
        {"n_heads": 2, "head_dim": 2},
        {"head_allocation": "cv", "budget": 2, "head_weights": "simplex"},
        {"n_heads": 2, "head_dim": 2, "solver": "adam", "early_stopping": False},
    ],
)
def test_fitted_state_holds_no_tensor(index_data, params):
    X, y, _, _ = index_data
    model = NWAttentionRegressor(max_iter=3, random_state=0, **params)
    threads = torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X[:120], y[:120])
    assert find_tensors(model) == []
    # the thread policy gives back the count it found
    assert torch.get_num_threads() == threads


def test_torch_device_parameter_and_tags(index_data):
    X, y, Xq, _ = index_data
    params = {"n_heads": 2, "head_dim": 2, "max_iter": 3, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        by_name = NWAttentionRegressor(**params).fit(X, y)
        by_device = NWAttentionRegressor(device=torch.device("cpu"), **params)
        by_device.fit(X, y)
    assert by_device.device_ == torch.device("cpu")
    assert clone(by_device).device == torch.device("cpu")
    np.testing.assert_array_equal(by_device.predict(Xq), by_name.predict(Xq))
    tags = by_device.__sklearn_tags__()
    assert not tags.non_deterministic
    assert tags.target_tags.multi_output and tags.target_tags.required


def test_model_of_an_absent_gpu_predicts_on_the_cpu(index_data, monkeypatch):
    X, y, Xq, _ = index_data
    model = NWAttentionRegressor(2, 2, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    expected, expected_std = model.predict(Xq, return_std=True)
    expected_heads = model.predict_heads(Xq)
    # as if fitted on a GPU: fitted state is numpy, only device_ says cuda
    model.device_ = torch.device("cuda")
    blob = pickle.dumps(model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(DeviceFallbackWarning, match="not available here"):
        loaded = pickle.loads(blob)
    assert loaded.device_ == torch.device("cpu") and loaded.device == "cpu"
    pred, std = loaded.predict(Xq, return_std=True)
    np.testing.assert_array_equal(pred, expected)
    np.testing.assert_array_equal(std, expected_std)
    np.testing.assert_array_equal(loaded.predict_heads(Xq), expected_heads)
    # one warning per loaded model, not one per call
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = pickle.loads(blob)
        again.predict(Xq)
        again.predict_heads(Xq)
    fallbacks = [w for w in caught if issubclass(w.category, DeviceFallbackWarning)]
    assert len(fallbacks) == 1


def test_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X = np.random.default_rng(0).normal(size=(10, 2))
    model = NWAttentionRegressor(device="cuda")
    assert model.device == "cuda"
    with pytest.raises(ValueError, match="CUDA is not available"):
        model.fit(X, X[:, 0])


@pytest.mark.cuda
@pytest.mark.parametrize(
    "params",
    [
        {"n_heads": 2, "head_dim": 2},
        {"head_allocation": "cv", "budget": 4, "bandwidth": 1.0, "max_iter": 5},
    ],
)
def test_cpu_and_cuda_agree(index_data, params):
    X, y, Xq, _ = index_data
    params = {"max_iter": 20, "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu = NWAttentionRegressor(**params).fit(X, y)
        gpu = NWAttentionRegressor(device="cuda", **params).fit(X, y)
    assert gpu.device_.type == "cuda"
    assert find_tensors(gpu) == []
    assert (gpu.n_heads_, gpu.head_dim_) == (cpu.n_heads_, cpu.head_dim_)
    for method in ("predict", "predict_heads"):
        np.testing.assert_allclose(
            getattr(gpu, method)(Xq), getattr(cpu, method)(Xq), rtol=1e-6, atol=1e-8
        )
    np.testing.assert_allclose(
        gpu.predict(Xq, return_std=True)[1],
        cpu.predict(Xq, return_std=True)[1],
        rtol=1e-6,
        atol=1e-8,
    )


def test_local_quadratic_is_exact_on_quadratic_targets(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    f = 1.0 + X[:, 0] - 2 * X[:, 1] + X[:, 0] * X[:, 1] + 0.5 * X[:, 1] ** 2
    Xq = rng.normal(size=(40, 2))
    fq = 1.0 + Xq[:, 0] - 2 * Xq[:, 1] + Xq[:, 0] * Xq[:, 1] + 0.5 * Xq[:, 1] ** 2
    params = {
        "n_heads": 1,
        "head_dim": 2,
        "head_allocation": "fixed",
        "init": np.eye(2)[None],
        "bandwidth": 0.7,
        "output": "identity",
        "standardize": False,
    }
    # the slope prior biases towards the local average, little where the
    # keys are dense (tests/attention/test_nw_kernels.py)
    quad = NWAttentionRegressor(degree=2, **params).fit(X, f)
    assert np.mean((quad.predict(Xq) - fq) ** 2) < 1e-2 * np.var(fq)
    # without it, exact up to the small relative ridge of the local fits
    monkeypatch.setattr(_nw_kernels, "_SLOPE_PRIOR", 0.0)
    quad = NWAttentionRegressor(degree=2, **params).fit(X, f)
    assert np.mean((quad.predict(Xq) - fq) ** 2) < 1e-3 * np.var(fq)
    assert quad.loo_mse_ < 1e-3 * np.var(f)
    lin = NWAttentionRegressor(degree=1, **params).fit(X, f)
    assert np.mean((lin.predict(Xq) - fq) ** 2) > 10 * np.mean(
        (quad.predict(Xq) - fq) ** 2
    )


def test_random_orthogonal_init_trains_with_lbfgs(index_data):
    # its blocks are rows of a transposed QR factor (not C-contiguous)
    X, y, _, _ = index_data
    model = NWAttentionRegressor(
        2, 2, init="random_orthogonal", max_iter=5, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X[:100], y[:100])
    assert model.n_iter_ > 0 and np.isfinite(model.loss_curve_).all()


def test_gradient_init_finds_both_directions():
    X, y, _, B = make_multi_index_regression(
        600, 10, 2, family="radial", random_state=0
    )
    sv = {}
    for init in ("pca_blocks", "gradient"):
        model = NWAttentionRegressor(1, 2, degree=0, init=init, random_state=0)
        model.fit(X, y)
        W = model.projections_[0] @ (B / model.x_scale_[:, None])
        sv[init] = np.linalg.svd(W, compute_uv=False)
    # the gradient start sees both relevant directions, PCA misses one
    assert sv["gradient"][1] > 0.5 * sv["gradient"][0]
    assert sv["pca_blocks"][1] < 0.2 * sv["pca_blocks"][0]


@pytest.mark.parametrize("budget", [1, 6, 8, 12])
def test_spectrum_allocation_uses_the_whole_budget(index_data, budget):
    X, y, _, _ = index_data
    model = NWAttentionRegressor(degree=0, budget=budget, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.n_heads_ * model.head_dim_ == budget
    # H is the divisor of the budget nearest the OPG's effective dimension
    r = model.allocation_["effective_dim"]
    divisors = [h for h in range(1, budget + 1) if budget % h == 0]
    assert abs(model.n_heads_ - r) == min(abs(h - r) for h in divisors)


def test_spectrum_allocation_counts_the_relevant_directions():
    # two relevant directions out of six: one head per direction by default
    X, y, _, _ = make_multi_index_regression(
        500, 6, 2, family="interaction", snr=50, random_state=0
    )
    model = NWAttentionRegressor(degree=0, random_state=0).fit(X, y)
    assert model.allocation_["effective_dim"] == 2
    assert (model.n_heads_, model.head_dim_) == (2, 1)


def test_auto_degree_prefers_the_quadratic_head_on_a_quadratic_target():
    X, y, f, _ = make_multi_index_regression(900, 5, 2, family="radial", random_state=1)
    auto = NWAttentionRegressor(random_state=0).fit(X[:400], y[:400])
    paper = NWAttentionRegressor(degree=0, random_state=0).fit(X[:400], y[:400])
    sel = auto.selection_
    assert sel["candidates"][sel["chosen"]][0] == auto.degree_ == 2
    assert len(sel["scores"]) == 3 and sel["rows"] == 400
    mse = [np.mean((m.predict(X[400:]) - f[400:]) ** 2) for m in (auto, paper)]
    assert mse[0] < mse[1]


def test_auto_degree_selects_on_a_subsample_and_refits(monkeypatch, index_data):
    X, y, _, _ = index_data
    monkeypatch.setattr(_nw, "_SELECT_ROWS", 150)
    model = NWAttentionRegressor(random_state=0).fit(X, y)
    assert model.selection_["rows"] == 150
    assert model.X_fit_.shape[0] == len(X)
    assert model.validation_scores_
    # a fixed degree has one candidate: nothing to compare
    fixed = NWAttentionRegressor(degree=1, random_state=0).fit(X, y)
    assert fixed.selection_["scores"] == [] and fixed.degree_ == 1
