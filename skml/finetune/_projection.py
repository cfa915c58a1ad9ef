"""Projection kernels of GRASP: keep LoRA updates out of a set of directions.

With ``V`` (k, d) orthonormal rows and ``P = I - V' V``, an adapted map
``W = W0 + s B A`` gets no new writing along ``V`` when ``B <- P B`` (the
"output" side, ``d`` = out features) and no new reading of ``V`` when
``A <- A P`` (the "input" side, ``d`` = in features); see
``shared/research/grasp.md`` §1.3. ``P`` is never formed: ``P G`` is
computed as ``G - V' (V G)``, which costs O(k d r) instead of O(d^2 r).

The kernels rely only on ``layer.lora_A.weight`` (r, in) and
``layer.lora_B.weight`` (out, r).
"""

import numpy as np
import torch

SIDES = ("output", "input", "both")


def orthonormal(directions, dtype=None, device=None):
    """Orthonormal rows spanning the same subspace as ``directions``.

    Computed by a QR factorisation in float64, with signs chosen so that each
    output row has a positive inner product with the matching input row (a
    single direction is simply normalised).

    Parameters
    ----------
    directions : array-like or torch.Tensor of shape (k, d) or (d,)
        Linearly independent directions, one per row; a 1-D input is one
        direction.
    dtype : torch.dtype, default=None
        Dtype of the result; None keeps a floating tensor's dtype and gives
        float64 otherwise.
    device : str or torch.device, default=None
        Device of the result; None keeps a tensor's device (CPU otherwise).

    Returns
    -------
    torch.Tensor of shape (k, d)
        Rows ``V`` with ``V V' = I``.

    Raises
    ------
    ValueError
        If ``directions`` is not 1-D or 2-D, is empty, holds non-finite
        values, has more rows than columns or is (numerically) rank
        deficient.

    Examples
    --------
    >>> import torch
    >>> from skml.finetune._projection import orthonormal
    >>> V = orthonormal([[3.0, 4.0, 0.0], [1.0, 0.0, 1.0]])
    >>> V[0].tolist()
    [0.6, 0.8, 0.0]
    >>> bool(torch.allclose(V @ V.T, torch.eye(2, dtype=V.dtype)))
    True
    """
    if isinstance(directions, torch.Tensor):
        if dtype is None and directions.is_floating_point():
            dtype = directions.dtype
        if device is None:
            device = directions.device
        D = directions.detach().to(device="cpu", dtype=torch.float64)
    else:
        D = torch.as_tensor(np.asarray(directions, dtype=np.float64))
    if dtype is None:
        dtype = torch.float64
    if D.ndim == 1:
        D = D[None, :]
    if D.ndim != 2 or D.numel() == 0:
        raise ValueError(
            f"directions must be a non-empty (k, d) array, got shape {tuple(D.shape)}."
        )
    if not torch.isfinite(D).all():
        raise ValueError("directions must be finite.")
    k, d = D.shape
    if k > d:
        raise ValueError(f"At most d = {d} directions can be orthonormal, got {k}.")
    Q, R = torch.linalg.qr(D.T)
    diag = torch.diagonal(R)
    # Relative rank check: QR of dependent rows would silently invent
    # directions that were never asked for.
    scale = torch.linalg.norm(D, dim=1).max()
    if scale == 0 or diag.abs().min() <= 1e-10 * scale:
        raise ValueError("directions are (numerically) linearly dependent.")
    V = (Q * torch.sign(diag)).T
    return V.to(dtype=dtype, device=device).contiguous()


def _check_side(side):
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}.")


def _as_directions(directions, like):
    V = torch.as_tensor(directions)
    if V.ndim == 1:
        V = V[None, :]
    return V.to(dtype=like.dtype, device=like.device)


def _check_width(V, width, what):
    if V.ndim != 2 or V.shape[1] != width:
        raise ValueError(
            f"directions have shape {tuple(V.shape)} but the {what} has "
            f"{width} features."
        )


def _project_rows(M, V):
    """``M - V' (V M)``: project the columns of M (d, r) off span(V')."""
    return M - V.T @ (V @ M)


def _project_cols(M, V):
    """``M - (M V') V``: project the rows of M (r, d) off span(V')."""
    return M - (M @ V.T) @ V


def _targets(layer, directions, side):
    """Pairs (weight, projector) for the sides asked for, dims checked."""
    _check_side(side)
    out = []
    if side in ("output", "both"):
        B = layer.lora_B.weight
        V = _as_directions(directions, B)
        _check_width(V, B.shape[0], "layer output (lora_B.weight rows)")
        out.append((B, V, _project_rows))
    if side in ("input", "both"):
        A = layer.lora_A.weight
        V = _as_directions(directions, A)
        _check_width(V, A.shape[1], "layer input (lora_A.weight columns)")
        out.append((A, V, _project_cols))
    return out


def project_lora_gradients(layer, directions, side="output"):
    """Project a LoRA layer's gradients off ``directions``, in place.

    ``"output"``: ``lora_B.weight.grad <- P grad``; ``"input"``:
    ``lora_A.weight.grad <- grad P``; ``"both"``: both (a square map). A
    ``None`` gradient is skipped. With SGD (with or without momentum) this
    alone keeps the parameters inside the subspace; with Adam it does not,
    so also call :func:`reproject_lora_parameters` after each step.

    Parameters
    ----------
    layer : torch.nn.Module
        A LoRA layer with ``lora_A.weight`` (r, in) and ``lora_B.weight``
        (out, r).
    directions : array-like or torch.Tensor of shape (k, d) or (d,)
        Orthonormal rows ``V`` (see :func:`orthonormal`); ``d`` is ``out``
        for the output side and ``in`` for the input side. Converted to the
        parameter's dtype and device.
    side : {"output", "input", "both"}, default="output"
        Which factor to constrain.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If ``side`` is unknown or the width of ``directions`` does not match
        the layer.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skml.finetune._projection import project_lora_gradients
    >>> layer = nn.Module()
    >>> layer.lora_A = nn.Linear(3, 2, bias=False)
    >>> layer.lora_B = nn.Linear(2, 3, bias=False)
    >>> layer.lora_B.weight.grad = torch.ones(3, 2)
    >>> project_lora_gradients(layer, [[1.0, 0.0, 0.0]], side="output")
    >>> layer.lora_B.weight.grad[:, 0].tolist()
    [0.0, 1.0, 1.0]
    """
    with torch.no_grad():
        for param, V, project in _targets(layer, directions, side):
            if param.grad is not None:
                param.grad.copy_(project(param.grad, V))


def reproject_lora_parameters(layer, directions, side="output"):
    """Project a LoRA layer's parameters off ``directions``, in place.

    ``"output"``: ``B <- P B``; ``"input"``: ``A <- A P``; ``"both"``: both.
    Run after every optimizer step when the optimizer is not linear in the
    gradient (Adam, AdamW): their element-wise scaling moves the parameters
    out of the subspace even when the gradients are projected.

    Parameters
    ----------
    layer : torch.nn.Module
        A LoRA layer with ``lora_A.weight`` (r, in) and ``lora_B.weight``
        (out, r).
    directions : array-like or torch.Tensor of shape (k, d) or (d,)
        Orthonormal rows ``V`` (see :func:`orthonormal`).
    side : {"output", "input", "both"}, default="output"
        Which factor to constrain.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If ``side`` is unknown or the width of ``directions`` does not match
        the layer.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skml.finetune._projection import reproject_lora_parameters
    >>> layer = nn.Module()
    >>> layer.lora_A = nn.Linear(3, 2, bias=False)
    >>> layer.lora_B = nn.Linear(2, 3, bias=False)
    >>> reproject_lora_parameters(layer, [[0.0, 1.0, 0.0]], side="input")
    >>> layer.lora_A.weight[:, 1].tolist()
    [0.0, 0.0]
    """
    with torch.no_grad():
        for param, V, project in _targets(layer, directions, side):
            param.copy_(project(param, V))


def projected_component(layer, directions, side="output"):
    """Largest absolute component of a LoRA layer's factors along ``directions``.

    ``max |V B|`` for the output side, ``max |A V'|`` for the input side and
    the larger of the two for ``"both"``; 0 when the layer is inside the
    subspace. A diagnostic for tests and monitoring.

    Parameters
    ----------
    layer : torch.nn.Module
        A LoRA layer with ``lora_A.weight`` (r, in) and ``lora_B.weight``
        (out, r).
    directions : array-like or torch.Tensor of shape (k, d) or (d,)
        Orthonormal rows ``V`` (see :func:`orthonormal`).
    side : {"output", "input", "both"}, default="output"
        Which factor to measure.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``side`` is unknown or the width of ``directions`` does not match
        the layer.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skml.finetune._projection import projected_component
    >>> layer = nn.Module()
    >>> layer.lora_A = nn.Linear(3, 2, bias=False)
    >>> layer.lora_B = nn.Linear(2, 3, bias=False)
    >>> with torch.no_grad():
    ...     _ = layer.lora_B.weight.fill_(0.5)
    >>> projected_component(layer, [[1.0, 0.0, 0.0]])
    0.5
    """
    worst = 0.0
    with torch.no_grad():
        for param, V, _ in _targets(layer, directions, side):
            along = V @ param if param is layer.lora_B.weight else param @ V.T
            if along.numel():
                worst = max(worst, float(along.abs().max()))
    return worst
