import pickle

import numpy as np
import pytest
import torch

from skml.utils import (
    make_generator,
    resolve_device,
    resolve_dtype,
    to_numpy,
    to_tensor,
)


@pytest.mark.parametrize("device", ["cpu", "CPU", " cpu "])
def test_resolve_cpu(device):
    assert resolve_device(device) == torch.device("cpu")


def test_resolve_auto_follows_cuda_availability():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_device_lists_accepted_values(device):
    with pytest.raises(ValueError, match="Accepted values are 'cpu', 'cuda'"):
        resolve_device(device)


@pytest.mark.parametrize("device", [0, None, 1.5])
def test_non_string_device(device):
    with pytest.raises(TypeError, match="device must be a string"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device(device)
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="1 CUDA device"):
        resolve_device("cuda:3")


def test_resolve_dtype():
    cpu = torch.device("cpu")
    assert resolve_dtype(cpu) is torch.float64
    assert resolve_dtype(cpu, "float32") is torch.float32
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype(cpu, "float16")


def test_to_tensor_dtypes_and_readonly_input():
    x = np.arange(6.0).reshape(2, 3)
    x.setflags(write=False)
    t = to_tensor(x, "cpu")
    assert t.dtype is torch.float64 and t.shape == (2, 3)
    t[0, 0] = 10.0  # a copy: the read-only source is untouched
    assert x[0, 0] == 0.0
    assert to_tensor(np.arange(3), "cpu").dtype is torch.int64
    assert to_tensor(np.array([True, False]), "cpu").dtype is torch.bool
    assert to_tensor(x, "cpu", torch.float32).dtype is torch.float32
    assert to_tensor(None, "cpu") is None


def test_to_numpy_nested_roundtrip():
    state = {"a": torch.ones(2, requires_grad=True), "b": [torch.zeros(1), 3], "c": "x"}
    out = to_numpy(state)
    assert isinstance(out["a"], np.ndarray) and isinstance(out["b"][0], np.ndarray)
    assert out["b"][1] == 3 and out["c"] == "x"
    # fitted state must pickle without torch devices
    assert pickle.loads(pickle.dumps(out))["a"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("seed", [0, 42, np.random.RandomState(3)])
def test_make_generator_reproducible(seed):
    if isinstance(seed, np.random.RandomState):
        a = torch.rand(4, generator=make_generator(np.random.RandomState(3)))
        b = torch.rand(4, generator=make_generator(np.random.RandomState(3)))
    else:
        a = torch.rand(4, generator=make_generator(seed))
        b = torch.rand(4, generator=make_generator(seed))
    assert torch.equal(a, b)
    other = seed + 1 if isinstance(seed, int) else 7
    c = torch.rand(4, generator=make_generator(other))
    assert not torch.equal(a, c)


def test_make_generator_none_is_fresh():
    a = torch.rand(4, generator=make_generator(None))
    b = torch.rand(4, generator=make_generator(None))
    assert not torch.equal(a, b)


@pytest.mark.cuda
def test_cuda_roundtrip():
    device = resolve_device("cuda")
    t = to_tensor(np.arange(3.0), device)
    assert t.device.type == "cuda"
    assert to_numpy(t).tolist() == [0.0, 1.0, 2.0]
    assert make_generator(0, device).device.type == "cuda"
