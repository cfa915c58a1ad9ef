"""One large gradient step on the first layer of a two-layer network.

Tensors in, tensors out. The network is ``f(x) = a' sigma(W x)`` with the
rows of ``W`` drawn from ``N(0, I / d)`` and the second layer ``a`` fixed
(entries of size ``1 / sqrt(N)``). The gradient of the squared loss in ``W``
is, to leading order, the rank-one matrix ``mu_1 a (X'y / n)'``: one large
step moves every row along the target's linear (first Hermite) direction, so
the rows' covariance becomes ``I / d`` plus a spike (Ba et al. 2022; the
spiked-kernel reading of Loureiro, Liu, Lobo and Tran-Thanh 2026).
"""

import math

import torch

_ACTIVATIONS = ("relu", "tanh", "erf")


def activate(Z, activation):
    """``sigma(Z)`` entrywise."""
    if activation == "relu":
        return torch.relu(Z)
    if activation == "tanh":
        return torch.tanh(Z)
    return torch.erf(Z)


def activation_grad(Z, activation):
    """``sigma'(Z)`` entrywise."""
    if activation == "relu":
        return (Z > 0).to(Z.dtype)
    if activation == "tanh":
        return 1.0 - torch.tanh(Z) ** 2
    return (2.0 / math.sqrt(math.pi)) * torch.exp(-(Z**2))


def draw_layers(n_features, n_inputs, n_outputs, second_layer, generator, dtype):
    """First-layer rows ``N(0, I / d)`` and a fixed second layer.

    Drawn on the CPU from ``generator``, so every device gets the same
    network; the caller moves them.

    Returns
    -------
    W0 : torch.Tensor of shape (n_features, n_inputs)
    a : torch.Tensor of shape (n_features, n_outputs)
        ``+-1 / sqrt(N)`` (``"rademacher"``) or ``N(0, 1 / N)``.
    """
    W0 = torch.randn(n_features, n_inputs, generator=generator, dtype=dtype)
    W0 /= math.sqrt(n_inputs)
    if second_layer == "rademacher":
        a = torch.randint(0, 2, (n_features, n_outputs), generator=generator)
        a = (2 * a - 1).to(dtype)
    else:
        a = torch.randn(n_features, n_outputs, generator=generator, dtype=dtype)
    return W0, a / math.sqrt(n_features)


def draw_bias(n_features, generator, dtype):
    """Fixed biases ``N(0, 1)``, the spread of ``<w, x>`` on standardised
    inputs: without them ``relu(w x)`` is homogeneous and a strong spike
    leaves only ``{z, |z|}`` of the index ``z`` (no saturation)."""
    return torch.randn(n_features, generator=generator, dtype=dtype)


def first_layer_gradient(W, a, X, Y, activation, bias=None):
    """Gradient in ``W`` of the squared loss of a network whose output at
    initialisation is zero: ``(1 / 2n) sum_j ||f(x_j) - y_j||^2`` with
    ``f(x) = a' (sigma(W x) - sigma(W0 x))`` at ``W = W0``, that is
    ``-(1 / n) sum_j (a y_j) * sigma'(W x_j) x_j'``.

    A zero initial output is what the symmetric initialisation of Ba et
    al. (paired neurons ``(w, a)``, ``(w, -a)``) gives; with the random
    output ``a' sigma(W0 x)`` in the residual, its own linear part (along
    ``W0' a``) would add a spike unrelated to the target.

    Parameters
    ----------
    W : torch.Tensor of shape (N, d)
    a : torch.Tensor of shape (N, k)
    X : torch.Tensor of shape (n, d)
    Y : torch.Tensor of shape (n, k)
    activation : str
    bias : torch.Tensor of shape (N,), default=None
        Fixed biases inside the activation.

    Returns
    -------
    torch.Tensor of shape (N, d)
    """
    Z = X @ W.T if bias is None else X @ W.T + bias
    return -((Y @ a.T) * activation_grad(Z, activation)).T @ X / X.shape[0]


def one_step(W0, a, X, Y, activation, step_size, step_scale, bias=None):
    """``W1 = W0 - eta G`` with ``eta`` absolute or relative.

    ``step_scale="relative"``: ``||eta G||_op = step_size ||W0||_op``, a
    scale-free step (the size of the spike against the random part).

    Returns
    -------
    W1 : torch.Tensor of shape (N, d)
    eta : float
    """
    G = first_layer_gradient(W0, a, X, Y, activation, bias)
    if step_scale == "absolute":
        eta = float(step_size)
    else:
        g = float(torch.linalg.matrix_norm(G, ord=2))
        w = float(torch.linalg.matrix_norm(W0, ord=2))
        eta = step_size * w / g if g > 0 else 0.0
    return W0 - eta * G, eta


def linear_signal(X, Y):
    """z-score of each target's linear part against "none".

    ``T = n ||X'y / n||^2`` for a unit-variance ``y``: without a linear
    component (``E[y x] = 0``) its mean is ``tr(S)`` and its variance about
    ``2 tr(S^2)``, ``S`` the features' covariance; the score is ``(T -
    tr S) / sqrt(2 tr S^2)``, near N(0, 1) without a linear part and of order
    ``n |E[y x]|^2 / sqrt(d)`` with one.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d)
        Centred features.
    Y : torch.Tensor of shape (n, k)

    Returns
    -------
    torch.Tensor of shape (k,)
    """
    n = X.shape[0]
    Yc = Y - Y.mean(0)
    scale = torch.sqrt(torch.mean(Yc**2, dim=0))
    Yc = Yc / torch.where(scale > 0, scale, 1.0)
    stein = X.T @ Yc / n
    T = n * torch.sum(stein**2, dim=0)
    gram = X.T @ X if X.shape[1] <= n else X @ X.T
    trace = float(torch.sum(X**2)) / n
    trace2 = float(torch.sum(gram**2)) / n**2
    return (T - trace) / math.sqrt(2.0 * max(trace2, 1e-300))


def spike(D, k):
    """The leading right singular vectors of the update ``D = W1 - W0``.

    Parameters
    ----------
    D : torch.Tensor of shape (N, d)
    k : int
        Rank of the spike (the number of outputs).

    Returns
    -------
    directions : torch.Tensor of shape (k, d)
        Unit vectors in the (standardised) input space, signs fixed so that
        the largest entry is positive.
    singular_values : torch.Tensor
        All singular values of ``D``, decreasing.
    ratio : float
        ``s_k / s_{k+1}``: how far the spike stands out (``inf`` when ``D``
        has no further direction, ``nan`` when ``D`` is 0).
    """
    _, s, Vh = torch.linalg.svd(D, full_matrices=False)
    k = min(k, s.shape[0])
    directions = Vh[:k]
    idx = torch.argmax(torch.abs(directions), dim=1)
    sign = torch.sign(directions[torch.arange(k), idx])
    directions = directions * torch.where(sign == 0, 1.0, sign)[:, None]
    top = float(s[k - 1])
    if top == 0:
        ratio = math.nan
    elif s.shape[0] <= k:
        ratio = math.inf
    else:
        nxt = float(s[k])
        ratio = top / nxt if nxt > 0 else math.inf
    return directions, s, ratio


def spiked_first_layer(W0, a, directions, theta, n_inputs):
    """``W0 + sqrt(theta N / d) a B``: the closed-form spiked first layer.

    With ``a`` of entries ``+-1 / sqrt(N)`` every row gains ``+-sqrt(theta /
    d)`` along each unit direction of ``B``, so the rows' variance along it is
    ``(1 + theta) / d`` against ``1 / d`` across.

    Parameters
    ----------
    W0 : torch.Tensor of shape (N, d)
    a : torch.Tensor of shape (N, k)
    directions : torch.Tensor of shape (k, d)
        Orthonormal rows.
    theta : float
    n_inputs : int

    Returns
    -------
    torch.Tensor of shape (N, d)
    """
    N = W0.shape[0]
    return (
        W0 + math.sqrt(theta * N / n_inputs) * a[:, : directions.shape[0]] @ directions
    )


def features(X, W, activation, bias=None):
    """``sigma(X W' + b)``: the random features of the rows of X."""
    return activate(X @ W.T if bias is None else X @ W.T + bias, activation)
