"""Out-of-core multicalibration boosting on dask collections.

The ridge and group auditors need only sums over rows: each bucket's
weighted Gram matrix and right-hand side, the loss, the cell sums of the
audit. So a fit on a dask array never collects the rows. Every round is one
pass over the row blocks that applies the previous round's step to the
block's score, which stays on the workers (8 bytes a row), and returns the
block's moments; the client sums them in block order and solves the ridge
problems, exactly as the in-memory fit does on the whole matrix. Quantiles
(the hinge knots, quantile buckets, the audit's level sets) are found
exactly by histogram passes (``skml.utils._dask.blockwise_weighted_quantile``),
so a fit on data that also fits in memory gives the in-memory fit's rounds.

The per-block work calls the estimator's own design and update methods on a
copy of it, so both paths share every numeric kernel.
"""

import copy
import warnings

import numpy as np
import torch
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator

from ..utils import resolve_device, to_numpy, to_tensor
from ..utils._dask import (
    RowBlocks,
    as_dask_array,
    blockwise_weighted_quantile,
    compute_blocks,
    import_dask,
    is_dask_collection,
    sum_blocks,
)
from ._losses import score_scale
from ._mcboost_kernels import (
    audit_from_sums,
    bucket_edges,
    bucket_moments,
    cell_audit_sums,
    weighted_gram,
)

_DT = torch.float64


# ----------------------------------------------------------------- blocks
def _device(model):
    """The device of the block's work, resolved where the block runs (a
    worker with a GPU uses it under ``device="auto"``)."""
    return resolve_device(model.device)


def _inputs(model, block, base=True):
    """Validated numpy inputs of one block: X, target, weights, G, F0 (None
    without ``base``)."""
    X = np.asarray(block["X"], dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D; a block has shape {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise ValueError("Input X contains NaN or infinity.")
    y = block["y"]
    if y is not None:
        y = np.asarray(y).reshape(-1)
        y = _target(model, y)
    w = block["w"]
    if w is None:
        w = np.ones(len(X))
    else:
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("sample_weight must be finite and non-negative.")
    G = model._groups_for(X, block["groups"])
    if not base:
        return X, y, w, G, None
    F0 = (
        model._loss_object()
        .link(torch.as_tensor(model._base_predictions(X, block["base"]), dtype=_DT))
        .numpy()
    )
    return X, y, w, G, F0


def _target(model, y):
    if model._is_classifier():
        unknown = ~np.isin(y, model.classes_)
        if unknown.any():
            raise ValueError(
                f"y holds labels {np.unique(y[unknown])[:5].tolist()} that are not "
                f"among the classes {model.classes_.tolist()} found in y."
            )
        return (y == model.classes_[1]).astype(np.float64)
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite values.")
    if model._loss_name() == "poisson" and np.any(y < 0):
        raise ValueError(
            'loss="poisson" needs non-negative targets y; got negative values.'
        )
    return y


def _holdout(split, index, n):
    """The block's validation rows, drawn from a per-block stream of the
    fit's seed (on the worker: the mask never travels)."""
    if split is None:
        return None
    seed, fraction = split
    return np.random.default_rng([seed, index]).random(n) < fraction


def _weights(block):
    w = block["w"]
    n = len(block["F"]) if w is None else len(w)
    return np.ones(n) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)


def _first_moments(model, constant, block):
    X, y, w, _, F0 = _inputs(model, block, base=not constant)
    return {
        "w": np.array(w.sum()),
        "wX": w @ X,
        "wy": np.array(w @ y),
        "wF0": np.array(0.0 if constant else w @ F0),
        "positive": np.array(float(np.any(w > 0))),
    }


def _second_moments(model, x_mean, y_mean, f_center, block):
    X, y, w, _, F0 = _inputs(model, block)
    dx = X - x_mean
    return {
        "vX": w @ (dx * dx),
        "vy": np.array(w @ (y - y_mean) ** 2),
        "vF0": np.array(w @ (F0 - f_center) ** 2),
    }


def _knot_values(model, block):
    X, _, w, _, F0 = _inputs(model, block)
    u = np.column_stack(
        [(X - model.x_mean_) / model.x_scale_, (F0 - model.f_center_) / model.f_scale_]
    )
    return u, w


def _score_values(split, block):
    """``(F[:, None], w)`` of the current score; with a holdout ``split`` the
    validation rows get weight 0."""
    w = _weights(block)
    val = _holdout(split, block["index"], len(w))
    if val is not None:
        w = np.where(val, 0.0, w)
    return np.asarray(block["F"])[:, None], w


def _neighbours(split, values, block):
    """Per value: the smallest score above it and the largest below it."""
    F, w = _score_values(split, block)
    F = F[w > 0, 0]
    above = np.array([F[F > v].min(initial=np.inf) for v in values])
    below = np.array([F[F < v].max(initial=-np.inf) for v in values])
    return above, below


def _round_block(model, plan, block):
    """Apply the previous step to the block's score; return the new score and
    the statistics of the next step (see :func:`_run_rounds`)."""
    dev = _device(model)
    loss = model._loss_object()
    X, y, w, G, F0_np = _inputs(model, block)
    val = _holdout(plan["split"], block["index"], len(X))
    Gt = None if G is None else to_tensor(G, dev, _DT)
    F0 = to_tensor(F0_np, dev, _DT)
    if plan["step"] is not None or plan["moments"]:
        data = model._data(X, G, Gt, F0, y, w)
    else:
        # An audit-only pass: no design matrix.
        from ._mcboost import _Data

        data = _Data(None, None, to_tensor(y, dev, _DT), to_tensor(w, dev, _DT), Gt, F0)
    F = F0 if block["F"] is None else to_tensor(np.asarray(block["F"]), dev, _DT)
    if plan["step"] is not None:
        F = F + model.learning_rate * model._ridge_update(plan["step"], data, F)
    p = loss.inverse(F)
    w_train = data.w if val is None else data.w * to_tensor(~val, dev, _DT)
    stats = {"train": _risk_sums(loss, data.y, p, w_train)}
    if val is not None:
        w_val = data.w * to_tensor(val, dev, _DT)
        stats["val"] = _risk_sums(loss, data.y, p, w_val)
    if plan["moments"]:
        level = F if model._rebucket() else F0
        edges = to_tensor(plan["edges"], dev, _DT)
        m = len(edges) + 1
        bucket = torch.bucketize(level, edges, right=True)
        h = loss.hessian(p)
        z = loss.gradient(data.y, p) / h
        mass = torch.zeros(m, dtype=_DT, device=dev).index_add_(0, bucket, w_train)
        Zd = model._dynamic_design(data, F)
        static = None
        if plan["static"]:
            # The static block is summed once (first round) on the client:
            # here only the blocks with the score's columns are computed.
            k = data.Zs.shape[1]
            static = data.Zs.new_zeros(k, k)
            if plan["first"]:
                stats["gram"] = to_numpy(weighted_gram(data.Zs, w_train))
        S2, Sz, zz = bucket_moments(data.Zs, Zd, z, w_train * h, bucket, m, static)
        stats.update(S2=to_numpy(S2), Sz=to_numpy(Sz), zz=to_numpy(zz))
        stats["mass"] = to_numpy(mass)
    if plan["audit"] is not None:
        edges = to_tensor(plan["audit"], dev, _DT)
        bucket = torch.bucketize(F, edges, right=True)
        r = loss.gradient(data.y, p)
        stats["cells"] = to_numpy(
            cell_audit_sums(r, data.w, data.G, bucket, len(edges) + 1)
        )
    return to_numpy(F), stats


def _risk_sums(loss, y, p, w):
    total = torch.sum(w)
    if float(total) <= 0:
        return np.zeros(2)
    return np.array([loss.risk(y, p, w) * float(total), float(total)])


# ----------------------------------------------------------------- driver
class _Blocks(RowBlocks):
    """Row blocks plus each block's index and current score."""

    def __init__(self, arrays):
        super().__init__(arrays)
        self.keys += ["F", "index"]
        self._delayed["F"] = [None] * len(self)
        self._delayed["index"] = list(range(len(self)))

    def reset_scores(self):
        self._delayed["F"] = [None] * len(self)


_SCORE_KEYS = ("w", "F", "index")


def _persist_round(model, blocks, plan):
    """One pass: the new scores stay on the workers, the statistics return."""
    dask, _ = import_dask()
    snap = dask.delayed(model, pure=True, traverse=False)
    plan = dask.delayed(plan, pure=True, traverse=False)
    task = dask.delayed(_round_block, pure=True)
    outs = dask.persist(
        *[task(snap, plan, blocks.block(i)) for i in range(len(blocks))]
    )
    blocks._delayed["F"] = [out[0] for out in outs]
    return sum_blocks(list(dask.compute(*[out[1] for out in outs])))


def _score_edges(model, blocks, strategy, split):
    """:func:`bucket_edges` of the current scores (training rows of a holdout
    ``split``), without collecting them: passes over the scores only."""
    m = 1 if strategy == "none" else model.n_buckets
    if m == 1:
        return np.empty(0)
    levels = np.arange(1, m) / m
    keys = _SCORE_KEYS
    if strategy == "uniform":
        lo, hi = blockwise_weighted_quantile(
            _score_values, (split,), blocks, [0.0, 1.0], keys=keys
        )[:, 0]
        pair = torch.as_tensor([lo, hi], dtype=_DT)
        return to_numpy(bucket_edges(pair, torch.ones(2, dtype=_DT), strategy, m))
    # Quantile edges sit half-way between the distinct score that reaches
    # each level and the next distinct one (the last but one at the top).
    values = blockwise_weighted_quantile(
        _score_values, (split,), blocks, levels, keys=keys
    )[:, 0]
    parts = compute_blocks(_neighbours, blocks, split, values, keys=keys)
    above = np.min([p[0] for p in parts], axis=0)
    below = np.max([p[1] for p in parts], axis=0)
    edges = []
    for v, up, down in zip(values, above, below):
        if np.isfinite(up):
            edges.append(0.5 * (v + up))
        elif np.isfinite(down):
            edges.append(0.5 * (down + v))
    return np.unique(edges) if edges else np.empty(0)


def _run_rounds(model, blocks, loss, n_rounds, split, patience=None):
    """Boost for up to ``n_rounds`` rounds from the base scores; with a
    holdout ``split`` also stop when the validation loss stopped improving
    (the in-memory rule). Returns the rounds and the loss curves."""
    strategy = model.bucket_strategy
    rebucket = model._rebucket()
    m = 1 if strategy == "none" else model.n_buckets
    # With fixed buckets (one, or those of the base score) the update of the
    # previous round and the moments of the next share one pass.
    fused = m == 1 or not rebucket
    static = m == 1 and loss.name == "squared"
    blocks.reset_scores()
    edges = np.empty(0)
    if not rebucket and m > 1:
        _persist_round(model, blocks, _plan(split))
        edges = _score_edges(model, blocks, strategy, split)
    gram = None
    rounds, train_loss, val_loss = [], [], []
    best, since_best = np.inf, 0
    step = None
    for t in range(n_rounds + 1):
        moments = fused and t < n_rounds
        plan = _plan(split, step=step, moments=moments, edges=edges)
        plan.update(static=static and moments, first=gram is None)
        stats = _persist_round(model, blocks, plan)
        train_loss.append(stats["train"][0] / stats["train"][1])
        stop = False
        if split is not None:
            vloss = stats["val"][0] / stats["val"][1]
            val_loss.append(vloss)
            if vloss < best - model.tol * abs(best) or t == 0:
                best, since_best = vloss, 0
            else:
                since_best += 1
                stop = since_best >= patience
        if t == n_rounds or stop:
            break
        if not fused:
            edges = _score_edges(model, blocks, strategy, split)
            stats = _persist_round(
                model, blocks, _plan(split, moments=True, edges=edges)
            )
        S2 = stats["S2"]
        if static:
            if gram is None:
                gram = stats["gram"]
            S2[0, : gram.shape[0], : gram.shape[0]] = gram
        step = model._ridge_step(
            torch.as_tensor(S2),
            torch.as_tensor(stats["Sz"]),
            torch.as_tensor(stats["zz"]),
            torch.as_tensor(stats["mass"]),
            torch.as_tensor(edges),
        )
        step = {key: to_numpy(value) for key, value in step.items()}
        rounds.append(step)
    return rounds, train_loss, val_loss


def _plan(split, step=None, moments=False, edges=None, audit=None):
    """What one pass over the blocks does (see :func:`_round_block`)."""
    return {
        "split": split,
        "step": step,
        "moments": moments,
        "edges": edges,
        "static": False,
        "first": False,
        "audit": audit,
    }


def fit_dask(model, X, y, sample_weight, groups, base_predictions):
    """Fit ``model`` (an MCBoost estimator) on dask collections; see the
    module docstring and the user guide's out-of-core section."""
    name = type(model).__name__
    if model.auditor not in ("ridge", "groups"):
        raise ValueError(
            f"{name} fits on dask collections with auditor='ridge' or "
            "'groups', whose audits are sums over rows; the tree auditors need "
            f"the rows in memory. Got auditor={model.auditor!r}."
        )
    rule = model.early_stopping
    if rule is True or rule == "auto":
        rule = "holdout"
    elif rule is False:
        rule = None
    if rule not in (None, "holdout"):
        raise ValueError(
            f"{name} on dask collections stops with early_stopping='holdout' "
            f"(or 'auto') or runs max_iter rounds (False); got {rule!r}."
        )
    _, da = import_dask()
    X, columns = as_dask_array(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}.")
    n, d = int(X.shape[0]), int(X.shape[1])
    if n < 2:
        raise ValueError(f"{name} needs at least 2 samples to audit, got {n}.")
    model.n_features_in_ = d
    if columns is not None:
        model.feature_names_in_ = np.asarray(columns, dtype=object)
    elif hasattr(model, "feature_names_in_"):
        del model.feature_names_in_
    y = _as_rows(y, "y", n, 1)
    if model._is_classifier():
        labels = np.unique(da.unique(y).compute() if is_dask_collection(y) else y)
        if len(labels) != 2:
            raise ValueError(
                f"{name} on dask collections is binary: y must hold 2 classes, "
                f"found {len(labels)}."
            )
        model.classes_ = labels
    model._fit_device()
    model._dtype = _DT
    loss = model._loss_object()
    _fit_groups(model, X, groups, da)
    if groups is not None:
        groups = _as_rows(groups, "groups", n, None)

    # The base model: precomputed predictions, a constant or a frozen model.
    model.estimator_ = None
    model.base_constant_ = None
    model._precomputed = base_predictions is not None
    base = None
    if base_predictions is not None:
        base = _as_rows(base_predictions, "base_predictions", n, 1)
    elif isinstance(model.estimator, FrozenEstimator):
        model.estimator_ = model.estimator
    elif model.estimator is not None:
        raise ValueError(
            f"{name} fits its base model in memory only. On dask collections "
            "pass base_predictions, a FrozenEstimator of an already fitted "
            "model, or estimator=None (a constant)."
        )
    constant = model.estimator is None and base is None
    weights = None
    if sample_weight is not None:
        weights = _as_rows(sample_weight, "sample_weight", n, 1)
    split = None
    if rule == "holdout":
        split = (_seed(model.random_state), model.validation_fraction)
    blocks = _Blocks({"X": X, "y": y, "w": weights, "groups": groups, "base": base})

    # Column moments, the constant base, the score's scale: two passes.
    first = sum_blocks(compute_blocks(_first_moments, blocks, model, constant))
    if not first["positive"] > 0:
        raise ValueError("sample_weight must have at least one positive entry.")
    total = float(first["w"])
    if constant:
        model.base_constant_ = model._clip_constant(float(first["wy"]) / total)
        f_center = float(loss.link(torch.tensor([model.base_constant_], dtype=_DT)))
    else:
        f_center = float(first["wF0"]) / total
    x_mean = first["wX"] / total
    second = sum_blocks(
        compute_blocks(
            _second_moments, blocks, model, x_mean, float(first["wy"]) / total, f_center
        )
    )
    std = np.sqrt(second["vX"] / total)
    model.x_mean_, model.x_scale_ = x_mean, np.where(std > 1e-12, std, 1.0)
    f_std = float(np.sqrt(second["vF0"] / total))
    y_std = float(np.sqrt(second["vy"] / total))
    model.f_center_, model.f_scale_ = f_center, score_scale(loss, f_std, y_std)
    model.knots_ = None
    if model.n_knots:
        levels = np.arange(1, model.n_knots + 1) / (model.n_knots + 1)
        model.knots_ = blockwise_weighted_quantile(
            _knot_values, (copy.copy(model),), blocks, levels
        ).T
    model.bin_edges_ = None
    model.validation_score_ = None
    model.mc_error_path_ = None

    snapshot = copy.copy(model)
    n_rounds, stopped = model.max_iter, True
    if rule == "holdout":
        _, _, curve = _run_rounds(
            snapshot, blocks, loss, model.max_iter, split, model.n_iter_no_change
        )
        curve = np.asarray(curve)
        n_rounds = model._choose_rounds(curve)
        model.validation_score_ = curve
        stopped = len(curve) - 1 < model.max_iter
    # The final model boosts on every row (as in memory).
    rounds, train_loss, _ = _run_rounds(snapshot, blocks, loss, n_rounds, None)

    # The certificate: the audit of the final scores' group x level-set cells.
    audit = _score_edges(snapshot, blocks, "quantile", None)
    stats = _persist_round(snapshot, blocks, _plan(None, audit=audit))
    stat, _, n_cells = audit_from_sums(
        torch.as_tensor(stats["cells"]), model.min_bucket_fraction
    )
    model.mc_statistic_ = float(stat)
    threshold = norm.isf(model.significance / (2 * max(n_cells, 1)))
    model.mc_certified_ = bool(stat < threshold)
    model.rounds_ = rounds
    # The holdout paths are not replayed here: no unshrinking (see unshrink).
    model.unshrink_ = np.ones(2)
    model.n_iter_ = len(rounds)
    model.train_score_ = np.asarray(train_loss)
    model.stopping_rule_ = rule
    if rule is not None and not stopped and model.max_iter > 0:
        warnings.warn(
            f"{name} reached max_iter={model.max_iter} rounds before its stopping "
            f"rule ({rule!r}) was met; consider increasing max_iter.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return model


def _fit_groups(model, X, groups, da):
    """The group encodings of ``_fit_groups``, learnt from every block."""
    model.group_categories_ = None
    model._groups_param = groups is not None
    model._group_labels = None
    n_groups = 0
    if groups is not None:
        if getattr(groups, "ndim", np.ndim(groups)) == 1:
            found = (
                da.unique(groups).compute() if is_dask_collection(groups) else groups
            )
            model._group_labels = np.unique(found)
            n_groups += len(model._group_labels)
        else:
            model._group_labels = int(groups.shape[1])
            n_groups += int(groups.shape[1])
    if model.group_features is not None:
        model.group_categories_ = []
        for col in model._group_columns(X.shape[1]):
            values = np.unique(da.unique(X[:, int(col)]).compute())
            if len(values) > 50:
                raise ValueError(
                    f"group_features column {col} has {len(values)} distinct "
                    "values; group columns must be categorical (at most 50)."
                )
            model.group_categories_.append((int(col), values))
            n_groups += len(values)
    model.n_groups_ = n_groups


def _seed(random_state):
    from sklearn.utils import check_random_state

    return check_random_state(random_state).randint(2**31)


def _as_rows(obj, name, n, ndim):
    """A dask array (or numpy array) of ``n`` rows; ``ndim=1`` flattens a
    single column."""
    if is_dask_collection(obj):
        obj, _ = as_dask_array(obj, name)
    else:
        obj = np.asarray(obj)
    if obj.ndim == 2 and ndim == 1 and obj.shape[1] == 1:
        obj = obj[:, 0]
    if ndim == 1 and obj.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {obj.shape}.")
    if obj.shape[0] != n:
        raise ValueError(
            f"{name} has {obj.shape[0]} rows but X has {n}; pass one row per sample."
        )
    return obj


# ------------------------------------------------------------- prediction
def predict_blockwise(model, method, X, groups, base_predictions, width=None):
    """``getattr(model, method)`` on every row block of a dask ``X``: a lazy
    dask array with one row per row of ``X``."""
    dask, da = import_dask()
    X, _ = as_dask_array(X, "X")
    n = int(X.shape[0])
    extra = {}
    if groups is not None:
        extra["groups"] = _as_rows(groups, "groups", n, None)
    if base_predictions is not None:
        extra["base"] = _as_rows(base_predictions, "base_predictions", n, 1)
    blocks = RowBlocks({"X": X, **extra})
    snap = dask.delayed(model, pure=True, traverse=False)
    task = dask.delayed(_predict_block, pure=True)
    dtype = np.float64
    if method == "predict" and hasattr(model, "classes_"):
        dtype = model.classes_.dtype
    parts = []
    for i, rows in enumerate(blocks.lengths):
        shape = (rows,) if width is None else (rows, width)
        parts.append(
            da.from_delayed(task(snap, method, blocks.block(i)), shape, dtype=dtype)
        )
    return da.concatenate(parts)


def _predict_block(model, method, block):
    return getattr(model, method)(
        block["X"], groups=block.get("groups"), base_predictions=block.get("base")
    )
