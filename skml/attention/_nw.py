"""Multi-head attention as an ensemble of learned Nadaraya-Watson estimators
(Fokoue 2026), as a scikit-learn regressor."""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.optimize import minimize
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ..optim import OPTIMIZER_NAMES, optimizer_class
from ..utils import TorchEstimatorMixin, to_numpy, to_tensor, weighted_quantile
from ._diversity import head_diversity_index
from ._nw_kernels import (
    _effective,
    _gradient_outer_product,
    _is_lbfgs,
    _loo_heads,
    _predict_heads,
    _train,
)

# Entries of one (heads x queries x keys) block: bounds memory in fit and
# predict to O(block) whatever n_train and n_test are. At 2**23 float64
# entries (64 MB) glibc serves the blocks with mmap and returns them on free;
# blocks of 2**20-2**22 entries fragmented the heap (peak RSS 3.5 GB instead
# of 0.9 GB when predicting 10,000 rows against 10,000 keys).
_BLOCK = 2**23
# Training rows used to score each candidate of head_allocation="cv".
_CV_ROWS = 1000
# Rows on which degree="auto" compares its candidates at most.
_SELECT_ROWS = 2000
# Rows the gradient init's local fits use at most.
_OPG_ROWS = 2000


class NWAttentionRegressor(
    TorchEstimatorMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    RegressorMixin,
    BaseEstimator,
):
    """Multi-head attention regressor: an ensemble of learned Nadaraya-Watson heads.

    Each head h projects the inputs with a learned ``W_h`` (``head_dim x
    n_features``) and predicts with the Nadaraya-Watson (kernel-weighted)
    average of the training targets in that subspace, i.e. softmax attention
    with the training points as keys and their targets as values (Fokoue
    2026). The prediction is the weighted average of the heads. The
    projections are trained by minimising the leave-one-out (LOO) mean squared
    error, so the bandwidth cannot collapse onto the training points. The
    estimator reports the heads' diversity (HDI, principal angles) and a
    predictive spread, and chooses the number of heads and their dimension
    itself. By default (``degree="auto"``) it also compares, on held-out
    rows, these Nadaraya-Watson heads with a local-quadratic and a
    local-linear head (our extension, below) and keeps the best.

    Read more in the :ref:`User Guide <nw_attention>`.

    Parameters
    ----------
    n_heads : int or "auto", default="auto"
        Number of heads H; ``"auto"`` lets ``head_allocation`` choose.
    head_dim : int or "auto", default="auto"
        Dimension d_k of each head's subspace (at most n_features).
    budget : int or None, default=None
        Total dimension D = H * d_k shared by the heads. Default: with
        ``head_allocation="spectrum"``, the effective dimension r below;
        otherwise ``min(n_features, 32)`` (or ``n_heads * head_dim`` when both
        are given).
    head_allocation : {"spectrum", "scaling_law", "fixed", "cv"}, \
            default="spectrum"
        How (H, d_k) is chosen under the budget D: ``"spectrum"`` takes r,
        the number of eigenvalues holding 90% of the trace of the gradient
        outer product (OPG, see ``init``), as the number of relevant
        directions, and splits D into H heads of d_k = D / H dimensions with
        H the divisor of D nearest r (one head per relevant direction by
        default; H * d_k = D always); ``"fixed"`` uses ``n_heads`` and
        ``head_dim`` (both required); ``"scaling_law"`` sets ``d_k =
        clip(round(allocation_c * ln(n D)), 1, min(d, D))`` and ``H = D //
        d_k`` (d_k grows like log n); ``"cv"`` fits every divisor pair of D
        on at most 1,000 rows and keeps the best on a 25% holdout.
    allocation_c : float, default=0.5
        The constant of the scaling law.
    kernel : {"gaussian", "dot"}, default="gaussian"
        ``"gaussian"``: attention logits ``-||W_h (x - x_j)||^2 / 2``;
        ``"dot"``: scaled dot-product logits ``(W_h x) . (W_h x_j)`` (tied
        query and key projections).
    bandwidth : "learned", "sqrt_dk" or float, default="learned"
        ``"learned"``: the scale of ``W_h`` is the inverse bandwidth and is
        trained; a float h: the rows of ``W_h`` are kept orthonormal and
        divided by h (only the subspace is trained); ``"sqrt_dk"``: h^2 =
        sqrt(d_k), the transformer's scaling.
    degree : {"auto", 0, 1, 2}, default="auto"
        Degree of the local polynomial of each head: 0 is Nadaraya-Watson
        (softmax attention, the paper's estimator); 1 is local-linear
        regression in the head's subspace, which removes the design and slope
        bias of local averaging; 2 is local-quadratic, which also removes the
        curvature bias (memory O(H n_train p^2), ``p = 1 + d_k + d_k (d_k +
        1) / 2``: for small d_k). The local fits carry a ridge of ``1 /
        n_eff^2`` on their non-constant terms (``n_eff = 1 / sum_j a_j^2``,
        the attention's effective number of keys), so that a head falls back
        towards the Nadaraya-Watson average where one or two keys carry the
        attention instead of extrapolating. ``"auto"`` trains three
        candidates, in this order of preference: one local-quadratic head of
        dimension 2, the Nadaraya-Watson heads of ``head_allocation``, one
        local-linear head of dimension ``clip(n_features // 2, 1, 8)``; and
        keeps the first
        whose held-out error (the early-stopping rows, shared by the
        candidates, on at most 2,000 rows) is within one standard error of
        the least, the errors paired row by row (by LOO error without
        held-out rows). The winner is refitted on all rows when the choice
        used a subsample. With ``n_heads``, ``head_dim``, ``budget`` or an
        array ``init`` given, the candidates keep that shape and differ in
        degree only (0, 1, and 2 when d_k <= 3, preferred in that order).
    head_weights : {"uniform", "simplex"}, default="uniform"
        ``"uniform"``: 1/H each; ``"simplex"``: after training, the weights
        on the simplex that minimise the LOO error of the ensemble (a small
        quadratic program on the heads' LOO residual second moments).
    output : {"affine", "identity"}, default="affine"
        ``"affine"``: the prediction is ``c + s * sum_h w_h yhat_h`` with a
        scalar scale s and intercept c per target, trained with the
        projections (multi-head attention's output projection and bias);
        it undoes the shrinkage of local averaging toward the mean.
        ``"identity"``: the plain weighted average of the heads.
    diversity_penalty : float, default=0.0
        Adds ``diversity_penalty * (1 - HDI)`` to the training loss (the
        differentiable mean overlap of the heads' subspaces).
    init : {"gradient", "pca_blocks", "random_orthogonal", "pca"} or ndarray, \
            default="gradient"
        Initial projections. ``"gradient"``: the leading eigenvectors of the
        average outer product of local-linear gradients of y (OPG, Xia et al.
        2002: they span the directions y depends on), dealt into H blocks of
        d_k; ``"pca_blocks"``: the top H * d_k principal directions dealt
        into blocks (mutually orthogonal heads); both use random orthonormal
        frames for heads past n_features. ``"random_orthogonal"``: blocks of
        a random rotation; ``"pca"``: the same top d_k principal directions
        for every head (HDI = 0, and identical heads stay identical); or an
        array of shape (H, d_k, n_features). With ``bandwidth="learned"``
        named inits are scaled so that the mean squared projected distance
        between two training rows is ``2 d_k``.
    standardize : bool, default=True
        Standardise the features (weighted mean and standard deviation)
        before projecting; the targets are always standardised for training.
    solver : {"lbfgs", "adam"}, default="lbfgs"
        ``"lbfgs"``: full-batch L-BFGS with a strong Wolfe line search;
        ``"adam"``: mini-batches of ``batch_size`` queries, ``max_iter``
        epochs.
    optimizer : {"adam", "adamw", "sgd", "muon", "symmetry"}, \
            torch.optim.Optimizer subclass or None, default=None
        Replaces the solver's optimizer; anything but an L-BFGS subclass
        runs the mini-batch loop with ``lr=learning_rate``. ``"muon"``: the
        polar (orthogonalised) update of each head's projection, AdamW on
        the output layer. ``"symmetry"``: the update that matches each
        head's symmetry (:mod:`skml.optim`): the kernel sees ``W_h`` only
        through distances, so it is invariant under rotations ``W_h -> Q
        W_h`` of the head's subspace, and the column norm (each input
        feature's weights in the head scaled to unit norm) is equivariant
        under them; AdamW on the output layer. Both take AdamW-sized
        learning rates (:class:`skml.optim.BlockOptimizer`). A class is
        instantiated as ``optimizer(param_groups, lr=learning_rate,
        **optimizer_kwargs)``.
    optimizer_kwargs : dict or None, default=None
        Further keyword arguments of the optimizer.
    learning_rate : float, default=0.02
        Step size of the mini-batch optimizer.
    max_iter : int, default=200
        L-BFGS iterations, or epochs of the mini-batch loop; 0 keeps the
        initial projections.
    tol : float, default=1e-6
        Stop when the relative decrease of the loss falls below ``tol``.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training rows (at least 20
        rows needed): the others are the training queries and keys, the
        held-out rows score each iteration, training stops after
        ``n_iter_no_change`` iterations without improvement and keeps the
        best projections. Minimising the LOO error over a flexible metric
        overfits it otherwise (on pure noise the LOO error of a freely trained
        head falls well below the variance of y). The final model uses every
        row as a key.
    validation_fraction : float, default=0.2
        Share of the (weighted) rows held out; rows are picked by a hash of
        their values, so the split does not depend on row order.
    n_iter_no_change : int, default=10
        Patience of early stopping.
    batch_size : int or None, default=None
        Queries per mini-batch step (``solver="adam"``); default all.
    max_keys : int or None, default=None
        Train on a random subsample of this many rows (queries and keys):
        training costs O(max_keys^2) per iteration instead of O(n^2).
        Prediction still averages over every training row. The default
        trains on every row, whose cost grows as n^2 per iteration: at several
        thousand rows a fit on a CPU takes minutes. A subsample trades
        accuracy for that time: the heads are learned from fewer rows.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the subsamples and the mini-batches.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``. A model fitted on
        a GPU that is absent where it is used predicts on the CPU (with a
        :class:`~skml.utils.DeviceFallbackWarning`).

    Attributes
    ----------
    projections_ : ndarray of shape (`n_heads_`, `head_dim_`, `n_features_in_`)
        The heads' projections ``W_h`` (on standardised features), bandwidth
        included.
    bandwidths_ : ndarray of shape (`n_heads_`,)
        Each head's bandwidth ``sqrt(d_k) / ||W_h||_F``.
    head_weights_ : ndarray of shape (`n_heads_`,)
    n_heads_, head_dim_ : int
        The chosen H and d_k.
    degree_ : int
        The heads' degree (the chosen one with ``degree="auto"``).
    selection_ : dict
        ``candidates`` (degree, H, d_k) in order of preference, their held-out
        (or LOO) ``scores`` on standardised targets (empty with one
        candidate), the number of ``rows`` compared on and the index
        ``chosen``.
    output_scale_, output_intercept_ : ndarray of shape (n_targets,)
        The output layer's s and c (on standardised targets).
    allocation_ : dict
        ``budget``, ``candidates`` and, for ``"cv"``, their holdout MSEs.
    hdi_ : float
        Head Diversity Index (:func:`head_diversity_index`); NaN for one head.
    hdi_normalized_ : float
        ``hdi_`` divided by its attainable maximum.
    principal_angles_ : ndarray of shape (`n_heads_`, `n_heads_`, `head_dim_`)
    head_overlap_ : ndarray of shape (`n_heads_`, `n_heads_`)
    loo_mse_ : float
        Weighted LOO mean squared error of the ensemble on the training rows
        (the ``max_keys`` subsample when one is used), in the units of y.
    loo_bvc_ : dict
        Its split ``bias2 + variance + covariance = mse`` across the training
        rows: for head LOO residuals ``e_h``, ``bias2 = (sum_h w_h
        mean(e_h))^2``, ``variance = sum_h w_h^2 var(e_h)``, ``covariance =
        sum_{h != g} w_h w_g cov(e_h, e_g)`` (averaged over outputs). It is a
        split of one fit's residuals, not the paper's decomposition across
        training sets: :func:`head_decomposition` estimates that one by
        refits. (Until 0.1 this attribute was called ``bvc_``.)
    head_residual_cov_ : ndarray of shape (`n_heads_`, `n_heads_`)
        Covariance of the heads' LOO residuals (standardised targets).
    validation_scores_ : list of float
        Held-out loss (standardised targets) before training and after each
        iteration; empty without early stopping.
    loss_curve_ : list of float
        Training loss (standardised targets) at each iteration or epoch.
    n_iter_ : int
        Iterations (epochs) run.
    device_ : torch.device
        The resolved device (the CPU after a fallback).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Only when X has string column names.

    See Also
    --------
    head_diversity_index : The HDI of a set of projections.
    sklearn.neighbors.KNeighborsRegressor : Local averaging without a learned
        metric.

    Notes
    -----
    Only the abstract of the paper was available. The formulation follows
    the project's research note (``nw_nfm.md`` A.2, marked *[derived]*): the
    Gaussian-kernel head, LOO training (the MLKR objective of Weinberger and
    Tesauro 2007 for one head), the HDI formula, the bias-variance-covariance
    decomposition (:func:`head_decomposition`) and the scaling law for (H,
    d_k) are reconstructions consistent with the abstract, not the paper's
    own formulas. The paper's estimator is ``degree=0`` (Nadaraya-Watson
    heads); ``degree=1`` and ``2`` (local-polynomial heads), ``degree="auto"``
    (the default: the choice among the paper's heads and two local-polynomial
    heads), the spectral allocation, the affine output layer, the OPG start,
    early stopping and the mixture predictive spread are our additions.

    Leave-one-out masks the query's own row only: an exact duplicate of a
    training row still sees its twin. A row of integer weight w counts as w
    copies (LOO removes one copy), so ``sample_weight`` acts like repeating
    rows.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.attention import NWAttentionRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 5))
    >>> y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=300)
    >>> model = NWAttentionRegressor(random_state=0).fit(X, y)
    >>> model.degree_, model.n_heads_, model.head_dim_
    (2, 1, 2)
    >>> bool(model.score(X, y) > 0.8)
    True
    >>> nw = NWAttentionRegressor(degree=0, random_state=0).fit(X, y)
    >>> nw.n_heads_ * nw.head_dim_ == nw.allocation_["budget"]
    True
    """

    _parameter_constraints: dict = {
        "n_heads": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "head_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "budget": [Interval(Integral, 1, None, closed="left"), None],
        "head_allocation": [StrOptions({"spectrum", "scaling_law", "fixed", "cv"})],
        "allocation_c": [Interval(Real, 0, None, closed="neither")],
        "kernel": [StrOptions({"gaussian", "dot"})],
        "bandwidth": [
            StrOptions({"learned", "sqrt_dk"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "degree": [Interval(Integral, 0, 2, closed="both"), StrOptions({"auto"})],
        "head_weights": [StrOptions({"uniform", "simplex"})],
        "output": [StrOptions({"affine", "identity"})],
        "diversity_penalty": [Interval(Real, 0, None, closed="left")],
        "init": [
            StrOptions({"gradient", "pca_blocks", "random_orthogonal", "pca"}),
            np.ndarray,
        ],
        "standardize": ["boolean"],
        "solver": [StrOptions({"lbfgs", "adam"})],
        "optimizer": [type, StrOptions(set(OPTIMIZER_NAMES)), None],
        "optimizer_kwargs": [dict, None],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_keys": [Interval(Integral, 2, None, closed="left"), None],
        "random_state": ["random_state"],
        **TorchEstimatorMixin._parameter_constraints,
    }

    def __init__(
        self,
        n_heads="auto",
        head_dim="auto",
        *,
        budget=None,
        head_allocation="spectrum",
        allocation_c=0.5,
        kernel="gaussian",
        bandwidth="learned",
        degree="auto",
        head_weights="uniform",
        output="affine",
        diversity_penalty=0.0,
        init="gradient",
        standardize=True,
        solver="lbfgs",
        optimizer=None,
        optimizer_kwargs=None,
        learning_rate=0.02,
        max_iter=200,
        tol=1e-6,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=10,
        batch_size=None,
        max_keys=None,
        random_state=None,
        device="cpu",
    ):
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.budget = budget
        self.head_allocation = head_allocation
        self.allocation_c = allocation_c
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.degree = degree
        self.head_weights = head_weights
        self.output = output
        self.diversity_penalty = diversity_penalty
        self.init = init
        self.standardize = standardize
        self.solver = solver
        self.optimizer = optimizer
        self.optimizer_kwargs = optimizer_kwargs
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.max_keys = max_keys
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Learn the heads' projections by leave-one-out training.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (at least 2 rows: leave-one-out needs them).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights, in the loss and in the heads' averages.

        Returns
        -------
        self : object
            The fitted regressor.
        """
        X, y = validate_data(
            self,
            X,
            y,
            dtype=np.float64,
            multi_output=True,
            y_numeric=True,
            ensure_min_samples=2,
        )
        if self.optimizer is not None:
            optimizer_class(self.optimizer)  # a TypeError for a non-optimizer type
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if np.any(sw < 0) or not sw.sum() > 0:
            raise ValueError("sample_weight must be non-negative with a positive sum.")
        # rows of zero weight carry nothing (in the loss or as keys): drop them
        if np.any(sw == 0):
            X, y, sw = X[sw > 0], y[sw > 0], sw[sw > 0]
            if len(sw) < 2:
                raise ValueError(
                    "Leave-one-out training needs at least 2 rows of positive "
                    f"sample_weight, got {len(sw)}."
                )
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        self._fit_device()
        # one attention block of the training loop: heads x query chunk x keys
        n_train = len(X) if self.max_keys is None else min(len(X), self.max_keys)
        H_guess = self.n_heads if isinstance(self.n_heads, Integral) else 1
        chunk = max(1, _BLOCK // (H_guess * n_train))
        with self._threads(work=H_guess * min(n_train, chunk) * n_train):
            self._fit_rows(X, Y, sw)
        return self

    def _fit_rows(self, X, Y, sw):
        """The body of ``fit`` on validated rows of positive weight."""
        n, d = X.shape
        rng = check_random_state(self.random_state)
        dev = self.device_

        # weighted standardisation of X; the targets always
        w = sw / sw.sum()
        if self.standardize:
            self.x_mean_ = w @ X
            scale = np.sqrt(w @ (X - self.x_mean_) ** 2)
            self.x_scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.x_mean_, self.x_scale_ = np.zeros(d), np.ones(d)
        self.y_mean_ = w @ Y
        y_scale = np.sqrt(w @ (Y - self.y_mean_) ** 2)
        # spread below rounding of the mean: a constant target
        varying = y_scale > 1e-12 * np.abs(self.y_mean_) + 1e-300
        self.y_scale_ = np.where(varying, y_scale, 1.0)
        Xs = (X - self.x_mean_) / self.x_scale_
        Ys = (Y - self.y_mean_) / self.y_scale_
        constant = not varying.any()

        # training rows: all, or a max_keys subsample
        if self.max_keys is not None and n > self.max_keys:
            train = np.sort(rng.choice(n, self.max_keys, replace=False))
        else:
            train = np.arange(n)
        Xt, Yt, swt = Xs[train], Ys[train], sw[train]
        spectrum = None
        gradient_init = isinstance(self.init, str) and self.init == "gradient"
        if gradient_init or self.head_allocation == "spectrum":
            # the OPG eigen-decomposition: the init's directions and the
            # allocation's effective dimension, computed once per fit
            evals, evecs = np.linalg.eigh(_opg(Xt, Yt, swt, dev))
            order = np.argsort(evals)[::-1]
            spectrum = (evals[order], evecs[:, order])
        candidates = self._candidates(Xt, Yt, swt, rng, spectrum)
        self.selection_ = {
            "candidates": [c[:3] for c in candidates],
            "scores": [],
            "rows": 0,
            "chosen": 0,
        }
        if constant:
            # nothing to learn: every head predicts the constant
            degree, H, d_k, allocation = candidates[0]
            V_fit = self._initial_projections(Xt, Yt, swt, H, d_k, rng, spectrum)
            affine = np.repeat(np.array([[0.0], [1.0]]), Y.shape[1], axis=1)
            curve, n_iter = [], 0
            self.validation_scores_ = []
        else:
            degree, H, d_k, allocation, V_fit, affine, curve, n_iter = self._select(
                candidates, Xt, Yt, swt, rng, spectrum
            )
        self.degree_ = degree
        self.n_heads_, self.head_dim_, self.allocation_ = H, d_k, allocation
        self.loss_curve_, self.n_iter_ = curve, n_iter
        self.output_intercept_, self.output_scale_ = affine[0], affine[1]
        W = to_numpy(_effective(to_tensor(V_fit, dev), d_k, self.bandwidth))
        self.projections_ = W
        self.bandwidths_ = np.sqrt(d_k) / np.maximum(
            np.linalg.norm(W.reshape(H, -1), axis=1), np.finfo(float).tiny
        )
        self.X_fit_, self.y_fit_, self.key_weight_ = Xs, Ys, sw
        self._diagnostics(Xs[train], Ys[train], sw[train])
        hdi, hdi_max, overlap, angles = head_diversity_index(W)
        self.hdi_ = hdi
        self.hdi_normalized_ = hdi / hdi_max if hdi_max > 0 else float("nan")
        self.head_overlap_, self.principal_angles_ = overlap, angles

    # --------------------------------------------------------- selection
    def _candidates(self, X, Y, sw, rng, spectrum):
        """The (degree, H, d_k, allocation) configurations to choose from."""
        d = X.shape[1]
        H, k, allocation = self._allocate(X, Y, sw, rng, spectrum)
        if self.degree != "auto":
            return [(self.degree, H, k, allocation)]
        automatic = (
            self.n_heads == "auto"
            and self.head_dim == "auto"
            and self.budget is None
            and self.head_allocation != "fixed"
            and not isinstance(self.init, np.ndarray)
        )
        if not automatic:
            # the user's shape: choose the degree (quadratic for small heads)
            return [(deg, H, k, allocation) for deg in (0, 1, 2) if deg < 2 or k <= 3]
        # in the order of preference: one local-quadratic head of dimension
        # 2, the Nadaraya-Watson heads, one local-linear head over half the
        # features (the NW heads' bias is curvature and slope, which the
        # local polynomials remove)
        quadratic = min(2, d)
        linear = int(np.clip(d // 2, 1, 8))
        out = [
            (2, 1, quadratic, {"budget": quadratic, "candidates": [(1, quadratic)]}),
            (0, H, k, allocation),
            (1, 1, linear, {"budget": linear, "candidates": [(1, linear)]}),
        ]
        unique = []
        for c in out:
            if c[:3] not in [u[:3] for u in unique]:
                unique.append(c)
        return unique

    def _select(self, candidates, X, Y, sw, rng, spectrum):
        """Train each candidate; keep the one of least held-out error.

        The candidates share one set of held-out rows (those of early
        stopping), on at most ``_SELECT_ROWS`` rows; without held-out rows they
        are compared by their leave-one-out error. The winner is refitted
        on every row when the selection used a subsample.
        """
        n = X.shape[0]
        rows = np.arange(n)
        if len(candidates) > 1 and n > _SELECT_ROWS:
            u = _row_hash(X @ np.linspace(1.0, 2.0, X.shape[1]) * 78.233)
            rows = np.sort(np.argsort(u, kind="stable")[:_SELECT_ROWS])
        Xs, Ys, sws = X[rows], Y[rows], sw[rows]
        val = self._validation_rows(Xs, Ys, sws, rng)
        fits, scores, caught, errors = [], [], [], []
        for degree, H, k, _ in candidates:
            V = self._initial_projections(Xs, Ys, sws, H, k, rng, spectrum)
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always", ConvergenceWarning)
                fit = self._train(V, Xs, Ys, sws, rng, self.max_iter, degree, val)
            fits.append((fit, self.validation_scores_))
            caught.append(list(record))
            if len(candidates) == 1:
                break
            if val is not None:
                errors.append(self._holdout_errors(fit, degree, k, Xs, Ys, sws, val))
                scores.append(float(errors[-1] @ sws[val] / sws[val].sum()))
            else:
                scores.append(self._loo_error(fit, degree, k, Xs, Ys, sws))
        best = int(np.argmin(scores)) if scores else 0
        if errors:
            # one-standard-error rule: the first candidate (in the order of
            # preference) whose held-out error is within one standard error
            # of the best one's, the error paired row by row
            w = sws[val] / sws[val].sum()
            n_eff = 1.0 / np.sum(w**2)
            for i, e in enumerate(errors):
                diff = e - errors[best]
                se = np.sqrt(max(w @ (diff - w @ diff) ** 2, 0.0) / n_eff)
                if w @ diff <= se:
                    best = i
                    break
        degree, H, k, allocation = candidates[best]
        self.selection_.update(scores=scores, rows=len(rows), chosen=best)
        refit = len(rows) < n
        for i, record in enumerate(caught):
            for w in record:
                # a loser's non-convergence does not concern the model
                if w.category is not ConvergenceWarning or (i == best and not refit):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if refit:
            V = self._initial_projections(X, Y, sw, H, k, rng, spectrum)
            val = self._validation_rows(X, Y, sw, rng)
            fit = self._train(V, X, Y, sw, rng, self.max_iter, degree, val)
        else:
            fit, self.validation_scores_ = fits[best]
        return (degree, H, k, allocation, *fit)

    def _holdout_errors(self, fit, degree, k, X, Y, sw, val):
        """Squared error of a trained candidate on each held-out row.

        The held-out rows attend to the training rows, as in early stopping.
        """
        W = to_numpy(_effective(to_tensor(fit[0], self.device_), k, self.bandwidth))
        fit_rows = ~val
        heads = self._heads_numpy(
            X[val], W, X[fit_rows], Y[fit_rows], sw[fit_rows], self.device_, degree
        )
        pred = fit[1][0] + fit[1][1] * heads.mean(0)
        return ((pred - Y[val]) ** 2).mean(1)

    def _loo_error(self, fit, degree, k, X, Y, sw):
        """Weighted leave-one-out MSE (standardised) of a trained candidate."""
        dev = self.device_
        V, affine = fit[0], fit[1]
        W = _effective(to_tensor(V, dev), k, self.bandwidth)
        with np.errstate(divide="ignore"):
            log_wk = to_tensor(np.log(sw), dev)
            shift = to_tensor(np.log(np.maximum(sw - 1.0, 0.0)) - np.log(sw), dev)
        loo = _loo_heads(
            W,
            to_tensor(X, dev),
            to_tensor(Y, dev),
            log_wk,
            shift,
            self.kernel,
            degree,
            max(1, _BLOCK // (W.shape[0] * X.shape[0])),
        )
        pred = affine[0] + affine[1] * to_numpy(loo).mean(0)
        return float(sw @ ((pred - Y) ** 2).mean(1) / sw.sum())

    # -------------------------------------------------------- allocation
    def _allocate(self, X, Y, sw, rng, spectrum=None):
        """(H, d_k, allocation_) of the Nadaraya-Watson heads."""
        n, d = X.shape
        H_given = self.n_heads if self.n_heads != "auto" else None
        k_given = self.head_dim if self.head_dim != "auto" else None
        if k_given is not None and k_given > d:
            raise ValueError(
                f"head_dim={k_given} is larger than n_features={d}: a head cannot "
                "project onto more dimensions than the data has."
            )
        if self.head_allocation == "fixed":
            if H_given is None or k_given is None:
                raise ValueError(
                    'head_allocation="fixed" needs integer n_heads and head_dim, got '
                    f"n_heads={self.n_heads!r}, head_dim={self.head_dim!r}."
                )
            return H_given, k_given, {"budget": H_given * k_given, "candidates": []}
        if self.budget is not None:
            D = self.budget
        elif H_given is not None and k_given is not None:
            D = H_given * k_given
        else:
            D = min(d, 32)
        if H_given is not None and k_given is not None:
            return H_given, k_given, {"budget": D, "candidates": [(H_given, k_given)]}
        if self.head_allocation == "scaling_law" or H_given or k_given:
            if k_given is not None:
                k = k_given
                H = max(1, D // k)
            elif H_given is not None:
                H = H_given
                k = int(np.clip(D // H, 1, d))
            else:
                k = int(
                    np.clip(round(self.allocation_c * math.log(n * D)), 1, min(d, D))
                )
                H = max(1, D // k)
            return H, k, {"budget": D, "candidates": [(H, k)]}
        if self.head_allocation == "spectrum":
            # H: the effective dimension r of the OPG spectrum (eigenvalues
            # holding 90% of its trace), one head per relevant direction;
            # the budget D (r by default) is then split into H heads of
            # D / H dimensions, H the divisor of D nearest r
            lam = np.clip(spectrum[0], 0.0, None)
            r = 1
            if lam.sum() > 0:
                r = int(np.searchsorted(np.cumsum(lam) / lam.sum(), 0.9) + 1)
            r = min(r, d, 32)
            if self.budget is None:
                D = r
            pairs = [(D // k, k) for k in range(1, min(d, D) + 1) if D % k == 0]
            H, k = min(pairs, key=lambda c: (abs(c[0] - r), -c[0]))
            return H, k, {"budget": D, "candidates": [(H, k)], "effective_dim": r}
        # every divisor pair of D: the whole budget is used
        candidates = [(D // k, k) for k in range(1, min(d, D) + 1) if D % k == 0]
        # "cv": every divisor pair of D, scored on a holdout of a subsample
        degree = 0 if self.degree == "auto" else self.degree
        rows = rng.permutation(n)[: min(n, _CV_ROWS)]
        n_val = max(1, len(rows) // 4)
        val, fit_rows = rows[:n_val], rows[n_val:]
        if len(fit_rows) < 2:
            return *candidates[-1], {"budget": D, "candidates": candidates}
        scores = []
        for H, k in candidates:
            Xf, Yf, swf = X[fit_rows], Y[fit_rows], sw[fit_rows]
            V = self._initial_projections(Xf, Yf, swf, H, k, rng, spectrum)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                V, affine, _, _ = self._train(
                    V,
                    Xf,
                    Yf,
                    swf,
                    rng,
                    self.max_iter,
                    degree,
                    self._validation_rows(Xf, Yf, swf, rng),
                )
            W = to_numpy(_effective(to_tensor(V, self.device_), k, self.bandwidth))
            heads = self._heads_numpy(X[val], W, Xf, Yf, swf, self.device_, degree)
            pred = affine[0] + affine[1] * heads.mean(0)
            err = sw[val] @ ((pred - Y[val]) ** 2).mean(1) / sw[val].sum()
            scores.append(float(err))
        best = int(np.argmin(scores))
        H, k = candidates[best]
        return H, k, {"budget": D, "candidates": candidates, "holdout_mse": scores}

    # -------------------------------------------------------- parameters
    def _initial_projections(self, X, Y, sw, H, k, rng, spectrum=None):
        n, d = X.shape
        if isinstance(self.init, np.ndarray):
            V = np.asarray(self.init, dtype=np.float64)
            if V.shape != (H, k, d):
                raise ValueError(
                    f"init has shape {V.shape}; expected (n_heads, head_dim, "
                    f"n_features) = {(H, k, d)}."
                )
            if not np.all(np.isfinite(V)):
                raise ValueError("init contains NaN or infinite values.")
            return V.copy()
        w = sw / sw.sum()
        mean = w @ X
        cov = (X - mean).T @ ((X - mean) * w[:, None])
        if spectrum is not None and self.init == "gradient":
            evals, evecs = spectrum
        elif self.init == "gradient":
            evals, evecs = np.linalg.eigh(_opg(X, Y, sw, self.device_))
        else:
            evals, evecs = np.linalg.eigh(cov)
        pcs = evecs[:, np.argsort(evals, kind="stable")[::-1]].T  # rows: directions
        # fix eigenvector signs so that the init does not depend on LAPACK
        pcs *= np.where(
            pcs[np.arange(d), np.argmax(np.abs(pcs), axis=1)] < 0, -1.0, 1.0
        )[:, None]
        if self.init == "pca":
            V = np.repeat(pcs[None, :k], H, axis=0)
        elif self.init in ("pca_blocks", "gradient"):
            blocks = []
            for h in range(H):
                if (h + 1) * k <= d:
                    blocks.append(pcs[h * k : (h + 1) * k])
                else:
                    Q, _ = np.linalg.qr(rng.standard_normal((d, k)))
                    blocks.append(Q.T)
            V = np.stack(blocks)
        else:
            blocks = []
            Q = np.linalg.qr(rng.standard_normal((d, d)))[0].T
            for h in range(H):
                if (h + 1) * k > d:
                    Q = np.linalg.qr(rng.standard_normal((d, d)))[0].T
                    blocks.append(Q[:k])
                else:
                    blocks.append(Q[h * k : (h + 1) * k])
            V = np.stack(blocks)
        if self.bandwidth == "learned":
            # mean squared projected distance between two rows = 2 d_k (its
            # weighted closed form 2 tr(W cov W'), so row order cannot matter)
            for h in range(H):
                spread = np.trace(V[h] @ cov @ V[h].T)
                if spread > 0:
                    V[h] *= np.sqrt(k / spread)
        return V

    # ------------------------------------------------------------- training
    def _validation_rows(self, X, Y, sw, rng):
        """Rows held out for early stopping (boolean mask), or None.

        A row is chosen by a hash of its values, not by its position, so the
        split does not depend on the order of the rows, and copies of a row
        (or an integer weight) fall on the same side.
        """
        n = X.shape[0]
        if not self.early_stopping or n < 20:
            return None
        r = rng.standard_normal(X.shape[1] + Y.shape[1])
        u = _row_hash(np.hstack([X, Y]) @ r)
        cut = weighted_quantile(u, [self.validation_fraction], sw)[0]
        val = u <= cut
        if val.sum() < 2 or (~val).sum() < 2:
            return None
        return val

    def _optimizer_spec(self):
        """The optimizer ``solver`` or ``optimizer`` names, and its kwargs."""
        kwargs = dict(self.optimizer_kwargs or {})
        if self.optimizer is None:
            spec = torch.optim.LBFGS if self.solver == "lbfgs" else "adam"
        else:
            spec = self.optimizer
        if spec == "symmetry":
            # the heads' block: rotations of the subspace are its symmetry
            kwargs = {"rules": {"matrix": "col_norm"}, **kwargs}
        return spec, kwargs

    def _train(self, V0, X, Y, sw, rng, max_iter, degree, val):
        """Run the LOO training kernel on numpy rows; numpy results.

        ``val`` is the boolean mask of the rows held out for early stopping
        (or None). Returns the trained parameters V, the output layer (2,
        n_targets), the loss curve and the number of iterations; sets
        ``validation_scores_``.
        """
        dev = self.device_
        H = V0.shape[0]
        fit = np.ones(len(X), dtype=bool) if val is None else ~val
        # training queries attend to the training rows only (LOO)
        Xt, Yt = to_tensor(X[fit], dev), to_tensor(Y[fit], dev)
        w = to_tensor(sw[fit] / sw[fit].sum(), dev)
        with np.errstate(divide="ignore"):
            log_wk = to_tensor(np.log(sw[fit]), dev)
            shift = np.log(np.maximum(sw[fit] - 1.0, 0.0)) - np.log(sw[fit])
            shift = to_tensor(shift, dev)
        validation = None
        if val is not None:
            validation = (
                to_tensor(X[val], dev),
                to_tensor(Y[val], dev),
                to_tensor(sw[val] / sw[val].sum(), dev),
            )
        optimizer, optimizer_kwargs = self._optimizer_spec()
        seed = None
        if max_iter > 0 and not _is_lbfgs(optimizer):
            seed = int(rng.randint(2**31))
        result = _train(
            to_tensor(V0, dev),
            Xt,
            Yt,
            w,
            log_wk,
            shift,
            validation,
            kernel=self.kernel,
            degree=degree,
            bandwidth=self.bandwidth,
            output=self.output,
            diversity_penalty=self.diversity_penalty,
            optimizer=optimizer,
            optimizer_kwargs=optimizer_kwargs,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            max_iter=max_iter,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            chunk=max(1, _BLOCK // (H * Xt.shape[0])),
            seed=seed,
        )
        self.validation_scores_ = result.validation_scores
        if result.diverged:
            raise ValueError(
                "NWAttentionRegressor training diverged (non-finite loss); lower "
                "learning_rate or use solver='lbfgs'."
            )
        if not result.converged:
            warnings.warn(
                f"NWAttentionRegressor did not converge in {max_iter} iterations "
                f"(last relative loss change above tol={self.tol:g}); increase "
                "max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return (
            to_numpy(result.V),
            to_numpy(result.out),
            result.curve,
            result.n_iter,
        )

    # ---------------------------------------------------------- diagnostics
    def _diagnostics(self, X, Y, sw):
        """LOO residuals of each head on the training rows: weights, BVC."""
        dev = self.device_
        H, n = self.projections_.shape[0], X.shape[0]
        with np.errstate(divide="ignore"):
            log_wk = to_tensor(np.log(sw), dev)
            shift = to_tensor(np.log(np.maximum(sw - 1.0, 0.0)) - np.log(sw), dev)
        loo = _loo_heads(
            to_tensor(self.projections_, dev),
            to_tensor(X, dev),
            to_tensor(Y, dev),
            log_wk,
            shift,
            self.kernel,
            self.degree_,
            max(1, _BLOCK // (H * n)),
        )
        heads = self._calibrate(to_numpy(loo))
        E = heads - Y[None]  # (H, n, t), standardised
        w = sw / sw.sum()
        second = np.einsum("i,hit,git->hg", w, E, E) / E.shape[2]
        if self.head_weights == "simplex" and H > 1:
            omega = _simplex_weights(second)
        else:
            omega = np.full(H, 1.0 / H)
        self.head_weights_ = omega
        Eu = E * self.y_scale_[None, None, :]  # units of y
        mean = np.einsum("i,hit->ht", w, Eu)
        C = np.einsum("i,hit,git->hgt", w, Eu - mean[:, None], Eu - mean[:, None])
        bias2 = float(np.mean((omega @ mean) ** 2))
        Cw = np.einsum("h,g,hgt->hgt", omega, omega, C)
        variance = float(np.mean(np.einsum("hht->t", Cw)))
        covariance = float(np.mean(Cw.sum((0, 1)))) - variance
        ens = np.einsum("h,hit->it", omega, Eu)
        mse = float(w @ (ens**2).mean(1))
        self.loo_mse_ = mse
        self.loo_bvc_ = {
            "bias2": bias2,
            "variance": variance,
            "covariance": covariance,
            "mse": mse,
        }
        Es = E - np.einsum("i,hit->ht", w, E)[:, None]
        self.head_residual_cov_ = np.einsum("i,hit,git->hg", w, Es, Es) / E.shape[2]

    # -------------------------------------------------------------- predict
    def _calibrate(self, heads):
        """The output layer c + s * prediction, per target (standardised)."""
        return self.output_intercept_ + self.output_scale_ * heads

    def _heads_numpy(self, Xq, W, Xk, Yk, wk, device, degree, omega=None):
        """The heads' predictions (H, q, t) of numpy queries, computed on device.

        With head weights ``omega``, also the variance (q, t) of the mixture
        of the heads' local distributions around their weighted average.
        """
        H, m = W.shape[0], Xk.shape[0]
        chunk = max(1, _BLOCK // (H * m))
        with np.errstate(divide="ignore"):
            log_wk = to_tensor(np.log(wk), device)
        with self._threads(work=H * min(Xq.shape[0], chunk) * m):
            preds, spread = _predict_heads(
                to_tensor(Xq, device),
                to_tensor(W, device),
                to_tensor(Xk, device),
                to_tensor(Yk, device),
                log_wk,
                self.kernel,
                degree,
                chunk,
                None if omega is None else to_tensor(omega, device),
            )
        if omega is None:
            return to_numpy(preds)
        return to_numpy(preds), np.maximum(to_numpy(spread), 0.0)

    def _check_X(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return (X - self.x_mean_) / self.x_scale_

    def _unstandardize(self, Ys):
        Y = Ys * self.y_scale_ + self.y_mean_
        return Y[..., 0] if self._y_1d else Y

    def predict(self, X, return_std=False):
        """Predict with the weighted average of the heads.

        Memory is O(chunk x n_train) whatever the number of rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the predictive spread: the standard deviation of the
            mixture of the heads' local distributions (head h puts weight
            ``alpha_hj(x)`` on ``y_j``) around the prediction. It is the
            local conditional spread of y plus the heads' disagreement.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_std : ndarray of the same shape
            Only with ``return_std=True``.
        """
        Xs = self._check_X(X)
        fitted = (self.projections_, self.X_fit_, self.y_fit_, self.key_weight_)
        device = self._predict_device()
        if return_std:
            heads, var = self._heads_numpy(
                Xs, *fitted, device, self.degree_, omega=self.head_weights_
            )
        else:
            heads = self._heads_numpy(Xs, *fitted, device, self.degree_)
        ens = np.einsum("h,hqt->qt", self.head_weights_, self._calibrate(heads))
        y = self._unstandardize(ens)
        if not return_std:
            return y
        std = np.sqrt(var) * np.abs(self.output_scale_) * self.y_scale_
        return y, (std[:, 0] if self._y_1d else std)

    def predict_heads(self, X):
        """Each head's prediction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_heads : ndarray of shape (n_samples, `n_heads_`)
            Or (n_samples, `n_heads_`, n_targets) for multi-output y.
        """
        Xs = self._check_X(X)
        heads = self._heads_numpy(
            Xs,
            self.projections_,
            self.X_fit_,
            self.y_fit_,
            self.key_weight_,
            self._predict_device(),
            self.degree_,
        )
        Y = self._calibrate(heads) * self.y_scale_ + self.y_mean_  # (H, q, t)
        Y = np.transpose(Y, (1, 0, 2))
        return Y[..., 0] if self._y_1d else Y

    def transform(self, X):
        """The heads' projections of X, concatenated (as MLKR's ``transform``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_new : ndarray of shape (n_samples, `n_heads_` * `head_dim_`)
        """
        Xs = self._check_X(X)
        H, k, d = self.projections_.shape
        return Xs @ self.projections_.reshape(H * k, d).T

    @property
    def _n_features_out(self):
        return self.projections_.shape[0] * self.projections_.shape[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.required = True
        return tags


def _row_hash(projection):
    """A pseudo-uniform number in [0, 1) per row from a projection of its values.

    Subsets picked by it do not depend on the order of the rows, and copies of
    a row fall on the same side.
    """
    return np.mod(np.sin(projection) * 43758.5453, 1.0)


def _opg(X, Y, sw, device, max_rows=_OPG_ROWS):
    """The gradient outer product of (at most ``max_rows``) rows, on device.

    Numpy in and out around :func:`_gradient_outer_product`.
    """
    n, d = X.shape
    if n > max_rows:
        # rows chosen by a hash of their values (order-free, like the holdout)
        u = _row_hash(X @ np.linspace(1.0, 2.0, d) * 12.9898)
        keep = np.argsort(u, kind="stable")[:max_rows]
        X, Y, sw = X[keep], Y[keep], sw[keep]
    G = _gradient_outer_product(
        to_tensor(X, device),
        to_tensor(Y, device),
        to_tensor(sw, device),
        to_tensor(sw / sw.sum(), device),
    )
    return to_numpy(G)


def _simplex_weights(M):
    """argmin w' M w over the probability simplex (SLSQP)."""
    H = M.shape[0]
    start = np.full(H, 1.0 / H)
    res = minimize(
        lambda w: w @ M @ w,
        start,
        jac=lambda w: 2 * M @ w,
        bounds=[(0.0, 1.0)] * H,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        method="SLSQP",
    )
    w = np.clip(res.x if res.success else start, 0.0, None)
    return w / w.sum()
