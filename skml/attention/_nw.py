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

from ..utils import resolve_device, to_numpy, to_tensor, weighted_quantile
from ._diversity import head_diversity_index

# Entries of one (heads x queries x keys) block: bounds memory in fit and
# predict to O(block) whatever n_train and n_test are. At 2**23 float64
# entries (64 MB) glibc serves the blocks with mmap and returns them on free;
# blocks of 2**20-2**22 entries fragmented the heap (peak RSS 3.5 GB instead
# of 0.9 GB when predicting 10,000 rows against 10,000 keys).
_BLOCK = 2**23
# Ridge on the local covariance of the local-linear fit, relative to its trace.
_LOCAL_RIDGE = 1e-3
# Training rows used to score each candidate of head_allocation="cv".
_CV_ROWS = 1000
# Kernel width of the gradient init: h^2 = median squared distance / this.
_OPG_WIDTH = 8.0


def _project(W, X):
    """(H, d_k, d) x (n, d) -> (H, n, d_k)."""
    return torch.einsum("hkd,nd->hnk", W, X)


def _key_cache(Zk):
    """Per-key quantities that every query chunk reuses.

    Computing them once also keeps same-sized temporaries from being
    allocated for every chunk, which fragmented the heap.
    """
    return Zk.transpose(1, 2).contiguous(), (Zk * Zk).sum(-1)[:, None, :]


def _logits(Zq, Zk, kernel, cache=None):
    ZkT, zk_sq = _key_cache(Zk) if cache is None else cache
    dots = Zq @ ZkT
    if kernel == "gaussian":
        sq = (Zq * Zq).sum(-1)[:, :, None] + zk_sq - 2.0 * dots
        return -0.5 * torch.clamp(sq, min=0.0)
    return dots


def _local_slopes(A, Zk, Yk, mean):
    """Slopes of the attention-weighted least-squares fit of y on z.

    ``A`` (H, q, m) are the weights, ``Zk`` (H, m, k) the keys, ``Yk`` (m, t)
    the values and ``mean = A @ Yk``. Returns the slopes (H, q, k, t) and the
    weighted key means (H, q, k). A ridge relative to the local covariance's
    trace keeps near-singular neighbourhoods stable.
    """
    H, m, k = Zk.shape
    t = Yk.shape[1]
    mz = A @ Zk
    zz = (Zk[:, :, :, None] * Zk[:, :, None, :]).reshape(H, m, k * k)
    S = (A @ zz).reshape(H, -1, k, k) - mz[..., :, None] * mz[..., None, :]
    zy = (Zk[:, :, :, None] * Yk[None, :, None, :]).reshape(H, m, k * t)
    Szy = (A @ zy).reshape(H, -1, k, t) - mz[..., :, None] * mean[..., None, :]
    trace = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1)
    ridge = _LOCAL_RIDGE * trace / k + torch.finfo(S.dtype).eps
    eye = torch.eye(k, dtype=S.dtype, device=S.device)
    return torch.linalg.solve(S + ridge[..., None, None] * eye, Szy), mz


def _quadratic_features(Z):
    """[1, z, z_i z_j (i <= j)] of (H, n, k) points: (H, n, p)."""
    k = Z.shape[-1]
    i, j = torch.triu_indices(k, k, device=Z.device)
    ones = torch.ones(Z.shape[:-1] + (1,), dtype=Z.dtype, device=Z.device)
    return torch.cat([ones, Z, Z[..., i] * Z[..., j]], dim=-1)


def _local_quadratic(A, Zq, Zk, Yk):
    """Attention-weighted least-squares quadratic in z, evaluated at the query.

    The fitted quadratic does not depend on where z is centred, so the
    moments are taken about the keys' mean once for all queries. Memory is
    O(H m p^2) with p = 1 + k + k (k + 1) / 2.
    """
    H, m, k = Zk.shape
    t = Yk.shape[1]
    center = Zk.mean(1, keepdim=True)
    Pk = _quadratic_features(Zk - center)
    Pq = _quadratic_features(Zq - center)
    p = Pk.shape[-1]
    M = (A @ (Pk[..., :, None] * Pk[..., None, :]).reshape(H, m, p * p)).reshape(
        H, -1, p, p
    )
    b = (A @ (Pk[..., :, None] * Yk[None, :, None, :]).reshape(H, m, p * t)).reshape(
        H, -1, p, t
    )
    # ridge on each non-constant term, relative to its own local second
    # moment (the terms have different units: z and z_i z_j)
    diag = torch.diagonal(M, dim1=-2, dim2=-1).clone()
    diag[..., 0] = 0.0
    ridge = _LOCAL_RIDGE * diag + torch.finfo(M.dtype).eps
    coef = torch.linalg.solve(M + torch.diag_embed(ridge), b)
    return (Pq[..., :, None] * coef).sum(-2)


def _heads(
    Zq, Zk, Yk, log_wk, kernel, degree, self_keys=None, self_shift=None, cache=None
):
    """Per-head predictions (H, q, t) and attention weights (H, q, m).

    ``self_keys[i]`` is query i's own key index (-1 if none); its log weight
    is shifted by ``self_shift[i]`` (leave-one-out removes one copy of the
    row: ``log(max(w_i - 1, 0)) - log(w_i)``).
    """
    logits = _logits(Zq, Zk, kernel, cache) + log_wk
    if self_keys is not None:
        rows = torch.nonzero(self_keys >= 0)[:, 0]
        if rows.numel():
            H = Zq.shape[0]
            h_idx = torch.arange(H, device=Zq.device).repeat_interleave(rows.numel())
            r_idx = rows.repeat(H)
            c_idx = self_keys[rows].repeat(H)
            logits = logits.index_put(
                (h_idx, r_idx, c_idx), self_shift[rows].repeat(H), accumulate=True
            )
    A = torch.softmax(logits, dim=-1)
    mean = A @ Yk
    if degree == 0:
        return mean, A
    if degree == 2:
        return _local_quadratic(A, Zq, Zk, Yk), A
    # local linear: the local weighted regression slope, evaluated at the query
    slope, mz = _local_slopes(A, Zk, Yk, mean)
    pred = mean + ((Zq - mz)[..., :, None] * slope).sum(-2)
    return pred, A


class NWAttentionRegressor(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, RegressorMixin, BaseEstimator
):
    """Multi-head attention regressor: an ensemble of learned Nadaraya-Watson heads.

    Each head h projects the inputs with a learned ``W_h`` (``head_dim x
    n_features``) and predicts with the Nadaraya-Watson (kernel-weighted)
    average of the training targets in that subspace, i.e. softmax attention
    with the training points as keys and their targets as values (Fokoue
    2026). The prediction is the weighted average of the heads. The
    projections are trained by minimising the leave-one-out (LOO) mean squared
    error, so the bandwidth cannot collapse onto the training points. The
    estimator reports the heads' diversity (HDI, principal angles), a
    bias-variance-covariance split of its LOO error and a predictive spread,
    and chooses the number of heads and their dimension itself.

    Read more in the :ref:`User Guide <nw_attention>`.

    Parameters
    ----------
    n_heads : int or "auto", default="auto"
        Number of heads H; ``"auto"`` lets ``head_allocation`` choose.
    head_dim : int or "auto", default="auto"
        Dimension d_k of each head's subspace (at most n_features).
    budget : int or None, default=None
        Total dimension D = H * d_k shared by the heads; default
        ``min(n_features, 32)`` (or ``n_heads * head_dim`` when both are given).
    head_allocation : {"scaling_law", "fixed", "cv"}, default="scaling_law"
        How (H, d_k) is chosen under the budget D: ``"fixed"`` uses
        ``n_heads`` and ``head_dim`` (both required); ``"scaling_law"`` sets
        ``d_k = clip(round(allocation_c * ln(n D)), 1, min(d, D))`` and ``H =
        D // d_k`` (d_k grows like log n); ``"cv"`` fits every divisor pair of
        D on at most 1,000 rows and keeps the best on a 25% holdout.
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
    degree : {0, 1, 2}, default=0
        Degree of the local polynomial of each head: 0 is Nadaraya-Watson
        (softmax attention); 1 is local-linear regression in the head's
        subspace, which removes the design and slope bias of local averaging;
        2 is local-quadratic, which also removes the curvature bias (memory
        O(H n_train p^2), ``p = 1 + d_k + d_k (d_k + 1) / 2``: for small d_k).
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
    optimizer : torch.optim.Optimizer subclass or None, default=None
        Replaces the solver's optimizer (instantiated as ``optimizer(params,
        lr=learning_rate)``); an L-BFGS subclass runs the full-batch loop,
        any other class the mini-batch loop.
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
        Prediction still averages over every training row.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the subsamples and the mini-batches.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

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
    bvc_ : dict
        Its split ``bias2 + variance + covariance = mse``: for head LOO
        residuals ``e_h``, ``bias2 = (sum_h w_h mean(e_h))^2``, ``variance =
        sum_h w_h^2 var(e_h)``, ``covariance = sum_{h != g} w_h w_g cov(e_h,
        e_g)`` (averaged over outputs).
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
        The resolved device.
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
    split and the scaling law for (H, d_k) are reconstructions consistent with
    the abstract, not the paper's own formulas. ``degree=1`` (local-linear
    heads) and the mixture predictive spread are our additions.

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
    >>> model.n_heads_, model.head_dim_
    (1, 4)
    >>> bool(model.score(X, y) > 0.8)
    True
    """

    _parameter_constraints: dict = {
        "n_heads": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "head_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "budget": [Interval(Integral, 1, None, closed="left"), None],
        "head_allocation": [StrOptions({"scaling_law", "fixed", "cv"})],
        "allocation_c": [Interval(Real, 0, None, closed="neither")],
        "kernel": [StrOptions({"gaussian", "dot"})],
        "bandwidth": [
            StrOptions({"learned", "sqrt_dk"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "degree": [Interval(Integral, 0, 2, closed="both")],
        "head_weights": [StrOptions({"uniform", "simplex"})],
        "output": [StrOptions({"affine", "identity"})],
        "diversity_penalty": [Interval(Real, 0, None, closed="left")],
        "init": [
            StrOptions({"gradient", "pca_blocks", "random_orthogonal", "pca"}),
            np.ndarray,
        ],
        "standardize": ["boolean"],
        "solver": [StrOptions({"lbfgs", "adam"})],
        "optimizer": [type, None],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_keys": [Interval(Integral, 2, None, closed="left"), None],
        "random_state": ["random_state"],
        "device": [str],
    }

    def __init__(
        self,
        n_heads="auto",
        head_dim="auto",
        *,
        budget=None,
        head_allocation="scaling_law",
        allocation_c=0.5,
        kernel="gaussian",
        bandwidth="learned",
        degree=0,
        head_weights="uniform",
        output="affine",
        diversity_penalty=0.0,
        init="gradient",
        standardize=True,
        solver="lbfgs",
        optimizer=None,
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
        if self.optimizer is not None and not issubclass(
            self.optimizer, torch.optim.Optimizer
        ):
            raise TypeError(
                "optimizer must be a torch.optim.Optimizer subclass, got "
                f"{self.optimizer!r}."
            )
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
        n, d = X.shape
        rng = check_random_state(self.random_state)
        self.device_ = resolve_device(self.device)

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
        H, d_k, allocation = self._allocate(Xs[train], Ys[train], sw[train], rng)
        self.n_heads_, self.head_dim_, self.allocation_ = H, d_k, allocation
        V = self._initial_projections(Xs[train], Ys[train], sw[train], H, d_k, rng)
        if constant:
            # nothing to learn: every head predicts the constant
            V_fit, affine, curve, n_iter = V, np.array([[0.0], [1.0]]), [], 0
            self.validation_scores_ = []
            affine = np.repeat(affine, Y.shape[1], axis=1)
        else:
            V_fit, affine, curve, n_iter = self._train(
                V, Xs[train], Ys[train], sw[train], rng, self.max_iter
            )
        self.loss_curve_, self.n_iter_ = curve, n_iter
        self.output_intercept_, self.output_scale_ = affine[0], affine[1]
        W = self._effective(to_tensor(V_fit, "cpu"), d_k).numpy()
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
        return self

    # -------------------------------------------------------- allocation
    def _allocate(self, X, Y, sw, rng):
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
        # "cv": every divisor pair of D, scored on a holdout of a subsample
        candidates = [(D // k, k) for k in range(1, min(d, D) + 1) if D % k == 0]
        rows = rng.permutation(n)[: min(n, _CV_ROWS)]
        n_val = max(1, len(rows) // 4)
        val, fit_rows = rows[:n_val], rows[n_val:]
        if len(fit_rows) < 2:
            return *candidates[-1], {"budget": D, "candidates": candidates}
        scores = []
        for H, k in candidates:
            V = self._initial_projections(
                X[fit_rows], Y[fit_rows], sw[fit_rows], H, k, rng
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                V, affine, _, _ = self._train(
                    V, X[fit_rows], Y[fit_rows], sw[fit_rows], rng, self.max_iter
                )
            W = self._effective(torch.as_tensor(V), k)
            heads = self._heads_numpy(X[val], W, X[fit_rows], Y[fit_rows], sw[fit_rows])
            pred = affine[0] + affine[1] * heads.mean(0)
            err = sw[val] @ ((pred - Y[val]) ** 2).mean(1) / sw[val].sum()
            scores.append(float(err))
        best = int(np.argmin(scores))
        H, k = candidates[best]
        return H, k, {"budget": D, "candidates": candidates, "holdout_mse": scores}

    # -------------------------------------------------------- parameters
    def _initial_projections(self, X, Y, sw, H, k, rng):
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
        if self.init == "gradient":
            evals, evecs = np.linalg.eigh(_gradient_outer_product(X, Y, sw))
        else:
            evals, evecs = np.linalg.eigh(cov)
        pcs = evecs[:, np.argsort(evals)[::-1]].T  # rows: directions
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

    def _effective(self, V, k):
        """Projections W from the trained parameters V (torch)."""
        if self.bandwidth == "learned":
            return V
        h = k**0.25 if self.bandwidth == "sqrt_dk" else float(self.bandwidth)
        Q, R = torch.linalg.qr(V.transpose(1, 2))
        # sign-fix the QR so that W is a smooth function of V
        sign = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        return (Q * sign[:, None, :]).transpose(1, 2) / h

    # ------------------------------------------------------------- training
    def _loss_terms(self, W, out, Xq, Yq, wq, Xk, Yk, log_wk, keys_of_q, shift):
        Zq, Zk = _project(W, Xq), _project(W, Xk)
        pred, _ = _heads(Zq, Zk, Yk, log_wk, self.kernel, self.degree, keys_of_q, shift)
        ens = out[0] + out[1] * pred.mean(0)
        return (wq * ((ens - Yq) ** 2).mean(1)).sum()

    def _penalty(self, W):
        if self.diversity_penalty == 0 or W.shape[0] < 2:
            return W.new_zeros(())
        H, k, _ = W.shape
        G = W @ W.transpose(1, 2) + 1e-10 * torch.eye(k, dtype=W.dtype, device=W.device)
        P = W.transpose(1, 2) @ torch.linalg.solve(G, W)  # projectors (H, d, d)
        S = torch.einsum("hij,gji->hg", P, P) / k
        off = S.sum() - torch.diagonal(S).sum()
        return self.diversity_penalty * off / (H * (H - 1))

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

    def _train(self, V0, X, Y, sw, rng, max_iter):
        dev = self.device_
        k, H = V0.shape[1], V0.shape[0]
        val = self._validation_rows(X, Y, sw, rng)
        fit = np.ones(len(X), dtype=bool) if val is None else ~val
        # training queries attend to the training rows only (LOO)
        Xt, Yt = to_tensor(X[fit], dev), to_tensor(Y[fit], dev)
        w = to_tensor(sw[fit] / sw[fit].sum(), dev)
        with np.errstate(divide="ignore"):
            log_wk = to_tensor(np.log(sw[fit]), dev)
            shift = np.log(np.maximum(sw[fit] - 1.0, 0.0)) - np.log(sw[fit])
            shift = to_tensor(shift, dev)
        n = Xt.shape[0]
        self_keys = torch.arange(n, device=dev)
        V = to_tensor(V0, dev).requires_grad_(True)
        # output layer c + s * (head average), per target: MHA's W_O and bias
        out = torch.zeros((2, Y.shape[1]), dtype=V.dtype, device=dev)
        out[1] = 1.0
        params = [V]
        if self.output == "affine":
            params.append(out.requires_grad_(True))
        chunk = max(1, _BLOCK // (H * n))
        curve, scores = [], []
        self.validation_scores_ = scores
        if max_iter == 0:
            return V0, to_numpy(out.detach()), curve, 0
        if val is not None:
            Xv, Yv = to_tensor(X[val], dev), to_tensor(Y[val], dev)
            wv = to_tensor(sw[val] / sw[val].sum(), dev)

        def val_loss():
            total = 0.0
            with torch.no_grad():
                W = self._effective(V, k)
                for s in range(0, Xv.shape[0], chunk):
                    sl = slice(s, s + chunk)
                    total += float(
                        self._loss_terms(
                            W, out, Xv[sl], Yv[sl], wv[sl], Xt, Yt, log_wk, None, None
                        )
                    )
            return total

        def full_loss():
            # full batch in query chunks, gradients accumulated: O(chunk x n)
            total = 0.0
            for s in range(0, n, chunk):
                sl = slice(s, s + chunk)
                part = self._loss_terms(
                    self._effective(V, k),
                    out,
                    Xt[sl],
                    Yt[sl],
                    w[sl],
                    Xt,
                    Yt,
                    log_wk,
                    self_keys[sl],
                    shift[sl],
                )
                part.backward()
                total += float(part.detach())
            pen = self._penalty(self._effective(V, k))
            if pen.requires_grad:
                pen.backward()
            return total + float(pen.detach())

        opt_cls = self.optimizer
        lbfgs = (opt_cls is None and self.solver == "lbfgs") or (
            opt_cls is not None and issubclass(opt_cls, torch.optim.LBFGS)
        )
        if lbfgs:
            cls = opt_cls or torch.optim.LBFGS
            opt = cls(
                params,
                max_iter=1,  # one iteration per step: loss_curve_, tol
                max_eval=25,  # (max_eval defaults to 1 then: no line search)
                line_search_fn="strong_wolfe",
                history_size=20,
                tolerance_grad=1e-10,
                tolerance_change=0.0,
            )

            def closure():
                opt.zero_grad()
                return torch.tensor(full_loss(), dtype=torch.float64)

            def one_iteration():
                return float(opt.step(closure))

        else:
            cls = opt_cls or torch.optim.Adam
            opt = cls(params, lr=self.learning_rate)
            batch = n if self.batch_size is None else min(self.batch_size, n)
            gen = torch.Generator(device="cpu").manual_seed(int(rng.randint(2**31)))

            def one_iteration():
                order = torch.randperm(n, generator=gen).to(dev)
                epoch = 0.0
                for s in range(0, n, batch):
                    q = order[s : s + batch]
                    opt.zero_grad()
                    W = self._effective(V, k)
                    wq = w[q] / w[q].sum()
                    loss = self._loss_terms(
                        W, out, Xt[q], Yt[q], wq, Xt, Yt, log_wk, q, shift[q]
                    )
                    loss = loss + self._penalty(W)
                    loss.backward()
                    opt.step()
                    epoch += float(loss.detach()) * float(w[q].sum())
                return epoch

        converged = False
        best = (math.inf, V0, to_numpy(out.detach()))
        if val is not None:
            scores.append(val_loss())
            best = (scores[0], V0, to_numpy(out.detach()))
        stall = 0
        prev = None
        for _ in range(max_iter):
            loss = one_iteration()
            self._check_finite(loss)
            curve.append(loss)
            if val is not None:
                scores.append(val_loss())
                if scores[-1] < best[0]:
                    best = (scores[-1], to_numpy(V.detach()), to_numpy(out.detach()))
                    stall = 0
                else:
                    stall += 1
                if stall >= self.n_iter_no_change:
                    converged = True
                    break
            if prev is not None and abs(prev - loss) <= self.tol * max(
                abs(loss), 1e-12
            ):
                converged = True
                break
            prev = loss
        n_iter = len(curve)
        if not converged:
            warnings.warn(
                f"NWAttentionRegressor did not converge in {max_iter} iterations "
                f"(last relative loss change above tol={self.tol:g}); increase "
                "max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if val is not None:
            return best[1], best[2], curve, n_iter
        return to_numpy(V.detach()), to_numpy(out.detach()), curve, n_iter

    @staticmethod
    def _check_finite(loss):
        if not math.isfinite(loss):
            raise ValueError(
                "NWAttentionRegressor training diverged (non-finite loss); lower "
                "learning_rate or use solver='lbfgs'."
            )

    # ---------------------------------------------------------- diagnostics
    def _diagnostics(self, X, Y, sw):
        """LOO residuals of each head on the training rows: weights, BVC."""
        dev = self.device_
        W = to_tensor(self.projections_, dev)
        Xt, Yt = to_tensor(X, dev), to_tensor(Y, dev)
        n = X.shape[0]
        with np.errstate(divide="ignore"):
            log_wk = to_tensor(np.log(sw), dev)
            shift = to_tensor(np.log(np.maximum(sw - 1.0, 0.0)) - np.log(sw), dev)
        H = W.shape[0]
        chunk = max(1, _BLOCK // (H * n))
        preds = []
        with torch.no_grad():
            Zk = _project(W, Xt)
            cache = _key_cache(Zk)
            for s in range(0, n, chunk):
                sl = slice(s, s + chunk)
                p, _ = _heads(
                    _project(W, Xt[sl]),
                    Zk,
                    Yt,
                    log_wk,
                    self.kernel,
                    self.degree,
                    torch.arange(n, device=dev)[sl],
                    shift[sl],
                    cache,
                )
                preds.append(to_numpy(p))
        heads = self._calibrate(np.concatenate(preds, axis=1))
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
        self.bvc_ = {
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

    def _heads_numpy(self, Xq, W, Xk, Yk, wk, local_var=False, omega=None):
        dev = self.device_
        Xk_t, Yk_t = to_tensor(Xk, dev), to_tensor(Yk, dev)
        with np.errstate(divide="ignore"):
            log_wk = to_tensor(np.log(wk), dev)
        H, m = W.shape[0], Xk.shape[0]
        chunk = max(1, _BLOCK // (H * m))
        n_q, t = Xq.shape[0], Yk.shape[1]
        preds = np.empty((H, n_q, t))
        spread = np.empty((n_q, t)) if local_var else None
        with torch.no_grad():
            Zk = _project(W, Xk_t)
            cache = _key_cache(Zk)
            Yk_sq = Yk_t**2
            if local_var:
                om = to_tensor(omega, dev)
            for s in range(0, n_q, chunk):
                q = to_tensor(Xq[s : s + chunk], dev)
                pred, A = _heads(
                    _project(W, q),
                    Zk,
                    Yk_t,
                    log_wk,
                    self.kernel,
                    self.degree,
                    cache=cache,
                )
                preds[:, s : s + chunk] = to_numpy(pred)
                if local_var:
                    ens = torch.einsum("h,hqt->qt", om, pred)
                    # mixture of the heads' local distributions around ens
                    m2 = A @ Yk_sq
                    m1 = A @ Yk_t
                    var = m2 - 2 * ens[None] * m1 + ens[None] ** 2
                    spread[s : s + chunk] = to_numpy(torch.einsum("h,hqt->qt", om, var))
        if local_var:
            return preds, np.maximum(spread, 0.0)
        return preds

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
        W = torch.as_tensor(self.projections_)
        if return_std:
            heads, var = self._heads_numpy(
                Xs,
                W,
                self.X_fit_,
                self.y_fit_,
                self.key_weight_,
                True,
                self.head_weights_,
            )
        else:
            heads = self._heads_numpy(Xs, W, self.X_fit_, self.y_fit_, self.key_weight_)
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
            torch.as_tensor(self.projections_),
            self.X_fit_,
            self.y_fit_,
            self.key_weight_,
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
        tags.non_deterministic = self.device != "cpu"
        return tags


def _row_hash(projection):
    """A pseudo-uniform number in [0, 1) per row from a projection of its values.

    Subsets picked by it do not depend on the order of the rows, and copies of
    a row fall on the same side.
    """
    return np.mod(np.sin(projection) * 43758.5453, 1.0)


def _gradient_outer_product(X, Y, sw, max_rows=2000):
    """Average outer product of local-linear gradients (OPG, Xia et al. 2002).

    Its leading eigenvectors span the directions that y depends on: a
    supervised start for the heads' projections.
    """
    n, d = X.shape
    if n > max_rows:
        # rows chosen by a hash of their values (order-free, like the holdout)
        u = _row_hash(X @ np.linspace(1.0, 2.0, d) * 12.9898)
        keep = np.argsort(u, kind="stable")[:max_rows]
        X, Y, sw = X[keep], Y[keep], sw[keep]
        n = max_rows
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    sq = torch.cdist(Xt, Xt) ** 2
    off = sq[~torch.eye(n, dtype=torch.bool)]
    h2 = float(torch.median(off)) / _OPG_WIDTH if off.numel() else 1.0
    logits = -sq / (2 * max(h2, 1e-12)) + torch.log(torch.as_tensor(sw))[None, :]
    logits.fill_diagonal_(-math.inf)
    A = torch.softmax(logits, dim=1)
    slope, _ = _local_slopes(A[None], Xt[None], Yt, (A @ Yt)[None])
    slope = slope[0]
    w = torch.as_tensor(sw / sw.sum())
    return torch.einsum("i,idt,iet->de", w, slope, slope).numpy()


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
