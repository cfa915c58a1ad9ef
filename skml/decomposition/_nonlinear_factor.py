"""Nonlinear factor models with an unknown monotone link (Chao et al. 2026):
the decomposition estimator and the shared fitting machinery."""

import functools
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ..utils import TorchEstimatorMixin, hide_entries, make_generator, to_tensor
from ._monotone_link import IdentityLink, KnownLink, MonotoneLink
from ._nonlinear_factor_kernels import (
    Observed,
    clip_row_norms,
    factor_prior_ridge,
    fit_monotone_link,
    fit_prior_ridge,
    fold_in,
    gauss_newton_step,
    gradient_step,
    identity_link,
    index,
    link_inverse,
    monotone_link,
    normal_scores,
    predict_dense,
    rotate_and_balance,
    spectral_start,
    tabulate_link,
    tabulation_size,
)

# Knot bandwidth, in local knot spacings.
_BANDWIDTH_SCALE = 1.5
# Evenly spaced knots on each side beyond the outer quantile knots (at
# most): convex and concave links (exp, z^3) bend all the way out.
_TAIL_KNOTS = 20
# Fraction of each row's observed entries that ``score`` hides.
_SCORE_HOLDOUT = 0.2
# init="homotopy": the blend weights of the data in the stages before the
# data themselves, with each stage's iteration cap and tolerance.
_HOMOTOPY = (0.0, 0.1, 0.3)
_STAGE_ITER = 50
_STAGE_TOL = 1e-4
# link="auto": the share of the observed entries held out to compare the
# learned link with the identity, and the fewest held-out entries that make
# the comparison worth its noise (fewer: the learned link, the paper's model).
_LINK_HOLDOUT = 0.1
_LINK_MIN_HELD = 10


class _BaseNonlinearFactor(TorchEstimatorMixin, TransformerMixin, BaseEstimator):
    """Fitting, fold-in and scoring shared by the model and the imputer."""

    _parameter_constraints: dict = {
        **TorchEstimatorMixin._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "link": [StrOptions({"rkhs_monotone", "identity", "auto"}), callable],
        "n_link_knots": [Interval(Integral, 1, None, closed="left")],
        "link_alpha": [Interval(Real, 0, None, closed="left")],
        "link_slope_min": [Interval(Real, 0, None, closed="neither")],
        "factor_solver": [StrOptions({"gauss_newton", "gradient"})],
        "alpha_factors": [Interval(Real, 0, None, closed="left")],
        "incoherence": [Interval(Real, 1, None, closed="left"), None],
        "fold_in_prior": ["boolean"],
        "fit_prior": ["boolean"],
        "fit_intercept": ["boolean"],
        "init": [StrOptions({"homotopy", "spectral", "rank_spectral", "random"})],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_components=3,
        *,
        link="rkhs_monotone",
        n_link_knots=20,
        link_alpha=1e-6,
        link_slope_min=1e-3,
        factor_solver="gauss_newton",
        alpha_factors=1e-4,
        incoherence=None,
        fold_in_prior=True,
        fit_prior=True,
        fit_intercept=True,
        init="homotopy",
        max_iter=200,
        tol=1e-5,
        random_state=None,
        device="cpu",
    ):
        self.n_components = n_components
        self.link = link
        self.n_link_knots = n_link_knots
        self.link_alpha = link_alpha
        self.link_slope_min = link_slope_min
        self.factor_solver = factor_solver
        self.alpha_factors = alpha_factors
        self.incoherence = incoherence
        self.fold_in_prior = fold_in_prior
        self.fit_prior = fit_prior
        self.fit_intercept = fit_intercept
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit factors, loadings, intercepts and link on a matrix with NaNs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The matrix; ``NaN`` marks a missing entry. Every row and every
            column needs at least one observed entry.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        self._check_matrix(X)
        dev = self._fit_device()
        observed = ~np.isnan(X)
        self.link_scores_ = None
        self.selected_link_ = self.link
        if isinstance(self.link, str) and self.link == "auto":
            self.selected_link_, self.link_scores_ = self._choose_link(X, observed)
        with self._threads(work=int(observed.sum()) * (self.n_components + 2)):
            self._fit_tensors(to_tensor(X, dev), dev)
        return self

    def _choose_link(self, X, observed):
        """The learned link or the identity, by their error on held-out entries.

        Both are fitted on the other entries, with every other parameter as
        set; the lower mean squared error on the held-out ones wins (the
        learned link on ties, on too few held-out entries and when both
        fits fail).
        """
        rng = check_random_state(self.random_state)
        hidden = hide_entries(observed, _LINK_HOLDOUT, rng)
        if hidden.sum() < _LINK_MIN_HELD:
            return "rkhs_monotone", None
        train = np.where(hidden, np.nan, X)
        scores = {}
        for candidate in ("rkhs_monotone", "identity"):
            model = clone(self).set_params(link=candidate)
            try:
                with warnings.catch_warnings():
                    # a candidate stopped at max_iter still has an error
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(train)
            except ValueError:  # diverged: it cannot win
                scores[candidate] = np.inf
                continue
            fitted = model._predict(model.embedding_)
            scores[candidate] = float(np.mean((fitted[hidden] - X[hidden]) ** 2))
        return min(scores, key=scores.get), scores

    def _check_matrix(self, X):
        n, p = X.shape
        r = self.n_components
        if r > min(n, p):
            raise ValueError(
                f"n_components={r} must be at most min(n_samples, n_features) = "
                f"{min(n, p)} (n_samples={n}, n_features={p})."
            )
        missing = np.isnan(X)
        for axis, what in ((1, "row"), (0, "column")):
            empty = np.flatnonzero(missing.all(axis=axis))
            if len(empty):
                shown = ", ".join(map(str, empty[:10])) + (
                    " ..." if len(empty) > 10 else ""
                )
                raise ValueError(
                    f"{len(empty)} {what}(s) of X have no observed entry (all NaN): "
                    f"{what} indices {shown}. Drop them before fitting; a "
                    f"{what} with nothing observed carries no information."
                )

    def _fit_tensors(self, Xt, dev):
        obs = Observed.from_dense(Xt)
        n, p, K = obs.n_rows, obs.n_cols, len(obs.x)
        generator = make_generator(self.random_state, dev)
        link_spec = self.selected_link_
        learn_link = isinstance(link_spec, str) and link_spec == "rkhs_monotone"
        # The learned link works on standardised data, so link_alpha and
        # alpha_factors do not depend on the data's units.
        center = float(obs.x.mean()) if learn_link else 0.0
        scale = (float(obs.x.std()) or 1.0) if learn_link and K > 1 else 1.0
        std_obs = Observed(obs.rows, obs.cols, (obs.x - center) / scale, n, p)

        link, link_state = self._initial_link(learn_link)
        if self.init == "homotopy" and self.max_iter:
            U, V, w = self._homotopy_start(std_obs, generator)
        else:
            U, V, w = self._start(std_obs, link, learn_link, generator)
        U, V, w, link_state, sigma, losses, it, converged = self._descend(
            std_obs, U, V, w, link_state, learn_link, self.max_iter, self.tol
        )
        if not converged:
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self.max_iter} "
                f"iterations (last relative change "
                f"{abs(losses[-2] - losses[-1]) / max(abs(losses[-2]), 1e-300):.2e} > "
                f"tol={self.tol}); increase max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )

        # Everything below is in the data's units.
        user_link = self._user_link(link_state, center, scale)
        self.link_ = user_link
        tlink = user_link._fast(dev, Xt.dtype)
        ridge = np.full(self.n_components, self.alpha_factors * K / n * scale**2)
        if self.fold_in_prior:
            # Rows with few observed entries would otherwise fit them exactly
            # along weak components and extrapolate their missing entries.
            prior = factor_prior_ridge(obs, U, V, w, tlink, self.fit_intercept)
            ridge = ridge + prior.cpu().numpy().astype(np.float64)
        self._fold_ridge = ridge
        # Row factors = the fold-in of each training row under the final
        # loadings and link, so transform(X_train) reproduces embedding_.
        U, _ = fold_in(obs, V, w, tlink, self._fold_ridge, U)
        z = index(obs, U, V, w)
        fitted = tlink(z)[0]
        self.embedding_ = U.cpu().numpy()
        self.components_ = V.T.cpu().numpy().copy()
        self.intercepts_ = w.cpu().numpy()
        self.singular_values_ = sigma.cpu().numpy()
        self.index_range_ = np.array([float(z.min()), float(z.max())])
        self.reconstruction_err_ = float(torch.sqrt(((fitted - obs.x) ** 2).mean()))
        self.loss_curve_ = np.asarray(losses)
        self.n_iter_ = it if self.max_iter else 0
        return self

    def _descend(self, obs, U, V, w, link_state, learn_link, max_iter, tol):
        """Projected block coordinate descent from ``(U, V, w)`` on ``obs``.

        ``link_state`` is the known link when ``learn_link`` is False (it is
        refitted from the start's index otherwise). Returns the factors, the
        link state, the singular values, the loss curve, the iterations run
        and whether the relative change fell to ``tol``.
        """
        K = len(obs.x)
        x = obs.x
        ridge_u = self.alpha_factors * K / obs.n_rows
        ridge_v = self.alpha_factors * K / obs.n_cols
        # Without intercepts the index is only rescaled; its mean stays in
        # the link's own intercept.
        center_index = self.fit_intercept
        if learn_link:
            U, V, w, _ = self._rescale(obs, U, V, w, None, center_index)
            link_state = self._fit_link(obs, U, V, w)
            link = _tensor_link(link_state, K)
        else:
            link = link_state._on(x.device, x.dtype)
        if self.fit_prior:
            # Fixed for the whole descent, so that it minimises one objective.
            prior = fit_prior_ridge(obs, U, V, w, link, self.fit_intercept)
            ridge_u, ridge_v = prior + ridge_u, prior + ridge_v
        losses = []
        previous = self._objective(obs, U, V, w, link, ridge_u, ridge_v)
        losses.append(previous)
        sigma = rotate_and_balance(U, V)[2]
        converged = max_iter == 0
        for it in range(1, max_iter + 1):
            U = self._factor_step(
                U, obs.rows, V[obs.cols], w[obs.cols], x, link, ridge_u
            )
            U = clip_row_norms(U, self.incoherence)
            V, w = self._column_step(obs, U, V, w, link, ridge_v)
            V = clip_row_norms(V, self.incoherence)
            if learn_link:
                # New knots follow the new index, so the old link is not among
                # the refit's candidates: keep it when it still fits better.
                candidate = self._fit_link(obs, U, V, w)
                z = index(obs, U, V, w)
                if _sq_error(_tensor_link(candidate, K), z, x) <= _sq_error(link, z, x):
                    link_state = candidate
            if self.fit_intercept:
                # A constant added to a factor column is an intercept shift:
                # centre U and move the shift into w (predictions unchanged).
                shift = U.mean(0)
                U, w = U - shift, w + V @ shift
            U, V, sigma = rotate_and_balance(U, V)
            if learn_link:
                U, V, w, link_state = self._rescale(
                    obs, U, V, w, link_state, center_index
                )
                link = _tensor_link(link_state, K)
            current = self._objective(obs, U, V, w, link, ridge_u, ridge_v)
            if not np.isfinite(current):
                raise ValueError(
                    f"{type(self).__name__} diverged at iteration {it} (the "
                    "objective is not finite). Try a larger alpha_factors, "
                    "init='rank_spectral' or factor_solver='gauss_newton'."
                )
            losses.append(current)
            if abs(previous - current) <= tol * max(abs(previous), 1e-300):
                converged = True
                break
            previous = current
        else:
            it = max_iter
        return U, V, w, link_state, sigma, losses, it, converged

    def _homotopy_start(self, obs, generator):
        """Factors tracked from the normal scores of the entries to the data.

        A learned link absorbs any increasing map of the data, so the blends
        ``(1 - t) scores + t data`` of the stages share the data's factors up
        to noise, while their tails differ: the scores weigh every entry
        alike, the data weigh its extremes most. Each stage starts from the
        last one's factors.
        """
        U, V, w = self._start(obs, identity_link, True, generator)
        scores = normal_scores(obs.x)
        for t in _HOMOTOPY:
            blend = (1 - t) * scores + t * obs.x
            blend = (blend - blend.mean()) / (float(blend.std()) or 1.0)
            stage = Observed(obs.rows, obs.cols, blend, obs.n_rows, obs.n_cols)
            U, V, w = self._descend(
                stage, U, V, w, None, True, min(self.max_iter, _STAGE_ITER), _STAGE_TOL
            )[:3]
        return U, V, w

    def _initial_link(self, learn_link):
        if learn_link:
            return identity_link, None
        spec = self.selected_link_
        known = IdentityLink() if spec == "identity" else KnownLink(spec)
        return known._on("cpu", torch.float64), known

    def _start(self, obs, link, learn_link, generator):
        r = self.n_components
        if self.init == "random":
            dev, dtype = obs.x.device, obs.x.dtype
            U = torch.randn(obs.n_rows, r, dtype=dtype, device=dev, generator=generator)
            V = torch.randn(obs.n_cols, r, dtype=dtype, device=dev, generator=generator)
            _, _, w = spectral_start(obs, obs.x, 1, self.fit_intercept, generator)
            return U / r**0.25, V / r**0.25, w
        if self.init in ("rank_spectral", "homotopy"):
            # the homotopy's first stage starts here (and, with max_iter=0,
            # ends here)
            values = normal_scores(obs.x)
        elif learn_link or self.selected_link_ == "identity":
            values = obs.x
        else:
            values = self._inverse_known(obs.x, link)
        return spectral_start(obs, values, r, self.fit_intercept, generator)

    @staticmethod
    def _inverse_known(x, link):
        # Noise carries some entries beyond a bounded link's range, where the
        # inverse runs off to the bracket: clip at 3 robust sds.
        z = link_inverse(x, link, -1e3, 1e3)
        center = z.median()
        spread = 1.4826 * (z - center).abs().median()
        return z.clamp(float(center - 3 * spread), float(center + 3 * spread))

    def _fit_link(self, obs, U, V, w):
        z = index(obs, U, V, w)
        # Never more link weights than observed entries can pin down: one
        # central knot per 20 entries and one tail knot per 50.
        central = max(1, min(self.n_link_knots, len(z) // 20))
        tail = min(_TAIL_KNOTS, len(z) // 50)
        coef, knots, bandwidth, _ = fit_monotone_link(
            z,
            obs.x,
            central,
            tail,
            _BANDWIDTH_SCALE,
            self.link_alpha,
            self.link_slope_min,
        )
        return coef, knots, bandwidth

    @staticmethod
    def _rescale(obs, U, V, w, link_state, center=True):
        """Index scale and shift: mean(z) = 0, sd(z) = 1, link re-expressed."""
        z = index(obs, U, V, w)
        shift = float(z.mean()) if center else 0.0
        spread = float(z.std()) if len(z) > 1 else 1.0
        if not spread > 0:
            spread = 1.0
        root = spread**0.5
        U, V, w = U / root, V / root, (w - shift) / spread
        if link_state is not None:
            coef, knots, bandwidth = link_state
            coef = coef.clone()
            coef[0] = coef[0] + coef[1] * shift
            coef[1] = coef[1] * spread
            link_state = (coef, (knots - shift) / spread, bandwidth / spread)
        return U, V, w, link_state

    def _factor_step(self, theta, block, feats, offset, x, link, ridge):
        ridge_t = _ridge_vector(ridge, theta.shape[1], x)
        if self.factor_solver == "gauss_newton":
            return gauss_newton_step(theta, block, feats, offset, x, link, ridge_t)[0]
        return gradient_step(theta, block, feats, offset, x, link, ridge_t)[0]

    def _column_step(self, obs, U, V, w, link, ridge):
        feats = U[obs.rows]
        theta = V
        if self.fit_intercept:
            feats = torch.cat([feats, torch.ones_like(obs.x)[:, None]], dim=1)
            theta = torch.cat([V, w[:, None]], dim=1)
        ridge_t = _ridge_vector(ridge, V.shape[1], obs.x)
        if self.fit_intercept:
            ridge_t = torch.cat([ridge_t, ridge_t.new_zeros(1)])
        zero = torch.zeros_like(obs.x)
        if self.factor_solver == "gauss_newton":
            theta = gauss_newton_step(
                theta, obs.cols, feats, zero, obs.x, link, ridge_t
            )[0]
        else:
            theta = gradient_step(theta, obs.cols, feats, zero, obs.x, link, ridge_t)[0]
        if self.fit_intercept:
            return theta[:, :-1].contiguous(), theta[:, -1].contiguous()
        return theta, w

    def _objective(self, obs, U, V, w, link, ridge_u, ridge_v):
        K = len(obs.x)
        z = index(obs, U, V, w)
        resid = link(z)[0] - obs.x
        penalty = _penalty(ridge_u, U) + _penalty(ridge_v, V)
        return (float((resid * resid).sum()) + penalty) / K

    def _user_link(self, link_state, center, scale):
        if link_state is None or not isinstance(link_state, tuple):
            return link_state if link_state is not None else IdentityLink()
        coef, knots, bandwidth = (t.cpu().numpy() for t in link_state)
        coef = coef * scale
        coef[0] += center
        return MonotoneLink(coef, knots, bandwidth)

    # ----------------------------------------------------------- new rows

    def _validate_rows(self, X):
        check_is_fitted(self)
        return validate_data(
            self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan"
        )

    def _fold_in(self, X):
        """Row factors of ``X`` (n, r); rows with nothing observed get zeros."""
        dev = self._predict_device()
        n = X.shape[0]
        r = self.components_.shape[0]
        empty = np.isnan(X).all(axis=1)
        if empty.any():
            warnings.warn(
                f"{int(empty.sum())} row(s) of X have no observed entry; their "
                "factors are set to 0 (their completion is the link at the "
                "intercepts).",
                UserWarning,
                stacklevel=3,
            )
        with self._threads(work=int((~np.isnan(X)).sum()) * (r + 2)):
            obs = Observed.from_dense(to_tensor(X, dev))
            V = to_tensor(self.components_.T, dev)
            w = to_tensor(self.intercepts_, dev)
            link = self.link_._fast(dev, torch.float64)
            start = self._fold_start(obs, V, w, n)
            U, _ = fold_in(obs, V, w, link, self._fold_ridge, start)
            return U.cpu().numpy()

    def _fold_start(self, obs, V, w, n):
        """Ridge least squares of ``f^-1(x) - w`` on the loadings, per row."""
        low, high = self.index_range_
        margin = high - low
        link = self.link_._fast(obs.x.device, obs.x.dtype)
        z = link_inverse(obs.x, link, low - margin, high + margin).clamp(low, high)
        r = V.shape[1]
        feats = V[obs.cols]
        gram = torch.zeros(n, r * r, dtype=V.dtype, device=V.device)
        gram.index_add_(0, obs.rows, (feats[:, :, None] * feats[:, None, :]).flatten(1))
        rhs = torch.zeros(n, r, dtype=V.dtype, device=V.device)
        rhs.index_add_(0, obs.rows, feats * (z - w[obs.cols])[:, None])
        eye = torch.eye(r, dtype=V.dtype, device=V.device)
        scale = gram.view(n, r, r).diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        gram = gram.view(n, r, r) + 1e-6 * scale[:, None, None] * eye
        return torch.linalg.solve(gram, rhs[:, :, None])[:, :, 0]

    def _predict(self, U):
        dev = self._predict_device()
        with self._threads(work=U.shape[0] * self.components_.shape[1]):
            out = predict_dense(
                to_tensor(U, dev),
                to_tensor(self.components_.T, dev),
                to_tensor(self.intercepts_, dev),
                self.link_._fast(dev, torch.float64),
            )
            return out.cpu().numpy()

    def fit_transform(self, X, y=None):
        """Fit, then transform ``X`` (the same as ``fit(X).transform(X)``).

        ``transform`` folds rows in rather than reading back the fit's own
        factors, so both routes give the same output (the scikit-learn
        transformer contract); ``embedding_`` holds the same factors.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        X_new : ndarray
            What :meth:`transform` returns for ``X``.
        """
        return self.fit(X).transform(X)

    def complete(self, X):
        """Fill the missing entries of ``X`` from its folded-in factors.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to complete; ``NaN`` marks a missing entry.

        Returns
        -------
        X_completed : ndarray of shape (n_samples, n_features)
            ``X`` with each ``NaN`` replaced by ``f(u_i . v_j + w_j)``;
            observed entries are kept.
        """
        X = self._validate_rows(X)
        missing = np.isnan(X)
        out = X.copy()
        if missing.any():
            out[missing] = self._predict(self._fold_in(X))[missing]
        return out

    def score(self, X, y=None):
        """Minus the mean squared error on hidden observed entries.

        In every row with at least two observed entries, 20% of them (at
        least one, always leaving one) are hidden, the row is folded in
        from the rest, and the hidden entries are predicted. The hidden
        entries are drawn from ``random_state`` (0 when it is None), so the
        score is deterministic and ``GridSearchCV`` can compare
        ``n_components`` on the same entries.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score; ``NaN`` marks a missing entry.
        y : None
            Ignored.

        Returns
        -------
        score : float
            ``-mean((x_hidden - prediction)^2)``, in the data's units.
        """
        X = self._validate_rows(X)
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        rng = np.random.default_rng(seed)
        visible = X.copy()
        hidden = np.zeros(X.shape, dtype=bool)
        for i, row in enumerate(~np.isnan(X)):
            cols = np.flatnonzero(row)
            if len(cols) < 2:
                continue
            k = min(max(1, int(round(_SCORE_HOLDOUT * len(cols)))), len(cols) - 1)
            hidden[i, rng.choice(cols, size=k, replace=False)] = True
        if not hidden.any():
            raise ValueError(
                "score needs rows with at least two observed entries, to hide "
                "one and predict it from the others."
            )
        visible[hidden] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            predicted = self._predict(self._fold_in(visible))
        return -float(np.mean((predicted[hidden] - X[hidden]) ** 2))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _ridge_vector(ridge, q, like):
    """A ridge (a number, or one per component) as a fresh tensor of ``q``."""
    if torch.is_tensor(ridge):
        return ridge.to(like.dtype).clone()
    return torch.full((q,), ridge, dtype=like.dtype, device=like.device)


def _penalty(ridge, theta):
    if torch.is_tensor(ridge):
        return float((ridge * (theta * theta).sum(0)).sum())
    return ridge * float((theta * theta).sum())


def _sq_error(link, z, x):
    resid = link(z)[0] - x
    return float((resid * resid).sum())


def _tensor_link(link_state, n_entries):
    """The learned link as a tensor callable: tabulated when that is cheaper.

    Tabulating costs one exact evaluation per node; the fit then evaluates
    the link a few times per iteration on ``n_entries`` entries.
    """
    if link_state is None:
        return identity_link
    coef, knots, bandwidth = link_state
    exact = functools.partial(
        monotone_link, coef=coef, knots=knots, bandwidth=bandwidth
    )
    # Eight bandwidths past the outer knots the link is linear to rounding.
    reach = 8.0 * float(bandwidth.max())
    low, high = float(knots[0]) - reach, float(knots[-1]) + reach
    resolution = float(bandwidth.min())
    if tabulation_size(low, high, resolution) >= n_entries:
        return exact
    return tabulate_link(exact, low, high, resolution=resolution)


class NonlinearFactorModel(ClassNamePrefixFeaturesOutMixin, _BaseNonlinearFactor):
    """Low-rank factors behind an unknown monotone link, from an incomplete matrix.

    Models each observed entry as ``x_ij = f(u_i . v_j + w_j) + noise`` with
    row factors ``u_i``, loadings ``v_j``, per-column intercepts ``w_j`` and
    a non-decreasing link ``f`` learned jointly by projected block
    coordinate descent. ``NaN`` marks a missing entry. ``transform`` folds
    in new rows (with their own missing entries) with the loadings and link
    fixed; :class:`~skml.impute.NonlinearFactorImputer` is the same model
    behind the imputer convention.

    Parameters
    ----------
    n_components : int, default=3
        Rank ``r`` of the latent index. ``GridSearchCV`` with the built-in
        :meth:`score` can choose it.
    link : {"rkhs_monotone", "identity", "auto"} or callable, \
            default="rkhs_monotone"
        ``"rkhs_monotone"`` learns a :class:`MonotoneLink`: a linear term
        with slope ``a >= link_slope_min`` plus non-negative smooth steps and
        convex and concave ramps at ``n_link_knots`` knots (monotone by
        construction); ``"identity"`` is the linear factor model (rank-r
        ALS with intercepts); ``"auto"`` fits both on 90% of the observed
        entries and keeps the one with the lower error on the other 10%
        (``selected_link_``, ``link_scores_``; see Notes), for 1.5-3.5 times
        the fit time on the user guide's tables; a callable is a known,
        fixed link (a vectorised, non-decreasing numpy function).
    n_link_knots : int, default=20
        Number of knots ``M`` (each carries a step and two ramps); they sit
        at the quantiles of the current index.
    link_alpha : float, default=1e-6
        Ridge on the link's slope and weights (on standardised data).
    link_slope_min : float, default=1e-3
        Smallest slope ``a`` of the learned link (on standardised data): the
        link is strictly increasing, so it has an inverse.
    factor_solver : {"gauss_newton", "gradient"}, default="gauss_newton"
        Factor blocks: one damped Gauss-Newton step per row (batched
        ``r x r`` solves, a step length per row), or one projected gradient
        step with Armijo backtracking.
    alpha_factors : float, default=1e-4
        Ridge on the factors and loadings, relative to the mean squared
        error: ``alpha (|U|^2 / n + |V|^2 / p)``.
    incoherence : float or None, default=None
        Row norms of ``U`` and ``V`` are clipped at ``incoherence`` times
        their root-mean-square after each block (the projection onto
        incoherent factors); ``None`` turns it off.
    fold_in_prior : bool, default=True
        Fold rows in (``embedding_``, ``transform``, ``complete``) under a
        Gaussian prior on their factors estimated from the fit (see Notes):
        a row with few observed entries stays near the typical row instead
        of being extrapolated along weak components. ``False``: the plain
        least-squares fold-in (with ``alpha_factors``' ridge).
    fit_prior : bool, default=True
        Fit factors and loadings under Gaussian priors whose variances are
        estimated per component (empirical Bayes, see Notes): weak
        components are shrunk and components the data do not carry are
        switched off, which guards small tables with few observed entries
        per row against overfitting; on tables of four to six columns it
        can still lose to the column means (the user guide has the numbers).
        ``False``: only ``alpha_factors``' small isotropic
        ridge, as in the paper; on convex links (``exp``) that can be more
        accurate (the user guide has the numbers).
    fit_intercept : bool, default=True
        Learn the per-column intercepts ``w_j`` inside the link.
    init : {"homotopy", "rank_spectral", "spectral", "random"}, \
            default="homotopy"
        Start. ``"rank_spectral"``: rank-r SVD of the centred, zero-filled,
        1/p-rescaled matrix of the normal scores of the entries' ranks
        (invariant to the link). ``"homotopy"``: from that start, fit the
        model with a learned link to the normal scores, then to blends
        ``(1 - t) scores + t data`` at ``t = 0.1`` and ``0.3`` (each stage
        at most 50 iterations, tolerance 1e-4), warm-starting each stage and
        the final fit from the last (see Notes). ``"spectral"``: the SVD of
        the data (or their inverse under a known link); ``"random"``: random
        factors. With ``fit_prior=True`` the other starts fall behind the
        homotopy at high missing fractions (the user guide has the numbers).
    max_iter : int, default=200
        Outer iterations (U-step, V-step, link step, normalisation) of the
        final fit on the data; ``"homotopy"``'s stages run at most
        ``min(max_iter, 50)`` each.
    tol : float, default=1e-5
        Stop when the objective changes by less than ``tol`` relatively.
    random_state : int, RandomState instance or None, default=None
        Seeds the randomised SVD, ``init="random"`` and the entries that
        ``link="auto"`` holds out; ``score`` hides the same entries for the
        same integer seed (0 when None).
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Loadings ``V'``, ordered by decreasing strength.
    embedding_ : ndarray of shape (n_samples, n_components)
        Row factors of the training rows (their fold-in under the final
        loadings and link).
    intercepts_ : ndarray of shape (n_features,)
        Per-column intercepts ``w_j`` on the index scale.
    link_ : MonotoneLink, IdentityLink or KnownLink
        The link in the data's units, with ``__call__``, ``derivative`` and
        ``inverse``.
    selected_link_ : str or callable
        The link that was fitted: ``link`` itself, or with ``link="auto"``
        the choice, ``"rkhs_monotone"`` or ``"identity"``.
    link_scores_ : dict or None
        With ``link="auto"``: each candidate's mean squared error on the
        held-out entries (``inf`` when its fit diverged); None otherwise and
        when there were too few entries to hold out.
    singular_values_ : ndarray of shape (n_components,)
        Factor strengths from the last normalisation (``U'U = V'V =
        diag(singular_values_)`` before the final index rescale, which
        multiplies both by the same constant).
    index_range_ : ndarray of shape (2,)
        Smallest and largest fitted index on the observed entries.
    reconstruction_err_ : float
        Root mean squared error on the observed entries.
    loss_curve_ : ndarray
        Objective at the start and after each iteration of the final fit.
    n_iter_ : int
        Iterations of the final fit on the data (``"homotopy"``'s stages
        not counted).
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when ``X`` has string column names.
    device_ : torch.device
        The resolved device.

    See Also
    --------
    skml.impute.NonlinearFactorImputer : The same model as an imputer.
    sklearn.impute.IterativeImputer : Imputation by chained regressions.

    Notes
    -----
    Only the abstract of the paper (Chao, Gökhan, Etesami and Habibnia,
    2026) could be read; the formulation follows the project's research
    note ``nw_nfm.md`` B.2, marked *[derived]* there: the monotone link is
    a linear term plus a non-negative combination of normal-CDF steps (a
    finite RKHS, monotone for every ``z``), fitted exactly by bounded least
    squares; the factor blocks take one Gauss-Newton step per row; after
    each iteration an exact, prediction-preserving normalisation fixes the
    rotation and balance (``U'U = V'V`` diagonal) and the index scale
    (``mean z = 0``, ``sd z = 1`` on the observed entries, the link
    re-expressed). The incoherence projection clips row norms. The paper's
    "sublinear regret of the link updates" (an online-gradient link step)
    is not implemented: the link step here is the exact minimiser.

    The default start ``init="homotopy"`` is ours, not the paper's. A
    learned link absorbs any increasing map of the data, so fits to the
    normal scores of the entries and to blends of scores and data share the
    data's factors up to noise; the scores weigh all entries alike, the
    data weigh a convex link's extremes most. On the benchmark's ``exp``
    matrices (300 x 200, rank 3) tracking the factors along the blends
    lowered the mean error by 1.3-3.2x against ``init="rank_spectral"``,
    but not on every matrix, and not on average on smaller ones (the
    user-guide page has the numbers); on ``tanh``, ``sigmoid``, ``z^3``
    and the identity it changed nothing, and ``tanh`` and ``sigmoid`` fits
    took about twice as long.

    One link serves every column, so the columns must share their units
    (ratings, test scores, a panel of one quantity). On a table whose
    columns have units of their own, standardise them first (a
    ``Pipeline`` with :class:`~sklearn.preprocessing.StandardScaler`): the
    link cannot reach every column's scale at once, and its flat steps
    then fill entries of the small columns with the large columns' values
    (the example "Learned monotone links against the true ones" shows it
    on scikit-learn's wine table). Beyond the fitted index range the link
    continues linearly with its slope at the edge.

    The prior of the fold-in (``fold_in_prior=True``) is ours, not the
    paper's. Each row's factors, ``embedding_`` included, are its posterior
    mode with the loadings, intercepts and link fixed, under ``u ~ N(0,
    diag(s2))`` and Gaussian noise: ``s2_k`` is the mean square of the
    fitted factors' component ``k``, the noise variance the fit's residual
    sum of squares over its residual degrees of freedom, so each component
    gets the ridge ``sigma2 / s2_k``. Where every row has many observed
    entries (the benchmark's 300 x 200 matrices) it changes the completion
    error by under 1%; on real tables of 6-30 columns, whose rows hold a handful
    of observed entries per component, the plain fold-in fitted some rows
    almost exactly along weak components and filled entries tens of
    standard deviations away (the user-guide page has the numbers).

    ``link="auto"`` (ours, not the paper's) chooses between the learned
    link and the identity on data: 10% of the observed entries (every row
    and column keeps one) are held out, both links are fitted on the rest
    with the other parameters as set, and the one with the lower mean
    squared error on the held-out entries is fitted on all of them (the
    learned link wins ties, and is kept without a comparison when fewer than
    10 entries can be held out). A table without a common monotone
    distortion, whose columns were merely standardised, is often better
    served by the linear model: a learned link that bends to the pooled
    entries overfits them (the user-guide page has the numbers).

    ``fit_prior=True``, the default (ours, not the paper's), carries the
    prior into the fit itself. The rows' factors and the columns' loadings
    get Gaussian priors whose variances are the mean squares of the current
    ``U`` and ``V``; with the noise variance above, their ridges are
    ``sigma2 n / |U_k|^2`` and ``sigma2 p / |V_k|^2``. Over the balance
    ``(U_k c, V_k / c)``, which leaves the predictions unchanged, their
    penalty is least where one ridge ``sigma2 sqrt(n p) / (|U_k| |V_k|)``
    sits on both blocks: the BCD uses that ridge, so its balancing
    normalisation keeps the objective at its minimum. The ridges are
    estimated at the start of each descent and fixed within it, so with a
    fixed link each descent lowers one objective (a learned link's index is
    rescaled after each iteration, which can raise it a little). A
    component the data do not carry is shrunk, its ridge grows, and it ends
    at zero (automatic relevance determination), so an over-large
    ``n_components`` costs little.

    Examples
    --------
    >>> from skml.datasets import make_nonlinear_factor_matrix
    >>> from skml.decomposition import NonlinearFactorModel
    >>> data = make_nonlinear_factor_matrix(100, 60, rank=2, link="tanh",
    ...                                     missing=0.5, random_state=0)
    >>> model = NonlinearFactorModel(n_components=2, random_state=0).fit(data.data)
    >>> model.transform(data.data).shape
    (100, 2)
    >>> bool((model.link_.derivative([-2.0, 0.0, 2.0]) > 0).all())
    True
    """

    def transform(self, X):
        """Row factors of ``X``, folded in with loadings and link fixed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            ``NaN`` marks a missing entry. A row with nothing observed gets
            zero factors, with a warning.

        Returns
        -------
        U : ndarray of shape (n_samples, n_components)
        """
        return self._fold_in(self._validate_rows(X))

    def inverse_transform(self, X):
        """The completed matrix ``f(U V' + w)`` of row factors ``U``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Row factors, e.g. from :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        U = check_array(X, dtype=np.float64)
        r = self.components_.shape[0]
        if U.shape[1] != r:
            raise ValueError(
                f"inverse_transform expects {r} columns (n_components), got "
                f"{U.shape[1]}."
            )
        return self._predict(U)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]
