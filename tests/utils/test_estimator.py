import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, RegressorMixin

from skml.utils import DeviceFallbackWarning, TorchEstimatorMixin, find_tensors


class _Mean(TorchEstimatorMixin, RegressorMixin, BaseEstimator):
    def __init__(self, device="cpu"):
        self.device = device

    def fit(self, X, y):
        self._validate_params()
        self._fit_device()
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        device = self._predict_device()
        return torch.full((len(X),), self.mean_, device=device).cpu().numpy()


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "auto"])
def test_device_accepts_strings_and_torch_devices(device):
    model = _Mean(device).fit(np.zeros((3, 1)), [1.0, 2.0, 3.0])
    assert model.device_ == torch.device("cpu") or model.device_.type == "cuda"
    assert model.device is device  # never written back


def test_bad_device_type_is_rejected():
    with pytest.raises(Exception, match="device"):
        _Mean(device=3).fit(np.zeros((3, 1)), [1.0, 2.0, 3.0])


def test_gpu_model_loads_on_cpu_with_one_warning(monkeypatch):
    model = _Mean().fit(np.zeros((3, 1)), [1.0, 2.0, 3.0])
    model.device_ = torch.device("cuda")  # as if fitted on a GPU
    blob = pickle.dumps(model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pickle.loads(blob)
        first = loaded.predict(np.zeros((2, 1)))
        loaded.predict(np.zeros((2, 1)))
    fallbacks = [w for w in caught if issubclass(w.category, DeviceFallbackWarning)]
    assert len(fallbacks) == 1 and "cuda" in str(fallbacks[0].message)
    assert loaded.device_ == torch.device("cpu") and loaded.device == "cpu"
    np.testing.assert_array_equal(first, [2.0, 2.0])


def test_missing_gpu_index_also_falls_back(monkeypatch):
    model = _Mean().fit(np.zeros((3, 1)), [1.0, 2.0, 3.0])
    model.device_ = torch.device("cuda", 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.warns(DeviceFallbackWarning):
        assert model._predict_device() == torch.device("cpu")


def test_tags_mark_gpu_devices_non_deterministic(monkeypatch):
    assert not _Mean().__sklearn_tags__().non_deterministic
    assert not _Mean(torch.device("cpu")).__sklearn_tags__().non_deterministic
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _Mean("cuda").__sklearn_tags__().non_deterministic


def test_find_tensors_walks_containers_and_objects():
    class Holder:
        pass

    inner = Holder()
    inner.state = (np.zeros(2), {"w": torch.ones(1)})
    outer = Holder()
    outer.coef_ = [inner, "text", 3]
    outer.cycle_ = outer
    assert find_tensors(outer) == ["coef_[0].state[1]['w']"]
    outer.coef_ = [np.zeros(1)]
    assert find_tensors(outer) == []


def test_find_tensors_accepts_cpu_modules_only():
    class Fitted:
        pass

    fitted = Fitted()
    fitted.module_ = torch.nn.Linear(2, 2)
    assert find_tensors(fitted) == []
    meta = torch.nn.Linear(2, 2, device="meta")
    fitted.module_ = meta
    assert find_tensors(fitted) == [
        "module_.weight (on meta)",
        "module_.bias (on meta)",
    ]
