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
