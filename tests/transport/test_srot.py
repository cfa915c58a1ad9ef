import pickle
import warnings

import numpy as np
import ot
import pytest
import torch

from skml.transport import (
    SROTransport,
    sliced_reference_plan,
    srot_plan,
)
from skml.utils import DeviceFallbackWarning, find_tensors


@pytest.fixture(scope="module")
def gaussians():
    rng = np.random.default_rng(0)
    n = 200
    A = np.array([[2.0, 0.5], [0.5, 0.3]])
    B = np.array([[0.3, -0.2], [-0.2, 1.5]])
    Xs = rng.normal(size=(n, 2)) @ A
    Xt = rng.normal(size=(n, 2)) @ B + [3.0, 0.0]
    C = ot.dist(Xs, Xt)
    a = np.full(n, 1 / n)
    return Xs, Xt, a, C, ot.emd(a, a, C)


def test_default_fit_converges_in_low_dimension():
    # SROT's nearly sparse kernel needs several times EOT's Sinkhorn
    # iterations in 2-D: the default max_iter must cover that.
    from sklearn.exceptions import ConvergenceWarning

    from skml.datasets import make_gaussian_mixtures

    Xs, Xt = make_gaussian_mixtures(1000, 2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = SROTransport(random_state=0).fit(Xs, X_target=Xt)
    P = model.coupling_
    # tol bounds the misplaced mass of either marginal (L1)
    assert np.abs(P.sum(0) - model.b_).sum() <= model.tol
    assert np.abs(P.sum(1) - model.a_).sum() <= model.tol
    eot = SROTransport(reference="independent", random_state=0).fit(Xs, X_target=Xt)
    # "auto" keeps the reference of least transport cost, entropic OT included
    assert model.transport_cost_ <= eot.transport_cost_ * (1 + 1e-6)
    assert model.selection_["entropic"] == pytest.approx(eot.transport_cost_, rel=1e-4)


def test_auto_final_solve_starts_from_the_chosen_candidate(monkeypatch):
    # The choice of reference solves every candidate to convergence; the
    # final solve of the chosen one starts from its potentials instead of
    # solving it again from scratch (which took 2,000 iterations and did not
    # converge on iris classes 1 and 2 at reg=0.01).
    from skml.transport import _srot

    finals = []
    real = _srot.solve_reference

    def spy(*args, **kwargs):
        kernel, out = real(*args, **kwargs)
        finals.append((kwargs["init"] is not None, out["n_iter"], out["converged"]))
        return kernel, out

    monkeypatch.setattr(_srot, "solve_reference", spy)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(80, 4)), rng.normal(1.0, 1.0, size=(90, 4))
    for reg in (0.01, 0.1):
        finals.clear()
        model = SROTransport(reg=reg, random_state=0).fit(X, X_target=Y)
        assert model.selection_ is not None
        ((warm, n_iter, converged),) = finals
        assert warm and converged
        assert n_iter <= 2


def test_srot_beats_entropic_ot_at_large_reg(gaussians):
    Xs, Xt, a, C, exact = gaussians
    exact_cost = np.sum(exact * C)
    reg = 0.3 * np.median(C)
    R = sliced_reference_plan(Xs, Xt, random_state=0)
    P_eot = srot_plan(a, a, C, "independent", reg)
    P_srot = srot_plan(a, a, C, R, reg)
    gap_eot = np.sum(P_eot * C) / exact_cost - 1
    gap_srot = np.sum(P_srot * C) / exact_cost - 1
    assert gap_srot < gap_eot
    # the plan improves on its own reference
    assert np.abs(P_srot - exact).sum() < np.abs(R - exact).sum()


def test_refinements_approach_the_exact_plan(gaussians):
    Xs, Xt, a, C, exact = gaussians
    errors = []
    for k in range(4):
        model = SROTransport(reg=0.1, n_refinements=k, random_state=0)
        model.fit(Xs, X_target=Xt)
        errors.append(np.abs(model.coupling_ - exact).sum())
    assert all(e1 < e0 for e0, e1 in zip(errors, errors[1:]))


def test_independent_reference_is_entropic_ot(gaussians):
    Xs, Xt, a, C, _ = gaussians
    model = SROTransport(reference="independent", reg=0.1).fit(Xs, X_target=Xt)
    expected = ot.sinkhorn(
        a, a, C, model.eps_, method="sinkhorn_log", stopThr=1e-12, numItermax=10**5
    )
    np.testing.assert_allclose(model.coupling_, expected, atol=1e-8)
    np.testing.assert_allclose(model.eps_, 0.1 * np.median(C), rtol=1e-3)


def test_transform_of_fitted_points_is_barycentric(gaussians):
    Xs, Xt, _, _, _ = gaussians
    model = SROTransport(random_state=0).fit(Xs, X_target=Xt)
    P = model.coupling_
    # atol: the soft-rank reference's log reaches -1000, so the kernel and
    # the recomputed plan round their exponents apart by about 1e-13; a
    # coordinate near 0 (a mean of O(1) values) then differs at 1e-14
    np.testing.assert_allclose(
        model.transform(Xs), (P / P.sum(1, keepdims=True)) @ Xt, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        model.inverse_transform(Xt),
        (P.T / P.sum(0)[:, None]) @ Xs,
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("n_refinements", [0, 2])
def test_out_of_sample_map_is_continuous_and_consistent(gaussians, n_refinements):
    Xs, Xt, _, _, _ = gaussians
    model = SROTransport(n_refinements=n_refinements, random_state=0)
    model.fit(Xs, X_target=Xt)
    bary = model.transform(Xs)
    # the out-of-sample formula itself, evaluated at the fitted points
    np.testing.assert_allclose(model._out_of_sample(Xs, True), bary, atol=1e-6)
    np.testing.assert_allclose(
        model._out_of_sample(Xt, False), model.inverse_transform(Xt), atol=1e-6
    )
    # and it moves little when the points move little (steeply where two
    # fitted points have nearly equal projections on a slice)
    shifts = [
        np.abs(model.transform(Xs + delta) - bary).max() for delta in (1e-4, 1e-6, 1e-9)
    ]
    assert shifts[0] > shifts[1] > shifts[2]
    assert shifts[2] < 1e-3


def test_transform_is_row_wise(gaussians):
    Xs, Xt, _, _, _ = gaussians
    model = SROTransport(random_state=0).fit(Xs, X_target=Xt)
    new = Xs[:30] + 0.1
    mixed = np.vstack([Xs[:30], new])
    out = model.transform(mixed)
    np.testing.assert_allclose(out[:30], model.transform(Xs)[:30])
    np.testing.assert_allclose(out[30:], model.transform(new), rtol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_labels_restrict_transport():
    rng = np.random.default_rng(1)
    Xs = rng.normal(size=(60, 2))
    Xt = rng.normal(size=(60, 2))
    ys = np.repeat([0, 1], 30)
    yt = np.tile([0, 1], 30)
    yt[:10] = -1  # unlabelled target points accept any class
    model = SROTransport(random_state=0).fit(Xs, ys, X_target=Xt, y_target=yt)
    P = model.coupling_
    forbidden = (ys[:, None] != yt[None, :]) & (yt[None, :] != -1)
    assert P[forbidden].sum() < 1e-8


def test_default_target_is_seeded_standard_normal():
    X = np.random.default_rng(4).normal(size=(50, 3)) * 5
    a = SROTransport(random_state=7).fit(X)
    b = SROTransport(random_state=7).fit(X)
    np.testing.assert_array_equal(a.X_target_, b.X_target_)
    assert a.X_target_.shape == X.shape
    assert abs(a.X_target_.std() - 1) < 0.3
    # transforming Gaussianises the data
    assert a.transform(X).std() < 2


def test_zero_weights_equal_dropped_rows(gaussians):
    Xs, Xt, _, _, _ = gaussians
    w = np.ones(len(Xs))
    w[:20] = 0
    kw = {"reference": "independent", "reg": 0.1}
    full = SROTransport(**kw).fit(Xs, X_target=Xt, sample_weight=w)
    dropped = SROTransport(**kw).fit(Xs[20:], X_target=Xt)
    # eps_ is relative to the median cost, which includes the dropped rows
    dropped_eps = SROTransport(
        reg=dropped.reg * full.eps_ / dropped.eps_, **{"reference": "independent"}
    ).fit(Xs[20:], X_target=Xt)
    np.testing.assert_allclose(full.coupling_[20:], dropped_eps.coupling_, atol=1e-10)
    assert np.all(full.coupling_[:20] == 0)
    assert np.all(np.isfinite(full.transform(Xs[:20])))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"X_target": np.zeros((5, 3))}, "features"),
        ({"sample_weight": -np.ones(10)}, "non-negative"),
        ({"sample_weight": np.zeros(10)}, "zero weights"),
        ({"target_weight": np.ones(3)}, "shape"),
    ],
)
def test_bad_input(kwargs, match):
    X = np.random.default_rng(5).normal(size=(10, 2))
    with pytest.raises(ValueError, match=match):
        SROTransport().fit(X, **kwargs)


def test_nan_input_rejected():
    X = np.ones((10, 2))
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SROTransport().fit(X)


def test_set_output_pandas(gaussians):
    pd = pytest.importorskip("pandas")
    Xs, Xt, _, _, _ = gaussians
    frame = pd.DataFrame(Xs, columns=["u", "v"])
    model = SROTransport(random_state=0).set_output(transform="pandas")
    out = model.fit(frame, X_target=Xt).transform(frame)
    assert list(out.columns) == ["u", "v"]


def test_pickle_and_device(gaussians):
    Xs, Xt, _, _, _ = gaussians
    model = SROTransport(device="auto", random_state=0).fit(Xs, X_target=Xt)
    assert model.device == "auto"
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.transform(Xs + 0.1), model.transform(Xs + 0.1))


def test_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        SROTransport(device="cuda").fit(np.zeros((5, 2)))


@pytest.mark.parametrize(
    "kwargs", [{}, {"n_refinements": 1}, {"reference": "independent"}]
)
def test_fitted_model_holds_no_tensor(gaussians, kwargs):
    Xs, Xt, _, _, _ = gaussians
    model = SROTransport(random_state=0, **kwargs).fit(Xs[:60], X_target=Xt[:50])
    model.transform(Xs[:5] + 0.1)
    model.inverse_transform(Xt[:5] + 0.1)
    assert find_tensors(model) == []
    assert model.coupling_.shape == (60, 50)  # recomputed: leaves no tensor
    assert find_tensors(model) == []


def test_torch_device_parameter(gaussians):
    Xs, Xt, _, _, _ = gaussians
    model = SROTransport(device=torch.device("cpu"), random_state=0)
    model.fit(Xs, X_target=Xt)
    assert model.device_ == torch.device("cpu")
    reference = SROTransport(device="cpu", random_state=0).fit(Xs, X_target=Xt)
    np.testing.assert_allclose(model.coupling_, reference.coupling_, rtol=1e-12)
    np.testing.assert_allclose(
        model.transform(Xs + 0.1), reference.transform(Xs + 0.1), rtol=1e-12
    )


def test_model_from_an_absent_gpu_runs_on_the_cpu(gaussians, monkeypatch):
    # A model "fitted on cuda" loaded where CUDA is unavailable: its fitted
    # state is numpy, so it unpickles, warns once and maps on the CPU.
    Xs, Xt, _, _, _ = gaussians
    cpu = SROTransport(random_state=0).fit(Xs, X_target=Xt)
    model = pickle.loads(pickle.dumps(cpu))
    model.device_ = torch.device("cuda")
    blob = pickle.dumps(model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    new = Xs + 0.1
    with pytest.warns(DeviceFallbackWarning) as record:
        loaded = pickle.loads(blob)
        moved = loaded.transform(new)
        back = loaded.inverse_transform(Xt + 0.1)
    assert sum(issubclass(w.category, DeviceFallbackWarning) for w in record) == 1
    assert loaded.device_ == torch.device("cpu")
    assert loaded.device == "cpu"
    np.testing.assert_allclose(moved, cpu.transform(new), rtol=1e-12)
    np.testing.assert_allclose(back, cpu.inverse_transform(Xt + 0.1), rtol=1e-12)


@pytest.mark.cuda
def test_cpu_and_cuda_agree(gaussians):
    Xs, Xt, _, _, _ = gaussians
    cpu = SROTransport(random_state=0).fit(Xs, X_target=Xt)
    gpu = SROTransport(random_state=0, device="cuda").fit(Xs, X_target=Xt)
    np.testing.assert_allclose(gpu.coupling_, cpu.coupling_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(
        gpu.transform(Xs + 0.1), cpu.transform(Xs + 0.1), rtol=1e-6, atol=1e-9
    )


def test_x_target_problems_name_x_target():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(10, 2))
    bad = rng.normal(size=(8, 2))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X_target contains NaN"):
        SROTransport().fit(X, X_target=bad)
    with pytest.raises(ValueError, match="X_target has 3 features, but X has 2"):
        SROTransport().fit(X, X_target=rng.normal(size=(8, 3)))


@pytest.mark.parametrize("which", ["y", "y_target"])
def test_nan_class_label_is_rejected(which):
    rng = np.random.default_rng(6)
    X, Xt = rng.normal(size=(10, 2)), rng.normal(size=(12, 2))
    labels = {"y": np.repeat([0.0, 1.0], 5), "y_target": np.tile([0.0, 1.0], 6)}
    labels[which] = labels[which].copy()
    labels[which][2] = np.nan
    with pytest.raises(ValueError, match=f"{which} contains NaN"):
        SROTransport().fit(X, X_target=Xt, **labels)


def test_fitted_state_is_small_and_the_plan_is_recomputed_on_access():
    from skml.datasets import make_gaussian_mixtures

    Xs, Xt = make_gaussian_mixtures(1000, 2, random_state=0)
    model = SROTransport(
        reference="sliced", beta=30.0, reference_smoothing=0.01, random_state=0
    )
    model.fit(Xs, X_target=Xt)
    # 48.7 MB before the plan, reference, cost and slice tables were dropped
    assert len(pickle.dumps(model)) < 4.87e6
    P, C = model.coupling_, model.cost_
    assert np.abs(P.sum(1) - model.a_).sum() <= model.tol
    assert np.abs(P.sum(0) - model.b_).sum() <= model.tol
    np.testing.assert_allclose(np.sum(P * C), model.transport_cost_, rtol=1e-10)
    np.testing.assert_allclose(
        model.transform(Xs), (P / P.sum(1, keepdims=True)) @ Xt, rtol=1e-10
    )
    R = model.reference_plan_
    assert R.shape == P.shape and np.isclose(R.sum(), 1.0)
    # the plan is closer to its reference than the independent coupling is
    assert np.abs(P - R).sum() < np.abs(P - np.outer(model.a_, model.b_)).sum()


def test_score_ranks_maps_by_held_out_fit_to_the_target():
    from sklearn.model_selection import GridSearchCV

    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 2)) * [3.0, 0.5] + 2.0
    target = rng.normal(size=(300, 2))
    good = SROTransport(random_state=0).fit(X[:200], X_target=target)
    # a map fitted to other data moves the held-out points worse
    bad = SROTransport(random_state=0).fit(X[:200] * 2.0, X_target=target)
    assert good.score(X[200:]) > bad.score(X[200:])
    assert good.score(X[200:]) <= 0.0
    search = GridSearchCV(SROTransport(random_state=0), {"reg": [0.05, 1.0]}, cv=3)
    search.fit(X)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_lazy_and_dense_fits_agree():
    from skml.datasets import make_gaussian_mixtures

    Xs, Xt = make_gaussian_mixtures(300, 3, random_state=1)
    kw = {"random_state": 0, "tol": 1e-10, "max_iter": 20_000}
    dense = SROTransport(coupling="dense", **kw).fit(Xs, X_target=Xt)
    lazy = SROTransport(coupling="lazy", **kw).fit(Xs, X_target=Xt)
    assert lazy.lazy_ and not dense.lazy_
    assert (lazy.beta_, lazy.reference_smoothing_) == (
        dense.beta_,
        dense.reference_smoothing_,
    )
    np.testing.assert_allclose(lazy.transform(Xs), dense.transform(Xs), atol=1e-8)
    new = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_allclose(lazy.transform(new), dense.transform(new), atol=1e-8)
    np.testing.assert_allclose(lazy.transport_cost_, dense.transport_cost_, rtol=1e-9)


def test_lazy_rejects_what_needs_the_dense_plan():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match="coupling='lazy' supports neither"):
        SROTransport(coupling="lazy", n_refinements=1).fit(X)
    with pytest.raises(ValueError, match="coupling='lazy' supports neither"):
        SROTransport(coupling="lazy").fit(
            X, np.zeros(20), X_target=X, y_target=np.zeros(20)
        )


def test_auto_chooses_on_a_subsample_above_the_limit(monkeypatch):
    from sklearn.exceptions import ConvergenceWarning

    import skml.transport._srot as srot
    from skml.datasets import make_gaussian_mixtures

    monkeypatch.setattr(srot, "SELECT_POINTS", 150)
    Xs, Xt = make_gaussian_mixtures(400, 2, random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = SROTransport(random_state=0, tol=1e-9).fit(Xs, X_target=Xt)
    if model.reference_ == "rank":
        chosen = {"rank_sharpness": model.rank_sharpness_}
    else:
        chosen = {
            "beta": model.beta_ if model.beta_ is not None else 0.0,
            "reference_smoothing": model.reference_smoothing_,
        }
    fixed = SROTransport(
        reference=model.reference_, random_state=0, tol=1e-9, **chosen
    ).fit(Xs, X_target=Xt)
    # the subsample's warm start leads to the same plan as a cold solve
    np.testing.assert_allclose(model.transform(Xs), fixed.transform(Xs), atol=1e-6)
    assert model.selection_ is not None and "entropic" in model.selection_


def test_slice_directions_follow_the_directions_parameter():
    # Clouds in the plane x3 = 0 of R^3: the covariance-shaped slices lie in
    # that plane, the uniform ones do not.
    rng = np.random.default_rng(4)
    Xs = np.c_[rng.normal(size=(60, 2)), np.zeros(60)]
    Xt = np.c_[rng.normal(size=(50, 2)) + 2.0, np.zeros(50)]
    kw = {"beta": 3.0, "reference_smoothing": 0.001, "random_state": 0}
    shaped = SROTransport(**kw).fit(Xs, X_target=Xt).slice_directions_
    uniform = SROTransport(directions="uniform", **kw)
    uniform = uniform.fit(Xs, X_target=Xt).slice_directions_
    np.testing.assert_allclose(np.linalg.norm(shaped, axis=0), 1.0, rtol=1e-12)
    assert np.abs(shaped[2]).max() < 1e-8
    assert np.abs(uniform[2]).max() > 0.5


def test_rank_reference_is_entropic_ot_on_the_tilted_cost(gaussians):
    # KL(P || a b' exp(-s gap)) = KL(P || a b') + s <gap, P>: the soft-rank
    # plan is entropic OT on the cost C + eps s gap (POT as the reference)
    from skml.transport._sliced import quantile_embedding, slice_plans

    Xs, Xt, a, C, _ = gaussians
    model = SROTransport(
        reference="rank", rank_sharpness=300.0, reg=0.1, tol=1e-10, random_state=0
    ).fit(Xs, X_target=Xt)
    assert model.reference_ == "rank" and model.selection_ is None
    theta = torch.as_tensor(model.slice_directions_)
    w = torch.as_tensor(a)
    plans = slice_plans(
        torch.as_tensor(Xs),
        torch.as_tensor(Xt),
        w,
        w,
        n_projections=None,
        random_state=None,
        directions=theta,
    )
    U = quantile_embedding(plans.order_s, plans.cdf_s, w).numpy()
    V = quantile_embedding(plans.order_t, plans.cdf_t, w).numpy()
    gap = ((U[:, None, :] - V[None, :, :]) ** 2).mean(axis=2)
    expected = ot.sinkhorn(
        a,
        a,
        C + model.eps_ * 300.0 * gap,
        model.eps_,
        method="sinkhorn_log",
        stopThr=1e-13,
        numItermax=10**5,
    )
    np.testing.assert_allclose(model.coupling_, expected, atol=1e-9)
    R = model.reference_plan_
    np.testing.assert_allclose(
        R / R.sum(), (np.exp(-300.0 * gap) / np.exp(-300.0 * gap).sum()), rtol=1e-9
    )


def test_rank_reference_lazy_equals_dense_and_maps_new_points_continuously():
    from skml.datasets import make_gaussian_mixtures

    Xs, Xt = make_gaussian_mixtures(300, 4, random_state=3)
    fits = {
        mode: SROTransport(
            reference="rank", coupling=mode, tol=1e-10, random_state=0
        ).fit(Xs, X_target=Xt)
        for mode in ("dense", "lazy")
    }
    assert fits["dense"].rank_sharpness_ == fits["lazy"].rank_sharpness_
    new = np.random.default_rng(0).normal(size=(40, 4))
    for name in ("transform", "inverse_transform"):
        points = Xs if name == "transform" else Xt
        dense, lazy = getattr(fits["dense"], name), getattr(fits["lazy"], name)
        np.testing.assert_allclose(lazy(points), dense(points), atol=1e-7)
        np.testing.assert_allclose(lazy(new), dense(new), atol=1e-7)
        # a fitted point moved by 1e-9 leaves the barycentric map by little
        np.testing.assert_allclose(
            dense(points[:20] + 1e-9), dense(points[:20]), atol=1e-5
        )


def test_auto_compares_rank_references_only_below_the_dense_limit(monkeypatch):
    import skml.transport._srot as srot
    from skml.datasets import make_gaussian_mixtures

    Xs, Xt = make_gaussian_mixtures(200, 3, random_state=1)
    model = SROTransport(random_state=0).fit(Xs, X_target=Xt)
    keys = set(model.selection_)
    assert {("rank", 100.0), ("rank", 1000.0), "entropic"} <= keys
    assert min(model.selection_.values()) == pytest.approx(
        model.transport_cost_, rel=1e-4
    )
    # a size above the limit: the mixtures and entropic OT only
    monkeypatch.setattr(srot, "_DENSE_ENTRIES", 200 * 200 - 1)
    model = SROTransport(random_state=0, coupling="dense").fit(Xs, X_target=Xt)
    assert not any(isinstance(k, tuple) and k[0] == "rank" for k in model.selection_)
    assert model.reference_ != "rank"
