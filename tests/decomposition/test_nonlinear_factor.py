"""NonlinearFactorModel: links, recovery, fold-in, checks and model selection."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.utils import check_random_state

from skml.benchmarks.nonlinear_factor import als_complete
from skml.datasets import make_nonlinear_factor_matrix
from skml.datasets._factor import LINKS
from skml.decomposition import KnownLink, MonotoneLink, NonlinearFactorModel
from skml.utils import find_tensors, hide_entries


def _data(link="tanh", n=120, p=80, missing=0.5, noise=0.1, seed=0):
    return make_nonlinear_factor_matrix(
        n, p, rank=2, link=link, missing=missing, noise=noise, random_state=seed
    )


def _rmse(A, B, where):
    return float(np.sqrt(np.mean((A[where] - B[where]) ** 2)))


@pytest.fixture(scope="module")
def fitted():
    """Rank-2 fits with the default learned link, one per data link (cached)."""
    cache = {}

    def get(link):
        if link not in cache:
            data = _data(link)
            model = NonlinearFactorModel(n_components=2, random_state=0)
            cache[link] = data, model.fit(data.data)
        return cache[link]

    return get


# ------------------------------------------------------------------ link


@pytest.mark.parametrize("link", ["tanh", "exp", "cubic", "sigmoid"])
def test_learned_link_is_monotone(fitted, link):
    data, model = fitted(link)
    assert isinstance(model.link_, MonotoneLink)
    low, high = model.index_range_
    width = high - low
    z = np.linspace(low - 0.5 * width, high + 0.5 * width, 5001)
    slope = model.link_.derivative(z)
    assert model.link_.slope_ > 0
    # f' >= a > 0 by construction; 1e-9 relative covers rounding of the sums
    assert slope.min() >= model.link_.slope_ * (1 - 1e-9)
    assert (np.diff(model.link_(z)) > 0).all()


# -------------------------------------------------------- identity = ALS


def _numpy_als(X, rank, n_iter=500, tol=1e-13):
    """Alternating exact least squares, a ones column for the intercepts."""
    mask = ~np.isnan(X)
    n, p = X.shape
    w = np.where(mask, X, 0.0).sum(0) / mask.sum(0)
    A, s, Bt = np.linalg.svd(np.where(mask, X - w, 0.0), full_matrices=False)
    U, V = A[:, :rank] * np.sqrt(s[:rank]), Bt[:rank].T * np.sqrt(s[:rank])
    fit = U @ V.T + w
    for _ in range(n_iter):
        for i in range(n):
            Vo = V[mask[i]]
            U[i] = np.linalg.lstsq(Vo, X[i, mask[i]] - w[mask[i]], rcond=None)[0]
        W = np.column_stack([U, np.ones(n)])
        for j in range(p):
            coef = np.linalg.lstsq(W[mask[:, j]], X[mask[:, j], j], rcond=None)[0]
            V[j], w[j] = coef[:rank], coef[rank]
        new = U @ V.T + w
        done = np.linalg.norm(new - fit) <= tol * np.linalg.norm(new)
        fit = new
        if done:
            break
    return fit


def test_identity_link_is_rank_r_als_with_intercepts():
    data = _data("identity", missing=0.3)
    reference = _numpy_als(data.data, 2)
    model = NonlinearFactorModel(
        n_components=2, link="identity", alpha_factors=0.0, tol=1e-9, random_state=0
    ).fit(data.data)
    completed = model.complete(data.data)
    missing = ~data.mask
    # Both minimise the same unpenalised squared error from different starts
    # and reach the same minimum. tol=1e-9 on the objective, quadratic near
    # its minimum, leaves the fit ~sqrt(tol) = 3e-5 (relative) from it; a
    # different model (no intercepts: 1.3e-2, rank 3: 2.7e-2) fails.
    gap = np.linalg.norm(completed[missing] - reference[missing])
    assert gap <= 1e-3 * np.linalg.norm(reference[missing])
    np.testing.assert_array_equal(completed[data.mask], data.data[data.mask])


def test_fold_in_prior_vanishes_without_noise():
    # sigma2 = 0: the posterior mode is the plain fold-in
    data = _data("identity", missing=0.3, noise=0.0)
    params = {"n_components": 2, "link": "identity", "tol": 1e-12, "random_state": 0}
    plain = NonlinearFactorModel(fold_in_prior=False, **params).fit(data.data)
    prior = NonlinearFactorModel(**params).fit(data.data)
    np.testing.assert_allclose(prior.embedding_, plain.embedding_, atol=1e-6)


def test_fold_in_prior_fills_a_real_table_better_than_the_plain_fold_in():
    # scikit-learn's diabetes table, standardised, 20% hidden: 8 observed
    # entries a row for 3 components. The plain fold-in fits some rows
    # exactly along weak components and fills entries far off.
    from sklearn.datasets import load_diabetes

    X = load_diabetes().data
    hidden = np.random.default_rng(0).uniform(size=X.shape) < 0.2
    seen = np.where(hidden, np.nan, X)
    mean, sd = np.nanmean(seen, axis=0), np.nanstd(seen, axis=0)
    seen, truth = (seen - mean) / sd, (X - mean) / sd
    errors = {}
    for prior in (True, False):
        model = NonlinearFactorModel(fold_in_prior=prior, random_state=0)
        errors[prior] = _rmse(model.fit(seen).complete(seen), truth, hidden)
    column_means = _rmse(np.zeros_like(truth), truth, hidden)
    assert errors[True] < 0.9 * errors[False]
    assert errors[True] < 0.9 * column_means


def test_fit_prior_switches_off_components_the_data_do_not_carry():
    # rank 1 fitted with 3 components on a small noisy table: plain ALS fits
    # the noise with the two spare components; the empirical-Bayes ridges
    # grow as a component weakens and hold it at zero
    errors = {True: [], False: []}
    for seed in range(3):
        data = make_nonlinear_factor_matrix(
            40, 12, rank=1, link="identity", missing=0.3, noise=0.3, random_state=seed
        )
        for prior in (True, False):
            model = NonlinearFactorModel(
                link="identity", fit_prior=prior, random_state=0
            ).fit(data.data)
            errors[prior].append(
                _rmse(model.complete(data.data), data.signal, ~data.mask)
            )
            if prior:
                strengths = model.singular_values_
                assert (strengths[1:] < 0.1 * strengths[0]).all()
    assert np.mean(errors[True]) < 0.7 * np.mean(errors[False])


def test_fit_prior_objective_never_rises():
    # the ridges are fixed within a descent and equal on both blocks, so the
    # balancing normalisation cannot raise the penalty
    data = _data("identity", n=40, p=12, missing=0.3, noise=0.3)
    model = NonlinearFactorModel(
        link="identity", fit_prior=True, tol=1e-10, random_state=0
    ).fit(data.data)
    curve = model.loss_curve_
    assert len(curve) > 3
    assert (np.diff(curve) <= 1e-9 * curve[1:]).all()


# -------------------------------------------------------------- recovery


@pytest.mark.parametrize("link", ["tanh", "exp"])
def test_recovers_the_signal_better_than_linear_als(fitted, link):
    data, model = fitted(link)
    missing = ~data.mask
    ours = _rmse(model.inverse_transform(model.embedding_), data.signal, missing)
    linear = _rmse(als_complete(data.data, 2), data.signal, missing)
    # "Clearly below": at most half the linear error. Rank-2 ALS is biased
    # (f(Z) is not rank 2 plus intercepts), a gap noise does not close; a
    # model that learned no link would tie with it, not halve it.
    assert ours < 0.5 * linear


# --------------------------------------------------------------- fold-in


def test_transform_of_training_rows_reproduces_the_embedding(fitted):
    data, model = fitted("tanh")
    k = 25
    folded = model.transform(data.data[:k])
    # fold-in stops at a relative loss change of 1e-10 from another start
    # (the link inverse), so the rows agree to ~sqrt(1e-10) = 1e-5 relative
    scale = np.abs(model.embedding_).max()
    np.testing.assert_allclose(folded, model.embedding_[:k], atol=1e-4 * scale)
    # transform is row-wise: a row's factors do not depend on the batch
    np.testing.assert_allclose(
        model.transform(data.data[5:9]), folded[5:9], rtol=1e-10, atol=1e-12
    )


def test_fitted_attributes_are_consistent(fitted):
    data, model = fitted("tanh")
    n, p = data.data.shape
    assert model.embedding_.shape == (n, 2) and model.components_.shape == (2, p)
    assert model.intercepts_.shape == (p,) and model.n_features_in_ == p
    sigma = model.singular_values_
    assert sigma.shape == (2,) and (sigma > 0).all() and (np.diff(sigma) < 0).all()
    # V'V is diagonal, proportional to sigma (the last normalisation, then
    # one scalar rescale of the index)
    G = model.components_ @ model.components_.T
    np.testing.assert_allclose(G - np.diag(np.diag(G)), 0.0, atol=1e-10 * G.max())
    ratio = np.diag(G) / sigma
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-10)
    # the completed matrix is the link at U V' + w; predictions use the
    # tabulated link (cubic Hermite, nodes a tenth of the narrowest bandwidth
    # apart), within about 1e-9 of the exact formula link_ evaluates
    index = model.embedding_ @ model.components_ + model.intercepts_
    completed = model.inverse_transform(model.embedding_)
    np.testing.assert_allclose(completed, model.link_(index), rtol=1e-7, atol=1e-8)
    observed = data.mask
    np.testing.assert_allclose(
        model.reconstruction_err_, _rmse(completed, data.data, observed), rtol=1e-10
    )
    np.testing.assert_allclose(
        model.index_range_, [index[observed].min(), index[observed].max()], rtol=1e-10
    )
    assert model.loss_curve_.shape == (model.n_iter_ + 1,)
    assert model.get_feature_names_out().tolist() == [
        "nonlinearfactormodel0",
        "nonlinearfactormodel1",
    ]


def test_identity_link_balances_exactly():
    data = _data("identity", missing=0.3)
    model = NonlinearFactorModel(n_components=2, link="identity", random_state=0)
    model.fit(data.data)
    # no index rescale with a fixed link: V'V = diag(sigma) itself
    np.testing.assert_allclose(
        model.components_ @ model.components_.T,
        np.diag(model.singular_values_),
        rtol=1e-10,
        atol=1e-10 * model.singular_values_[0],
    )


def test_no_intercept_means_no_per_column_intercepts():
    data = _data("tanh")
    model = NonlinearFactorModel(n_components=2, fit_intercept=False, random_state=0)
    model.fit(data.data)
    # the index may be shifted as a whole (absorbed by the link), never per column
    assert np.ptp(model.intercepts_) == 0.0


# ------------------------------------------------------------- bad input


def test_auto_link_keeps_the_learned_link_on_a_distorted_matrix():
    data = _data("tanh")
    auto = NonlinearFactorModel(n_components=2, link="auto", random_state=0)
    auto.fit(data.data)
    assert auto.selected_link_ == "rkhs_monotone"
    scores = auto.link_scores_
    assert scores["identity"] > 2 * scores["rkhs_monotone"]
    # the final fit is the learned link's own fit on all entries
    learned = NonlinearFactorModel(n_components=2, random_state=0).fit(data.data)
    np.testing.assert_allclose(auto.embedding_, learned.embedding_)
    assert isinstance(auto.link_, MonotoneLink)


def test_auto_link_scores_are_the_held_out_errors():
    X = _data("sigmoid", n=60, p=30).data
    auto = NonlinearFactorModel(n_components=2, link="auto", random_state=3)
    auto.fit(X)
    hidden = hide_entries(~np.isnan(X), 0.1, check_random_state(3))
    train = np.where(hidden, np.nan, X)
    expected = {}
    for link in ("rkhs_monotone", "identity"):
        model = NonlinearFactorModel(n_components=2, link=link, random_state=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted = model.fit(train).inverse_transform(model.embedding_)
        expected[link] = np.mean((fitted[hidden] - X[hidden]) ** 2)
    assert auto.link_scores_ == pytest.approx(expected, rel=1e-10)
    assert auto.selected_link_ == min(expected, key=expected.get)


def test_auto_link_on_too_few_entries_keeps_the_learned_link():
    # A rank-one matrix behind tanh, so the fit converges (pure noise made
    # it stop at max_iter with a ConvergenceWarning).
    rng = np.random.default_rng(0)
    X = np.tanh(rng.normal(size=(8, 1)) @ rng.normal(size=(1, 5)))
    X += 0.01 * rng.normal(size=X.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = NonlinearFactorModel(n_components=1, link="auto", random_state=0)
        model.fit(X)
    assert model.selected_link_ == "rkhs_monotone"
    assert model.link_scores_ is None
    fixed = NonlinearFactorModel(n_components=1, link="identity").fit(X)
    assert fixed.selected_link_ == "identity"
    assert fixed.link_scores_ is None


def test_fit_rejects_empty_rows_and_columns():
    X = _data("tanh", n=30, p=20).data
    bad = X.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\).*row indices 3\b"):
        NonlinearFactorModel(n_components=2).fit(bad)
    bad = X.copy()
    bad[:, [5, 11]] = np.nan
    with pytest.raises(ValueError, match=r"2 column\(s\).*column indices 5, 11\b"):
        NonlinearFactorModel(n_components=2).fit(bad)


def test_fit_rejects_infinity_and_too_many_components():
    X = _data("tanh", n=30, p=20).data
    bad = X.copy()
    bad[0, np.flatnonzero(~np.isnan(bad[0]))[0]] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        NonlinearFactorModel(n_components=2).fit(bad)
    with pytest.raises(ValueError, match=r"n_components=21 .* min\(n_samples"):
        NonlinearFactorModel(n_components=21).fit(X)


def test_transform_of_an_empty_row_warns_and_gives_zero_factors(fitted):
    data, model = fitted("tanh")
    X = data.data[:4].copy()
    X[2] = np.nan
    with pytest.warns(UserWarning, match="1 row"):
        U = model.transform(X)
    np.testing.assert_array_equal(U[2], 0.0)
    assert (np.abs(U[[0, 1, 3]]).max(1) > 0).all()
    with pytest.warns(UserWarning, match="1 row"):
        completed = model.complete(X)
    # tabulated link in predictions: see test above
    np.testing.assert_allclose(
        completed[2], model.link_(model.intercepts_), rtol=1e-7, atol=1e-8
    )


def test_inverse_transform_checks_the_number_of_components(fitted):
    _, model = fitted("tanh")
    with pytest.raises(ValueError, match="expects 2 columns"):
        model.inverse_transform(np.zeros((3, 3)))


# ----------------------------------------------------- score and search


def test_score_is_deterministic(fitted):
    data, model = fitted("tanh")
    again = NonlinearFactorModel(n_components=2, random_state=0).fit(data.data)
    score = model.score(data.data)
    assert score < 0
    assert score == model.score(data.data) == again.score(data.data)
    # the hidden entries come from random_state: another seed hides others
    again.set_params(random_state=1)
    assert again.score(data.data) != score


@pytest.mark.slow
def test_grid_search_picks_the_true_rank():
    # 100 x 70 rather than 150 x 100: 12 fits plus a refit, and the rank-1
    # fits are slow (their fold-in converges linearly); seeds 0-2 of this
    # design and of 150 x 100 all pick rank 2
    data = _data("tanh", n=100, p=70, missing=0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(
            NonlinearFactorModel(random_state=0), {"n_components": [1, 2, 3, 4]}, cv=3
        ).fit(data.data)
    assert search.best_params_ == {"n_components": 2}


# -------------------------------------------------------- completion


def test_complete_keeps_observed_entries_and_fills_the_rest(fitted):
    data, model = fitted("tanh")
    completed = model.complete(data.data)
    assert not np.isnan(completed).any()
    np.testing.assert_array_equal(completed[data.mask], data.data[data.mask])
    # the filled entries are the model's predictions for the folded-in rows
    predicted = model.inverse_transform(model.transform(data.data))
    np.testing.assert_array_equal(completed[~data.mask], predicted[~data.mask])


def test_known_link_callable():
    data = _data("tanh")
    model = NonlinearFactorModel(n_components=2, link=LINKS["tanh"], random_state=0)
    model.fit(data.data)
    assert isinstance(model.link_, KnownLink) and model.link_.func is LINKS["tanh"]
    z = np.linspace(-1.2, 1.2, 41)  # tanh(2z) has slope >= 0.07 here
    np.testing.assert_allclose(model.link_.inverse(model.link_(z)), z, atol=1e-9)
    # the oracle denoises: below the noise sd on the missing entries
    missing = ~data.mask
    noise_sd = 0.1 * data.signal.std()
    assert _rmse(model.complete(data.data), data.signal, missing) < noise_sd


# ------------------------------------------------------------ iterations


def test_max_iter_one_warns_and_counts_one_iteration():
    data = _data("tanh", n=60, p=40)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        model = NonlinearFactorModel(n_components=2, max_iter=1, random_state=0)
        model.fit(data.data)
    assert model.n_iter_ == 1 and len(model.loss_curve_) == 2


def test_max_iter_zero_fits_without_warning():
    data = _data("tanh", n=60, p=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = NonlinearFactorModel(n_components=2, max_iter=0, random_state=0)
        model.fit(data.data)
    assert model.n_iter_ == 0 and len(model.loss_curve_) == 1
    assert np.isfinite(model.complete(data.data)).all()


def test_homotopy_without_iterations_is_the_rank_spectral_start():
    data = _data("exp", n=60, p=40)
    fits = [
        NonlinearFactorModel(n_components=2, init=init, max_iter=0, random_state=0)
        .fit(data.data)
        .complete(data.data)
        for init in ("homotopy", "rank_spectral")
    ]
    np.testing.assert_array_equal(fits[0], fits[1])


def test_objective_never_rises_with_too_small_a_rank():
    data = _data("tanh", n=60, p=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # The paper's objective: with fit_prior a learned link's rescaling
        # may raise it a little (documented), so the guarantee is without it.
        model = NonlinearFactorModel(
            n_components=1, fit_prior=False, max_iter=30, random_state=0
        ).fit(data.data)
    curve = model.loss_curve_
    # 1e-6 relative: far above the tabulated link's rounding-level changes
    # under the prediction-preserving normalisation
    assert (np.diff(curve) <= 1e-6 * curve[1:]).all()


def test_gradient_solver_lowers_the_objective():
    data = _data("tanh")
    # a first-order solver: 30 iterations are far from converged (warns)
    with pytest.warns(ConvergenceWarning):
        model = NonlinearFactorModel(
            n_components=2, factor_solver="gradient", max_iter=30, random_state=0
        ).fit(data.data)
    curve = model.loss_curve_
    assert np.isfinite(curve).all() and len(curve) == 31
    assert curve[-1] < curve[0]
    missing = ~data.mask
    completed = model.complete(data.data)
    assert _rmse(completed, data.signal, missing) < _rmse(
        np.where(data.mask, data.data, np.nanmean(data.data, 0)), data.signal, missing
    )


# ----------------------------------------------------------------- CUDA


@pytest.mark.cuda
def test_cpu_and_cuda_agree():
    data = _data("tanh")
    # a fixed number of iterations (tol=0): a stop one iteration apart on
    # the two devices would differ by a whole step, not by rounding
    params = {"n_components": 2, "max_iter": 25, "tol": 0.0, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu = NonlinearFactorModel(**params).fit(data.data)
        gpu = NonlinearFactorModel(device="cuda", **params).fit(data.data)
    assert gpu.device_.type == "cuda"
    assert find_tensors(gpu) == []
    np.testing.assert_allclose(
        gpu.inverse_transform(gpu.embedding_),
        cpu.inverse_transform(cpu.embedding_),
        rtol=1e-6,
        atol=1e-8,
    )
    np.testing.assert_allclose(
        gpu.complete(data.data), cpu.complete(data.data), rtol=1e-6, atol=1e-8
    )
