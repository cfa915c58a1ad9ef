"""scikit-learn's common checks over every public skml estimator."""

import inspect
import pathlib

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import skml
from skml.utils import all_estimators

from ._instances import expected_failed_checks, make_instance

ROOT = pathlib.Path(__file__).resolve().parents[1]
ESTIMATORS = all_estimators()


@parametrize_with_checks(
    [make_instance(cls) for _, cls in ESTIMATORS],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _exported_estimators():
    """Every estimator class reachable from a public skml subpackage."""
    names = set(skml._ESTIMATORS)
    for name, _ in ESTIMATORS:
        names.add(name)
    return sorted(names)


@pytest.mark.parametrize("name", _exported_estimators())
def test_estimator_is_discovered_and_exported(name):
    discovered = dict(ESTIMATORS)
    assert name in discovered, f"{name} is exported but all_estimators() misses it"
    assert name in skml._ESTIMATORS, f"{name} is not exported from skml"
    assert getattr(skml, name) is discovered[name]


@pytest.mark.parametrize("name, cls", ESTIMATORS)
def test_estimator_has_device_parameter(name, cls):
    params = inspect.signature(cls.__init__).parameters
    assert "device" in params, f"{name} lacks a device parameter"
    assert params["device"].default == "cpu"


@pytest.mark.parametrize("name, cls", ESTIMATORS)
def test_estimator_has_docs_page(name, cls):
    guide = ROOT / "doc" / "user_guide"
    pages = [p for p in guide.glob("*.rst") if name in p.read_text()]
    assert pages, f"{name} has no user-guide page under doc/user_guide/"
    api = (ROOT / "doc" / "api.rst").read_text()
    assert name in api, f"{name} is missing from doc/api.rst"
