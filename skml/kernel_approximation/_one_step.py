"""Random features after one large gradient step, and their closed form."""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils import TorchEstimatorMixin, make_generator, to_numpy, to_tensor
from ._one_step_kernels import (
    _ACTIVATIONS,
    draw_bias,
    draw_layers,
    features,
    linear_signal,
    one_step,
    spike,
    spiked_first_layer,
)

# Below this z-score a target's linear part is not told apart from noise
# (about 1 in 700 under "none"): the one step then stretches the features
# along a noise direction (single-index targets of the tests score 90-120).
LINEAR_SIGNAL_MIN = 3.0
# Ridge of the "ols" direction, relative to the mean variance (standardised
# features: 1).
_OLS_RIDGE = 1e-3


class NoSpikeWarning(UserWarning):
    """One gradient step found no dominant direction in the target."""


class _BaseRandomFeatures(
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    TorchEstimatorMixin,
    BaseEstimator,
):
    """Shared parameters, standardisation and network draws."""

    _parameter_constraints: dict = {
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "second_layer": [StrOptions({"rademacher", "gaussian"})],
        "bias": ["boolean"],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
        **TorchEstimatorMixin._parameter_constraints,
    }

    def _standardize_fit(self, X):
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            scale = X.std(axis=0)
            self.scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        return (X - self.mean_) / self.scale_

    def _draw(self, d, k, rng):
        # A CPU generator: the same network on every device.
        gen = make_generator(rng.randint(2**31 - 1))
        W0, a = draw_layers(
            self.n_features, d, k, self.second_layer, gen, torch.float64
        )
        bias = draw_bias(self.n_features, gen, torch.float64)
        self.bias_ = to_numpy(bias) if self.bias else np.zeros(self.n_features)
        return W0, a, torch.as_tensor(self.bias_)

    def transform(self, X):
        """The random features ``sigma(W x)`` of the standardised rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, `n_features_in_`)

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        dev = self._predict_device()
        with self._threads(work=X.shape[0] * self.W_.size):
            Z = features(
                to_tensor((X - self.mean_) / self.scale_, dev),
                to_tensor(self.W_, dev),
                self.activation,
                to_tensor(self.bias_, dev),
            )
            return to_numpy(Z)

    @property
    def _n_features_out(self):
        return self.W_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        # fit takes y of shape (n_samples, n_outputs): one spike per output
        tags.target_tags.multi_output = True
        return tags


class OneStepFeatureMap(_BaseRandomFeatures):
    """Random features after one large gradient step on the first layer.

    A two-layer network ``f(x) = a' sigma(W0 x)`` with Gaussian rows ``W0``
    and a fixed second layer ``a`` takes one gradient step of the squared
    loss in its first layer, on a share of the training rows. That step
    moves every row along the target's linear direction, so the features
    ``sigma(W1 x)`` become a spiked random-features model: a data-adaptive
    kernel that stretches the inputs along the learned index direction.
    Pipe it into a linear model, ``make_pipeline(OneStepFeatureMap(),
    RidgeCV())``.

    Parameters
    ----------
    n_features : int, default=512
        Number of random features N.
    activation : {"relu", "tanh", "erf"}, default="relu"
        The first layer's nonlinearity. It needs a nonzero mean slope (all
        three have one) for the step to see the linear direction.
    step_size : float, default=8.0
        ``eta`` of ``W1 = W0 - eta G``, or, with ``step_scale="relative"``,
        the ratio ``||eta G||_op / ||W0||_op`` (scale-free: the spike's size
        against the random part). 0 gives plain random features. The research
        note's checks use 4; 8 is the default because the index's share of
        a row's variance, ``(1 + theta) / (d + theta)``, shrinks with d for a
        given spike ``theta``, and at d = 100 test errors kept falling up to
        8 (benchmark ``spike`` part).
    step_scale : {"relative", "absolute"}, default="relative"
    step_fraction : float in (0, 1], default=1.0
        Share of the training rows (drawn at random) that the step uses. Ba
        et al. (2022) split the sample (0.5) to keep the step independent of
        the rows the second layer is fitted on; in a pipeline the next
        estimator sees every row anyway, and the split only halves the data
        the step learns from.
    second_layer : {"rademacher", "gaussian"}, default="rademacher"
        Entries of ``a``: ``+-1 / sqrt(N)`` or ``N(0, 1 / N)``.
    bias : bool, default=True
        Fixed random biases ``b ~ N(0, 1)`` inside the activation,
        ``sigma(W x + b)`` (not stepped). Without them ReLU features are
        homogeneous: along a strong spike they reduce to ``z`` and ``|z|`` of
        the index ``z`` and cannot bend or saturate (``False`` is the paper's
        bias-free model).
    standardize : bool, default=True
        Standardise the features (mean 0, unit variance) before the network;
        the targets are always standardised for the step.
    random_state : int, RandomState instance or None, default=None
        Seeds the network and the row split.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a torch device.

    Attributes
    ----------
    W_ : ndarray of shape (n_features, `n_features_in_`)
        First layer after the step (on standardised inputs).
    W0_ : ndarray of shape (n_features, `n_features_in_`)
        First layer before the step.
    a_ : ndarray of shape (n_features, n_outputs)
        The fixed second layer.
    bias_ : ndarray of shape (n_features,)
        The fixed biases (zeros with ``bias=False``).
    step_ : float
        The ``eta`` used.
    spike_direction_ : ndarray of shape (`n_features_in_`,)
        Top right singular vector of ``W_ - W0_``: the learned index
        direction in the standardised input space.
    spike_directions_ : ndarray of shape (n_outputs, `n_features_in_`)
        The leading ``n_outputs`` of them (a rank-k spike for k outputs).
    spike_ratio_ : float
        ``s_k / s_(k+1)`` of the update's singular values: how far the spike
        stands out. A noise target also gives a spike (along its empirical
        ``X'y / n``, a random direction); :attr:`linear_signal_` tells them
        apart.
    linear_signal_ : ndarray of shape (n_outputs,)
        z-score of each target's linear part on the step's rows against
        "no linear component" (about N(0, 1) then); below 3 a
        ``NoSpikeWarning`` is raised.
    mean_, scale_ : ndarray of shape (`n_features_in_`,)
        The standardisation.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when X has feature names that are all strings.
    device_ : torch.device

    See Also
    --------
    SpikedRandomFeatures : The closed-form spiked model, for ablations.
    sklearn.kernel_approximation.RBFSampler : Random Fourier features.

    Notes
    -----
    Only the paper's abstract and summaries were available. The model, the
    relative step and the closed form follow the project's research note
    (``extras.md`` section 3.2, marked *[derived]*): the one-step gradient is
    approximately ``mu_1 a (X'y / n)'``, rank one, so the rows' covariance
    becomes ``I / d + c^2 E[a^2] beta beta'`` and the induced kernel is the
    random-features kernel after stretching the inputs along ``beta``. The
    learned direction is close to the average-derivative (Stein) direction
    ``X'y / n`` of single-index regression. A target without a linear
    component (an even function of the index) gives no spike along the index
    at this order. The gradient is taken at a network whose output at
    initialisation is zero (as with Ba et al.'s symmetric initialisation);
    the random network's own output would add a spike along ``W0' a``.

    References
    ----------
    Ba, Erdogdu, Suzuki, Wang, Wu and Yang, "High-dimensional asymptotics of
    feature learning: how one gradient step improves the representation",
    NeurIPS 2022. Loureiro, Liu, Lobo and Tran-Thanh, "How does feature
    learning reshape the function space?", arXiv:2605.17718, 2026.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import RidgeCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from skml.kernel_approximation import OneStepFeatureMap
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 50))
    >>> beta = np.ones(50) / np.sqrt(50)
    >>> y = np.tanh(2 * X @ beta) + 0.1 * rng.normal(size=2000)
    >>> features = OneStepFeatureMap(n_features=256, random_state=0).fit(X, y)
    >>> bool(features.spike_ratio_ > 10)
    True
    >>> bool(abs(features.spike_direction_ @ beta) > 0.9)
    True
    >>> model = make_pipeline(OneStepFeatureMap(random_state=0), RidgeCV())
    >>> bool(model.fit(X[:1500], y[:1500]).score(X[1500:], y[1500:]) > 0.8)
    True
    """

    _parameter_constraints: dict = {
        **_BaseRandomFeatures._parameter_constraints,
        "step_size": [Interval(Real, 0, None, closed="left")],
        "step_scale": [StrOptions({"relative", "absolute"})],
        "step_fraction": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        n_features=512,
        *,
        activation="relu",
        step_size=8.0,
        step_scale="relative",
        step_fraction=1.0,
        second_layer="rademacher",
        bias=True,
        standardize=True,
        random_state=None,
        device="cpu",
    ):
        self.n_features = n_features
        self.activation = activation
        self.step_size = step_size
        self.step_scale = step_scale
        self.step_fraction = step_fraction
        self.second_layer = second_layer
        self.bias = bias
        self.standardize = standardize
        self.random_state = random_state
        self.device = device

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Draw the network and take its one gradient step.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target the step learns from.

        Returns
        -------
        self : object
        """
        X, y = validate_data(
            self, X, y, dtype=np.float64, multi_output=True, y_numeric=True
        )
        Y = _standardize_targets(y)
        Xs = self._standardize_fit(X)
        rng = check_random_state(self.random_state)
        W0, a, bias = self._draw(X.shape[1], Y.shape[1], rng)
        n = X.shape[0]
        rows = rng.permutation(n)[: max(1, math.ceil(self.step_fraction * n))]
        dev = self._fit_device()
        with self._threads(work=len(rows) * self.n_features * X.shape[1]):
            W0_t, a_t = W0.to(dev), a.to(dev)
            W1, self.step_ = one_step(
                W0_t,
                a_t,
                to_tensor(Xs[rows], dev),
                to_tensor(Y[rows], dev),
                self.activation,
                self.step_size,
                self.step_scale,
                bias.to(dev),
            )
            directions, s, ratio = spike(W1 - W0_t, Y.shape[1])
            signal = linear_signal(to_tensor(Xs[rows], dev), to_tensor(Y[rows], dev))
        self.W_, self.W0_, self.a_ = to_numpy(W1), to_numpy(W0), to_numpy(a)
        self.spike_directions_ = to_numpy(directions)
        self.spike_direction_ = self.spike_directions_[0]
        self.spike_ratio_ = ratio
        self.linear_signal_ = to_numpy(signal)
        weak = np.flatnonzero(~(self.linear_signal_ >= LINEAR_SIGNAL_MIN))
        if self.step_size > 0 and len(weak):
            which = "the target" if Y.shape[1] == 1 else f"outputs {weak.tolist()}"
            warnings.warn(
                f"One gradient step found no dominant direction for {which}: "
                f"no linear component told apart from noise (linear_signal_ "
                f"{np.round(self.linear_signal_[weak], 2).tolist()} < "
                f"{LINEAR_SIGNAL_MIN:g}); one step cannot learn a direction the "
                "target reaches only through even functions, and the features "
                "are stretched along noise.",
                NoSpikeWarning,
                stacklevel=2,
            )
        return self


class SpikedRandomFeatures(_BaseRandomFeatures):
    """Random features whose rows are stretched along given directions.

    The closed form of :class:`OneStepFeatureMap`: ``W = W0 + sqrt(theta N /
    d) a B`` with ``B`` the unit direction(s), so that the rows' variance
    along each direction is ``1 + theta`` times their variance across. With
    the same ``random_state``, ``n_features`` and ``second_layer`` it starts
    from the same ``W0`` and ``a`` as :class:`OneStepFeatureMap`, for
    ablations (the learned step against its rank-one model).

    Parameters
    ----------
    n_features : int, default=512
    direction : {"stein", "ols"} or array-like of shape (`n_features_in_`,) \
or (k, `n_features_in_`), default="stein"
        ``"stein"``: ``X'y / n`` (the average-derivative direction the
        step approximates); ``"ols"``: the least-squares direction (with a
        small ridge); an array: given directions (in the standardised input
        space; orthonormalised), ``y`` is then not needed. One direction
        per output for multi-output ``y``.
    theta : float, default=25.0
        Spike strength: the variance ratio along the direction minus 1
        (25.6 for the default one step in the research note's check).
    activation : {"relu", "tanh", "erf"}, default="relu"
    second_layer : {"rademacher", "gaussian"}, default="rademacher"
    bias : bool, default=True
        As in :class:`OneStepFeatureMap`.
    standardize : bool, default=True
    random_state : int, RandomState instance or None, default=None
    device : str or torch.device, default="cpu"

    Attributes
    ----------
    W_ : ndarray of shape (n_features, `n_features_in_`)
    W0_ : ndarray of shape (n_features, `n_features_in_`)
    a_ : ndarray of shape (n_features, k)
    bias_ : ndarray of shape (n_features,)
    directions_ : ndarray of shape (k, `n_features_in_`)
        The orthonormal directions used.
    mean_, scale_ : ndarray of shape (`n_features_in_`,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    device_ : torch.device

    See Also
    --------
    OneStepFeatureMap : The learned version.

    Notes
    -----
    The closed form is the research note's *[derived]* reading of the
    one-step theory (``extras.md`` section 3.2); with Gaussian ``a`` the
    rows are exactly Gaussian with a spiked covariance, with Rademacher
    ``a`` a symmetric two-component mixture.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.kernel_approximation import SpikedRandomFeatures
    >>> X = np.random.default_rng(0).normal(size=(500, 5))
    >>> spiked = SpikedRandomFeatures(64, direction=[1, 0, 0, 0, 0], random_state=0)
    >>> spiked.fit(X).transform(X).shape
    (500, 64)
    >>> var = (spiked.W_ @ np.eye(5)).var(axis=0) * 5
    >>> bool(var[0] > 10 * var[1])
    True
    """

    _parameter_constraints: dict = {
        **_BaseRandomFeatures._parameter_constraints,
        "direction": [StrOptions({"stein", "ols"}), "array-like"],
        "theta": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_features=512,
        *,
        direction="stein",
        theta=25.0,
        activation="relu",
        second_layer="rademacher",
        bias=True,
        standardize=True,
        random_state=None,
        device="cpu",
    ):
        self.n_features = n_features
        self.direction = direction
        self.theta = theta
        self.activation = activation
        self.second_layer = second_layer
        self.bias = bias
        self.standardize = standardize
        self.random_state = random_state
        self.device = device

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Draw the network and stretch its rows along the directions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), \
default=None
            Needed for ``direction="stein"`` and ``"ols"``.

        Returns
        -------
        self : object
        """
        given = not isinstance(self.direction, str)
        if given or y is None:
            if not given:
                raise ValueError(
                    f"{type(self).__name__} requires y to be passed, but the target y "
                    f"is None: direction={self.direction!r} is estimated from y (or "
                    "give the direction as an array)."
                )
            X = validate_data(self, X, dtype=np.float64)
        else:
            # a direction from one row is 0 once centred
            X, y = validate_data(
                self,
                X,
                y,
                dtype=np.float64,
                multi_output=True,
                y_numeric=True,
                ensure_min_samples=2,
            )
        Xs = self._standardize_fit(X)
        d = X.shape[1]
        if given:
            B = np.atleast_2d(np.asarray(self.direction, dtype=np.float64))
            if B.shape[1] != d or not np.all(np.isfinite(B)):
                raise ValueError(
                    f"direction must have {d} finite entries per row (n_features_in_)"
                    f", got an array of shape {np.shape(self.direction)}."
                )
        else:
            Y = _standardize_targets(y)
            B = (Xs.T @ Y / X.shape[0]).T
            if self.direction == "ols":
                gram = Xs.T @ Xs / X.shape[0] + _OLS_RIDGE * np.eye(d)
                B = np.linalg.solve(gram, B.T).T
        norms = np.linalg.norm(B, axis=1)
        if not np.all(norms > 0):
            raise ValueError(
                "A direction is zero (y has no linear correlation with X, or the "
                "given direction is 0); there is nothing to stretch along."
            )
        # orthonormal rows, in order (QR of B')
        Q, R = np.linalg.qr(B.T)
        B = (Q * np.sign(np.where(np.diag(R) == 0, 1.0, np.diag(R)))).T
        rng = check_random_state(self.random_state)
        W0, a, _ = self._draw(d, B.shape[0], rng)
        dev = self._fit_device()
        with self._threads(work=self.n_features * d):
            W = spiked_first_layer(
                W0.to(dev), a.to(dev), to_tensor(B, dev), self.theta, d
            )
        self.W_, self.W0_, self.a_ = to_numpy(W), to_numpy(W0), to_numpy(a)
        self.directions_ = B
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = isinstance(self.direction, str)
        return tags


def _standardize_targets(y):
    """The targets as (n, k), each centred and scaled to unit variance."""
    Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    Y = Y - Y.mean(axis=0)
    scale = Y.std(axis=0)
    return Y / np.where(scale > 0, scale, 1.0)
