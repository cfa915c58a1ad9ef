"""The nonlinear factor benchmark: its peers, and its plumbing on a stand-in."""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Bunch

from skml import benchmarks
from skml.benchmarks import nonlinear_factor as nf
from skml.benchmarks._common import data_rows
from skml.datasets import make_nonlinear_factor_matrix
from skml.utils import hide_entries


def _low_rank(n=40, p=30, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ rng.normal(size=(rank, p))


def _truncated_svd(X, rank):
    mu = X.mean(axis=0)
    U, s, Vt = np.linalg.svd(X - mu, full_matrices=False)
    return (U[:, :rank] * s[:rank]) @ Vt[:rank] + mu


# ------------------------------------------------------------------- peers
def test_als_reproduces_complete_low_rank_matrix():
    X = _low_rank() + np.linspace(-2, 3, 30)  # rank 2 plus column means
    Z = nf.als_complete(X, 2)
    np.testing.assert_allclose(Z, X, atol=1e-6)
    np.testing.assert_allclose(Z, _truncated_svd(X, 2), atol=1e-6)


def test_als_equals_truncated_svd_on_complete_noisy_matrix():
    rng = np.random.default_rng(1)
    X = _low_rank(seed=1) + 1.0 + 0.01 * rng.normal(size=(40, 30))
    np.testing.assert_allclose(nf.als_complete(X, 2), _truncated_svd(X, 2), atol=1e-6)


def test_als_rank_is_checked():
    with pytest.raises(ValueError, match="rank must be in"):
        nf.als_complete(np.ones((5, 4)), 5)


def test_soft_impute_with_tiny_shrinkage_returns_complete_data():
    X = _low_rank() + 0.1 * np.random.default_rng(2).normal(size=(40, 30))
    np.testing.assert_allclose(nf.soft_impute(X, 1e-9), X, atol=1e-6)


def test_soft_impute_shrinks_singular_values():
    X = _low_rank()
    s = np.linalg.svd(X - X.mean(), compute_uv=False)
    Z = nf.soft_impute(X, s[1] / 2)
    np.testing.assert_allclose(
        np.linalg.svd(Z - X.mean(), compute_uv=False)[:2], s[:2] - s[1] / 2, rtol=1e-6
    )


def test_peers_recover_rank_two_matrix_far_better_than_means():
    d = make_nonlinear_factor_matrix(
        120, 80, rank=2, link="identity", missing=0.3, noise=0.05, random_state=0
    )
    missing = ~d.mask
    means = np.where(d.mask, d.data, np.nanmean(d.data, axis=0))
    base = nf._rmse(means, d.signal, missing)
    Z, shrinkage = nf.soft_impute_cv(d.data)
    assert shrinkage > 0
    assert nf._rmse(Z, d.signal, missing) < 0.2 * base
    assert nf._rmse(nf.als_complete(d.data, 2), d.signal, missing) < 0.2 * base


# ------------------------------------------------------- the stand-in model
class _Identity:
    def __call__(self, z):
        return np.asarray(z, dtype=float)

    def derivative(self, z):
        return np.ones_like(np.asarray(z, dtype=float))

    def inverse(self, y):
        return np.asarray(y, dtype=float)


class StandIn(BaseEstimator):
    """NonlinearFactorModel's planned API on ALS (identity link)."""

    def __init__(
        self, n_components=3, link="rkhs_monotone", init="spectral",
        fold_in_prior=True, fit_prior=True, random_state=None, device="cpu",
    ):  # fmt: skip
        self.n_components = n_components
        self.fold_in_prior = fold_in_prior
        self.fit_prior = fit_prior
        self.link = link
        self.init = init
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        r = self.n_components
        W = nf.als_complete(X, r, max_iter=20)
        self.intercepts_ = W.mean(axis=0)
        U, s, Vt = np.linalg.svd(W - self.intercepts_, full_matrices=False)
        self.embedding_, self.components_ = U[:, :r] * s[:r], Vt[:r]
        self.link_ = _Identity()
        self.n_iter_ = 1
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        out = np.zeros((len(X), self.n_components))
        for i, x in enumerate(X):
            seen = ~np.isnan(x)
            out[i] = np.linalg.lstsq(
                self.components_[:, seen].T,
                x[seen] - self.intercepts_[seen],
                rcond=None,
            )[0]
        return out

    def inverse_transform(self, E):
        return self.link_(E @ self.components_ + self.intercepts_)

    def complete(self, X):
        X = np.asarray(X, dtype=float)
        return np.where(np.isnan(X), self.inverse_transform(self.transform(X)), X)

    def score(self, X, y=None):
        X = np.asarray(X, dtype=float)
        hidden = hide_entries(~np.isnan(X), 0.2, np.random.RandomState(0))
        pred = self.inverse_transform(self.transform(np.where(hidden, np.nan, X)))
        return -float(np.mean((pred - X)[hidden] ** 2))


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(nf, "_estimator", lambda: StandIn)
    return StandIn


SMALL = {"n_samples": 40, "n_features": 30, "rank": 2}


@pytest.fixture(scope="module")
def small_rows():
    """Every part at toy sizes on the stand-in, computed once."""
    rng = np.random.default_rng(0)
    panel = _low_rank(30, 20) + 3.0
    panel[rng.random(panel.shape) < 0.05] = np.nan
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        # IterativeImputer's ConvergenceWarning at max_iter=10
        warnings.simplefilter("ignore", ConvergenceWarning)
        mp.setattr(nf, "_estimator", lambda: StandIn)
        mp.setattr(nf, "load_fertility", lambda: Bunch(data=panel))
        # a table with its own units per column
        table = _low_rank(25, 8) * np.arange(1.0, 9.0) + np.arange(8.0)
        mp.setattr(nf, "_real_tables", lambda: {"toy": table})
        rows = nf.run_grid(
            links=("tanh", "identity"),
            missings=(0.5,),
            noises=(0.1,),
            seeds=(0, 1),
            **SMALL,
        )
        rows += nf.run_oracle_seeds(links=("tanh",), seeds=(3, 4), **SMALL)
        rows += nf.run_rows(seeds=(0,), **SMALL)
        rows += nf.run_rank(seeds=(0, 1), ranks=(1, 2, 3), **SMALL)
        rows += nf.run_fertility(seeds=(0,), cv_ranks=(1, 2))
        rows += nf.run_tables(seeds=(0, 1))
        rows += nf.run_scale(n=50, rank=2, missing=0.5)
    return rows


def test_is_discovered_with_its_parts():
    assert "nonlinear_factor" in benchmarks.available()
    module = benchmarks.load("nonlinear_factor")
    assert module.PARTS == (
        "grid", "noiseless", "oracle_seeds", "rows", "rank", "fertility", "tables",
        "scale",
    )  # fmt: skip
    assert "scale" in "\n".join(module.BENCHMARK.describe())


def test_grid_rows(small_rows):
    grid = [r for r in small_rows if r["part"] == "grid"]
    methods = {r["method"] for r in grid}
    assert methods == set(nf.SHORT)
    assert len(grid) == 2 * 2 * len(nf.SHORT)
    for r in grid:
        assert {"link", "missing", "noise", "seed", "rmse", "seconds"} <= set(r)
        assert np.isfinite(r["rmse"]) and r["seconds"] >= 0
    ours = [r for r in grid if r["method"] == nf.OURS]
    assert all(0 <= r["subspace_sin"] <= 1 for r in ours)
    # the stand-in's link is the identity: its fitted index is recovered
    # exactly, and the link error is that of a straight line against f*
    identity = [r for r in ours if r["link"] == "identity"]
    assert all(r["link_err"] < 0.5 and r["min_slope"] == 1 for r in identity)
    oracle = [r for r in grid if r["method"] == nf.ORACLE]
    assert all("link_err" not in r and "subspace_sin" in r for r in oracle)
    als = [r for r in grid if r["method"] == nf.ALS]
    assert all(r["best_rank"] in nf.ALS_RANKS for r in als)


def test_other_parts_rows(small_rows):
    rows = [r for r in small_rows if r["part"] == "rows"]
    assert {r["method"] for r in rows} == {
        nf.OURS, nf.ITER, nf.KNN, nf.MEAN, nf.SOFT_ALL_ROWS
    }  # fmt: skip
    assert all(r["n_test"] == 8 for r in rows)
    rank = [r for r in small_rows if r["part"] == "rank"]
    searches = [r for r in rank if r["method"] == nf.OURS_CV]
    assert len(searches) == 2 and len(rank) == 4
    for r in searches:
        assert r["chosen_rank"] in (1, 2, 3) and len(r["cv_scores"]) == 3
        assert r["correct"] == (r["chosen_rank"] == 2)
    fertility = [r for r in small_rows if r["part"] == "fertility"]
    assert {nf.OURS, nf.OURS_CV, nf.SOFT, nf.ALS} <= {r["method"] for r in fertility}
    assert all(np.isfinite(r["rmse"]) for r in fertility)
    tables = [r for r in small_rows if r["part"] == "tables"]
    assert {r["method"] for r in tables} >= {
        nf.OURS, nf.OURS_NO_FIT_PRIOR, nf.OURS_NO_PRIOR, nf.OURS_AUTO, nf.MEAN
    }  # fmt: skip
    assert all(r["shape"] == "25 x 8" and np.isfinite(r["rmse"]) for r in tables)
    # standardised: the rank-2 peers beat the column means by far
    (row,) = nf.tables_table(small_rows)
    assert row["table"] == "toy" and row["soft"] < 0.5 * row["mean"]
    assert np.isfinite(row["ours_no_fit_prior"]) and np.isfinite(row["ours_auto"])
    (scale,) = [r for r in small_rows if r["part"] == "scale"]
    assert scale["n"] == 50 and scale["n_iter"] == 1


def test_grid_table_ratios(small_rows):
    table = nf.grid_table(small_rows)
    assert [(t["link"], t["seeds"]) for t in table] == [("identity", 2), ("tanh", 2)]
    grid = [r for r in small_rows if r["part"] == "grid"]
    t = table[1]
    ratios = []
    for seed in (0, 1):
        cell = {
            r["method"]: r["rmse"]
            for r in grid
            if r["seed"] == seed and r["link"] == "tanh"
        }
        ratios.append(cell[nf.OURS] / min(cell[m] for m in nf.LINEAR))
    assert t["ratio_linear"] == pytest.approx(np.mean(ratios))
    assert t["best_linear"] in nf.LINEAR


def test_report_and_acceptance(small_rows):
    text = nf.report(small_rows)
    headings = (
        "== grid",
        "== oracle_seeds",
        "== rows",
        "== rank",
        "== fertility",
        "== tables",
        "== scale",
    )
    for heading in headings:
        assert heading in text
    lines = nf.acceptance(small_rows).splitlines()
    assert lines[0].startswith("(2) nonlinear links at missing 0.5, noise 0.1")
    assert any(line.strip().startswith("exp: not run") for line in lines)
    assert any("tanh: ours / best linear" in line for line in lines)
    assert any("identity: ours / best ALS" in line for line in lines)
    assert any("(3) rank selection" in line and "/2 seeds" in line for line in lines)
    assert any(
        "(4) scale" in line and "criterion is for 2000" in line for line in lines
    )


def test_oracle_seeds_rows(small_rows):
    rows = [r for r in small_rows if r["part"] == "oracle_seeds"]
    assert [(r["seed"], r["method"]) for r in rows] == [
        (3, nf.OURS), (3, nf.ORACLE), (4, nf.OURS), (4, nf.ORACLE)
    ]  # fmt: skip
    for r in rows:
        assert r["link"] == "tanh" and r["missing"] == nf.ACCEPT_MISSING
        assert 0 <= r["n_beyond"] <= r["n_missing"] and np.isfinite(r["rmse"])
    (line,) = nf.oracle_seeds_table(small_rows)
    assert line["link"] == "tanh" and line["seeds"] == 2


def _seed_pair(seed, ours, oracle, n_beyond=0, n_missing=100):
    key = {"part": "oracle_seeds", "link": "exp", "seed": seed}
    counts = {"n_missing": n_missing, "n_beyond": n_beyond}
    return [
        {**key, "method": nf.OURS, "rmse": ours[0], "rmse_in_range": ours[1], **counts},
        {**key, "method": nf.ORACLE, "rmse": oracle[0], "rmse_in_range": oracle[1],
         **counts},
    ]  # fmt: skip


def test_oracle_seeds_table_from_its_definitions():
    # seed 0: ratio 1.2 everywhere, no entry beyond the observed range;
    # seed 1: ratio 4, in range 1.5; 2 of 100 entries beyond
    rows = _seed_pair(0, (0.12, 0.12), (0.1, 0.1))
    rows += _seed_pair(1, (0.4, 0.15), (0.1, 0.1), n_beyond=2)
    rows += _seed_pair(2, (0.3, float("nan")), (0.1, float("nan")), n_beyond=100)
    (line,) = nf.oracle_seeds_table(rows)
    assert line["seeds"] == 3
    assert line["ratio_oracle"] == pytest.approx((1.2 + 4.0 + 3.0) / 3)
    assert line["median_ratio"] == pytest.approx(3.0)
    assert line["at_most_1.3"] == "1/3"
    # seed 2 has no entry in range, so only two in-range ratios count
    assert line["ratio_oracle_in_range"] == pytest.approx((1.2 + 1.5) / 2)
    assert line["seeds_beyond"] == 2
    share_1 = 1 - 0.15**2 * 98 / (0.4**2 * 100)
    assert line["beyond_share"] == pytest.approx((0.0 + share_1 + 1.0) / 3)


def _cell(link, ours, oracle, linear, seed=0, missing=0.5, noise=0.1):
    key = {"part": "grid", "link": link, "missing": missing, "noise": noise}
    rows = [{**key, "seed": seed, "method": nf.OURS, "rmse": ours, "seconds": 0.0}]
    rows.append({**key, "seed": seed, "method": nf.ORACLE, "rmse": oracle})
    for method, rmse in zip(nf.LINEAR, linear):
        rows.append({**key, "seed": seed, "method": method, "rmse": rmse})
    return rows


def test_acceptance_verdicts():
    rows = _cell("tanh", 0.1, 0.09, (0.3, 0.25, 0.4))  # 0.4 x linear, 1.11 x oracle
    rows += _cell("exp", 0.2, 0.1, (0.3, 0.3, 0.3))  # 2 x oracle
    rows += _cell("identity", 0.104, 0.1, (0.2, 0.1, 0.2))  # 1.04 x ALS
    rows += _cell("tanh", 9.0, 0.09, (0.3, 0.3, 0.3), noise=0.0)  # not checked
    rows += [
        {"part": "rank", "method": nf.OURS_CV, "true_rank": 3, "chosen_rank": c,
         "correct": c == 3, "rmse": 0.1}
        for c in (3, 3, 3, 2, 3)
    ]  # fmt: skip
    rows.append(
        {"part": "scale", "n": 2000, "p": 2000, "rank": 5, "missing": 0.9,
         "seconds": 130.0, "n_iter": 50, "rmse": 0.1}
    )  # fmt: skip
    lines = {
        line.split(":")[0].strip(): line for line in nf.acceptance(rows).split("\n")
    }
    assert "0.400" in lines["tanh"] and lines["tanh"].endswith("PASS")
    assert "2.000" in lines["exp"] and lines["exp"].endswith("FAIL")
    assert lines["sigmoid"].endswith("not run")
    assert "1.040" in lines["identity"] and lines["identity"].endswith("PASS")
    assert "4/5" in lines["(3) rank selection"]
    assert lines["(3) rank selection"].endswith("PASS")
    assert lines["(4) scale"].endswith("FAIL")


def test_demo_row(stand_in, monkeypatch):
    monkeypatch.setattr(nf, "DEMO", {**nf.DEMO, **SMALL})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the demo counts its warnings itself
        row = nf.demo()
    assert set(row) == {"estimator", "task", "metric", "skml", "baseline", "seconds"}
    assert row["estimator"] == "NonlinearFactorModel"
    assert "lower is better; baseline: " in row["metric"]
    for key in ("skml", "baseline", "seconds"):
        assert isinstance(row[key], float) and np.isfinite(row[key])


def test_benchmark_runs_through_the_framework(stand_in, monkeypatch):
    # the framework passes the quick configuration to a part and frames it
    calls = {}

    def fake_grid(**config):
        calls.update(config)
        return [{"part": "grid", "method": nf.OURS, "rmse": 1.0}]

    monkeypatch.setattr(nf, "run_grid", fake_grid)
    rows = nf.run(quick=True, parts=["grid"])
    assert calls == {**nf.QUICK_GRID, "device": "cpu"}
    assert data_rows(rows) == [{"part": "grid", "method": nf.OURS, "rmse": 1.0}]
