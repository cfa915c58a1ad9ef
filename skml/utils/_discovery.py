"""Estimator discovery, in the manner of :func:`sklearn.utils.all_estimators`."""

import importlib
import inspect
import pkgutil
from operator import itemgetter

from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClusterMixin,
    RegressorMixin,
    TransformerMixin,
)

# Subpackages that hold no estimators (or only private helpers).
_SKIPPED = {"tests", "benchmarks", "utils", "datasets", "__main__"}

_TYPE_MIXINS = {
    "classifier": ClassifierMixin,
    "regressor": RegressorMixin,
    "transformer": TransformerMixin,
    "cluster": ClusterMixin,
}


def all_estimators(type_filter=None):
    """Public estimators defined in skml.

    Walks the ``skml`` package, so a new estimator is found as soon as its
    subpackage exports it: nothing has to be registered twice.

    Parameters
    ----------
    type_filter : {"classifier", "regressor", "transformer", "cluster"} or \
            list of those, default=None
        Keep only estimators of these kinds; ``None`` keeps all.

    Returns
    -------
    estimators : list of (str, type)
        ``(name, class)`` pairs sorted by name.

    Examples
    --------
    >>> from skml.utils import all_estimators
    >>> isinstance(all_estimators(), list)
    True
    """
    import skml

    found = {}
    for module_info in pkgutil.walk_packages(skml.__path__, prefix="skml."):
        parts = module_info.name.split(".")
        if any(part.startswith("_") for part in parts[1:]) or parts[1] in _SKIPPED:
            continue
        module = importlib.import_module(module_info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseEstimator)
                and obj.__module__.startswith("skml.")
                and not inspect.isabstract(obj)
                and not name.startswith("_")
            ):
                found[name] = obj

    estimators = sorted(found.items(), key=itemgetter(0))
    if type_filter is None:
        return estimators
    kinds = [type_filter] if isinstance(type_filter, str) else list(type_filter)
    unknown = set(kinds) - set(_TYPE_MIXINS)
    if unknown:
        raise ValueError(
            f"type_filter must be None or among {sorted(_TYPE_MIXINS)}, "
            f"got {sorted(unknown)}."
        )
    mixins = tuple(_TYPE_MIXINS[kind] for kind in kinds)
    return [(name, cls) for name, cls in estimators if issubclass(cls, mixins)]
