"""The histogram-tree kernels of the tree auditor."""

import numpy as np
import pytest
import torch
from sklearn.tree import DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from skml.calibration._losses import leaf_quantiles
from skml.calibration._mcboost_trees import (
    bin_codes,
    bin_edges,
    check_grower,
    grow_tree,
    leaf_rows,
    make_predictor,
    predict_tree,
    score_edges,
    tree_threads,
)


def _grow(X, g, h=None, max_bins=255, **params):
    edges = bin_edges(X, max_bins)
    codes = bin_codes(X, edges)
    h = np.ones(len(g)) if h is None else h
    kw = {"max_leaf_nodes": 31, "max_depth": None, "min_samples_leaf": 1, "l2": 0.0}
    kw.update(params)
    grower = grow_tree(
        codes,
        g,
        h,
        [len(e) + 1 for e in edges],
        max_bins=max_bins,
        n_threads=1,
        **kw,
    )
    return grower, codes, edges


def test_grower_has_the_arguments_we_pass():
    check_grower()


def test_codes_order_rows_like_the_edges():
    rng = np.random.RandomState(0)
    X = np.column_stack([rng.standard_normal(500), rng.randint(0, 3, 500)])
    edges = bin_edges(X, 16)
    codes = bin_codes(X, edges)
    assert codes.dtype == np.uint8
    # The three-valued column keeps its values apart.
    assert len(edges[1]) == 2
    for j in range(2):
        for b in range(len(edges[j])):
            # code <= b exactly when x <= edges[b]
            np.testing.assert_array_equal(codes[:, j] <= b, X[:, j] <= edges[j][b])


def test_depth_one_tree_is_the_best_stump():
    """On distinct values with no penalty, the stump equals scikit-learn's."""
    rng = np.random.RandomState(1)
    X = rng.standard_normal((200, 3))
    y = np.where(X[:, 1] > 0.3, 2.0, -1.0) + 0.1 * rng.standard_normal(200)
    grower, codes, edges = _grow(X, y, max_leaf_nodes=2)
    leaf, values = leaf_rows(grower, 200)
    ref = DecisionTreeRegressor(max_depth=1).fit(X, y)
    np.testing.assert_allclose(values[leaf], ref.predict(X), atol=1e-5)


def test_tree_recovers_an_interaction_cell_and_replays_it():
    rng = np.random.RandomState(2)
    X = rng.standard_normal((4000, 4))
    cell = (X[:, 0] > 0.5) & (X[:, 2] > 0.5)
    y = 3.0 * cell + 0.1 * rng.standard_normal(4000)
    grower, codes, edges = _grow(X, y, max_leaf_nodes=4, min_samples_leaf=20)
    leaf, values = leaf_rows(grower, 4000)
    assert np.mean((values[leaf] - 3.0 * cell) ** 2) < 0.01
    predictor = grower.make_predictor(binning_thresholds=edges)
    np.testing.assert_allclose(predict_tree(predictor, codes, 1), values[leaf])
    # New rows: the binned path agrees with walking the raw thresholds.
    X_new = rng.standard_normal((500, 4))
    nodes = predictor.nodes
    walked = []
    for x in X_new:
        k = 0
        while not nodes["is_leaf"][k]:
            go_left = x[nodes["feature_idx"][k]] <= nodes["num_threshold"][k]
            k = nodes["left"][k] if go_left else nodes["right"][k]
        walked.append(nodes["value"][k])
    np.testing.assert_allclose(
        predict_tree(predictor, bin_codes(X_new, edges), 1), walked
    )


def test_leaf_values_are_penalised_newton_steps_and_respect_min_leaf():
    rng = np.random.RandomState(5)
    X = rng.standard_normal((300, 2))
    g = rng.standard_normal(300)
    h = rng.uniform(0.5, 2.0, 300)
    grower, _, _ = _grow(X, g, h, max_leaf_nodes=4, min_samples_leaf=30, l2=3.0)
    leaf, values = leaf_rows(grower, 300)
    for k in range(len(values)):
        rows = leaf == k
        assert rows.sum() >= 30
        expected = g[rows].sum() / (h[rows].sum() + 3.0)
        assert values[k] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("value", [1.0, 2.0])
def test_unit_hessian_is_counted_by_the_grower(value):
    # Unit Newton weights go to the grower as one value (it counts rows
    # instead of summing hessians); its constant path assumes 1, so another
    # constant keeps the full array. Either way the leaves are the penalised
    # Newton steps.
    rng = np.random.RandomState(6)
    X = rng.standard_normal((400, 3))
    g = rng.standard_normal(400) + (X[:, 0] > 0.3)
    grower, _, _ = _grow(X, g, np.full(400, value), max_leaf_nodes=8, l2=1.0)
    assert grower.histogram_builder.hessians_are_constant == (value == 1.0)
    leaf, values = leaf_rows(grower, 400)
    for k in range(len(values)):
        rows = leaf == k
        expected = g[rows].sum() / (value * rows.sum() + 1.0)
        assert values[k] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("max_leaf_nodes", [2, 31])
def test_predictor_is_scikit_learns_and_leaves_cover_the_rows(max_leaf_nodes):
    # Our column-at-a-time predictor must hold the very nodes of
    # scikit-learn's node-at-a-time one (same order, thresholds, gains),
    # and the leaves' rows must partition the rows.
    rng = np.random.RandomState(7)
    X = rng.standard_normal((600, 4))
    X[:, 1] = rng.randint(0, 2, 600)
    X[:, 2] = rng.randint(0, 3, 600)
    g = np.sin(3 * X[:, 0]) + X[:, 1] - X[:, 2] + rng.standard_normal(600)
    grower, codes, edges = _grow(X, g, max_leaf_nodes=max_leaf_nodes)
    ours = make_predictor(grower, edges)
    theirs = grower.make_predictor(binning_thresholds=edges)
    assert ours.nodes.dtype == theirs.nodes.dtype
    assert ours.nodes.tobytes() == theirs.nodes.tobytes()
    leaf, values = leaf_rows(grower, 600)
    np.testing.assert_array_equal(predict_tree(ours, codes, 1), values[leaf])
    for k, node in enumerate(grower.finalized_leaves):
        rows = np.sort(node.sample_indices)
        np.testing.assert_array_equal(np.flatnonzero(leaf == k), rows)


def test_score_edges_split_counts_evenly():
    F = np.random.RandomState(6).standard_normal(10_000)
    edges = score_edges(F, 10)
    counts = np.bincount(np.searchsorted(edges, F), minlength=10)
    assert len(edges) == 9
    assert counts.min() >= 990 and counts.max() <= 1010


def test_leaf_quantiles_match_numpy_per_leaf():
    rng = np.random.RandomState(7)
    r = torch.as_tensor(rng.standard_normal(1000))
    w = torch.ones(1000, dtype=torch.float64)
    leaf = torch.as_tensor(rng.randint(0, 4, 1000))
    got = leaf_quantiles(r, w, leaf, 5, 0.9)
    for k in range(4):
        values = np.sort(r[leaf == k].numpy())
        # inverted CDF: the first value whose cumulative share reaches 0.9
        idx = int(np.ceil(0.9 * len(values))) - 1
        assert float(got[k]) == pytest.approx(values[idx])
    assert float(got[4]) == 0.0


def test_tree_threads_follow_the_thread_policy(monkeypatch):
    # The trees' OpenMP pool gets the policy's count for a large operation,
    # so a pinned count or a worker's share reaches it.
    monkeypatch.setenv("SKML_NUM_THREADS", "3")
    assert tree_threads() == 3
    monkeypatch.delenv("SKML_NUM_THREADS")
    with threadpool_limits(limits=1):
        assert tree_threads() == 1
