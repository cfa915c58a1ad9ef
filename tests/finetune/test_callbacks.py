import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch import NeuralNetClassifier
from torch import nn

from skml.finetune._callbacks import GRASPProjection
from skml.finetune._lora import LoRALinear
from skml.finetune._projection import orthonormal, projected_component

D, N_CLASSES, N = 6, 3, 192


def _module(seed=0):
    gen = torch.Generator().manual_seed(seed)
    base = nn.Linear(D, D)
    head = nn.Linear(D, N_CLASSES)
    with torch.no_grad():
        for p in (*base.parameters(), *head.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(D))
    return nn.Sequential(LoRALinear(base, r=2, generator=gen), nn.Tanh(), head)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)).astype(np.float32)
    y = rng.integers(N_CLASSES, size=N).astype(np.int64)
    return X, y


def _directions(k=2, seed=1):
    return np.random.default_rng(seed).standard_normal((k, D))


def _net(callbacks=(), module=None, **kwargs):
    params = {
        "module": _module() if module is None else module,
        "criterion": nn.CrossEntropyLoss,
        "optimizer": torch.optim.Adam,
        "lr": 0.05,
        "max_epochs": 20,
        "batch_size": 64,
        "train_split": None,
        "verbose": 0,
        "callbacks": list(callbacks),
        **kwargs,
    }
    return NeuralNetClassifier(**params)


def _component(net, side="output", directions=None):
    V = orthonormal(_directions() if directions is None else directions)
    return projected_component(net.module_[0], V, side)


@pytest.mark.parametrize("side", ["output", "input", "both"])
def test_callback_keeps_lora_out_of_the_directions(side):
    X, y = _data()
    torch.manual_seed(0)
    net = _net([GRASPProjection({"0": _directions()}, side=side)]).fit(X, y)
    torch.manual_seed(0)
    plain = _net().fit(X, y)
    assert _component(net, side) < 1e-6
    assert _component(plain, side) > 1e-3
    # training happened: the loss went down and B moved off zero
    losses = net.history[:, "train_loss"]
    assert losses[-1] < losses[0]
    assert net.module_[0].lora_B.weight.abs().max() > 1e-2


def test_gradient_projection_only_leaks_with_adam():
    X, y = _data()
    torch.manual_seed(0)
    cb = GRASPProjection({"0": _directions()}, side="output", reproject=False)
    net = _net([cb]).fit(X, y)
    assert _component(net, "output") > 1e-6


def test_gradient_projection_only_is_enough_with_sgd():
    X, y = _data()
    torch.manual_seed(0)
    cb = GRASPProjection({"0": _directions()}, side="both", reproject=False)
    net = _net([cb], optimizer=torch.optim.SGD, lr=0.2).fit(X, y)
    assert _component(net, "both") < 1e-6


def test_train_begin_projects_lora_A_into_the_subspace():
    net = _net().initialize()
    cb = GRASPProjection({"0": _directions()}, side="input").initialize()
    assert _component(net, "input") > 1e-3
    cb.on_train_begin(net)
    assert _component(net, "input") < 1e-6
    assert set(cb.layers_) == {"0"} and cb.layers_["0"] is net.module_[0]
    assert cb.sides_ == {"0": "input"}
    V = cb.directions_["0"]
    assert V.dtype == torch.float32 and V.shape == (2, D)
    torch.testing.assert_close(V @ V.T, torch.eye(2))


def test_no_projection_outside_training():
    net = _net().initialize()
    cb = GRASPProjection({"0": _directions()}).initialize()
    layer = net.module_[0]
    layer.lora_B.weight.grad = torch.ones_like(layer.lora_B.weight)
    cb.on_grad_computed(net, named_parameters=[], training=False)
    assert torch.equal(layer.lora_B.weight.grad, torch.ones_like(layer.lora_B.weight))
    # on a training step it resolves the layers lazily and projects
    cb.on_grad_computed(net, named_parameters=[], training=True)
    V = cb.directions_["0"]
    assert (V @ layer.lora_B.weight.grad).abs().max() < 1e-6


def test_side_per_layer():
    gen = torch.Generator().manual_seed(3)
    head = nn.utils.skip_init(nn.Linear, D, N_CLASSES)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(D))
    module = nn.Sequential(
        _module(0)[0], nn.Tanh(), LoRALinear(head, r=2, generator=gen)
    )
    X, y = _data()
    dirs = {"0": _directions(), "2": _directions(k=1, seed=5)}
    cb = GRASPProjection(dirs, side={"0": "output", "2": "input"})
    net = _net([cb], module=module).fit(X, y)
    assert projected_component(net.module_[0], orthonormal(dirs["0"]), "output") < 1e-6
    assert projected_component(net.module_[2], orthonormal(dirs["2"]), "input") < 1e-6
    with pytest.raises(ValueError, match="without directions"):
        _net([GRASPProjection(dirs, side={"9": "input"})], module=module).fit(X, y)


def test_bad_layer_name_lists_the_lora_layers():
    X, y = _data()
    net = _net([GRASPProjection({"1": _directions()})])
    with pytest.raises(ValueError, match=r"\['1'\].*present are \['0'\]"):
        net.fit(X, y)


def test_bad_side_and_width():
    X, y = _data()
    with pytest.raises(ValueError, match="side"):
        _net([GRASPProjection({"0": _directions()}, side="middle")]).fit(X, y)
    wide = np.ones((1, D + 1))
    with pytest.raises(ValueError, match="features"):
        _net([GRASPProjection({"0": wide})]).fit(X, y)
    with pytest.raises(ValueError, match="dict"):
        _net([GRASPProjection([_directions()])]).fit(X, y)


def test_params_clone_and_pickle():
    dirs = {"0": _directions()}
    cb = GRASPProjection(dirs, side="input", reproject=False)
    assert cb.get_params() == {"directions": dirs, "side": "input", "reproject": False}

    X, y = _data()
    torch.manual_seed(0)
    net = _net([cb])
    fitted = clone(net).fit(X, y)
    cb_fit = dict(fitted.callbacks_)["GRASPProjection"]
    assert cb_fit.layers_ is not None
    # the fitted state does not leak into the params, and clone gives a fresh,
    # equal callback
    assert set(cb_fit.get_params()) == {"directions", "side", "reproject"}
    new = clone(fitted)
    new_cb = new.callbacks[0]
    assert isinstance(new_cb, GRASPProjection) and new_cb is not cb
    assert new_cb.side == "input" and new_cb.reproject is False
    np.testing.assert_array_equal(new_cb.directions["0"], dirs["0"])
    assert not hasattr(new_cb, "layers_")
    # the net's params route to the callback, as skorch does
    new.set_params(callbacks__GRASPProjection__reproject=True)
    assert new.callbacks[0].reproject is True

    # pickling the fitted net keeps the callback working on the copy
    cb2 = GRASPProjection(dirs)
    torch.manual_seed(0)
    trained = _net([cb2], max_epochs=2).fit(X, y)
    restored = pickle.loads(pickle.dumps(trained))
    restored.partial_fit(X, y)
    assert _component(restored, "output") < 1e-6
    restored_cb = dict(restored.callbacks_)["GRASPProjection"]
    assert restored_cb.layers_["0"] is restored.module_[0]
    # the callback alone round-trips too, before and after initialisation
    for obj in (GRASPProjection(dirs), GRASPProjection(dirs).initialize()):
        again = pickle.loads(pickle.dumps(obj))
        np.testing.assert_array_equal(again.directions["0"], dirs["0"])
    assert copy.deepcopy(cb2).layers_ is not None
