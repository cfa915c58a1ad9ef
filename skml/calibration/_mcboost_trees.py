"""Histogram regression trees for the tree auditor: arrays in, arrays out.

The tree auditor fits one tree per boosting round to the Newton working
response, over the binned features, group indicators and the current score
(MCGrad's prediction-as-feature: the tree's splits on the score are adaptive
level sets). Features are binned once per fit into a uint8 matrix whose last
column is rewritten with the score's bins every round.

The trees are grown by scikit-learn's histogram tree grower (the Cython,
OpenMP engine of ``HistGradientBoostingRegressor``: leaf-wise growth,
histogram subtraction), called directly on our bins so that binning happens
once per fit and not once per round. It is a private scikit-learn API;
:func:`check_grower` fails loudly if its signature moves. Trees run on the
CPU whatever the estimator's ``device``, on :func:`tree_threads` threads.
"""

import inspect

import numpy as np
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.grower import TreeGrower
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

from ..utils import threads_for

_GROWER_ARGS = {
    "X_binned",
    "gradients",
    "hessians",
    "max_leaf_nodes",
    "max_depth",
    "min_samples_leaf",
    "n_bins",
    "n_bins_non_missing",
    "has_missing_values",
    "l2_regularization",
    "shrinkage",
    "n_threads",
}


def check_grower():
    """Raise ImportError if scikit-learn's tree grower lost an argument
    (checked once per process)."""
    if _grower_checked:
        return
    params = set(inspect.signature(TreeGrower.__init__).parameters)
    missing = _GROWER_ARGS - params
    if missing:  # pragma: no cover - depends on the scikit-learn version
        raise ImportError(
            "The tree auditor needs scikit-learn's histogram TreeGrower with "
            f"the arguments {sorted(_GROWER_ARGS)}; this scikit-learn lacks "
            f"{sorted(missing)}. Use auditor='ridge' or another scikit-learn."
        )
    _grower_checked.append(True)


_grower_checked = []


def tree_threads():
    """Threads of scikit-learn's OpenMP pool for growing and applying trees.

    The thread policy's count for a large operation (the free cores of the
    budget, see :mod:`skml.utils._threads`), while the estimator's own torch
    work on row vectors stays on one thread: the grower's histograms are
    parallel over columns, and with torch on one thread the two pools do not
    spin on the same cores.
    """
    return threads_for(None)


def bin_edges(X, max_bins, max_rows=200_000, seed=0, rows=None):
    """Per-column bin edges: at most ``max_bins - 1`` thresholds each.

    A column with at most ``max_bins`` distinct values gets the midpoints
    between them; otherwise the edges are midpoints between quantiles, from at
    most ``max_rows`` rows (as scikit-learn subsamples for its bins).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    max_bins : int
        At most 255.
    max_rows : int
    seed : int
    rows : ndarray of int, default=None
        The rows to bin from (all by default); only the (sub)sample is
        copied, never the whole of X.

    Returns
    -------
    list of ndarray, one per column, sorted thresholds
    """
    if rows is None:
        rows = np.arange(X.shape[0])
    if len(rows) > max_rows:
        rows = rows[
            np.random.RandomState(seed).choice(len(rows), max_rows, replace=False)
        ]
    X = X[rows]
    edges = []
    for j in range(X.shape[1]):
        values = np.unique(X[:, j])
        if len(values) > max_bins:
            q = np.quantile(X[:, j], np.linspace(0, 1, 2 * max_bins + 1)[1:-1])
            # Odd-indexed quantiles are the cut points; their even neighbours
            # give midpoints that never sit on a data value of a tie run.
            values = np.unique(q[1::2])
        edges.append(0.5 * (values[:-1] + values[1:]))
    return edges


def bin_codes(X, edges, out=None):
    """Codes of X under ``edges``: ``code <= b`` exactly when ``x <= edges[b]``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    edges : list of ndarray
    out : ndarray of shape (n, >= d), dtype uint8, optional
        Written in place (its first d columns).

    Returns
    -------
    ndarray of shape (n, d) or ``out``, dtype uint8
    """
    n, d = X.shape
    if out is None:
        out = np.empty((n, d), dtype=np.uint8, order="F")
    for j in range(d):
        out[:, j] = np.searchsorted(edges[j], X[:, j], side="left")
    return out


def score_edges(F, max_bins, max_rows=100_000):
    """Bin edges of the score column: midpoints between order statistics of
    F at ``max_bins`` equal-count steps (from at most ``max_rows`` rows)."""
    n = F.shape[0]
    if n > max_rows:
        F = F[:: -(-n // max_rows)]
        n = F.shape[0]
    if n < 2:
        return np.empty(0)
    Fs = np.sort(F)
    pos = np.linspace(0, n - 1, max_bins + 1)[1:-1].astype(np.intp)
    return np.unique(0.5 * (Fs[pos] + Fs[np.minimum(pos + 1, n - 1)]))


def grow_tree(
    codes,
    g,
    h,
    n_bins_non_missing,
    *,
    max_leaf_nodes,
    max_depth,
    min_samples_leaf,
    l2,
    max_bins,
    n_threads,
):
    """Grow one tree on the binned columns; leaf value ``sum g / (sum h + l2)``.

    Parameters
    ----------
    codes : ndarray of shape (n, d), uint8, Fortran order
    g, h : ndarray of shape (n,)
        Negative gradient and hessian (Newton weight) of each row.
    n_bins_non_missing : ndarray of shape (d,)
        Bins used by each column.
    max_leaf_nodes, max_depth, min_samples_leaf : int or None
    l2 : float
    max_bins : int
    n_threads : int

    Returns
    -------
    grower : TreeGrower
        The grown tree; ``grower.finalized_leaves`` hold each leaf's rows
        (``sample_indices``) and ``value``.
    """
    d = codes.shape[1]
    hessians = np.ascontiguousarray(h, dtype=np.float32)
    if len(hessians) and np.all(hessians == 1.0):
        # Unit Newton weights (squared loss, unit sample weights): the grower
        # then counts rows instead of summing hessians in every histogram, as
        # scikit-learn's squared-error boosting does. Its constant-hessian
        # path takes the hessian to be 1, so no other constant goes there.
        hessians = hessians[:1]
    grower = TreeGrower(
        X_binned=codes,
        gradients=np.ascontiguousarray(-g, dtype=np.float32),
        hessians=hessians,
        max_leaf_nodes=max_leaf_nodes,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        n_bins=max_bins + 1,
        n_bins_non_missing=np.asarray(n_bins_non_missing, dtype=np.uint32),
        has_missing_values=np.zeros(d, dtype=bool),
        l2_regularization=l2,
        shrinkage=1.0,
        n_threads=n_threads,
    )
    grower.grow()
    return grower


def make_predictor(grower, thresholds):
    """``grower.make_predictor(thresholds)`` for trees without categorical
    splits: the same nodes, in the same (depth-first) order, filled a
    column at a time rather than a node at a time."""
    if grower.n_categorical_splits:  # pragma: no cover - we split no categories
        return grower.make_predictor(binning_thresholds=thresholds)
    order, stack = [], [grower.root]
    while stack:
        node = stack.pop()
        order.append(node)
        if not node.is_leaf:
            stack.append(node.right_child)
            stack.append(node.left_child)
    index = {id(node): k for k, node in enumerate(order)}
    nodes = np.zeros(len(order), dtype=PREDICTOR_RECORD_DTYPE)
    nodes["value"] = [node.value for node in order]
    nodes["count"] = [node.n_samples for node in order]
    nodes["depth"] = [node.depth for node in order]
    splits = [k for k, node in enumerate(order) if not node.is_leaf]
    nodes["is_leaf"] = [node.is_leaf for node in order]
    nodes["gain"] = [
        -1 if node.split_info is None else node.split_info.gain for node in order
    ]
    if splits:
        info = [order[k].split_info for k in splits]
        feature = np.array([i.feature_idx for i in info], dtype=np.intp)
        bins = np.array([i.bin_idx for i in info], dtype=np.intp)
        nodes["feature_idx"][splits] = feature
        nodes["bin_threshold"][splits] = bins
        nodes["missing_go_to_left"][splits] = [i.missing_go_to_left for i in info]
        nodes["is_categorical"][splits] = [i.is_categorical for i in info]
        # A split on the last non-missing bin sends only NaNs right.
        last = bins == grower.n_bins_non_missing[feature] - 1
        nodes["num_threshold"][splits] = [
            np.inf if at_last else thresholds[f][b]
            for f, b, at_last in zip(feature, bins, last)
        ]
        nodes["left"][splits] = [index[id(order[k].left_child)] for k in splits]
        nodes["right"][splits] = [index[id(order[k].right_child)] for k in splits]
    bitsets = np.zeros((0, 8), dtype=np.uint32)
    return TreePredictor(nodes, bitsets, bitsets.copy())


def leaf_rows(grower, n):
    """The leaf index of each training row, and the leaf values."""
    leaves = grower.finalized_leaves
    leaf = np.empty(n, dtype=np.intp)
    # One scatter for all leaves: their row sets partition the rows.
    leaf[np.concatenate([node.sample_indices for node in leaves])] = np.repeat(
        np.arange(len(leaves)), [node.n_samples for node in leaves]
    )
    return leaf, np.array([node.value for node in leaves], dtype=np.float64)


def predict_tree(predictor, codes, n_threads):
    """Leaf values of a fitted tree for binned rows.

    Parameters
    ----------
    predictor : TreePredictor
    codes : ndarray of shape (n, d), uint8
    n_threads : int

    Returns
    -------
    ndarray of shape (n,)
    """
    if not predictor.nodes.flags.writeable:
        # Unpickled from a read-only memory map: the Cython predictor needs
        # writable buffers.
        predictor = TreePredictor(
            predictor.nodes.copy(),
            predictor.binned_left_cat_bitsets.copy(),
            predictor.raw_left_cat_bitsets.copy(),
        )
    # No missing values are binned: the missing bin index is out of reach.
    return predictor.predict_binned(codes, 255, n_threads)
