"""Constrained online learners: NP-OGD as scikit-learn estimators."""

import math
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ..utils import TorchEstimatorMixin
from ._constraints import CallableConstraint, Constraint, HalfSpaces
from ._engine import ALGORITHMS, OnlineState, batch_loss, plain_rounds
from ._projection import InfeasibleConstraintsError

_ROW_PARAMS = ("sensitive_features", "constraint_A", "constraint_b")


def _as_constraints(constraint):
    """The ``constraint`` parameter as a list of :class:`Constraint` objects."""
    if constraint is None:
        return []
    items = constraint if isinstance(constraint, list | tuple) else [constraint]
    out = []
    for item in items:
        if isinstance(item, Constraint):
            out.append(item)
        elif callable(item):
            out.append(CallableConstraint(item, requires=None))
        else:
            raise TypeError(
                "constraint must be None, a skml.online Constraint, a callable "
                f"or a list of them; got {type(item).__name__}"
            )
    return out


class _BaseCOCO(TorchEstimatorMixin, BaseEstimator):
    """The online engine's sklearn plumbing, shared by the regressor and classifier."""

    _parameter_constraints: dict = {
        **TorchEstimatorMixin._parameter_constraints,
        "constraint": [None, list, tuple, HasMethods(["evaluate"]), callable],
        "step_size": [
            StrOptions({"auto", "optimal", "adagrad", "invscaling"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "domain_radius": [None, Interval(Real, 0, None, closed="neither")],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "penalty_weight": [Interval(Real, 0, None, closed="left")],
        "horizon": [None, Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "cuts": [StrOptions({"violated", "all"})],
        "fit_intercept": ["boolean"],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        loss,
        *,
        constraint=None,
        step_size="auto",
        alpha=1e-4,
        domain_radius=None,
        algorithm="nested_projection",
        batch_size=1,
        penalty_weight=1.0,
        horizon=None,
        tol=1e-9,
        cuts="violated",
        fit_intercept=True,
        warm_start=False,
        random_state=None,
        device="cpu",
    ):
        self.loss = loss
        self.constraint = constraint
        self.step_size = step_size
        self.alpha = alpha
        self.domain_radius = domain_radius
        self.algorithm = algorithm
        self.batch_size = batch_size
        self.penalty_weight = penalty_weight
        self.horizon = horizon
        self.tol = tol
        self.cuts = cuts
        self.fit_intercept = fit_intercept
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device

    # -- the pass --------------------------------------------------------------
    def _new_state(self, n_features):
        dim = n_features + (1 if self.fit_intercept else 0)
        return OnlineState(
            dim,
            algorithm=self.algorithm,
            alpha=self.alpha,
            step_size=self.step_size,
            radius=self.domain_radius,
            horizon=self.horizon,
            penalty_weight=self.penalty_weight,
            tol=self.tol,
            device=self.device_,
            store=self.cuts,
        )

    def _row_params(self, n, params):
        """Validate the per-row fit parameters that were given."""
        out = {}
        for name, value in params.items():
            if value is None:
                continue
            arr = np.asarray(value)
            if arr.shape[:1] != (n,):
                raise ValueError(
                    f"{name} must have one entry per row of X ({n}); got shape "
                    f"{arr.shape}"
                )
            out[name] = arr
        if ("constraint_A" in out) != ("constraint_b" in out):
            raise ValueError("constraint_A and constraint_b must be passed together.")
        if "constraint_A" in out:
            A = np.asarray(out["constraint_A"], dtype=np.float64)
            b = np.asarray(out["constraint_b"], dtype=np.float64)
            if A.ndim != 2 or A.shape[1] != self.n_features_in_ or b.ndim != 1:
                raise ValueError(
                    "constraint_A must have shape (n_samples, n_features) = "
                    f"({n}, {self.n_features_in_}) and constraint_b shape "
                    f"(n_samples,); got {A.shape} and {b.shape}"
                )
            if not np.all(np.isfinite(A)):
                raise ValueError("constraint_A contains NaN or infinity.")
            if np.any(np.isinf(b)):
                raise ValueError("constraint_b contains infinity (NaN means none).")
            out["constraint_A"], out["constraint_b"] = A, b
        return out

    def _constraints(self, params):
        constraints = _as_constraints(self.constraint)
        if "constraint_A" in params:
            constraints.append(HalfSpaces())
        for c in constraints:
            needed = c.requires or ()
            missing = [k for k in needed if k not in params]
            if missing:
                raise ValueError(
                    f"{c!r} needs the fit parameter(s) {', '.join(missing)}: pass "
                    f"them to fit/partial_fit, e.g. fit(X, y, {missing[0]}=...)"
                )
        return constraints

    def _evaluate(self, constraints, w, Xb, yb, params, t):
        """Stacked constraint values and gradients (in ``w``) of one round."""
        d = self.n_features_in_
        coef = w[:d]
        intercept = float(w[d]) if self.fit_intercept else 0.0
        values, grads = [], []
        for c in constraints:
            if c.requires is None:  # a plain callable sees every parameter
                kwargs = params
            else:
                kwargs = {k: params[k] for k in c.requires}
            v, gc, gi = c.evaluate(coef, intercept, Xb, yb, **kwargs)
            v = np.atleast_1d(np.asarray(v, dtype=np.float64))
            gc = (
                np.asarray(gc, dtype=np.float64).reshape(-1, d)
                if np.size(gc)
                else (np.empty((0, d)))
            )
            gi = np.atleast_1d(np.asarray(gi, dtype=np.float64))
            k = len(v)
            if v.ndim != 1 or gc.shape != (k, d) or gi.shape != (k,):
                raise ValueError(
                    f"round {t}: {c!r} returned values of shape {v.shape}, "
                    f"coefficient gradients {gc.shape} and intercept gradients "
                    f"{gi.shape}; expected (k,), (k, {d}) and (k,)"
                )
            if not (
                np.all(np.isfinite(v))
                and np.all(np.isfinite(gc))
                and np.all(np.isfinite(gi))
            ):
                raise ValueError(
                    f"round {t}: {c!r} returned a non-finite value or subgradient"
                )
            values.append(v)
            g = np.empty((k, len(w)))
            g[:, :d] = gc
            if self.fit_intercept:
                g[:, d] = gi
            grads.append(g)
        if not values:
            return np.empty(0), np.empty((0, len(w)))
        return np.concatenate(values), np.concatenate(grads)

    def _learn(self, X, y, sample_weight, reset, sf, A, b, fit_call):
        """Validate weights and fit parameters, then play the rows' rounds.

        ``y`` is already the float target (``-1``/``+1`` for a classifier).
        """
        sample_weight = (
            None if sample_weight is None else _check_sample_weight(sample_weight, X)
        )
        self._start(X, reset)
        params = self._row_params(
            X.shape[0], {"sensitive_features": sf, "constraint_A": A, "constraint_b": b}
        )
        # Sinha-Vaze's horizon when none is set: the rounds of this fit call.
        rounds = math.ceil(X.shape[0] / self.batch_size)
        hint = self.state_.t + rounds if fit_call else 0
        self._pass(X, y, sample_weight, params, hint)
        return self

    def _pass(self, X, y, sample_weight, params, horizon_hint):
        """One ordered pass over the rows: a round per ``batch_size`` rows."""
        state = self.state_
        state.cuts.device = self.device_
        state.horizon_hint = horizon_hint
        constraints = self._constraints(params)
        n = X.shape[0]
        bs = self.batch_size
        n_rounds = math.ceil(n / bs)
        losses = np.empty(n_rounds)
        violations = np.empty(n_rounds)
        done = 0
        alpha = self.alpha
        if (
            not constraints
            and bs == 1
            and state.cuts.n == 0
            and self.algorithm not in ("sinha_vaze", "switch")
        ):
            # No constraint can appear: plain projected OGD, row by row.
            try:
                losses = plain_rounds(
                    state, self.loss, X, y, self.fit_intercept, sample_weight, 1.35
                )
            except FloatingPointError as exc:
                self._finish(exc.losses, np.zeros(len(exc.losses)))
                raise ValueError(
                    f"{exc}: lower step_size, raise alpha or set domain_radius"
                ) from None
            self._finish(losses, np.zeros(n))
            return
        try:
            for r in range(n_rounds):
                sl = slice(r * bs, min((r + 1) * bs, n))
                Xb, yb = X[sl], y[sl]
                w = state.w
                value, grad, curvature = batch_loss(
                    self.loss,
                    Xb,
                    yb,
                    w,
                    self.fit_intercept,
                    None if sample_weight is None else sample_weight[sl],
                    1.35,
                )
                if constraints:
                    kw = {k: v[sl] for k, v in params.items()}
                    g_values, g_grads = self._evaluate(
                        constraints, w, Xb, yb, kw, state.t + 1
                    )
                else:
                    g_values, g_grads = _NO_VALUES, _no_grads(len(w))
                violations[r] = state.round(grad, curvature, g_values, g_grads)
                losses[r] = value + 0.5 * alpha * float(w @ w)
                done = r + 1
        except FloatingPointError as exc:
            self._finish(losses[:done], violations[:done])
            raise ValueError(
                f"{exc}: lower step_size, raise alpha or set domain_radius"
            ) from None
        except InfeasibleConstraintsError:
            self._finish(losses[:done], violations[:done])
            raise
        self._finish(losses, violations)

    def _finish(self, losses, violations):
        state = self.state_
        d = self.n_features_in_
        prev_l = getattr(self, "loss_trace_", np.empty(0))
        prev_v = getattr(self, "violation_trace_", np.empty(0))
        self.loss_trace_ = np.concatenate([prev_l, losses])
        self.violation_trace_ = np.concatenate([prev_v, violations])
        self.cumulative_violation_ = float(state.ccv)
        self.t_ = state.t
        self.movement_ = float(state.movement)
        self.n_cuts_ = int(state.cuts.n)
        self.n_violations_ = int(state.n_violations)
        self.max_projection_residual_ = float(state.max_residual)
        self.switched_at_ = state.switch_round if self.algorithm == "switch" else None
        coef = state.w[:d].copy()
        intercept = float(state.w[d]) if self.fit_intercept else 0.0
        self._set_model(coef, intercept)

    def _start(self, X, reset):
        """Reset (or keep) the online state before a pass."""
        self._fit_device()
        if reset:
            for name in ("loss_trace_", "violation_trace_"):
                self.__dict__.pop(name, None)
            self.state_ = self._new_state(X.shape[1])
        self.n_iter_ = 1

    def _decision(self, X):
        check_is_fitted(self, "state_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        self._predict_device()
        return X @ self._coef_vector() + self._intercept_value()


_NO_VALUES = np.empty(0)


def _no_grads(dim):
    return np.empty((0, dim))


class COCOLearner(RegressorMixin, _BaseCOCO):
    """Online regression under constraints revealed with the data (NP-OGD).

    Each round (a row, or ``batch_size`` rows) the learner predicts with its
    current model, then sees the round's loss and constraints, takes a
    gradient step and projects it onto the intersection of *every*
    constraint seen so far (nested projection, NP-OGD). For losses made
    ``alpha``-strongly convex the paper proves O(log T) regret and O(log T)
    cumulative constraint violation (CCV); O(sqrt T) each for convex ones.
    The model after any round satisfies every constraint it has stored.

    Parameters
    ----------
    loss : {"squared", "huber", "absolute"}, default="squared"
        Per-row loss of the score ``coef . x + intercept``: half squared
        error, Huber with threshold 1.35, or absolute error.
    constraint : Constraint, callable, list or None, default=None
        Constraints revealed each round: skml's built-ins
        (:class:`~skml.online.DemographicParity`,
        :class:`~skml.online.EqualOpportunity`, :class:`~skml.online.NormBall`),
        any object with :meth:`~skml.online.Constraint.evaluate`, or a
        function ``f(coef, intercept, X, y, **fit_params) -> (values,
        grad_coef, grad_intercept)``. Per-row half-spaces are passed to
        ``fit`` as ``constraint_A`` and ``constraint_b`` instead. None and no
        half-spaces: plain projected online gradient descent.
    step_size : {"auto", "optimal", "adagrad", "invscaling"} or float, default="auto"
        ``"optimal"``: ``1 / (alpha t + L)``, the strongly convex schedule
        ``1 / (alpha t)`` of the paper once ``alpha t`` exceeds the largest
        curvature bound ``L`` seen (``||x||^2 + 1`` for the squared loss),
        which keeps the first steps stable. ``"adagrad"``: ``D /
        sqrt(sum ||grad||^2)``; ``"invscaling"``: ``D / (G sqrt t)``, the
        convex schedule (both need ``domain_radius``, ``D`` is the domain's
        diameter). A float: constant. ``"auto"``: ``"optimal"`` if
        ``alpha > 0``, else ``"adagrad"``. All are anytime (no horizon).
    alpha : float, default=1e-4
        Each round's loss gets ``alpha/2 ||w||^2`` (intercept included), which
        makes it ``alpha``-strongly convex, as the O(log T) results assume.
    domain_radius : float or None, default=None
        Box domain ``[-R, R]`` for every coefficient and the intercept; None
        for none.
    algorithm : {"nested_projection", "switch", "sinha_vaze", "latest_only", \
"domain_only", "penalty"}, default="nested_projection"
        ``"nested_projection"``: NP-OGD. ``"switch"``: NP-OGD while the CCV
        stays below ``sqrt(t) (1 + ln t)``, then Sinha-Vaze (the robust mode
        of Vaze and Sinha). The others are the baselines of the benchmark:
        Sinha and Vaze's Lyapunov method (needs ``domain_radius``, and the
        horizon: ``horizon``, else the rows of the ``fit`` call), projection
        onto the latest constraint only, onto the domain only (constraints
        ignored), and a fixed penalty ``penalty_weight * g^+``.
    batch_size : int, default=1
        Rows per round. A round's loss is the weighted mean over its rows;
        group constraints (parity) need several rows per round.
    penalty_weight : float, default=1.0
        Strength of ``algorithm="penalty"``.
    horizon : int or None, default=None
        Horizon ``T`` of Sinha-Vaze (``"sinha_vaze"``, ``"switch"``).
    tol : float, default=1e-9
        Feasibility tolerance of the projection; a constraint value at most
        ``tol`` stores no cut.
    cuts : {"violated", "all"}, default="violated"
        Store a cut for violated constraint values only (the paper's
        guarantees need no more, and memory grows with the violating rounds),
        or for every value revealed, so that the model after each round
        satisfies *every* affine constraint of the stream so far (memory
        grows with the rounds).
    fit_intercept : bool, default=True
    warm_start : bool, default=False
        ``fit`` continues the current state (model, cuts, step counter)
        instead of starting afresh. ``partial_fit`` always continues.
    random_state : int, RandomState instance or None, default=None
        Unused: the pass is ordered and the algorithms deterministic. Kept
        so that tools that set it on every estimator work.
    device : str or torch.device, default="cpu"
        Where large screens of stored cuts run (torch). The rounds
        themselves are small sequential numpy work on the CPU.

    Attributes
    ----------
    coef_ : ndarray of shape (`n_features_in_`,)
    intercept_ : float
    t_ : int
        Rounds played since the last reset.
    n_iter_ : int
        Passes in the last call (always 1).
    cumulative_violation_ : float
        CCV: the sum over rounds of ``max(g_t(w_t), 0)``, ``g_t`` the largest
        of the round's constraint values at the model played.
    violation_trace_ : ndarray of shape (`t_`,)
        Each round's ``max(g_t(w_t), 0)``.
    loss_trace_ : ndarray of shape (`t_`,)
        Each round's regularised loss at the model played.
    movement_ : float
        Total distance moved by the model; ``CCV <= G * movement_`` when
        every constraint is ``G``-Lipschitz (the self-contraction argument).
    n_cuts_ : int
        Stored cuts (one per violated constraint value).
    n_violations_ : int
        Rounds with a positive violation.
    max_projection_residual_ : float
        Largest violation of a stored cut after a projection.
    switched_at_ : int or None
        The round where ``algorithm="switch"`` moved to Sinha-Vaze.
    state_ : object
        The online state (model, cuts, counters; numpy only).
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when ``X`` has string feature names.

    See Also
    --------
    COCOClassifier : the same engine for logistic and hinge losses.
    hindsight_regret : regret against the best feasible fixed model.
    sklearn.linear_model.SGDRegressor : online regression without constraints.

    Notes
    -----
    From the paper (Sarkar and Sinha, 2026): the nested projection and its
    guarantees. Derived in ``shared/research/coco.md`` §1.4 and used here:
    a constraint is stored as its first-order cut at the model played, and
    only on rounds where it is violated (exact for affine constraints;
    the three proof steps go through unchanged); the projection onto the
    cuts and the box is exact (a least-distance program solved by NNLS on a
    working set, with the other cuts screened lazily by the movement
    odometer). The step-size constants (the ``L`` shift of ``"optimal"``)
    are ours; the paper's full text was not available.

    Feasibility is an assumption: if the constraints seen so far have no
    common point, ``fit`` raises a ``ValueError`` naming the round and keeps
    the model of the round before.

    ``fit`` is one pass in the order given, and the model is the last
    round's, unlike :class:`~sklearn.linear_model.SGDRegressor`, which
    shuffles and makes several passes. A table whose rows are not a stream
    but sorted (by the target, a group or a date, as many R datasets are)
    gives the model that fits the end of the order: shuffle such rows first
    (:func:`sklearn.utils.shuffle`). Online gradient steps also need features
    on a common scale (:class:`~sklearn.preprocessing.StandardScaler`).

    Examples
    --------
    >>> import numpy as np
    >>> from skml.online import COCOLearner
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5])
    >>> A = np.tile([1.0, 0.0, 0.0], (500, 1))  # every row: coef[0] <= 0.5
    >>> b = np.full(500, 0.5)
    >>> model = COCOLearner().fit(X, y, constraint_A=A, constraint_b=b)
    >>> bool(model.coef_[0] <= 0.5 + 1e-9), model.n_cuts_ <= 5
    (True, True)
    """

    _parameter_constraints: dict = {
        **_BaseCOCO._parameter_constraints,
        "loss": [StrOptions({"squared", "huber", "absolute"})],
    }

    def __init__(
        self,
        loss="squared",
        *,
        constraint=None,
        step_size="auto",
        alpha=1e-4,
        domain_radius=None,
        algorithm="nested_projection",
        batch_size=1,
        penalty_weight=1.0,
        horizon=None,
        tol=1e-9,
        cuts="violated",
        fit_intercept=True,
        warm_start=False,
        random_state=None,
        device="cpu",
    ):
        super().__init__(
            loss,
            constraint=constraint,
            step_size=step_size,
            alpha=alpha,
            domain_radius=domain_radius,
            algorithm=algorithm,
            batch_size=batch_size,
            penalty_weight=penalty_weight,
            horizon=horizon,
            tol=tol,
            cuts=cuts,
            fit_intercept=fit_intercept,
            warm_start=warm_start,
            random_state=random_state,
            device=device,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        sensitive_features=None,
        constraint_A=None,
        constraint_b=None,
    ):
        """One ordered pass over the rows (a round per ``batch_size`` rows).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Multiplies each row's loss.
        sensitive_features : array-like of shape (n_samples,), default=None
            Group of each row, for parity constraints.
        constraint_A : array-like of shape (n_samples, n_features), default=None
            With ``constraint_b``: the half-space ``constraint_A[i] . coef <=
            constraint_b[i]`` revealed with row ``i`` (NaN in
            ``constraint_b``: none).
        constraint_b : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : COCOLearner
        """
        reset = not (self.warm_start and hasattr(self, "state_"))
        return self._fit_rows(
            X,
            y,
            sample_weight,
            reset,
            sensitive_features,
            constraint_A,
            constraint_b,
            fit_call=True,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        sensitive_features=None,
        constraint_A=None,
        constraint_b=None,
    ):
        """Continue the online pass with more rows (same state, same step counter).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
        sensitive_features : array-like of shape (n_samples,), default=None
        constraint_A : array-like of shape (n_samples, n_features), default=None
        constraint_b : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : COCOLearner
        """
        reset = not hasattr(self, "state_")
        return self._fit_rows(
            X,
            y,
            sample_weight,
            reset,
            sensitive_features,
            constraint_A,
            constraint_b,
            fit_call=False,
        )

    def _fit_rows(self, X, y, sample_weight, reset, sf, A, b, fit_call):
        X, y = validate_data(self, X, y, reset=reset, y_numeric=True, dtype=np.float64)
        y = y.astype(np.float64)
        return self._learn(X, y, sample_weight, reset, sf, A, b, fit_call)

    def predict(self, X):
        """Predict with the last model (which satisfies every stored cut).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        return self._decision(X)

    def _set_model(self, coef, intercept):
        self.coef_ = coef
        self.intercept_ = intercept

    def _coef_vector(self):
        return self.coef_

    def _intercept_value(self):
        return self.intercept_


class COCOClassifier(ClassifierMixin, _BaseCOCO):
    """Online binary classification under constraints revealed with the data (NP-OGD).

    The engine of :class:`COCOLearner` with a logistic or hinge loss on the
    labels encoded as -1/+1 (``classes_[1]`` is +1). Each round predicts,
    then steps and projects onto every constraint seen so far.

    Parameters
    ----------
    loss : {"logistic", "hinge"}, default="logistic"
        ``predict_proba`` exists for ``"logistic"`` only.
    constraint : Constraint, callable, list or None, default=None
        As in :class:`COCOLearner`; the scores constrained are
        ``decision_function`` values.
    step_size : {"auto", "optimal", "adagrad", "invscaling"} or float, default="auto"
        As in :class:`COCOLearner` (the logistic loss's curvature bound is
        ``(||x||^2 + 1) / 4``).
    alpha : float, default=1e-4
    domain_radius : float or None, default=None
    algorithm : {"nested_projection", "switch", "sinha_vaze", "latest_only", \
"domain_only", "penalty"}, default="nested_projection"
    batch_size : int, default=1
    penalty_weight : float, default=1.0
    horizon : int or None, default=None
    tol : float, default=1e-9
    cuts : {"violated", "all"}, default="violated"
    fit_intercept : bool, default=True
    warm_start : bool, default=False
    random_state : int, RandomState instance or None, default=None
        Unused (ordered, deterministic pass).
    device : str or torch.device, default="cpu"

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    coef_ : ndarray of shape (1, `n_features_in_`)
    intercept_ : ndarray of shape (1,)
    t_ : int
    n_iter_ : int
    cumulative_violation_ : float
    violation_trace_ : ndarray of shape (`t_`,)
    loss_trace_ : ndarray of shape (`t_`,)
    movement_ : float
    n_cuts_ : int
    n_violations_ : int
    max_projection_residual_ : float
    switched_at_ : int or None
    state_ : object
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when ``X`` has string feature names.

    See Also
    --------
    COCOLearner : regression, and the full description of the parameters.
    sklearn.linear_model.SGDClassifier : online classification without constraints.

    Notes
    -----
    Binary only: wrap it in :class:`~sklearn.multiclass.OneVsRestClassifier`
    for more classes (each binary problem then has its own constraints).
    The paper and our derivations are described in :class:`COCOLearner`.

    ``fit`` is one pass in the order given: on rows sorted by class the
    model is the one that fits the last class seen. Shuffle rows that are
    not a stream (:func:`sklearn.utils.shuffle`) and scale the features.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.online import COCOClassifier, DemographicParity
    >>> rng = np.random.default_rng(0)
    >>> group = rng.integers(0, 2, 2000)
    >>> X = rng.normal(size=(2000, 2)) + group[:, None]
    >>> y = (X[:, 0] + X[:, 1] > 1).astype(int)
    >>> clf = COCOClassifier(constraint=DemographicParity(0.1), batch_size=50)
    >>> clf = clf.fit(X, y, sensitive_features=group)
    >>> gap = clf.decision_function(X[group == 1]).mean() - clf.decision_function(
    ...     X[group == 0]).mean()
    >>> bool(abs(gap) < 0.2)
    True
    """

    _parameter_constraints: dict = {
        **_BaseCOCO._parameter_constraints,
        "loss": [StrOptions({"logistic", "hinge"})],
    }

    def __init__(
        self,
        loss="logistic",
        *,
        constraint=None,
        step_size="auto",
        alpha=1e-4,
        domain_radius=None,
        algorithm="nested_projection",
        batch_size=1,
        penalty_weight=1.0,
        horizon=None,
        tol=1e-9,
        cuts="violated",
        fit_intercept=True,
        warm_start=False,
        random_state=None,
        device="cpu",
    ):
        super().__init__(
            loss,
            constraint=constraint,
            step_size=step_size,
            alpha=alpha,
            domain_radius=domain_radius,
            algorithm=algorithm,
            batch_size=batch_size,
            penalty_weight=penalty_weight,
            horizon=horizon,
            tol=tol,
            cuts=cuts,
            fit_intercept=fit_intercept,
            warm_start=warm_start,
            random_state=random_state,
            device=device,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        sensitive_features=None,
        constraint_A=None,
        constraint_b=None,
    ):
        """One ordered pass over the rows (a round per ``batch_size`` rows).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Two classes.
        sample_weight : array-like of shape (n_samples,), default=None
        sensitive_features : array-like of shape (n_samples,), default=None
        constraint_A : array-like of shape (n_samples, n_features), default=None
        constraint_b : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : COCOClassifier
        """
        reset = not (self.warm_start and hasattr(self, "state_"))
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float64)
        check_classification_targets(y)
        classes = np.unique(y)
        if reset or not hasattr(self, "classes_"):
            self._set_classes(classes)
        return self._fit_rows(
            X,
            y,
            sample_weight,
            reset,
            sensitive_features,
            constraint_A,
            constraint_b,
            fit_call=True,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self,
        X,
        y,
        classes=None,
        sample_weight=None,
        *,
        sensitive_features=None,
        constraint_A=None,
        constraint_b=None,
    ):
        """Continue the online pass with more rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (2,), default=None
            Both classes; required on the first call, as in
            :meth:`sklearn.linear_model.SGDClassifier.partial_fit`.
        sample_weight : array-like of shape (n_samples,), default=None
        sensitive_features : array-like of shape (n_samples,), default=None
        constraint_A : array-like of shape (n_samples, n_features), default=None
        constraint_b : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : COCOClassifier
        """
        reset = not hasattr(self, "state_")
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float64)
        check_classification_targets(y)
        if reset:
            if classes is None:
                raise ValueError(
                    "classes must be passed on the first call to partial_fit."
                )
            self._set_classes(np.unique(classes))
        elif classes is not None and not np.array_equal(
            np.unique(classes), self.classes_
        ):
            raise ValueError(
                f"classes={np.unique(classes)!r} differs from classes_="
                f"{self.classes_!r} of the previous partial_fit calls."
            )
        return self._fit_rows(
            X,
            y,
            sample_weight,
            reset,
            sensitive_features,
            constraint_A,
            constraint_b,
            fit_call=False,
        )

    def _set_classes(self, classes):
        if len(classes) < 2:
            raise ValueError(
                "COCOClassifier needs samples of 2 classes; the data contains "
                f"only one class: {classes[0]!r}"
            )
        if len(classes) > 2:
            raise ValueError(
                "Only binary classification is supported. The type of the target "
                f"is multiclass ({len(classes)} classes): wrap COCOClassifier in "
                "sklearn.multiclass.OneVsRestClassifier for more."
            )
        self.classes_ = classes

    def _fit_rows(self, X, y, sample_weight, reset, sf, A, b, fit_call):
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if len(unseen):
            raise ValueError(f"y contains labels not in classes_: {unseen!r}")
        signs = np.where(y == self.classes_[1], 1.0, -1.0)
        return self._learn(X, signs, sample_weight, reset, sf, A, b, fit_call)

    def decision_function(self, X):
        """Signed score of ``classes_[1]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        return self._decision(X)

    def predict(self, X):
        """Class labels from the sign of the score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        return self.classes_[(scores > 0).astype(int)]

    def _has_proba(self):
        return self.loss == "logistic"

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Class probabilities (logistic loss only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
        """
        s = self.decision_function(X)
        p = np.exp(-np.logaddexp(0.0, -s))
        return np.column_stack([1.0 - p, p])

    @available_if(_has_proba)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba` (logistic loss only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, 2)
        """
        s = self.decision_function(X)
        return np.column_stack([-np.logaddexp(0.0, s), -np.logaddexp(0.0, -s)])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _set_model(self, coef, intercept):
        self.coef_ = coef[None, :]
        self.intercept_ = np.array([intercept])

    def _coef_vector(self):
        return self.coef_[0]

    def _intercept_value(self):
        return self.intercept_[0]
