"""scikit-learn's common checks over every public skml estimator."""

import inspect
import pathlib
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

import skml
from skml.kernel_approximation import NoSpikeWarning
from skml.utils import DeviceFallbackWarning, all_estimators, find_tensors

from ._instances import (
    EXTRA_INSTANCES,
    expected_failed_checks,
    make_instance,
    small_data,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
ESTIMATORS = all_estimators()


@parametrize_with_checks(
    [make_instance(cls) for _, cls in ESTIMATORS] + EXTRA_INSTANCES,
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    # The checks fit on a few random rows: an iterative solver may stop at
    # max_iter there, as in scikit-learn's own test_common.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # their targets are noise: no linear component for one step to find
        warnings.simplefilter("ignore", NoSpikeWarning)
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


def _fitted(cls):
    """A small fit of any public estimator, and a method to call on new rows."""
    rng = np.random.default_rng(0)
    estimator = make_instance(cls)
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=0)
    X, y = small_data(estimator, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    method = "transform" if not hasattr(estimator, "predict") else "predict"
    return estimator, getattr(type(estimator), method), rng.normal(size=(7, 3))


@pytest.mark.parametrize("name, cls", ESTIMATORS)
def test_fitted_state_holds_no_tensor(name, cls):
    estimator, method, X_new = _fitted(cls)
    method(estimator, X_new)
    assert find_tensors(estimator) == [], f"{name} keeps tensors in fitted state"


@pytest.mark.parametrize("name, cls", ESTIMATORS)
def test_gpu_fitted_model_runs_on_a_cpu_only_machine(name, cls, monkeypatch):
    estimator, method, X_new = _fitted(cls)
    expected = method(estimator, X_new)
    estimator.device_ = torch.device("cuda")  # as if fitted on a GPU
    blob = pickle.dumps(estimator)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pickle.loads(blob)
        first = method(loaded, X_new)
        method(loaded, X_new)
    fallbacks = [w for w in caught if issubclass(w.category, DeviceFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    np.testing.assert_allclose(first, expected, rtol=1e-12, atol=1e-12)
