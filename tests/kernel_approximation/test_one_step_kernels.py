import math

import pytest
import torch

from skml.kernel_approximation._one_step_kernels import (
    activate,
    activation_grad,
    draw_layers,
    first_layer_gradient,
    linear_signal,
    one_step,
    spike,
)


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf"])
def test_gradient_is_autograd_of_a_zero_output_network(activation):
    gen = torch.Generator().manual_seed(0)
    W0, a = draw_layers(20, 6, 2, "rademacher", gen, torch.float64)
    X = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    Y = torch.randn(50, 2, generator=gen, dtype=torch.float64)
    W = W0.clone().requires_grad_(True)
    # f(x) = a' (sigma(W x) - sigma(W0 x)): zero at W0, the same gradient
    f = (activate(X @ W.T, activation) - activate(X @ W0.T, activation)) @ a
    loss = 0.5 * torch.mean(torch.sum((f - Y) ** 2, dim=1))
    loss.backward()
    torch.testing.assert_close(first_layer_gradient(W0, a, X, Y, activation), W.grad)
    z = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    activate(z, activation).sum().backward()
    torch.testing.assert_close(activation_grad(z.detach(), activation), z.grad)


def test_relative_step_size_and_spike():
    gen = torch.Generator().manual_seed(1)
    W0, a = draw_layers(100, 30, 1, "rademacher", gen, torch.float64)
    X = torch.randn(2000, 30, generator=gen, dtype=torch.float64)
    beta = torch.zeros(30, dtype=torch.float64)
    beta[0] = 1.0
    Y = torch.tanh(2 * X @ beta)[:, None]
    W1, eta = one_step(W0, a, X, Y, "relu", 4.0, "relative")
    D = W1 - W0
    ratio = torch.linalg.matrix_norm(D, ord=2) / torch.linalg.matrix_norm(W0, ord=2)
    assert math.isclose(float(ratio), 4.0, rel_tol=1e-10)
    directions, s, spike_ratio = spike(D, 1)
    assert abs(float(directions[0] @ beta)) > 0.95 and spike_ratio > 10
    assert math.isnan(spike(torch.zeros(4, 3), 1)[2])


def test_linear_signal_is_standard_without_a_linear_part():
    gen = torch.Generator().manual_seed(2)
    scores = []
    for _ in range(200):
        X = torch.randn(400, 40, generator=gen, dtype=torch.float64)
        Y = torch.randn(400, 1, generator=gen, dtype=torch.float64)
        scores.append(float(linear_signal(X - X.mean(0), Y)[0]))
    scores = torch.tensor(scores)
    assert abs(float(scores.mean())) < 0.3 and 0.7 < float(scores.std()) < 1.3
    X = torch.randn(400, 40, generator=gen, dtype=torch.float64)
    assert (
        float(
            linear_signal(
                X, X[:, :1] + torch.randn(400, 1, generator=gen, dtype=torch.float64)
            )
        )
        > 20
    )
