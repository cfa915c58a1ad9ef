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
