import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from skml.utils import all_estimators


def test_all_estimators_are_skml_classes():
    for name, cls in all_estimators():
        assert issubclass(cls, BaseEstimator)
        assert cls.__module__.startswith("skml.")
        assert not name.startswith("_")


def test_type_filter():
    regressors = all_estimators(type_filter="regressor")
    assert all(issubclass(cls, RegressorMixin) for _, cls in regressors)
    both = all_estimators(type_filter=["regressor", "transformer"])
    assert set(regressors) <= set(both)
    with pytest.raises(ValueError, match="type_filter"):
        all_estimators(type_filter="forecaster")
