"""Multicalibration boosting (Ye & Li 2026), as scikit-learn meta-estimators."""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.stats import norm
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    clone,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import (
    KFold,
    StratifiedKFold,
    check_cv,
    cross_val_predict,
)
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    has_fit_parameter,
    validate_data,
)

from ..utils import (
    TorchEstimatorMixin,
    encode_groups,
    release_memory,
    to_numpy,
    to_tensor,
    weighted_quantile,
)
from ..utils._dask import is_dask_collection
from ._losses import LOSSES, Pinball, leaf_quantiles, score_scale
from ._mcboost_dask import fit_dask, predict_blockwise
from ._mcboost_kernels import (
    apply_coef,
    bucket_edges,
    bucket_moments,
    cell_audit,
    dynamic_design,
    quantile_audit_path,
    ridge_from_moments,
    scaled_cell_moments,
    static_design,
    unshrink_coefficients,
    weighted_gram,
)
from ._mcboost_trees import (
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

_STOPPING = {"auto", "holdout", "cv", "tolerance", "significance"}
# From this many rows on, freed heap pages are handed back every round.
_TRIM_ROWS = 100_000
# Entries of the largest temporary of one batched validation audit: rounds x
# validation rows x 3 statistics x n_buckets (32 MB in float64).
_AUDIT_BATCH = 1 << 22
# The affine step sums per cell of the groups with at least this many rows
# a cell ...
_ROWS_PER_CELL = 8
# ... and when [1, g] has more columns than this.
_NARROW_AFFINE = 2


class _BaseMCBoost(TorchEstimatorMixin, BaseEstimator):
    """Shared fitting machinery of MCBoostRegressor and MCBoostClassifier."""

    _parameter_constraints: dict = {
        **TorchEstimatorMixin._parameter_constraints,
        "estimator": [HasMethods(["fit"]), None],
        "auditor": [
            StrOptions({"hybrid", "tree", "ridge", "groups"}),
            HasMethods(["fit", "predict"]),
        ],
        "bucket_strategy": [StrOptions({"quantile", "uniform", "none"})],
        "n_buckets": [Interval(Integral, 1, None, closed="left")],
        "rebucket": ["boolean", StrOptions({"auto"})],
        "min_bucket_fraction": [Interval(Real, 0, 1, closed="left")],
        "update": [StrOptions({"all", "worst"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left"), StrOptions({"gcv"})],
        "interactions": ["boolean"],
        "n_knots": [Interval(Integral, 0, None, closed="left")],
        "max_leaf_nodes": [Interval(Integral, 2, None, closed="left"), None],
        "max_depth": [Interval(Integral, 1, None, closed="left"), None],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "l2_regularization": [
            Interval(Real, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "max_bins": [Interval(Integral, 2, 255, closed="both")],
        "group_features": ["array-like", None],
        "early_stopping": [StrOptions(_STOPPING), "boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "risk_tolerance": [Interval(Real, 0, None, closed="left")],
        "unshrink": ["boolean"],
        "significance": [Interval(Real, 0, 1, closed="neither")],
        "cv": ["cv_object"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        auditor="tree",
        bucket_strategy="none",
        n_buckets=10,
        rebucket="auto",
        min_bucket_fraction=0.02,
        update="all",
        learning_rate=0.1,
        max_iter=500,
        alpha=10.0,
        interactions=True,
        n_knots=3,
        max_leaf_nodes=31,
        max_depth=None,
        min_samples_leaf=20,
        l2_regularization="auto",
        max_bins=255,
        group_features=None,
        early_stopping="auto",
        validation_fraction=0.2,
        n_iter_no_change=10,
        tol=1e-4,
        risk_tolerance=0.0,
        unshrink=True,
        significance=0.05,
        cv=5,
        random_state=None,
        device="cpu",
    ):
        self.estimator = estimator
        self.auditor = auditor
        self.bucket_strategy = bucket_strategy
        self.n_buckets = n_buckets
        self.rebucket = rebucket
        self.min_bucket_fraction = min_bucket_fraction
        self.update = update
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.alpha = alpha
        self.interactions = interactions
        self.n_knots = n_knots
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_bins = max_bins
        self.group_features = group_features
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.risk_tolerance = risk_tolerance
        self.unshrink = unshrink
        self.significance = significance
        self.cv = cv
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y, sample_weight, groups, base_predictions, labels=None):
        n = X.shape[0]
        if n < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples to audit, got "
                f"n_samples = {n} (1 sample)."
            )
        if self._uses_tree() and self.bucket_strategy != "none":
            raise ValueError(
                f"auditor={self.auditor!r} finds its own level sets by splitting "
                'on the score; use it with bucket_strategy="none" (or '
                'auditor="ridge" for explicit buckets), got '
                f"bucket_strategy={self.bucket_strategy!r}."
            )
        self._fit_device()
        self._dtype = torch.float64
        loss = self._loss_object()
        base_params, split_params = self._routed_params(sample_weight, groups)
        sample_weight = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        if not np.any(sample_weight > 0):
            raise ValueError("sample_weight must have at least one positive entry.")
        if not _routing_enabled() and self._base_takes_weight():
            base_params["sample_weight"] = sample_weight
        rng = check_random_state(self.random_state)

        base = self._fit_base(
            X,
            y,
            sample_weight,
            base_predictions,
            rng,
            base_params,
            split_params,
            labels,
        )
        G = self._fit_groups(X, groups)

        with self._threads(self._work(X)):
            return self._fit_rounds(
                X, y, sample_weight, G, base, loss, rng, split_params
            )

    def _fit_rounds(self, X, y, sample_weight, G, base, loss, rng, split_params):
        n = X.shape[0]
        dev, dt = self.device_, self._dtype
        tree = self._uses_tree()
        self.x_mean_, self.x_scale_ = _column_moments(X, sample_weight)
        F0 = loss.link(to_tensor(base, dev, dt))
        f_mean = float(np.average(to_numpy(F0), weights=sample_weight))
        f_std = float(
            np.sqrt(np.average((to_numpy(F0) - f_mean) ** 2, weights=sample_weight))
        )
        y_mean = np.average(y, weights=sample_weight)
        y_std = float(np.sqrt(np.average((y - y_mean) ** 2, weights=sample_weight)))
        self.f_center_, self.f_scale_ = f_mean, score_scale(loss, f_std, y_std)
        self.knots_ = None
        if self.n_knots and self._uses_ridge():
            u = np.column_stack(
                [
                    (X - self.x_mean_) / self.x_scale_,
                    (to_numpy(F0) - f_mean) / self.f_scale_,
                ]
            )
            levels = np.arange(1, self.n_knots + 1) / (self.n_knots + 1)
            self.knots_ = weighted_quantile(u, levels, sample_weight).T

        Gt = None if G is None else to_tensor(G, dev, dt)
        self.bin_edges_ = None
        if tree:
            # Features and groups are binned once per fit; the last column
            # of the codes holds the score's bins, rewritten every round.
            # Zero-weight rows do not move the bins (as if dropped).
            live = np.flatnonzero(sample_weight > 0)
            seed = rng.randint(2**31)
            self.bin_edges_ = bin_edges(X, self.max_bins, seed=seed, rows=live)
            if G is not None:
                self.bin_edges_ += bin_edges(G, self.max_bins, rows=live)
        data = self._data(X, G, Gt, F0, y, sample_weight)
        rule = self._resolve_stopping(n)
        self.validation_score_ = None
        self.mc_error_path_ = None

        if rule in ("holdout", "cv"):
            # The folds advance in lockstep and stop together when their
            # mean validation loss stops improving (MCGrad's rule).
            runs, paths, vals = [], [], []
            for train_idx, val_idx in self._selection_splits(
                n, y, rule, rng, split_params
            ):
                train, val = data.split(train_idx, val_idx)
                runs.append(_Run())
                vals.append(val)
                paths.append(
                    self._boost_steps(
                        loss, train, self.max_iter, val=val, rng=rng, run=runs[-1]
                    )
                )
            best, since_best = np.inf, 0
            lowest, at_lowest = np.inf, None
            for t in range(self.max_iter + 1):
                for path in paths:
                    next(path)
                vloss = float(np.mean([run.val_loss[-1] for run in runs]))
                if vloss < lowest:
                    # The validation states at the lowest mean loss so far:
                    # the usual choice of rounds, unshrunk without a replay.
                    lowest, at_lowest = vloss, t
                    for run in runs:
                        run.best_state = run.val_state
                if vloss < best - self.tol * abs(best) or t == 0:
                    best, since_best = vloss, 0
                else:
                    since_best += 1
                    if since_best >= self.n_iter_no_change:
                        break
            for path in paths:
                path.close()
            for run, val in zip(runs, vals):
                self._val_audit(loss, val, run)
            curves = [run.val_loss for run in runs]
            mc_paths = [run.val_mc for run in runs]
            length = min(len(c) for c in curves)
            mean_curve = np.mean([c[:length] for c in curves], axis=0)
            n_rounds = self._choose_rounds(mean_curve)
            self.validation_score_ = mean_curve
            self.mc_error_path_ = np.mean([m[:length] for m in mc_paths], axis=0)
            self.unshrink_ = self._unshrink_fit(
                loss, runs, vals, n_rounds, n_rounds == at_lowest
            )
            final = self._boost(loss, data, n_rounds, rng=rng, audit_train=False)
            stopped = length - 1 < self.max_iter
        else:
            self.unshrink_ = np.ones(2)
            final = self._boost(loss, data, self.max_iter, rule=rule, rng=rng)
            self.mc_error_path_ = np.asarray(final.train_mc)
            stopped = final.stopped or rule is None
            n_rounds = len(final.rounds)

        if self._loss_name() == "quantile" and final.rounds:
            # A closing exact shift per group cell: at termination every
            # cell's audit coverage is the quantile level (BatchGCP).
            F = final.F
            closing = self._affine_fit(loss, data, F, loss.inverse(F))
            final.rounds.append({"affine": closing, "closing": True})
            final.F = F + self._affine_apply(closing, data, F)
        F = data.F0 if final.F is None else self._unshrunk(data.F0, final.F, final.A)
        self._certify(loss, data, F)
        self.rounds_ = [to_numpy(r) for r in final.rounds]
        self.n_iter_ = len(self.rounds_)
        self.train_score_ = np.asarray(final.train_loss)
        self.stopping_rule_ = rule
        # max_iter=0 asks for no rounds: nothing failed to converge
        if rule is not None and not stopped and self.max_iter > 0:
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} rounds "
                f"before its stopping rule ({rule!r}) was met; consider increasing "
                "max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _cells(self, loss, data, p, level, edges):
        """:func:`cell_audit` of the residuals over groups x level sets."""
        return cell_audit(
            loss.gradient(data.y, p),
            data.w,
            data.G,
            torch.bucketize(level, edges, right=True),
            len(edges) + 1,
            self.min_bucket_fraction,
        )

    def _val_audit(self, loss, val, run):
        """Append the pending rounds' validation audits to ``run.val_mc``."""
        pending, run.val_pending = run.val_pending, []
        if len(pending) == 1:
            pv, level = pending[0]
            edges = self._edges(level, val.w, "quantile")
            run.val_mc.append(self._cells(loss, val, pv, level, edges)[0])
        elif pending:
            p = torch.stack([pv for pv, _ in pending])
            level = torch.stack([level for _, level in pending])
            stats = quantile_audit_path(
                loss.gradient(val.y, p),
                val.w,
                val.G,
                level,
                self.n_buckets,
                self.min_bucket_fraction,
                val.group_cells(),
            )
            run.val_mc.extend(stats.tolist())

    def _certify(self, loss, data, F):
        """The ``"significance"`` rule's test on the final audit residuals:
        the certificate of multicalibration at termination."""
        edges = self._edges(F, data.w, "quantile")
        stat, _, n_cells = self._cells(loss, data, loss.inverse(F), F, edges)
        self.mc_statistic_ = float(stat)
        threshold = norm.isf(self.significance / (2 * max(n_cells, 1)))
        self.mc_certified_ = bool(stat < threshold)

    def _round_parts(self, step, data, F, loss):
        """:meth:`_apply_round`'s update of ``data`` at score ``F``, and the
        affine step's part of the score's change (tree rounds; else None)."""
        if "tree" not in step or "coef" in step:
            return self._apply_round(step, data, F, loss), None
        d0 = self._affine_step() * self._affine_apply(step["affine"], data, F)
        return self._tree_update(step, data, F, d0), d0

    def _unshrinks(self, loss):
        return self.unshrink and loss.name != "quantile"

    def _unshrink_fit(self, loss, runs, vals, n_rounds, saved):
        """Coefficients of the correction's affine and other parts, fitted on
        the validation rows of the selection paths at the chosen round.

        Early stopping picks the round count by held-out risk; at that
        round the shrunk steps have moved each part only part of the way
        (MCGrad rescales its score after each round for the same reason).
        The rescaling is fitted on rows the paths never trained on, so it
        cannot undo the stop's protection against overfitting.
        """
        ones = np.ones(2)
        if not self._unshrinks(loss) or n_rounds == 0:
            return ones
        F0s, parts, ys, ws = [], [], [], []
        for run, val in zip(runs, vals):
            if saved:
                F, A = run.best_state
                A = torch.zeros_like(F) if A is None else A
            else:
                # Replay the path's first n_rounds on its validation rows.
                F = val.F0.clone()
                A = torch.zeros_like(F)
                for step in run.rounds[:n_rounds]:
                    delta, affine = self._round_parts(step, val, F, loss)
                    if affine is not None:
                        A = A + affine
                    F = F + self.learning_rate * delta
            F0s.append(val.F0)
            parts.append(torch.stack([A, F - val.F0 - A], 1))
            ys.append(val.y)
            ws.append(val.w)
        # At most the full steps the shrinkage held back.
        upper = max(1.0, 1.0 / self.learning_rate)
        return unshrink_coefficients(
            torch.cat(F0s), torch.cat(parts), torch.cat(ys), torch.cat(ws), loss, upper
        )

    def _unshrunk(self, F0, F, A):
        """The score with ``unshrink_`` applied to the parts of ``F - F0``."""
        c = getattr(self, "unshrink_", None)
        if c is None or (c[0] == 1.0 and c[1] == 1.0):
            return F
        A = torch.zeros_like(F) if A is None else A
        return F0 + float(c[0]) * A + float(c[1]) * (F - F0 - A)

    def _choose_rounds(self, curve):
        """The last round whose validation loss is within ``risk_tolerance``
        of the best: extra rounds buy calibration at (almost) no risk."""
        best = np.min(curve)
        ok = np.flatnonzero(curve <= best + self.risk_tolerance * abs(best))
        return int(ok[-1])

    def _resolve_stopping(self, n):
        rule = self.early_stopping
        if rule is False:
            return None
        if rule is True or rule == "auto":
            # A holdout needs enough validation rows to rank rounds; below
            # that, cross-validation reuses every row.
            if n >= 10_000:
                return "holdout"
            return "cv" if n >= 10 else "significance"
        return rule

    def _selection_splits(self, n, y, rule, rng, split_params):
        if rule == "holdout":
            n_val = max(1, int(round(self.validation_fraction * n)))
            if n - n_val < 1:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} leaves no "
                    f"training rows among n_samples = {n}."
                )
            perm = rng.permutation(n)
            return [(np.sort(perm[n_val:]), np.sort(perm[:n_val]))]
        splitter = self._crossfit_splitter(y, rng)
        return list(splitter.split(np.zeros((n, 1)), y, **split_params))

    def _base_takes_weight(self):
        return (
            self.estimator is not None
            and not isinstance(self.estimator, FrozenEstimator)
            and has_fit_parameter(self.estimator, "sample_weight")
        )

    def _routed_params(self, sample_weight, groups):
        """Fit parameters of the base estimator and of the CV splitter.

        Under metadata routing they follow the requests
        (:meth:`get_metadata_routing`); otherwise the base model gets
        ``sample_weight`` when its ``fit`` takes it, and the splitter nothing.
        """
        if not _routing_enabled():
            return {}, {}
        passed = {"sample_weight": sample_weight, "groups": groups}
        passed = {key: value for key, value in passed.items() if value is not None}
        routed = process_routing(self, "fit", **passed)
        base = dict(routed.estimator.fit) if "estimator" in routed else {}
        return base, dict(routed.splitter.split)

    def get_metadata_routing(self):
        """Metadata routing of this estimator.

        ``fit`` consumes ``sample_weight``, ``groups`` and
        ``base_predictions`` itself and routes what is requested to the base
        estimator's ``fit`` (when it is fitted here) and to the ``cv``
        splitter's ``split``. The auditors are fitted on the Newton weights,
        which are not user metadata.

        Returns
        -------
        routing : MetadataRouter
        """
        router = MetadataRouter(owner=self).add_self_request(self)
        if self.estimator is not None and not isinstance(
            self.estimator, FrozenEstimator
        ):
            router.add(
                estimator=self.estimator,
                method_mapping=MethodMapping().add(caller="fit", callee="fit"),
            )
        router.add(
            splitter=check_cv(self.cv, classifier=self._is_classifier()),
            method_mapping=MethodMapping().add(caller="fit", callee="split"),
        )
        return router

    def _fit_base(
        self,
        X,
        y,
        sample_weight,
        base_predictions,
        rng,
        fit_params,
        split_params,
        labels=None,
    ):
        """Base predictions on the audit rows (out-of-fold when we fit the base).

        An unfitted base model is fitted on ``labels`` when given (the
        classifier's own labels, so that ``estimator_.classes_`` are the
        user's and ``predict`` finds ``classes_[1]`` among them), else on ``y``.
        """
        target = y if labels is None else labels
        self.estimator_ = None
        self.base_constant_ = None
        self._precomputed = base_predictions is not None
        if base_predictions is not None:
            base = self._check_base(base_predictions, X.shape[0], "base_predictions")
            return base
        if self.estimator is None:
            constant = self._constant(self._target(y), sample_weight)
            self.base_constant_ = self._clip_constant(constant)
            return np.full(X.shape[0], self.base_constant_)
        if isinstance(self.estimator, FrozenEstimator):
            self.estimator_ = self.estimator
            return self._check_base(self._base_predict(self.estimator_, X), X.shape[0])
        splitter = self._crossfit_splitter(y, rng)
        method = "predict_proba" if self._is_classifier() else "predict"
        oof = cross_val_predict(
            clone(self.estimator),
            X,
            target,
            cv=splitter,
            method=method,
            params={**fit_params, **split_params},
        )
        if oof.ndim == 2:
            oof = oof[:, 1]
        self.estimator_ = clone(self.estimator).fit(X, target, **fit_params)
        return self._check_base(oof, X.shape[0])

    def _crossfit_splitter(self, y, rng):
        """``cv`` as a splitter; an int gives shuffled folds seeded from rng."""
        if not isinstance(self.cv, Integral):
            return check_cv(self.cv, y, classifier=self._is_classifier())
        if self.cv < 2 or self.cv > len(y):
            raise ValueError(
                f"cv={self.cv} folds need 2 <= cv <= n_samples = {len(y)}."
            )
        seed = rng.randint(2**31)
        if self._is_classifier():
            return StratifiedKFold(self.cv, shuffle=True, random_state=seed)
        return KFold(self.cv, shuffle=True, random_state=seed)

    def _check_base(self, base, n, name="the base estimator's predictions"):
        base = np.asarray(base, dtype=np.float64)
        if base.ndim == 2 and base.shape[1] == 1:
            base = base[:, 0]
        if base.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {base.shape}.")
        if not np.all(np.isfinite(base)):
            raise ValueError(f"{name} contain NaN or infinite values.")
        return self._check_base_range(base, name)

    def _check_base_range(self, base, name):
        return base

    def _clip_constant(self, constant):
        return constant

    def _constant(self, y, sample_weight):
        """The best constant prediction: the weighted mean (or quantile)."""
        if self._loss_name() == "quantile":
            return float(weighted_quantile(y, [self.quantile], sample_weight)[0])
        return float(np.average(y, weights=sample_weight))

    def _base_predictions(self, X, base_predictions):
        n = X.shape[0]
        if base_predictions is not None:
            return self._check_base(base_predictions, n, "base_predictions")
        if self._precomputed:
            raise ValueError(
                f"This {type(self).__name__} was fitted with base_predictions; "
                "pass base_predictions for the new rows too."
            )
        if self.estimator_ is None:
            return np.full(n, self.base_constant_)
        return self._check_base(self._base_predict(self.estimator_, X), n)

    # --------------------------------------------------------------- groups
    def _loss_object(self):
        if self._loss_name() == "quantile":
            return Pinball(self.quantile)
        return LOSSES[self._loss_name()]

    def _fit_groups(self, X, groups):
        self.group_categories_ = None
        self._groups_param = groups is not None
        self._group_labels = None
        blocks = []
        if groups is not None:
            G, self._group_labels, _ = encode_groups(groups, X.shape[0])
            blocks.append(G)
        if self.group_features is not None:
            cols = self._group_columns(X.shape[1])
            self.group_categories_ = []
            for col in cols:
                values = np.unique(X[:, col])
                if len(values) > 50:
                    raise ValueError(
                        f"group_features column {col} has {len(values)} distinct "
                        "values; group columns must be categorical (at most 50)."
                    )
                self.group_categories_.append((int(col), values))
                blocks.append((X[:, [col]] == values[None, :]).astype(np.float64))
        if not blocks:
            self.n_groups_ = 0
            return None
        G = np.hstack(blocks)
        self.n_groups_ = G.shape[1]
        return G

    def _group_columns(self, n_features):
        """``group_features`` as column indices (names need a DataFrame X)."""
        cols = np.asarray(self.group_features, dtype=object).ravel()
        if len(cols) and all(isinstance(c, str) for c in cols):
            names = getattr(self, "feature_names_in_", None)
            if names is None:
                raise ValueError(
                    "group_features given as column names need X as a DataFrame "
                    f"with those columns; X has no column names ({cols.tolist()})."
                )
            index = {str(name): j for j, name in enumerate(names)}
            for col in cols:
                if col not in index:
                    raise ValueError(
                        f"group_features {col!r} is not a column of X; its columns "
                        f"are {list(index)}."
                    )
            return np.array([index[c] for c in cols])
        ok = all(
            isinstance(c, Integral) and not isinstance(c, bool) and 0 <= c < n_features
            for c in cols
        )
        if not ok:
            raise ValueError(
                "group_features must hold column indices of X in "
                f"[0, {n_features}) or, for a DataFrame X, column names; got "
                f"{self.group_features!r}."
            )
        return cols.astype(np.intp)

    def _groups_for(self, X, groups):
        blocks = []
        if self._groups_param:
            if groups is None:
                raise ValueError(
                    f"This {type(self).__name__} was fitted with groups; pass the "
                    "groups of the new rows too (groups=...)."
                )
            G, _, _ = encode_groups(groups, X.shape[0], categories=self._group_labels)
            blocks.append(G)
        elif groups is not None:
            raise ValueError(
                f"This {type(self).__name__} was fitted without groups; "
                "groups must not be passed now."
            )
        for col, values in self.group_categories_ or []:
            blocks.append((X[:, [col]] == values[None, :]).astype(np.float64))
        return np.hstack(blocks) if blocks else None

    # ------------------------------------------------------------- boosting
    def _boost(self, loss, data, max_rounds, *, rule=None, rng, audit_train=True):
        """Run up to ``max_rounds`` audit rounds on ``data``; see
        :meth:`_boost_steps`."""
        run = _Run()
        for _ in self._boost_steps(
            loss, data, max_rounds, rule=rule, rng=rng, audit_train=audit_train, run=run
        ):
            pass
        return run

    def _boost_steps(
        self, loss, data, max_rounds, *, val=None, rule=None, rng, audit_train=True, run
    ):
        """Boost on ``data``, yielding after each round's evaluation.

        Each yield comes after the losses (and, with ``val``, the validation
        loss) of the current score are recorded in ``run`` and before the
        next round is fitted, so a caller can advance several paths in
        lockstep and stop them together. With ``rule``
        ("tolerance"/"significance") the path ends before the first round
        whose audit finds nothing to correct. The training rows' audit
        (``train_mc``) is skipped with ``val`` and without ``audit_train``.
        The affine steps' part of the score is summed as it goes (``run.A``,
        and of the validation score in ``run.val_state``) for ``unshrink``.
        """
        F = data.F0.clone()
        Fv = None if val is None else val.F0.clone()
        Av = None
        for t in range(max_rounds + 1):
            p = loss.inverse(F)
            run.train_loss.append(loss.risk(data.y, p, data.w))
            # The audit looks at level sets of the current score, and so do
            # the buckets unless rebucket is off.
            level = F if self._rebucket() or self._uses_tree() else data.F0
            edges = self._edges(level, data.w)
            bucket = torch.bucketize(level, edges, right=True)
            m = len(edges) + 1
            # The audit always looks at group x level-set cells, also when
            # the update uses one bucket (a refit without audit skips it).
            if val is None and audit_train:
                audit_edges = self._edges(level, data.w, "quantile")
                stat_sigma, stat_abs, n_cells = self._cells(
                    loss, data, p, level, audit_edges
                )
                run.train_mc.append(stat_sigma)
            if val is not None:
                pv = loss.inverse(Fv)
                vloss = loss.risk(val.y, pv, val.w)
                run.val_loss.append(vloss)
                # The validation audit (deciles of the validation scores) is
                # not needed to stop: its rounds are batched (_val_audit).
                vlevel = Fv if self._rebucket() or self._uses_tree() else val.F0
                run.val_pending.append((pv, vlevel))
                size = len(run.val_pending) * len(Fv) * 3 * self.n_buckets
                if size >= _AUDIT_BATCH:
                    self._val_audit(loss, val, run)
                # The validation score and its affine part after t rounds
                # (new tensors every round: keeping them copies nothing).
                run.val_state = (Fv, Av)
            if rule == "tolerance" and stat_abs <= self.tol:
                run.stopped = True
                break
            if rule == "significance":
                threshold = norm.isf(self.significance / (2 * max(n_cells, 1)))
                if stat_sigma < threshold:
                    run.stopped = True
                    break
            yield
            if t == max_rounds:
                break
            step, delta = self._audit_round(loss, data, F, p, edges, bucket, m, rng)
            affine = step.pop("affine_delta", None)
            run.rounds.append(step)
            if affine is not None and "coef" not in step:
                run.A = affine if run.A is None else run.A + affine
            if delta is None:
                delta = self._apply_round(step, data, F, loss)
            F = F + self.learning_rate * delta
            run.F = F
            if val is not None:
                delta_v, affine = self._round_parts(step, val, Fv, loss)
                if affine is not None:
                    Av = affine if Av is None else Av + affine
                Fv = Fv + self.learning_rate * delta_v
            if len(F) >= _TRIM_ROWS:
                # Row-sized temporaries of every round would otherwise stay
                # resident (see release_memory).
                release_memory()

    def _data(self, X, G, Gt, F0, y=None, w=None):
        """The tensors the auditor needs, on the device: the raw features
        for the ridge and scikit-learn auditors, the static ridge design,
        the tree's bin codes."""
        dev, dt = F0.device, self._dtype
        codes = self._codes(X, G) if self._uses_tree() else None
        Xt = X_np = Zs = None
        if not isinstance(self.auditor, str) or self._uses_ridge():
            Xt, X_np = to_tensor(X, dev, dt), X
        if self._uses_ridge():
            Zs = self._static_design(Xt, Gt)
        y = None if y is None else to_tensor(y, dev, dt)
        w = None if w is None else to_tensor(w, dev, dt)
        return _Data(Xt, X_np, y, w, Gt, F0, Zs, codes)

    def _codes(self, X, G):
        """uint8 bin codes of ``[X, G]`` (Fortran order, as the tree grower
        reads columns) plus a last column for the score's codes."""
        d = X.shape[1]
        codes = np.zeros((X.shape[0], len(self.bin_edges_) + 1), np.uint8, order="F")
        bin_codes(X, self.bin_edges_[:d], out=codes)
        if G is not None:
            bin_codes(G, self.bin_edges_[d:], out=codes[:, d:])
        return codes

    def _edges(self, F, w, strategy=None):
        return bucket_edges(F, w, strategy or self.bucket_strategy, self.n_buckets)

    def _static_design(self, X, G):
        """The auditor's score-free columns (``[1, g]`` for "groups")."""
        ones = X.new_ones(X.shape[0], 1)
        if self.auditor == "groups":
            return ones if G is None else torch.cat([ones, G], 1)
        d = X.shape[1]
        xs = (X - to_tensor(self.x_mean_, X.device, X.dtype)) / to_tensor(
            self.x_scale_, X.device, X.dtype
        )
        knots = None
        if self.n_knots:
            knots = to_tensor(self.knots_[:d], X.device, X.dtype)
        return static_design(xs, G, knots, self.interactions)

    def _dynamic_design(self, data, F):
        """The auditor's score columns (None for "groups")."""
        if self.auditor == "groups":
            return None
        fs = (F - self.f_center_) / self.f_scale_
        knots = None
        if self.n_knots:
            knots = to_tensor(self.knots_[-1], F.device, F.dtype)
        return dynamic_design(fs, data.G, knots, self.interactions)

    def _audit_round(self, loss, data, F, p, edges, bucket, m, rng):
        """Fit the auditor of every bucket to the Newton working response.

        Returns the step and, when the fit already gives it, the update of
        ``data``'s rows (what :meth:`_apply_round` would compute), else None.
        """
        if self.auditor == "tree":
            return self._tree_round(loss, data, F, p)
        if self.auditor == "hybrid":
            # A ridge step, then a tree on what the ridge step left.
            step = self._audit_round_ridge(loss, data, F, p, edges, bucket, m)
            d1 = self._ridge_update(step, data, F)
            F1 = F + self.learning_rate * d1
            tree_part, tree_delta = self._tree_round(loss, data, F1, loss.inverse(F1))
            del tree_part["edges"]
            step.update(tree_part)
            return step, None if tree_delta is None else d1 + tree_delta
        if isinstance(self.auditor, str):
            step = self._audit_round_ridge(loss, data, F, p, edges, bucket, m)
            return step, None
        h = loss.hessian(p)
        z = loss.gradient(data.y, p) / h
        W = data.w * h
        mass = torch.zeros(m, dtype=F.dtype, device=F.device).index_add_(
            0, bucket, data.w
        )
        live = mass >= self.min_bucket_fraction * mass.sum()
        step = {"edges": edges}
        A = self._sk_features(data, F)
        bucket_np, z_np, W_np = to_numpy(bucket), to_numpy(z), to_numpy(W)
        live_np = to_numpy(live)
        weighted = has_fit_parameter(self.auditor, "sample_weight")
        models, gains = [], []
        for j in range(m):
            rows = bucket_np == j
            if not live_np[j] or rows.sum() < 2:
                models.append(None)
                gains.append(-np.inf)
                continue
            model = clone(self.auditor)
            if "random_state" in model.get_params():
                model.set_params(random_state=rng.randint(2**31))
            kw = {"sample_weight": W_np[rows]} if weighted else {}
            model.fit(A[rows], z_np[rows], **kw)
            delta = model.predict(A[rows])
            # Newton decrease of the loss in this bucket.
            wz = W_np[rows]
            gains.append(float(np.sum(wz * (z_np[rows] * delta - 0.5 * delta**2))))
            models.append(model)
        if self.update == "worst" and np.isfinite(max(gains)):
            j_best = int(np.argmax(gains))
            models = [mdl if j == j_best else None for j, mdl in enumerate(models)]
        step["auditors"] = models
        return step, None

    def _audit_round_ridge(self, loss, data, F, p, edges, bucket, m):
        """The batched ridge (or group) auditors of every bucket."""
        h = loss.hessian(p)
        z = loss.gradient(data.y, p) / h
        W = data.w * h
        mass = torch.zeros(m, dtype=F.dtype, device=F.device).index_add_(
            0, bucket, data.w
        )
        Zd = self._dynamic_design(data, F)
        # With a constant Newton weight the static Gram block is reused.
        static = data.static_gram() if m == 1 and loss.name == "squared" else None
        S2, Sz, zz = bucket_moments(data.Zs, Zd, z, W, bucket, m, static)
        return self._ridge_step(S2, Sz, zz, mass, edges)

    def _ridge_step(self, S2, Sz, zz, mass, edges):
        """One round's ridge coefficients from the buckets' moments."""
        live = mass >= self.min_bucket_fraction * mass.sum()
        coef, gain = ridge_from_moments(S2, Sz, zz, mass, self.alpha)
        coef[~live] = 0.0
        gain[~live] = -np.inf
        if self.update == "worst":
            keep = torch.zeros(len(mass), dtype=torch.bool, device=mass.device)
            keep[torch.argmax(gain)] = True
            coef[~keep] = 0.0
        return {"edges": edges, "coef": coef}

    def _ridge_update(self, step, data, F):
        edges = to_tensor(step["edges"], F.device, F.dtype)
        bucket = torch.bucketize(F if self._rebucket() else data.F0, edges, right=True)
        coef = to_tensor(step["coef"], F.device, F.dtype)
        return apply_coef(data.Zs, self._dynamic_design(data, F), coef, bucket)

    def _tree_round(self, loss, data, F, p):
        """An affine step on the score, then one histogram tree over
        [features, groups, score] on what the affine step left.

        Returns the step and the update of ``data``'s rows from the grower's
        own leaves (None when some rows have zero weight: the grower did not
        see them).
        """
        affine = self._affine_fit(loss, data, F, p)
        # The affine step has few parameters: it takes a full Newton step,
        # shrunk by learning_rate only in the caller's update.
        d0 = self._affine_step() * self._affine_apply(affine, data, F)
        F = F + d0
        p = loss.inverse(F)
        check_grower()
        w = to_numpy(data.w)
        W = w * to_numpy(loss.hessian(p))
        g = w * to_numpy(loss.gradient(data.y, p))
        # The score column: the current score (the theory's level sets), or
        # the base score with rebucket=False.
        if self._rebucket():
            F_np = to_numpy(F)
            edges = score_edges(F_np[w > 0], self.max_bins)
        else:
            # The base score's bins are the same every round: made once.
            if data.base_edges is None:
                data.base_edges = score_edges(to_numpy(data.F0)[w > 0], self.max_bins)
            edges = data.base_edges
        self._write_score_codes(data, F, edges)
        n_bins = [len(e) + 1 for e in self.bin_edges_] + [len(edges) + 1]
        # The tree sees the rows with positive weight only, so a zero weight
        # is the same as dropping the row (min_samples_leaf counts rows).
        live = w > 0
        codes = data.codes if live.all() else np.asfortranarray(data.codes[live])
        grower = grow_tree(
            codes,
            g[live],
            W[live],
            n_bins,
            max_leaf_nodes=self.max_leaf_nodes,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            l2=self._l2(loss),
            max_bins=self.max_bins,
            n_threads=data.tree_threads,
        )
        if loss.name == "quantile":
            # A line search per leaf: the step that minimises the pinball
            # loss there is the leaf's quantile of the residual.
            leaf, values = leaf_rows(grower, int(live.sum()))
            values = leaf_quantiles(
                torch.as_tensor(to_numpy(data.y - p)[live]),
                torch.as_tensor(w[live]),
                torch.as_tensor(leaf),
                len(values),
                loss.tau,
            )
            for node, value in zip(grower.finalized_leaves, values.tolist()):
                node.value = value
        tree = make_predictor(grower, self.bin_edges_ + [edges])
        step = {
            "edges": F.new_empty(0),
            "affine": affine,
            "score_edges": edges,
            "tree": tree,
            # The affine part of the score's change, popped by the caller
            # (not a fitted parameter).
            "affine_delta": d0,
        }
        if not live.all():
            return step, None
        # The training rows' update from the grower's own leaves: no second
        # affine pass, score binning or tree prediction (_tree_update).
        leaf, values = leaf_rows(grower, len(live))
        delta = d0 / self.learning_rate + to_tensor(values[leaf], F.device, F.dtype)
        return step, delta

    def _l2(self, loss):
        """The leaf penalty: ``"auto"`` is 1 for the losses whose Newton
        weight vanishes (log loss on confident rows, Poisson near zero),
        else 0."""
        if self.l2_regularization != "auto":
            return float(self.l2_regularization)
        return 1.0 if loss.name in ("log_loss", "poisson") else 0.0

    def _affine_step(self):
        """Step size of the affine part: ``learning_rate`` (as the tree's),
        or 1 for the quantile loss, whose per-cell shifts are exact line
        searches."""
        return 1.0 if self._loss_name() == "quantile" else self.learning_rate

    def _affine_static(self, data):
        """``[1, g]``, the score-free columns of the affine step (cached)."""
        if data.affine_static is None:
            ones = data.F0.new_ones(len(data.F0), 1)
            data.affine_static = (
                ones if data.G is None else torch.cat([ones, data.G], 1)
            )
        return data.affine_static

    def _affine_u(self, F):
        return (F - self.f_center_) / self.f_scale_

    def _affine_fit(self, loss, data, F, p):
        """Newton ridge step on ``[1, g, u, g u]`` (``u`` the standardised
        score): per-group levels and score slopes, MCGrad's rescaling of the
        score per named group (multiaccuracy on the groups and their score
        slopes), which trees, piecewise constant, approximate slowly.

        For the quantile loss: the weighted quantile of the residual in each
        cell of the group indicators (BatchGCP's group-conditional shift).
        """
        if loss.name == "quantile":
            cells, cell = self._group_cells(data.G, len(F), F)
            values = leaf_quantiles(data.y - p, data.w, cell, len(cells), loss.tau)
            return {"cells": cells, "values": values}
        h = loss.hessian(p)
        z = loss.gradient(data.y, p) / h
        Zs = self._affine_static(data)
        mass = torch.sum(data.w)[None]
        cells = data.group_cells()
        if cells:
            S2, Sz, zz = scaled_cell_moments(
                cells[0], cells[1], z, data.w * h, self._affine_u(F)
            )
            return ridge_from_moments(S2, Sz, zz, mass, self.alpha)[0][0]
        u = self._affine_u(F)[:, None]
        Zd = u if data.G is None else torch.cat([u, data.G * u], 1)
        static = None
        if loss.name == "squared":
            # Constant Newton weights: the [1, g] Gram block is made once.
            if data.affine_gram is None:
                data.affine_gram = weighted_gram(Zs, data.w)
            static = data.affine_gram
        bucket = torch.zeros(len(F), dtype=torch.long, device=F.device)
        S2, Sz, zz = bucket_moments(Zs, Zd, z, data.w * h, bucket, 1, static)
        coef, _ = ridge_from_moments(S2, Sz, zz, mass, self.alpha)
        return coef[0]

    @staticmethod
    def _group_cells(G, n, F, cells=None):
        """Distinct rows of G (the cells) and each row's cell; rows matching
        none of the given ``cells`` get index ``len(cells)``."""
        if G is None:
            G = F.new_zeros(n, 1)
        if cells is None:
            cells, cell = torch.unique(G, dim=0, return_inverse=True)
            return cells, cell
        cells = to_tensor(cells, F.device, F.dtype)
        match = (G[:, None, :] == cells[None]).all(-1)
        cell = torch.where(match.any(1), match.float().argmax(1), len(cells))
        return cells, cell

    def _affine_apply(self, coef, data, F):
        if isinstance(coef, dict):
            cells, cell = self._group_cells(data.G, len(F), F, coef["cells"])
            values = to_tensor(coef["values"], F.device, F.dtype)
            return torch.cat([values, values.new_zeros(1)])[cell]
        coef = to_tensor(coef, F.device, F.dtype)
        u = self._affine_u(F)
        cells = data.group_cells()
        if cells:
            # Level and slope per cell of [1, g], then one gather per row.
            C, cell = cells
            k = C.shape[1]
            return (C @ coef[:k])[cell] + (C @ coef[k:])[cell] * u
        Zs = self._affine_static(data)
        k = Zs.shape[1]
        slope = coef[k]
        if data.G is not None:
            slope = slope + data.G @ coef[k + 1 :]
        return Zs @ coef[:k] + slope * u

    def _write_score_codes(self, data, F, edges):
        """The score column of the codes; with the base score it is written
        once per set of edges."""
        if self._rebucket():
            data.codes[:, -1] = np.searchsorted(edges, to_numpy(F), side="left")
        elif data.score_key is not edges:
            data.codes[:, -1] = np.searchsorted(edges, to_numpy(data.F0), side="left")
            data.score_key = edges

    def _tree_update(self, step, data, F, d0=None):
        # The caller adds learning_rate * (returned delta): the affine part is
        # scaled up so that it enters with a full step, as in fit.
        if d0 is None:
            d0 = self._affine_step() * self._affine_apply(step["affine"], data, F)
        F = F + d0
        self._write_score_codes(data, F, step["score_edges"])
        delta = predict_tree(step["tree"], data.codes, data.tree_threads)
        return d0 / self.learning_rate + to_tensor(delta, F.device, F.dtype)

    def _sk_features(self, data, F):
        cols = [data.X_np, to_numpy(F)[:, None]]
        if data.G is not None:
            cols.append(to_numpy(data.G))
        return np.hstack(cols)

    def _apply_round(self, step, data, F, loss):
        """The additive link-space update of one stored round on ``data``."""
        if "closing" in step:
            # The caller scales by learning_rate; the closing shift is exact.
            return self._affine_apply(step["affine"], data, F) / self.learning_rate
        if "tree" in step and "coef" in step:
            d1 = self._ridge_update(step, data, F)
            F1 = F + self.learning_rate * d1
            return d1 + self._tree_update(step, data, F1)
        if "tree" in step:
            return self._tree_update(step, data, F)
        if "coef" in step:
            return self._ridge_update(step, data, F)
        edges = to_tensor(step["edges"], F.device, F.dtype)
        bucket = torch.bucketize(F if self._rebucket() else data.F0, edges, right=True)
        A = self._sk_features(data, F)
        bucket_np = to_numpy(bucket)
        delta = np.zeros(len(bucket_np))
        for j, model in enumerate(step["auditors"]):
            rows = bucket_np == j
            if model is not None and rows.any():
                delta[rows] = model.predict(A[rows])
        return to_tensor(delta, F.device, F.dtype)

    # ----------------------------------------------------------- prediction
    def _staged_link(self, X, groups, base_predictions):
        check_is_fitted(self)
        if is_dask_collection(X):
            raise TypeError(
                "The staged predictions are computed in memory; pass X as a numpy "
                "array or DataFrame (predict and predict_proba take dask arrays)."
            )
        X = validate_data(self, X, reset=False, dtype=np.float64)
        loss = self._loss_object()
        base = self._base_predictions(X, base_predictions)
        G = self._groups_for(X, groups)
        dev, dt = self._predict_device(), self._dtype
        work = self._work(X)
        # Threads are chosen per step, never held across a yield.
        with self._threads(work):
            F = loss.link(to_tensor(base, dev, dt))
            Gt = None if G is None else to_tensor(G, dev, dt)
            data = self._data(X, G, Gt, F)
        yield to_numpy(F)
        F0, A = F, None
        for step in self.rounds_:
            with self._threads(work):
                delta, affine = self._round_parts(step, data, F, loss)
                if affine is not None:
                    A = affine if A is None else A + affine
                F = F + self.learning_rate * delta
                out = self._unshrunk(F0, F, A)
            yield to_numpy(out)

    def _final_link(self, X, groups, base_predictions):
        *_, last = self._staged_link(X, groups, base_predictions)
        return last

    def _rebucket(self):
        """``rebucket="auto"``: level sets of the current score for buckets
        and the ridge auditor; the base score as the tree's score feature.
        On the audit rows the current score holds the rounds' fitted noise,
        and a tree splitting on it chases that noise (measured on the
        benchmark: more rounds, higher test MSE)."""
        if self.rebucket == "auto":
            return not self._uses_tree()
        return self.rebucket

    def _uses_tree(self):
        return self.auditor in ("tree", "hybrid")

    def _uses_ridge(self):
        return self.auditor in ("ridge", "groups", "hybrid")

    def _work(self, X):
        """Elements of the auditor's design matrix: the size of one operation."""
        if self.auditor == "tree":
            # Its torch work is on vectors of rows (one thread below 2e5
            # rows); the trees run in scikit-learn's OpenMP pool on
            # tree_threads(). Both pools on two threads made a 12,000-row fit
            # twice as slow as one thread: they spun on the same cores.
            return X.shape[0]
        width = (X.shape[1] + 1) * (1 + self.n_knots)
        return X.shape[0] * width * (1 + (self.n_groups_ if self.interactions else 0))

    def _is_classifier(self):
        return False

    @staticmethod
    def _dask_inputs(X, *others):
        """Whether this call takes the out-of-core path (``X`` a dask
        collection); the other inputs may then be dask or numpy."""
        if is_dask_collection(X):
            return True
        if any(is_dask_collection(arg) for arg in others):
            raise TypeError(
                "X is not a dask collection but another argument is; pass X as a "
                "dask array or dataframe too for an out-of-core fit or prediction."
            )
        return False


def _column_moments(X, w, block=65536):
    """Weighted column means and standard deviations (1 for constant
    columns), over row blocks so no full-size temporary is made."""
    total = w.sum()
    mean = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block):
        mean += w[start : start + block] @ X[start : start + block]
    mean /= total
    var = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block):
        dx = X[start : start + block] - mean
        var += w[start : start + block] @ (dx * dx)
    std = np.sqrt(var / total)
    return mean, np.where(std > 1e-12, std, 1.0)


class _Data:
    """Tensors of one data split, as the boosting loop sees them.

    ``Zs`` is the auditor's static design block (None for a scikit-learn
    auditor); its weighted Gram matrix is computed once, on demand, or set
    from the full data's by :meth:`split`.
    """

    def __init__(self, X, X_np, y, w, G, F0, Zs=None, codes=None):
        self.X, self.X_np, self.y, self.w, self.G, self.F0 = X, X_np, y, w, G, F0
        self.Zs = Zs
        self.codes = codes
        self._gram = None
        # The tree's base-score bins, and the edges the codes' score column
        # was last written with.
        self.base_edges = None
        self.score_key = None
        # The affine step's [1, g] block and its Gram matrix (squared loss).
        self.affine_static = None
        self.affine_gram = None
        # group_cells(): (distinct rows of [1, g], each row's index), False
        # without groups or with many cells, None before the first call;
        # a subset reads them from (the whole data, its rows)
        self.affine_cells = None
        self._cells_of = None
        self._tree_threads = None

    @property
    def tree_threads(self):
        """The trees' thread count, decided once per split rather than
        every round (each decision reads the cores' load)."""
        if self._tree_threads is None:
            self._tree_threads = tree_threads()
        return self._tree_threads

    def static_gram(self):
        if self._gram is None:
            self._gram = weighted_gram(self.Zs, self.w)
        return self._gram

    def subset(self, idx):
        t = torch.as_tensor(idx, device=self.F0.device)

        def take(value):
            if isinstance(value, np.ndarray):
                return np.asfortranarray(value[idx])
            return None if value is None else value[t]

        part = _Data(
            take(self.X),
            None if self.X_np is None else self.X_np[idx],
            take(self.y),
            take(self.w),
            take(self.G),
            self.F0[t],
            take(self.Zs),
            take(self.codes),
        )
        # the cells of the whole data serve every subset (the folds, the
        # holdout): one torch.unique per fit, when the affine step asks
        part._cells_of = (self, t)
        return part

    def group_cells(self):
        """The distinct rows of ``[1, g]`` and each row's index, when the
        groups take few distinct values (the affine step's moments then come
        from per-cell sums); False otherwise."""
        if self.affine_cells is None and self._cells_of is not None:
            cells = self._cells_of[0].group_cells()
            self.affine_cells = cells and (cells[0], cells[1][self._cells_of[1]])
        if self.affine_cells is None:
            self.affine_cells = False
            if self.G is not None:
                G, cell = torch.unique(self.G, dim=0, return_inverse=True)
                C = torch.cat([G.new_ones(len(G), 1), G], 1)
                # Per-cell sums pay off while the cells are few against the
                # rows and the design is wide (with one group column the
                # products cost less than the sums' overhead).
                few = C.shape[0] * _ROWS_PER_CELL <= len(cell)
                if few and C.shape[1] > _NARROW_AFFINE:
                    self.affine_cells = (C, cell)
        return self.affine_cells

    def split(self, train_idx, val_idx):
        """Train and validation subsets; when they partition the rows, the
        train Gram is the full one minus the validation one (K folds then
        cost two full Gram matrices, not K)."""
        train, val = self.subset(train_idx), self.subset(val_idx)
        n = self.F0.shape[0]
        partition = (
            len(train_idx) + len(val_idx) == n
            and len(np.union1d(train_idx, val_idx)) == n
        )
        if self.Zs is not None and partition:
            train._gram = self.static_gram() - val.static_gram()
        return train, val


class _Run:
    def __init__(self):
        self.F = None
        self.rounds, self.train_loss, self.val_loss = [], [], []
        self.train_mc, self.val_mc = [], []
        # (validation probabilities, level) of rounds not yet audited
        self.val_pending = []
        # The affine steps' share of F - F0 (tree rounds), for unshrinking,
        # and the validation (score, affine share): latest, at the best round.
        self.A = None
        self.val_state = self.best_state = None
        self.stopped = False


_DOC_PARAMS = """
    estimator : estimator instance, default=None
        The base model. ``None``: a constant (the weighted mean target). A
        :class:`~sklearn.frozen.FrozenEstimator`: an already fitted model used
        as it is, all of ``X`` being audit data. Any other estimator:
        cross-fitted (``cv`` folds) so that the audit sees out-of-fold base
        predictions, then refitted on all of ``X`` for prediction. Base
        predictions can also be passed directly to ``fit`` and ``predict``
        (``base_predictions``).

    auditor : {"tree", "hybrid", "ridge", "groups"} or regressor instance, \
            default="tree"
        The weak learner fitted to the (Newton) residuals each round.
        ``"tree"``: a Newton ridge step on ``[1, u, g, g * u]`` (``u`` the
        standardised link-space score, ``g`` the group indicators: per-group
        levels and score slopes, a generalisation of MCGrad's rescaling),
        then one histogram regression tree over the features, the group
        indicators and the current score, grown by scikit-learn's histogram
        tree grower on bins computed once per fit (only the score is
        re-binned each round); its splits on the score are adaptive level
        sets, as in MCGrad. It finds miscalibrated subgroups that are not
        named. ``"ridge"``: ridge regression on ``[1, u, hinge(u), g, g * u]``,
        where ``u = (x, F)`` are the standardised features and score,
        ``hinge(u)`` their hinge functions at ``n_knots`` quantile knots
        (products with ``g`` only with ``interactions``), solved for all
        buckets in one batched torch solve on ``device``. ``"hybrid"``: a
        ridge step, then the tree step, each round. ``"groups"``: the HKRR /
        multiaccuracy auditor on the group indicators alone. A scikit-learn
        regressor is cloned and fitted per bucket on ``[x, F, g]`` on the CPU.
        Trees always run on the CPU.

    bucket_strategy : {"quantile", "uniform", "none"}, default="none"
        Level sets of the current prediction: equal-mass or equal-width
        buckets of the link-space score, or one bucket, where the ridge
        auditor's hinge functions of the score (per group, with
        ``interactions``) or the tree's splits on the score play the part of
        the level sets, as the prediction-as-feature of MCGrad. The tree and
        hybrid auditors need ``"none"``.

    n_buckets : int, default=10
        Number of buckets (unused with ``bucket_strategy="none"``).

    rebucket : bool or "auto", default="auto"
        Recompute buckets from the current prediction every round (the
        theory's level sets) rather than from the base prediction; for the
        tree and hybrid auditors, give the tree the current score rather than
        the base score as its score feature. ``"auto"``: True for buckets and
        the ridge auditor; False for the trees, because on the audit rows the
        current score holds the earlier rounds' fitted noise and trees that
        split on it chase that noise (on the benchmark, 100 rounds on the
        current score raised test MSE 4-7% more than on the base score). The
        audit of ``mc_error_path_`` always uses the current score.

    min_bucket_fraction : float, default=0.02
        Buckets (and audited group x bucket cells) lighter than this share of
        the total weight get no update.

    update : {"all", "worst"}, default="all"
        Update every bucket each round (LSBoost) or only the one whose auditor
        gains most (HKRR, mcboost).

    learning_rate : float, default=0.1
        Shrinkage of each round's update (of the tree's; the tree auditor's
        affine step takes a full Newton step). 0.5 suits the ridge auditor.

    max_iter : int, default=500
        Maximum number of rounds.

    alpha : float or "gcv", default=10.0
        Ridge penalty of the ``"ridge"``/``"groups"`` auditors (the intercept
        is not penalised). ``"gcv"`` picks it per bucket and round by
        generalised cross-validation over a grid from 1e-2 to 1e5.

    interactions : bool, default=True
        Add group x feature products to the ridge auditor's features, so it
        can correct a group's slope and not only its level.

    n_knots : int, default=3
        Hinge functions per feature (and for the score) in the ridge
        auditor, at quantiles of the audit data: 0 gives a linear auditor.

    max_leaf_nodes : int or None, default=31
        Leaves of each tree of the tree auditor (as in
        :class:`~sklearn.ensemble.HistGradientBoostingRegressor`).

    max_depth : int or None, default=None
        Depth limit of each tree.

    min_samples_leaf : int, default=20
        Fewest rows in a tree's leaf.

    l2_regularization : float or "auto", default="auto"
        L2 penalty of the tree's leaf values (in units of summed Newton
        weight). ``"auto"``: 0 for the squared and quantile losses; 1 for
        the log loss and the Poisson loss, whose Newton weight vanishes on
        rows the score is confident about (or predicts near 0): unpenalised,
        a leaf of such rows steps by their summed gradient over a summed
        weight near 0, and an overconfident base model's first round can
        multiply the validation loss (XGBoost's leaf penalty defaults to 1
        for this reason).

    max_bins : int, default=255
        Bins per feature of the tree auditor (at most 255), made once per fit
        from quantiles of the audit rows with positive weight.

    group_features : array-like of int or str, default=None
        Columns of X holding categorical group variables, as indices or, when
        X is a DataFrame, as column names; each distinct value becomes a group
        indicator. Groups can also come as the ``groups`` argument of ``fit``.

    early_stopping : {"auto", "holdout", "cv", "tolerance", "significance"} \
            or bool, default="auto"
        How the number of rounds is chosen. ``"holdout"``: boost on
        ``1 - validation_fraction`` of the rows, pick the round with the
        lowest validation loss (zero rounds allowed), then refit that many
        rounds on all rows. ``"cv"``: the same with ``cv`` folds and the mean
        validation curve. ``"tolerance"``: stop when no group x bucket cell has
        a mass-weighted mean residual above ``tol``. ``"significance"``: stop
        when no cell's mean residual is significant at level ``significance``
        (Bonferroni over cells). ``"auto"``: ``"cv"`` from 10 rows
        (``"holdout"`` from 10,000 rows on: one holdout ranks rounds well
        there and costs one path, not ``cv``), else ``"significance"``. The
        folds of ``"cv"`` advance in lockstep and stop together when their
        mean validation loss stops improving.
        ``False``: exactly ``max_iter`` rounds.

    validation_fraction : float, default=0.2
        Share of rows held out by ``"holdout"``.

    n_iter_no_change : int, default=10
        Rounds without improvement before ``"holdout"``/``"cv"`` stop.

    tol : float, default=1e-4
        Relative validation-loss improvement that counts as progress
        (``"holdout"``/``"cv"``), or the bias threshold of ``"tolerance"``.

    risk_tolerance : float, default=0.0
        With ``"holdout"``/``"cv"``, choose the last round whose validation
        loss is within this relative tolerance of the best one, rather than
        the best: extra rounds buy calibration at (almost) no risk.

    unshrink : bool, default=True
        With ``"holdout"``/``"cv"`` stopping, rescale the correction after
        the chosen round: its affine-step part and its other part (the
        trees, or the ridge auditor's steps) each get a coefficient in
        ``[0, max(1, 1 / learning_rate)]``, fitted by minimising the loss on
        the selection paths' validation rows at that round (rows those paths
        never trained on). The shrunk steps of an early-stopped path move
        each part only part of the way; MCGrad rescales its score after each
        round for the same reason. Not done for the quantile loss, whose
        closing shift is exact, nor without held-out rows (other rules, or
        ``early_stopping=False``), nor in the Dask fit. The coefficients
        are in ``unshrink_``.

    significance : float, default=0.05
        Family-wise level of the ``"significance"`` rule.

    cv : int, cross-validation generator or iterable, default=5
        Folds for cross-fitting an unfitted ``estimator`` and for
        ``early_stopping="cv"``; an int gives shuffled (stratified for the
        classifier) folds seeded from ``random_state``.

    random_state : int, RandomState instance or None, default=None
        Seeds the cross-fitting folds, the holdout split and random auditors.

    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``: where the ridge
        auditors, the affine steps and the group x bucket audits run (torch,
        float64); trees run on the CPU.
"""

_DOC_ATTRS = """
    estimator_ : estimator or None
        The fitted base model (``None`` for a constant or precomputed base).

    n_iter_ : int
        Number of boosting rounds of the final model (0 when the base is
        already multicalibrated as far as the stopping rule can tell).

    rounds_ : list of dict
        The fitted rounds: bucket edges and auditor coefficients (numpy) or
        fitted auditors.

    unshrink_ : ndarray of shape (2,)
        Coefficients of the correction's affine-step part and of its other
        part in the predictions (see ``unshrink``; ``[1, 1]`` when not
        rescaled). ``train_score_`` is the path's loss before the rescaling;
        every stage of ``staged_predict`` carries it.

    train_score_ : ndarray of shape (`n_iter_` + 1,)
        Training loss (mean squared error, half Poisson deviance or log loss)
        before each round and after the last.

    validation_score_ : ndarray or None
        Validation loss along the path explored by ``"holdout"``/``"cv"``
        (index = number of rounds), averaged over folds; ``None`` otherwise.

    mc_error_path_ : ndarray
        Largest group x bucket z-score of the mean residual along the path
        (validation data under ``"holdout"``/``"cv"``, with the deciles of
        the validation scores; training data otherwise): the calibration side
        of the calibration-risk trade-off.

    stopping_rule_ : str or None
        The resolved ``early_stopping`` rule.

    mc_statistic_ : float
        At termination, on the audit rows: the largest z-score of a group x
        decile (of the final score) mean residual (coverage residual for
        ``loss="quantile"``).

    mc_certified_ : bool
        Whether ``mc_statistic_`` is below the ``"significance"`` rule's
        Bonferroni threshold at level ``significance``: no audited cell is
        detectably miscalibrated on the audit rows (always true when that
        rule stopped the fit).

    n_groups_ : int
        Number of group indicators audited.

    bin_edges_ : list of ndarray or None
        The tree auditor's bin thresholds of each feature and group column
        (``None`` for other auditors).

    device_ : torch.device
        The resolved device.

    n_features_in_ : int
        Number of features seen during ``fit``.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when X has string column names.
"""

_DOC_NOTES = """
    The paper's body was not available; the algorithm follows the
    reconstruction in the project's research note (``mcboost.md`` §1.3,
    marked *[reconstructed]*): each round buckets the current predictions
    into level sets, fits the auditor to the loss's Newton working response
    ``(y - p) / h`` with weights ``w h`` inside every bucket, and adds
    ``learning_rate`` times the auditor's output to the link-space score. With
    squared loss this is residual fitting (LSBoost/HKRR); with the log link
    it is the multiplicative Multiaccuracy-Boost step. The number of rounds
    is chosen by early stopping, which the paper puts at the centre of the
    calibration-risk trade-off; the holdout and cross-validation rules refit
    the chosen number of rounds on all rows, as MCGrad does. The
    ``"significance"`` stopping rule and the Newton form of the update are
    our own choices, not the paper's.

    Which rule certifies multicalibration at termination: ``"significance"``
    stops only when no audited group x level-set cell has a mean residual
    significant at level ``significance`` (Bonferroni over cells) on the
    audit rows, the finite-sample form of the paper's claim that its
    stopping rules ensure multicalibration at termination. The default
    (``"auto"``) stops on validation loss instead, which does not trade away
    accuracy; ``mc_error_path_`` shows how calibrated each round is, and
    ``risk_tolerance`` moves the stop towards calibration at a bounded cost.

    The tree auditor (the default) is our addition, after MCGrad (Tax et
    al., 2026): trees over the features and the current score, grown on
    bins made once per fit, with the group-level affine step before each
    tree. ``loss="quantile"`` (BatchGCP / BatchMVP as special cases of the
    scheme) refits each tree leaf as the leaf's residual quantile.

    ``unshrink`` (default on) is ours too, after MCGrad's rescaling of its
    score after each round: after the holdout or cross-validation stop, the
    correction's affine-step part and its tree part are rescaled by
    coefficients fitted on the selection paths' validation rows. The
    early-stopped, rescaled score is not the paper's Bregman projection.
    With ``unshrink=False`` the prediction is the refitted path itself.

    ``groups`` (the fit and predict argument) are audit subgroups. Under
    metadata routing in ``GridSearchCV``, a ``groups`` argument is also what
    group-aware CV splitters read; use ``group_features`` to avoid the clash.

    On a dask array or dataframe ``X``, ``fit`` runs out of core: the ridge
    and group auditors' statistics are sums over row blocks, reduced on the
    client, and the rounds equal the in-memory fit's. There the holdout is
    drawn per block (other rows than in memory), ``early_stopping="auto"``
    means the holdout at any size, ``mc_error_path_`` is None, and the
    tree auditors, the ``"cv"``/``"tolerance"``/``"significance"`` rules and
    an unfitted ``estimator`` are refused (they need the rows in memory);
    the holdout stop is not followed by the ``unshrink`` rescaling.
"""


class MCBoostRegressor(RegressorMixin, _BaseMCBoost):
    __doc__ = f"""Multicalibration boosting for real-valued targets.

    Post-processes a base model so that its predictions are unbiased on every
    audited subgroup and on every level set of the prediction (the buckets),
    by boosting with an auditor, as in "Multicalibration Boosting: Theory,
    Convergence, and Transferability" (Ye & Li, 2026).

    Read more in the :ref:`User Guide <mcboost>`.

    Parameters
    ----------{_DOC_PARAMS}
    loss : {{"squared", "poisson", "quantile"}}, default="squared"
        Squared error with the identity link, the Poisson deviance with
        the log link (non-negative targets, positive base predictions), or
        the pinball loss at level ``quantile`` (identity link; the tree or
        hybrid auditor): group-conditionally calibrated quantiles.

    quantile : float, default=0.5
        Level of ``loss="quantile"``.

    Attributes
    ----------{_DOC_ATTRS}
    See Also
    --------
    MCBoostClassifier : The same for binary targets with a logit link.
    skml.metrics.multicalibration_error : The MCE score used to evaluate it.

    Notes
    -----{_DOC_NOTES}
    Examples
    --------
    >>> from sklearn.frozen import FrozenEstimator
    >>> from skml.calibration import MCBoostRegressor
    >>> from skml.datasets import make_multicalibration_regression
    >>> from skml.metrics import worst_group_bucket_residual
    >>> data = make_multicalibration_regression(4000, design="S2", random_state=0)
    >>> model = MCBoostRegressor(data.estimator, random_state=0)
    >>> model = model.fit(data.X_audit, data.y_audit, groups=data.groups_audit)
    >>> base = data.estimator.predict(data.X_test)
    >>> pred = model.predict(data.X_test, groups=data.groups_test)
    >>> before = worst_group_bucket_residual(data.y_test, base, groups=data.groups_test)
    >>> after = worst_group_bucket_residual(data.y_test, pred, groups=data.groups_test)
    >>> bool(after < 0.5 * before)
    True
    """

    _parameter_constraints: dict = {
        **_BaseMCBoost._parameter_constraints,
        "loss": [StrOptions({"squared", "poisson", "quantile"})],
        "quantile": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        estimator=None,
        *,
        loss="squared",
        quantile=0.5,
        auditor="tree",
        bucket_strategy="none",
        n_buckets=10,
        rebucket="auto",
        min_bucket_fraction=0.02,
        update="all",
        learning_rate=0.1,
        max_iter=500,
        alpha=10.0,
        interactions=True,
        n_knots=3,
        max_leaf_nodes=31,
        max_depth=None,
        min_samples_leaf=20,
        l2_regularization="auto",
        max_bins=255,
        group_features=None,
        early_stopping="auto",
        validation_fraction=0.2,
        n_iter_no_change=10,
        tol=1e-4,
        risk_tolerance=0.0,
        unshrink=True,
        significance=0.05,
        cv=5,
        random_state=None,
        device="cpu",
    ):
        super().__init__(
            estimator,
            auditor=auditor,
            bucket_strategy=bucket_strategy,
            n_buckets=n_buckets,
            rebucket=rebucket,
            min_bucket_fraction=min_bucket_fraction,
            update=update,
            learning_rate=learning_rate,
            max_iter=max_iter,
            alpha=alpha,
            interactions=interactions,
            n_knots=n_knots,
            max_leaf_nodes=max_leaf_nodes,
            max_depth=max_depth,
            min_samples_leaf=min_samples_leaf,
            l2_regularization=l2_regularization,
            max_bins=max_bins,
            group_features=group_features,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            risk_tolerance=risk_tolerance,
            unshrink=unshrink,
            significance=significance,
            cv=cv,
            random_state=random_state,
            device=device,
        )
        self.loss = loss
        self.quantile = quantile

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, *, groups=None, base_predictions=None):
        """Fit the base model (if needed) and the multicalibration rounds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Audit features. A dask array or dataframe fits out of core
            (``auditor="ridge"`` or ``"groups"``; the other inputs may then be
            dask or numpy): see :ref:`mcboost-dask`.
        y : array-like of shape (n_samples,)
            Targets (non-negative for ``loss="poisson"``).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights (e.g. importance weights for a target
            population).
        groups : array-like of shape (n_samples, n_groups) or (n_samples,), \
                default=None
            Audit subgroups: 0/1 indicators (overlapping groups allowed) or
            one label per row.
        base_predictions : array-like of shape (n_samples,), default=None
            Precomputed base predictions (then ``estimator`` is ignored, and
            ``predict`` needs them too).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if self._dask_inputs(X, y, sample_weight, groups, base_predictions):
            return fit_dask(self, X, y, sample_weight, groups, base_predictions)
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values.")
        if self.loss == "quantile" and not self._uses_tree():
            raise ValueError(
                'loss="quantile" needs auditor="tree" (its leaves are refitted '
                f"as residual quantiles); got auditor={self.auditor!r}."
            )
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                'loss="poisson" needs non-negative targets y; got negative values.'
            )
        return self._fit(X, y, sample_weight, groups, base_predictions)

    def predict(self, X, *, groups=None, base_predictions=None):
        """Multicalibrated predictions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples. For a dask array or dataframe the result is a lazy dask
            array, computed block by block.
        groups : array-like, default=None
            Group indicators or labels of the rows (required when ``fit``
            received ``groups``).
        base_predictions : array-like of shape (n_samples,), default=None
            Base predictions (required when ``fit`` received them).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        loss = self._loss_object()
        if self._dask_inputs(X, groups, base_predictions):
            return predict_blockwise(self, "predict", X, groups, base_predictions)
        F = self._final_link(X, groups, base_predictions)
        return to_numpy(loss.inverse(torch.from_numpy(F)))

    def staged_predict(self, X, *, groups=None, base_predictions=None):
        """Predictions after 0, 1, ..., ``n_iter_`` rounds.

        The first array is the base model's prediction, so the generator
        yields ``n_iter_ + 1`` arrays and the last equals :meth:`predict`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples (in memory: not a dask collection).
        groups : array-like, default=None
            As in :meth:`predict`.
        base_predictions : array-like of shape (n_samples,), default=None
            As in :meth:`predict`.

        Yields
        ------
        y_pred : ndarray of shape (n_samples,)
        """
        loss = self._loss_object()
        for F in self._staged_link(X, groups, base_predictions):
            yield to_numpy(loss.inverse(torch.from_numpy(F)))

    def _loss_name(self):
        return self.loss

    def _target(self, y):
        return y

    def _base_predict(self, estimator, X):
        return estimator.predict(X)

    def _check_base_range(self, base, name):
        if self.loss == "poisson" and np.any(base <= 0):
            raise ValueError(
                f'{name} must be positive for loss="poisson" (log link); got '
                f"min {base.min():.3g}. Use a base model with a positive output "
                "(e.g. a Poisson GLM or HistGradientBoostingRegressor(loss='poisson'))."
            )
        return base

    def _clip_constant(self, constant):
        return max(constant, 1e-8) if self.loss == "poisson" else constant


class MCBoostClassifier(ClassifierMixin, _BaseMCBoost):
    __doc__ = f"""Multicalibration boosting for binary targets (logit link).

    The classification sibling of :class:`MCBoostRegressor`: the same rounds
    on the log-loss Newton response in logit space, so that predicted
    probabilities are calibrated on every audited subgroup and level set.

    Read more in the :ref:`User Guide <mcboost>`.

    Parameters
    ----------{_DOC_PARAMS}
    Attributes
    ----------{_DOC_ATTRS}
    classes_ : ndarray of shape (2,)
        The class labels; ``classes_[1]`` is the positive class.

    See Also
    --------
    MCBoostRegressor : Real-valued targets.

    Notes
    -----{_DOC_NOTES}
    Examples
    --------
    >>> import numpy as np
    >>> from skml.calibration import MCBoostClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 3))
    >>> y = (rng.random(1000) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(int)
    >>> clf = MCBoostClassifier(random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, *, groups=None, base_predictions=None):
        """Fit the base model (if needed) and the multicalibration rounds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Audit features. A dask array or dataframe fits out of core
            (``auditor="ridge"`` or ``"groups"``; the other inputs may then be
            dask or numpy): see :ref:`mcboost-dask`.
        y : array-like of shape (n_samples,)
            Binary labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.
        groups : array-like of shape (n_samples, n_groups) or (n_samples,), \
                default=None
            Audit subgroups (0/1 indicators or labels).
        base_predictions : array-like of shape (n_samples,), default=None
            Precomputed base probabilities of ``classes_[1]``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if self._dask_inputs(X, y, sample_weight, groups, base_predictions):
            return fit_dask(self, X, y, sample_weight, groups, base_predictions)
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                "Only binary classification is supported. The type of the target "
                f"is {y_type}."
            )
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            # type_of_target calls one label "binary"; the logit would run off
            # to infinity for max_iter rounds.
            raise ValueError(
                "MCBoostClassifier needs samples of 2 classes; the data contains "
                f"only one class: {self.classes_[0]!r}"
            )
        return self._fit(
            X,
            encoder.transform(y).astype(np.float64),
            sample_weight,
            groups,
            base_predictions,
            labels=y,
        )

    def decision_function(self, X, *, groups=None, base_predictions=None):
        """Logit of the multicalibrated probability of ``classes_[1]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples. For a dask array or dataframe the result is a lazy dask
            array, computed block by block.
        groups : array-like, default=None
            As in :meth:`fit`.
        base_predictions : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        if self._dask_inputs(X, groups, base_predictions):
            return predict_blockwise(
                self, "decision_function", X, groups, base_predictions
            )
        return self._final_link(X, groups, base_predictions)

    def predict_proba(self, X, *, groups=None, base_predictions=None):
        """Multicalibrated class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples. For a dask array or dataframe the result is a lazy dask
            array, computed block by block.
        groups : array-like, default=None
            As in :meth:`fit`.
        base_predictions : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
        """
        if self._dask_inputs(X, groups, base_predictions):
            return predict_blockwise(
                self, "predict_proba", X, groups, base_predictions, width=2
            )
        F = self.decision_function(X, groups=groups, base_predictions=base_predictions)
        p = 1.0 / (1.0 + np.exp(-F))
        return np.column_stack([1.0 - p, p])

    def predict(self, X, *, groups=None, base_predictions=None):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples. For a dask array or dataframe the result is a lazy dask
            array, computed block by block.
        groups : array-like, default=None
            As in :meth:`fit`.
        base_predictions : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        if self._dask_inputs(X, groups, base_predictions):
            return predict_blockwise(self, "predict", X, groups, base_predictions)
        F = self.decision_function(X, groups=groups, base_predictions=base_predictions)
        return self.classes_[(F > 0).astype(int)]

    def staged_predict_proba(self, X, *, groups=None, base_predictions=None):
        """Probabilities after 0, 1, ..., ``n_iter_`` rounds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples (in memory: not a dask collection).
        groups : array-like, default=None
            As in :meth:`fit`.
        base_predictions : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Yields
        ------
        proba : ndarray of shape (n_samples, 2)
        """
        for F in self._staged_link(X, groups, base_predictions):
            p = 1.0 / (1.0 + np.exp(-F))
            yield np.column_stack([1.0 - p, p])

    def _loss_name(self):
        return "log_loss"

    def _target(self, y):
        return y

    def _is_classifier(self):
        return True

    def _base_predict(self, estimator, X):
        proba = estimator.predict_proba(X)
        classes = list(getattr(estimator, "classes_", self.classes_))
        return proba[:, classes.index(self.classes_[1])]

    def _check_base_range(self, base, name):
        if np.any((base < 0) | (base > 1)):
            raise ValueError(f"{name} must be probabilities in [0, 1].")
        return base

    def _clip_constant(self, constant):
        return float(np.clip(constant, 1e-6, 1 - 1e-6))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags
