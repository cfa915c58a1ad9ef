"""The nonlinear factor model behind scikit-learn's imputer convention."""

import numpy as np
from sklearn.base import OneToOneFeatureMixin

from ..decomposition._nonlinear_factor import _BaseNonlinearFactor


class NonlinearFactorImputer(OneToOneFeatureMixin, _BaseNonlinearFactor):
    """Fill missing entries with a low-rank model behind a learned monotone link.

    The same model as :class:`~skml.decomposition.NonlinearFactorModel`
    (same parameters and fitted attributes), but ``transform`` returns
    ``X`` with its ``NaN`` filled, as :class:`~sklearn.impute.IterativeImputer`
    does, so it goes in a :class:`~sklearn.pipeline.Pipeline` in front of a
    regressor. New rows are folded in with the loadings and link fixed.

    Parameters
    ----------
    n_components : int, default=3
        Rank of the latent index.
    link : {"rkhs_monotone", "identity", "auto"} or callable, \
            default="rkhs_monotone"
        Learned monotone link, linear model, the better of the two on
        held-out entries (see :class:`~skml.decomposition.NonlinearFactorModel`),
        or a known link.
    n_link_knots : int, default=20
        Smooth steps in the learned link.
    link_alpha : float, default=1e-6
        Ridge on the link's slope and step weights (standardised data).
    link_slope_min : float, default=1e-3
        Smallest slope of the learned link (standardised data).
    factor_solver : {"gauss_newton", "gradient"}, default="gauss_newton"
        Factor-block update.
    alpha_factors : float, default=1e-4
        Ridge on factors and loadings, relative to the mean squared error.
    incoherence : float or None, default=None
        Row-norm clip of the factors, in root-mean-squares; None turns it off.
    fold_in_prior : bool, default=True
        Fill each row from its factors' posterior mode under a Gaussian prior
        estimated from the fit, so rows with few observed entries are not
        extrapolated along weak components (see
        :class:`~skml.decomposition.NonlinearFactorModel`).
    fit_prior : bool, default=True
        Fit factors and loadings under Gaussian priors estimated per
        component (empirical Bayes), which switches off components the data
        do not carry, which guards small tables against overfitting (see
        :class:`~skml.decomposition.NonlinearFactorModel`).
    fit_intercept : bool, default=True
        Per-column intercepts inside the link.
    init : {"homotopy", "rank_spectral", "spectral", "random"}, \
            default="homotopy"
        Starting point (see :class:`~skml.decomposition.NonlinearFactorModel`).
    max_iter : int, default=200
        Outer iterations.
    tol : float, default=1e-5
        Relative change of the objective at which to stop.
    random_state : int, RandomState instance or None, default=None
        Seeds the randomised SVD, ``init="random"``, the entries that
        ``link="auto"`` holds out and ``score``'s hidden entries.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Loadings, as in :class:`~skml.decomposition.NonlinearFactorModel`.
    embedding_ : ndarray of shape (n_samples, n_components)
        Row factors of the training rows.
    intercepts_ : ndarray of shape (n_features,)
        Per-column intercepts on the index scale.
    link_ : MonotoneLink, IdentityLink or KnownLink
        The link in the data's units.
    selected_link_ : str or callable
        The link that was fitted (the choice of ``link="auto"``).
    link_scores_ : dict or None
        With ``link="auto"``: each candidate's held-out mean squared error.
    singular_values_ : ndarray of shape (n_components,)
        Factor strengths from the last normalisation.
    index_range_ : ndarray of shape (2,)
        Smallest and largest fitted index on the observed entries.
    reconstruction_err_ : float
        Root mean squared error on the observed entries.
    loss_curve_ : ndarray
        Objective at the start and after each iteration of the final fit.
    n_iter_ : int
        Iterations of the final fit (``"homotopy"``'s stages not counted).
    device_ : torch.device
        The resolved device.
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when ``X`` has string column names.

    See Also
    --------
    skml.decomposition.NonlinearFactorModel : Factors, fold-in and link.
    sklearn.impute.IterativeImputer : Imputation by chained regressions.

    Notes
    -----
    The formulation is the project's *[derived]* reading of the paper's
    abstract (research note ``nw_nfm.md`` B.2); see
    :class:`~skml.decomposition.NonlinearFactorModel`. One link serves every
    column: put columns of different units through
    :class:`~sklearn.preprocessing.StandardScaler` first.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.datasets import make_nonlinear_factor_matrix
    >>> from skml.impute import NonlinearFactorImputer
    >>> data = make_nonlinear_factor_matrix(80, 40, rank=2, missing=0.3,
    ...                                     random_state=0)
    >>> filled = NonlinearFactorImputer(n_components=2, random_state=0).fit_transform(
    ...     data.data)
    >>> bool(np.isnan(filled).any())
    False
    """

    def transform(self, X):
        """``X`` with every ``NaN`` replaced by the model's prediction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A row with nothing observed is filled with the link at the
            intercepts, with a warning.

        Returns
        -------
        X_completed : ndarray of shape (n_samples, n_features)
        """
        return np.asarray(self.complete(X))
