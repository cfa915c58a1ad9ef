"""How far a fitted regressor's calibration transfers to a covariate-shifted target.

A diagnostic after "universal adaptability" (Kim et al., PNAS 2022; research
note ``mcboost.md`` §1.7): the target bias of a model equals an
importance-weighted mean of its source residuals, and the part of the density
ratio inside the span of the model's audit class carries no bias when the
model is multicalibrated.
"""

from numbers import Integral, Real

import numpy as np
from scipy.stats import norm
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, check_cv, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch, check_array
from sklearn.utils.validation import check_is_fitted

from ..utils import encode_groups

# Density ratios above this quantile (over the source rows) are clipped.
CLIP_QUANTILE = 0.995
# Share of the ratio's variance in the audit span that counts as "inside".
SPAN_SHARE_INSIDE = 0.9
# Effective sample size (share of n) above which the shift counts as none.
NO_SHIFT_ESS = 0.95
MIN_ROWS = 10
N_LEVEL_SETS = 10


def transfer_report(
    estimator,
    X_source,
    y_source,
    X_target,
    *,
    groups_source=None,
    groups_target=None,
    base_predictions_source=None,
    base_predictions_target=None,
    classifier=None,
    cv=5,
    confidence=0.95,
    random_state=None,
):
    """Estimate the bias of a fitted regressor on a covariate-shifted target.

    The target population Q is assumed to differ from the source P (where
    ``y_source`` was observed) only in the distribution of the covariates,
    with density ratio ``rho = dQ/dP``. Then the target bias is
    ``E_Q[y - f(x)] = E_P[rho(x) (y - f(x))]``. The report

    1. estimates ``rho`` on the source rows with a probabilistic "target vs
       source" classifier, cross-fitted over ``cv`` stratified folds (each
       source row gets the odds of a classifier that did not see it);
    2. estimates the target bias and a confidence bound from the
       ``rho``-weighted source residuals;
    3. splits ``rho`` into its least-squares projection on the span of the
       estimator's audit class (constant, audited groups, level sets of the
       prediction, ...) and the remainder, and splits the bias accordingly. A
       model that is multicalibrated on the source has (almost) no bias along
       the first part, so a shift inside the span is one the model has
       already adapted to.

    Parameters
    ----------
    estimator : estimator instance
        A fitted regressor, typically a
        :class:`~skml.calibration.MCBoostRegressor`. Its audit span comes from
        its ``audit_basis(X, groups=..., base_predictions=...)`` method when
        it has one, and otherwise from its ``auditor``, ``bucket_strategy``
        and groups (see Notes).
    X_source : array-like of shape (n_source, n_features)
        Labelled rows from the source population.
    y_source : array-like of shape (n_source,)
        Their outcomes.
    X_target : array-like of shape (n_target, n_features)
        Unlabelled rows from the target population.
    groups_source : array-like of shape (n_source, n_groups) or (n_source,), \
            default=None
        Groups of the source rows, as passed to the estimator's ``predict``
        (required when it was fitted with groups).
    groups_target : array-like of shape (n_target, n_groups) or (n_target,), \
            default=None
        Groups of the target rows.
    base_predictions_source : array-like of shape (n_source,), default=None
        Base predictions of the source rows (when the estimator was fitted
        with ``base_predictions``).
    base_predictions_target : array-like of shape (n_target,), default=None
        Base predictions of the target rows.
    classifier : classifier instance, default=None
        Probabilistic classifier (with ``predict_proba``) of target (1) vs
        source (0), cloned for every fold. ``None`` uses
        ``LogisticRegression(C=1.0, max_iter=1000)`` after a
        :class:`~sklearn.preprocessing.StandardScaler`. Its features are
        ``[X, group indicators (if any), the estimator's prediction]``.
    cv : int or cross-validation generator, default=5
        Folds of the cross-fitting. An int gives shuffled stratified folds
        seeded by ``random_state``.
    confidence : float, default=0.95
        Two-sided confidence level of ``bias_bound``.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds.

    Returns
    -------
    report : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        bias_estimate : float
            ``mean(rho * r)`` over the source rows, with
            ``r = y_source - estimator.predict(X_source)``: the
            importance-weighted estimate of the target bias ``E_Q[y - f]``.
        bias_se : float
            Its standard error, ``std(rho * r, ddof=1) / sqrt(n_source)``
            (the estimated ``rho`` treated as known).
        bias_bound : float
            ``|bias_estimate| + z * bias_se + |clip_shift|``, ``z`` the
            two-sided normal quantile of ``confidence``: an approximate upper
            confidence bound on the absolute target bias.
        clip_shift : float
            ``mean(rho_raw * r) - bias_estimate``, ``rho_raw`` the unclipped
            ratios at mean 1: how far the clipping moved the estimate. The
            bound allows for it.
        bias_in_span : float
            ``mean(rho_in * r)``: the bias carried by the projection of
            ``rho`` on the audit span (about 0 for a multicalibrated model).
        bias_out_of_span : float
            ``mean(rho_out * r)`` with ``rho_out = rho - rho_in``: the bias
            the audit could not see. ``bias_in_span + bias_out_of_span``
            equals ``bias_estimate``.
        bias_out_of_span_se : float
            ``std(rho_out * r, ddof=1) / sqrt(n_source)``.
        span_share : float
            ``1 - var(rho_out) / var(rho)`` in [0, 1]: the share of the
            density ratio's variance inside the audit span (1.0 when ``rho``
            is constant).
        inside_span : bool
            ``span_share >= 0.9``, ``|bias_out_of_span| <= z *
            bias_out_of_span_se`` or an effective sample size of at least 95%
            of ``n_source``: the shift looks like one the audit class covers,
            the part it does not cover carries no detectable bias, or there is
            no detectable shift.
        n_basis : int
            Number of audit-span functions (after dropping all-zero columns).
        density_ratio : ndarray of shape (n_source,)
            The estimated ``rho`` on the source rows (clipped, mean 1).
        density_ratio_in_span : ndarray of shape (n_source,)
            Its projection ``rho_in`` on the audit span.
        effective_sample_size : float
            ``sum(rho) ** 2 / sum(rho ** 2)``: how many source rows the
            weighted estimate is worth (``n_source`` when ``rho`` is
            constant).
        clip_value : float
            The cap on ``rho`` (its 99.5% quantile over the source rows),
            on the scale of ``density_ratio``.
        n_clipped : int
            Number of source rows whose ratio was clipped.
        domain_auc : float
            ROC AUC of the out-of-fold "target vs source" probabilities over
            all rows: 0.5 when the samples cannot be told apart.
        source_bias : float
            ``mean(r)``: the unweighted bias on the source rows.
        target_mean_prediction : float
            Mean prediction over the target rows.
        target_mean_estimate : float
            ``target_mean_prediction + bias_estimate``: the estimated mean of
            ``y`` on the target.
        confidence : float
            The ``confidence`` argument.
        n_source, n_target : int
            Row counts.
        summary : str
            One paragraph in words.

    See Also
    --------
    MCBoostRegressor : Multicalibration boosting, whose audit span this uses.

    Notes
    -----
    This is the project's own construction, *[reconstructed]* from the
    research note ``mcboost.md`` §1.7 after Kim, Kern, Goldwasser, Kreuter
    and Reingold, "Universal adaptability: Target-independent inference that
    competes with propensity scoring", PNAS 119(4), 2022; it is not the
    paper's formula (the paper's body was not available). The identity
    ``E_Q[y - f] = E_P[rho (y - f)]`` is exact for a covariate shift; the
    rest are our choices:

    - ``rho_i = p_i / (1 - p_i) * n_source / n_target`` with ``p_i`` the
      out-of-fold probability that source row ``i`` is a target row, clipped
      at its 99.5% quantile and renormalised to mean 1 over the source rows
      (a self-normalised, slightly biased estimate that trades a little bias
      for a bounded variance). Clipping pulls the estimate toward the
      source's own residual; ``bias_bound`` adds the shift it caused, as the
      unclipped ratios measure it, to the standard error term. The
      estimated ratio is otherwise treated as known.
    - The audit span, unless the estimator has an ``audit_basis`` method: the
      constant; the estimator's group indicators; unless
      ``auditor="groups"`` with ``bucket_strategy="none"``, indicators of 10
      quantile buckets of the prediction and their products with the group
      indicators; with ``auditor="ridge"``, ``"tree"`` or ``"hybrid"``, the
      standardised features; with ``"tree"`` or ``"hybrid"``, also the
      indicators of each feature's quintiles (the trees split on every
      feature, so this is a coarse stand-in for their span).
      This is the span of the functions the fitted model was audited
      against, approximately (the boosting rounds audit the level sets of
      the prediction at each round, not of the final one).
    - ``rho_in`` is the least-squares projection of ``rho`` on that span in
      the empirical source distribution (with a ridge of ``1e-8`` times the
      trace of the Gram matrix for stability).

    ``bias_se`` ignores the error in the estimated ``rho``; cross-fitting
    keeps that error from fitting the residuals, but with a small
    ``effective_sample_size`` or a ``domain_auc`` near 1 (little overlap of
    the two samples) the bound is optimistic. ``bias_in_span`` is estimated,
    not assumed to be 0, so the bound is valid for a model that is not
    multicalibrated too; the decomposition only explains it.

    Examples
    --------
    >>> from skml.calibration import MCBoostRegressor
    >>> from skml.calibration import transfer_report
    >>> from skml.datasets import make_covariate_shift_regression
    >>> data = make_covariate_shift_regression(4000, shift="inside", random_state=0)
    >>> model = MCBoostRegressor(
    ...     data.estimator, auditor="groups", bucket_strategy="none", random_state=0
    ... ).fit(data.X_audit, data.y_audit, groups=data.groups_audit)
    >>> report = transfer_report(
    ...     model, data.X_audit, data.y_audit, data.X_target,
    ...     groups_source=data.groups_audit, groups_target=data.groups_target,
    ...     random_state=0,
    ... )
    >>> bool(report.inside_span), bool(report.span_share > 0.9)
    (True, True)
    """
    check_is_fitted(estimator)
    Xs = check_array(X_source, dtype=np.float64, input_name="X_source")
    Xt = check_array(X_target, dtype=np.float64, input_name="X_target")
    n_s, n_t = Xs.shape[0], Xt.shape[0]
    if Xt.shape[1] != Xs.shape[1]:
        raise ValueError(
            f"X_target has {Xt.shape[1]} features but X_source has "
            f"{Xs.shape[1]}; both samples need the same columns."
        )
    for name, n in (("X_source", n_s), ("X_target", n_t)):
        if n < MIN_ROWS:
            raise ValueError(
                f"{name} has {n} rows; transfer_report needs at least "
                f"{MIN_ROWS} in each sample."
            )
    y = _check_vector(y_source, n_s, "y_source", "X_source")
    for value, n, name, against in (
        (groups_source, n_s, "groups_source", "X_source"),
        (groups_target, n_t, "groups_target", "X_target"),
        (base_predictions_source, n_s, "base_predictions_source", "X_source"),
        (base_predictions_target, n_t, "base_predictions_target", "X_target"),
    ):
        if value is not None and len(value) != n:
            raise ValueError(
                f"{name} has {len(value)} rows but {against} has {n}; pass one "
                "row per sample."
            )
    if (groups_source is None) != (groups_target is None):
        raise ValueError(
            "Pass groups for both samples (groups_source and groups_target) or "
            "for neither."
        )
    if (base_predictions_source is None) != (base_predictions_target is None):
        raise ValueError(
            "Pass base predictions for both samples (base_predictions_source "
            "and base_predictions_target) or for neither."
        )
    if (
        not isinstance(confidence, Real)
        or isinstance(confidence, bool)
        or not 0 < confidence < 1
    ):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    classifier_name = (
        "logistic regression" if classifier is None else type(classifier).__name__
    )
    if classifier is None:
        classifier = Pipeline(
            [
                ("scale", StandardScaler()),
                ("clf", LogisticRegression(C=1.0, max_iter=1000)),
            ]
        )
    elif not hasattr(classifier, "predict_proba"):
        raise ValueError(
            "classifier must have a predict_proba method; got "
            f"{type(classifier).__name__}."
        )

    pred_s = _predict(estimator, X_source, groups_source, base_predictions_source)
    pred_t = _predict(estimator, X_target, groups_target, base_predictions_target)
    G_s, categories = _group_indicators(estimator, Xs, groups_source)
    G_t, _ = _group_indicators(estimator, Xt, groups_target, categories)

    # Cross-fitted "target vs source" odds on the source rows.
    Z = np.vstack(
        [_domain_features(Xs, G_s, pred_s), _domain_features(Xt, G_t, pred_t)]
    )
    domain = np.r_[np.zeros(n_s), np.ones(n_t)]
    if isinstance(cv, Integral) and not isinstance(cv, bool):
        if not 2 <= cv <= min(n_s, n_t):
            raise ValueError(
                f"cv={cv} folds need 2 <= cv <= min(n_source, n_target) = "
                f"{min(n_s, n_t)}."
            )
        splitter = StratifiedKFold(cv, shuffle=True, random_state=random_state)
    else:
        splitter = check_cv(cv, domain, classifier=True)
    proba = cross_val_predict(
        clone(classifier), Z, domain, cv=splitter, method="predict_proba"
    )[:, 1]
    domain_auc = float(roc_auc_score(domain, proba))
    p = np.clip(proba[:n_s], 1e-12, 1 - 1e-12)
    rho = p / (1 - p) * (n_s / n_t)
    cap = np.quantile(rho, CLIP_QUANTILE)
    n_clipped = int(np.sum(rho > cap))
    rho_raw = rho / rho.mean()
    rho = np.minimum(rho, cap)
    scale = rho.mean()
    rho, cap = rho / scale, cap / scale
    ess = float(rho.sum() ** 2 / np.sum(rho**2))

    # Projection of rho on the audit span.
    B = _audit_basis(
        estimator,
        X_source,
        groups_source,
        base_predictions_source,
        prediction=pred_s,
    )
    gram = B.T @ B
    ridge = 1e-8 * np.trace(gram)
    coef = np.linalg.solve(gram + ridge * np.eye(B.shape[1]), B.T @ rho)
    rho_in = B @ coef
    rho_out = rho - rho_in
    var_rho = np.var(rho)
    if var_rho <= 1e-12:
        span_share = 1.0
    else:
        span_share = float(np.clip(1 - np.var(rho_out) / var_rho, 0.0, 1.0))

    # Importance-weighted bias.
    r = y - pred_s
    z = float(norm.ppf(0.5 + confidence / 2))
    root_n = np.sqrt(n_s)
    bias = float(np.mean(rho * r))
    bias_se = float(np.std(rho * r, ddof=1) / root_n)
    # Clipping trades variance for a bias toward the source's residual; the
    # bound allows for it as far as the unclipped ratios show it.
    clip_shift = float(np.mean(rho_raw * r)) - bias
    bound = abs(bias) + z * bias_se + abs(clip_shift)
    bias_in = float(np.mean(rho_in * r))
    bias_out = float(np.mean(rho_out * r))
    se_out = float(np.std(rho_out * r, ddof=1) / root_n)
    # A negligible shift (effective sample size near n) is inside any span.
    inside = bool(
        span_share >= SPAN_SHARE_INSIDE
        or abs(bias_out) <= z * se_out
        or ess >= NO_SHIFT_ESS * n_s
    )
    mean_pred_t = float(np.mean(pred_t))

    report = Bunch(
        bias_estimate=bias,
        bias_se=bias_se,
        bias_bound=float(bound),
        clip_shift=clip_shift,
        bias_in_span=bias_in,
        bias_out_of_span=bias_out,
        bias_out_of_span_se=se_out,
        span_share=span_share,
        inside_span=inside,
        n_basis=int(B.shape[1]),
        density_ratio=rho,
        density_ratio_in_span=rho_in,
        effective_sample_size=ess,
        clip_value=float(cap),
        n_clipped=n_clipped,
        domain_auc=domain_auc,
        source_bias=float(np.mean(r)),
        target_mean_prediction=mean_pred_t,
        target_mean_estimate=mean_pred_t + bias,
        confidence=float(confidence),
        n_source=n_s,
        n_target=n_t,
    )
    report.summary = _summary(report, classifier_name)
    return report


def _audit_basis(estimator, X, groups, base_predictions, *, prediction=None):
    """Functions spanning the estimator's audit class, on the rows of X.

    Parameters
    ----------
    estimator : estimator instance
        The fitted model.
    X : array-like of shape (n_samples, n_features)
        Rows.
    groups : array-like or None
        Their groups, as for the estimator's ``predict``.
    base_predictions : array-like of shape (n_samples,) or None
        Their base predictions, as for the estimator's ``predict``.
    prediction : ndarray of shape (n_samples,), default=None
        The estimator's prediction on X, when already computed.

    Returns
    -------
    basis : ndarray of shape (n_samples, n_basis)
        The columns of ``estimator.audit_basis`` when it exists, else those
        listed in the Notes of :func:`transfer_report`; all-zero columns
        dropped.
    """
    n = _num_rows(X)
    if callable(getattr(estimator, "audit_basis", None)):
        B = np.asarray(
            estimator.audit_basis(X, groups=groups, base_predictions=base_predictions),
            dtype=np.float64,
        )
        if B.ndim == 1:
            B = B[:, None]
        if B.ndim != 2 or B.shape[0] != n or not np.all(np.isfinite(B)):
            raise ValueError(
                f"{type(estimator).__name__}.audit_basis must return a finite "
                f"array of shape ({n}, n_basis); got shape {B.shape}."
            )
    else:
        Xn = check_array(X, dtype=np.float64)
        G, _ = _group_indicators(estimator, Xn, groups)
        auditor = getattr(estimator, "auditor", None)
        auditor = auditor if isinstance(auditor, str) else None
        strategy = getattr(estimator, "bucket_strategy", None)
        blocks = [np.ones((n, 1))]
        if G is not None:
            blocks.append(G)
        if not (auditor == "groups" and strategy == "none"):
            if prediction is None:
                prediction = _predict(estimator, X, groups, base_predictions)
            L = _level_sets(prediction, N_LEVEL_SETS)
            blocks.append(L)
            if G is not None:
                blocks.append((G[:, :, None] * L[:, None, :]).reshape(n, -1))
        if auditor in ("ridge", "tree", "hybrid"):
            blocks.append((Xn - estimator.x_mean_) / estimator.x_scale_)
        if auditor in ("tree", "hybrid"):
            # The trees split on every feature: its quantile bins are audited.
            for j in range(Xn.shape[1]):
                blocks.append(_level_sets(Xn[:, j], 5)[:, 1:])
        B = np.hstack(blocks)
    return B[:, np.any(B != 0, axis=0)]


def _level_sets(prediction, n_buckets):
    """0/1 indicators of equal-mass buckets of the prediction."""
    edges = np.quantile(prediction, np.arange(1, n_buckets) / n_buckets)
    bucket = np.searchsorted(edges, prediction, side="right")
    return (bucket[:, None] == np.arange(n_buckets)[None, :]).astype(np.float64)


def _group_indicators(estimator, X, groups, categories=None):
    """The estimator's group indicators of the rows (None when it has none).

    Uses the estimator's own encoding (``_groups_for``, which also covers its
    ``group_features``) when it has one; otherwise encodes ``groups``.
    """
    if hasattr(estimator, "_groups_for"):
        return estimator._groups_for(X, groups), None
    if groups is None:
        return None, None
    G, categories, _ = encode_groups(groups, X.shape[0], categories=categories)
    return G, categories


def _predict(estimator, X, groups, base_predictions):
    kwargs = {}
    if groups is not None:
        kwargs["groups"] = groups
    if base_predictions is not None:
        kwargs["base_predictions"] = base_predictions
    pred = np.asarray(estimator.predict(X, **kwargs), dtype=np.float64)
    n = _num_rows(X)
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.shape != (n,):
        raise ValueError(
            f"The estimator's predictions must have shape ({n},), got {pred.shape}."
        )
    if not np.all(np.isfinite(pred)):
        raise ValueError("The estimator's predictions contain NaN or infinite values.")
    return pred


def _domain_features(X, G, pred):
    blocks = [X] + ([] if G is None else [G]) + [pred[:, None]]
    return np.hstack(blocks)


def _check_vector(value, n, name, against):
    value = check_array(value, ensure_2d=False, dtype=np.float64, input_name=name)
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    if value.ndim != 1 or value.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},) to match {against}, got {value.shape}."
        )
    return value


def _num_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _summary(rep, classifier_name):
    z = norm.ppf(0.5 + rep.confidence / 2)
    if rep.inside_span:
        verdict = (
            "The shift looks inside the audited span"
            if rep.span_share >= SPAN_SHARE_INSIDE
            else "Most of the shift lies outside the audited span, but that part "
            "carries no detectable bias"
        )
    else:
        verdict = (
            "The shift has a part outside the audited span that carries a "
            "detectable bias, so the source audit does not vouch for the target"
        )
    low_ess = ""
    if rep.effective_sample_size < 0.1 * rep.n_source:
        low_ess = (
            " The effective sample size is small: the weights rest on few rows "
            "and the bound is unreliable."
        )
    return (
        f"Importance weights from a cross-fitted {classifier_name} (target vs "
        f"source, AUC {rep.domain_auc:.2f}; effective sample size "
        f"{rep.effective_sample_size:.0f} of {rep.n_source} source rows) put the "
        f"target bias E_Q[y - f] at {rep.bias_estimate:+.3g} (standard error "
        f"{rep.bias_se:.2g}), so |bias| <= {rep.bias_bound:.3g} at "
        f"{rep.confidence:.0%} confidence; the estimated target mean of y is "
        f"{rep.target_mean_estimate:.4g} against a mean prediction of "
        f"{rep.target_mean_prediction:.4g}. {rep.span_share:.0%} of the density "
        f"ratio's variance lies in the span of the estimator's audit class "
        f"({rep.n_basis} functions), which carries {rep.bias_in_span:+.3g} of "
        f"the bias; the rest carries {rep.bias_out_of_span:+.3g} (standard "
        f"error {rep.bias_out_of_span_se:.2g}, threshold {z:.2f} standard "
        f"errors). {verdict}.{low_ess}"
    )
