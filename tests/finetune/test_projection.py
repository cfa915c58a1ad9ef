import numpy as np
import pytest
import torch
from torch import nn

from skml.finetune._lora import LoRALinear
from skml.finetune._projection import (
    orthonormal,
    project_lora_gradients,
    projected_component,
    reproject_lora_parameters,
)

D, R, K = 6, 2, 2


def _layer(seed=0, dtype=torch.float64, in_features=D, out_features=D):
    gen = torch.Generator().manual_seed(seed)
    base = nn.Linear(in_features, out_features).to(dtype)
    with torch.no_grad():
        base.weight.copy_(torch.randn(base.weight.shape, generator=gen))
        base.bias.copy_(torch.randn(base.bias.shape, generator=gen))
    return LoRALinear(base, r=R, generator=gen)


def _directions(d=D, k=K, seed=1):
    # dense (not axis-aligned), so Adam's element-wise scaling matters
    return orthonormal(np.random.default_rng(seed).standard_normal((k, d)))


def _data(seed=2, n=32, d_in=D, d_out=D):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=gen, dtype=torch.float64)
    Y = torch.randn(n, d_out, generator=gen, dtype=torch.float64)
    return X, Y


def _train(layer, V, side, optimizer, *, project=True, reproject=False, steps=50):
    X, Y = _data(d_in=layer.in_features, d_out=layer.out_features)
    params = [layer.lora_A.weight, layer.lora_B.weight]
    opt = optimizer(params)
    if reproject or side != "output":
        reproject_lora_parameters(layer, V, side)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((layer(X) - Y) ** 2).mean()
        loss.backward()
        if project:
            project_lora_gradients(layer, V, side)
        opt.step()
        if reproject:
            reproject_lora_parameters(layer, V, side)
    return loss.item()


def test_orthonormal_rows_span_and_signs():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((3, 7))
    V = orthonormal(M)
    assert V.dtype == torch.float64 and V.shape == (3, 7)
    torch.testing.assert_close(V @ V.T, torch.eye(3, dtype=torch.float64))
    # same row space: projecting M onto span(V) gives M back
    Mt = torch.as_tensor(M)
    torch.testing.assert_close(Mt @ V.T @ V, Mt)
    # first row is the normalised first direction, signs follow the input
    torch.testing.assert_close(V[0], Mt[0] / Mt[0].norm())
    assert bool(((V * Mt).sum(1) > 0).all())


def test_orthonormal_dtype_device_and_1d():
    v = orthonormal(torch.tensor([0.0, 3.0, 4.0]))
    assert v.shape == (1, 3) and v.dtype == torch.float32
    assert v[0].tolist() == pytest.approx([0.0, 0.6, 0.8])
    assert orthonormal([1.0, 0.0]).dtype == torch.float64
    w = orthonormal([[1.0, 2.0]], dtype=torch.float32, device="cpu")
    assert w.dtype == torch.float32 and w.device.type == "cpu"


@pytest.mark.parametrize(
    "bad",
    [
        [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]],  # dependent
        [[0.0, 0.0]],  # zero
        np.ones((3, 2)),  # more rows than columns
        [[np.nan, 1.0]],
        np.ones((2, 2, 2)),
        np.zeros((0, 3)),
    ],
)
def test_orthonormal_rejects(bad):
    with pytest.raises(ValueError):
        orthonormal(bad)


@pytest.mark.parametrize("side", ["output", "input", "both"])
def test_gradient_projection_zeroes_the_component_along_V(side):
    layer = _layer()
    V = _directions()
    with torch.no_grad():
        layer.lora_B.weight.normal_(generator=torch.Generator().manual_seed(3))
    X, Y = _data()
    ((layer(X) - Y) ** 2).mean().backward()
    gA = layer.lora_A.weight.grad.clone()
    gB = layer.lora_B.weight.grad.clone()
    assert (V @ gB).abs().max() > 1e-3 and (gA @ V.T).abs().max() > 1e-3
    project_lora_gradients(layer, V, side)
    P = torch.eye(D, dtype=torch.float64) - V.T @ V
    if side in ("output", "both"):
        assert (V @ layer.lora_B.weight.grad).abs().max() < 1e-12
        torch.testing.assert_close(layer.lora_B.weight.grad, P @ gB)
    else:
        assert torch.equal(layer.lora_B.weight.grad, gB)
    if side in ("input", "both"):
        assert (layer.lora_A.weight.grad @ V.T).abs().max() < 1e-12
        torch.testing.assert_close(layer.lora_A.weight.grad, gA @ P)
    else:
        assert torch.equal(layer.lora_A.weight.grad, gA)


def test_none_gradients_are_skipped():
    layer = _layer()
    assert layer.lora_A.weight.grad is None
    project_lora_gradients(layer, _directions(), "both")
    assert layer.lora_A.weight.grad is None and layer.lora_B.weight.grad is None


def test_directions_follow_the_parameter_dtype():
    layer = _layer(dtype=torch.float32)
    V = _directions()  # float64
    with torch.no_grad():
        layer.lora_B.weight.fill_(1.0)
    reproject_lora_parameters(layer, V, "output")
    assert layer.lora_B.weight.dtype == torch.float32
    assert projected_component(layer, V, "output") < 1e-6


@pytest.mark.parametrize("side", ["output", "input", "both"])
def test_sgd_with_gradient_projection_stays_in_subspace(side):
    layer = _layer()
    V = _directions()
    loss = _train(layer, V, side, lambda p: torch.optim.SGD(p, lr=0.1))
    assert projected_component(layer, V, side) < 1e-10
    # it did learn something
    assert layer.lora_B.weight.abs().max() > 1e-2
    assert np.isfinite(loss)


def test_sgd_momentum_with_gradient_projection_stays_in_subspace():
    layer = _layer()
    V = _directions()
    _train(layer, V, "both", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
    assert projected_component(layer, V, "both") < 1e-10


@pytest.mark.parametrize("side", ["output", "input"])
def test_adam_with_gradient_projection_only_leaks(side):
    # Regression test of the design point (grasp.md §1.3): Adam's element-wise
    # second-moment scaling does not commute with a dense projector.
    layer = _layer()
    V = _directions()
    _train(layer, V, side, lambda p: torch.optim.Adam(p, lr=0.01))
    assert projected_component(layer, V, side) > 1e-6


@pytest.mark.parametrize("side", ["output", "input", "both"])
def test_adam_with_reprojection_stays_in_subspace(side):
    layer = _layer()
    V = _directions()
    _train(layer, V, side, lambda p: torch.optim.Adam(p, lr=0.01), reproject=True)
    assert projected_component(layer, V, side) < 1e-6


def test_reprojection_leaves_the_orthogonal_part_and_base_alone():
    layer = _layer()
    V = _directions()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        layer.lora_B.weight.copy_(torch.randn(D, R, generator=gen, dtype=torch.float64))
    A0, B0 = layer.lora_A.weight.clone(), layer.lora_B.weight.clone()
    W0 = layer.base_layer.weight.clone()
    reproject_lora_parameters(layer, V, "both")
    P = torch.eye(D, dtype=torch.float64) - V.T @ V
    torch.testing.assert_close(layer.lora_B.weight, P @ B0)
    torch.testing.assert_close(layer.lora_A.weight, A0 @ P)
    assert torch.equal(layer.base_layer.weight, W0)
    # idempotent
    reproject_lora_parameters(layer, V, "both")
    torch.testing.assert_close(layer.lora_B.weight, P @ B0)


def test_projected_component_values():
    layer = _layer()
    v = torch.zeros(1, D, dtype=torch.float64)
    v[0, 0] = 1.0
    with torch.no_grad():
        layer.lora_B.weight.zero_()
        layer.lora_B.weight[0, 1] = -0.25
        layer.lora_A.weight.zero_()
        layer.lora_A.weight[1, 0] = 0.75
    assert projected_component(layer, v, "output") == 0.25
    assert projected_component(layer, v, "input") == 0.75
    assert projected_component(layer, v, "both") == 0.75
    assert projected_component(layer, v[0].numpy(), "output") == 0.25


def test_rectangular_layer_sides():
    layer = _layer(in_features=5, out_features=3)
    V_out, V_in = _directions(d=3, k=1), _directions(d=5, k=2)
    reproject_lora_parameters(layer, V_in, "input")
    assert projected_component(layer, V_in, "input") < 1e-12
    with pytest.raises(ValueError, match="3 features"):
        project_lora_gradients(layer, V_in, "output")
    with pytest.raises(ValueError, match="5 features"):
        reproject_lora_parameters(layer, V_out, "input")
    with pytest.raises(ValueError):
        projected_component(layer, V_out, "both")


@pytest.mark.parametrize(
    "func", [project_lora_gradients, reproject_lora_parameters, projected_component]
)
def test_unknown_side(func):
    with pytest.raises(ValueError, match="side"):
        func(_layer(), _directions(), "middle")
