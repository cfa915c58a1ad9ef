"""tools/gpu_check.py: the skip path, its registry, and (on a GPU) a quick run."""

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

from skml.utils import all_estimators

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_skips_without_cuda(gpu_check, capsys, monkeypatch, tmp_path):
    # Force the CPU-only path, so the test means the same on a GPU machine.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert gpu_check.SKIPPED in capsys.readouterr().out.splitlines()


def test_registry_covers_every_device_estimator(gpu_check):
    with_device = {
        name: cls
        for name, cls in all_estimators()
        if "device" in inspect.signature(cls.__init__).parameters
    }
    assert with_device, "no estimator takes a device parameter"
    assert dict(gpu_check.device_estimators()) == with_device
    missing = set(with_device) - set(gpu_check.REGISTRY)
    assert not missing, f"add a problem for {sorted(missing)} to tools/gpu_check.py"
    # Each problem must fit the estimator's API: a method it has, and
    # prediction inputs with the fitted number of features.
    for name, cls in with_device.items():
        fit_args, fit_kwargs, method, method_args = gpu_check.REGISTRY[name]()
        assert callable(getattr(cls, method, None)), (name, method)
        assert set(fit_kwargs) <= set(inspect.signature(cls.fit).parameters), name
        assert method_args[0].shape[1] == fit_args[0].shape[1], name


@pytest.mark.cuda
def test_quick_run_passes(gpu_check):
    assert gpu_check.main(["--quick"]) == 0
