"""Update maps of the symmetry-compatible optimizers (Lau and Su, 2026).

Each map takes a momentum ``M`` of shape ``(..., A, B)`` (one matrix or a
batch of them) and returns an update of the same shape that is equivariant
under the symmetry group of its weight block:

- ``polar``, ``right_spectral``, ``left_spectral``: ``U V'`` of the SVD
  ``M = U S V'``, equivariant under orthogonal maps on both sides (general
  matrices; Muon's update);
- ``row_norm``: each row scaled to unit norm, equivariant under row
  permutations and right orthogonal maps (embedding tables, SwiGLU input
  projections);
- ``col_norm``: the same on columns (SwiGLU output projections);
- ``centered_row_norm``, ``centered_left_spectral``: also invariant under a
  shift shared by all rows, ``M + 1 c'`` (the logit shift of a softmax head
  or router), with columns summing to zero;
- ``hybrid``: the polar factor of the row-normalised momentum.

Tensors in, tensors out; no state. The rules follow the authors' code
(``equivariant_optimizers``, commit a773b3f), with two changes of this
implementation: rank-deficient inputs map to the partial isometry on their
range (the unique equivariant choice; a full SVD's extra singular vectors are
arbitrary), and inverse square roots are exact (SVD or ``eigh``) rather than
Newton-Schulz iterations, which stay available for ``polar``.
"""

import torch

# Keller Jordan's quintic Newton-Schulz coefficients (Muon), five steps.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
# polar(method="auto") uses an exact SVD on the CPU up to this smaller side.
SVD_MAX = 512


def _tol(values, shape, dtype):
    """Cut below which a singular value (or a Gram eigenvalue) counts as zero:
    the rounding noise of an input of ``dtype``, with a margin of 10."""
    return values.amax(dim=-1, keepdim=True) * 10 * max(shape) * torch.finfo(dtype).eps


def _work_dtype(M):
    # float64 on the CPU, where it is cheap at these sizes and keeps the Gram
    # maps (which square the condition number) exact for float32 inputs; at
    # least float32 elsewhere (half precisions lose the orthogonality)
    if M.device.type == "cpu" or M.dtype == torch.float64:
        return torch.float64
    return torch.float32


def polar(M, method="auto", ns_steps=NS_STEPS):
    """Polar factor ``U V'`` on the nonzero singular values of ``M``.

    Parameters
    ----------
    M : torch.Tensor of shape (..., A, B)
        A matrix or a batch of matrices.
    method : {"auto", "svd", "newton_schulz"}, default="auto"
        ``"svd"``: exact; ``"newton_schulz"``: Muon's quintic iteration
        (singular values end up in roughly [0.7, 1.2], not exactly 1, and
        small ones stay small), for large matrices on accelerators;
        ``"auto"``: SVD on the CPU when ``min(A, B) <= 512``.
    ns_steps : int, default=5
        Newton-Schulz iterations.

    Returns
    -------
    torch.Tensor of shape (..., A, B)
        ``U diag(s > tol) V'``: orthogonal on the range of ``M``, zero where
        ``M`` is zero.

    Examples
    --------
    >>> import torch
    >>> from skml.optim import polar
    >>> U = polar(torch.tensor([[3.0, 0.0], [0.0, -0.5]]))
    >>> U
    tensor([[ 1.,  0.],
            [ 0., -1.]])
    """
    if method == "auto":
        small = min(M.shape[-2:]) <= SVD_MAX
        method = "svd" if small and M.device.type == "cpu" else "newton_schulz"
    if method == "newton_schulz":
        return _newton_schulz(M, ns_steps)
    if method != "svd":
        raise ValueError(f"Unknown polar method {method!r}.")
    W = M.to(_work_dtype(M))
    U, s, Vh = torch.linalg.svd(W, full_matrices=False)
    keep = (s > _tol(s, W.shape[-2:], M.dtype)).to(W.dtype)
    return ((U * keep[..., None, :]) @ Vh).to(M.dtype)


def _newton_schulz(M, steps):
    a, b, c = NS_COEFFICIENTS
    X = M.to(_work_dtype(M))
    tall = X.shape[-2] > X.shape[-1]
    if tall:  # iterate on the wide side: the Gram X X' is the small one
        X = X.mT
    X = X / (torch.linalg.matrix_norm(X, keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return (X.mT if tall else X).to(M.dtype)


def _inverse_sqrt(gram, shape, dtype):
    """``C^{-1/2}`` on the range of a symmetric PSD ``C`` (0 off it)."""
    lam, V = torch.linalg.eigh(gram)
    lam = torch.clamp(lam, min=0.0)
    # the Gram squares the condition number: its noise floor is eps * max
    keep = lam > _tol(lam, shape, dtype)
    inv = torch.where(keep, torch.rsqrt(torch.where(keep, lam, 1.0)), 0.0)
    return (V * inv[..., None, :]) @ V.mT


def right_spectral(M):
    """``M (M'M)^{-1/2}``: the polar factor from the B x B Gram (tall M).

    Parameters
    ----------
    M : torch.Tensor of shape (..., A, B)

    Returns
    -------
    torch.Tensor of shape (..., A, B)
        Equal to :func:`polar` for matrices of full rank; singular values
        below ``sqrt(10 max(A, B) eps)`` times the largest count as zero.
    """
    W = M.to(_work_dtype(M))
    return (W @ _inverse_sqrt(W.mT @ W, W.shape[-2:], M.dtype)).to(M.dtype)


def left_spectral(M):
    """``(M M')^{-1/2} M``: the polar factor from the A x A Gram (wide M).

    Parameters
    ----------
    M : torch.Tensor of shape (..., A, B)

    Returns
    -------
    torch.Tensor of shape (..., A, B)
        Equal to :func:`polar` for matrices of full rank.
    """
    W = M.to(_work_dtype(M))
    return (_inverse_sqrt(W @ W.mT, W.shape[-2:], M.dtype) @ W).to(M.dtype)


def row_norm(M, eps=1e-8, threshold=0.0):
    """Each row divided by its norm (plus ``eps``).

    Parameters
    ----------
    M : torch.Tensor of shape (..., A, B)
    eps : float, default=1e-8
        Added to the norms; a zero row stays zero.
    threshold : float, default=0.0
        Rows whose norm is below ``threshold`` times the largest row norm
        are divided by that floor instead, so that they move in proportion
        to their momentum: the rows of rare tokens or levels, whose stale
        momentum decays geometrically, then stop moving at full step size.
        0 normalises every row (the authors' rule).

    Returns
    -------
    torch.Tensor of shape (..., A, B)
    """
    norms = torch.linalg.vector_norm(M, dim=-1, keepdim=True)
    if threshold > 0:
        floor = threshold * norms.amax(dim=-2, keepdim=True)
        norms = torch.maximum(norms, floor)
    return M / (norms + eps)


def col_norm(M, eps=1e-8, threshold=0.0):
    """Each column divided by its norm; :func:`row_norm` of ``M'``.

    Parameters
    ----------
    M : torch.Tensor of shape (..., A, B)
    eps, threshold : float
        As in :func:`row_norm`, over columns.

    Returns
    -------
    torch.Tensor of shape (..., A, B)
    """
    return row_norm(M.mT, eps, threshold).mT


def center_rows(M):
    """``M`` minus its mean row: removes a shift ``1 c'`` shared by all rows."""
    return M - M.mean(dim=-2, keepdim=True)


def centered_row_norm(M, eps=1e-8, threshold=0.0):
    """Row norm of the centred momentum, centred again.

    Row scaling brings back a shared component, hence the second centring
    (as the authors' code does). Invariant under ``M + 1 c'``; its columns
    sum to zero, so a softmax head's logits do not drift together.

    Parameters
    ----------
    M : torch.Tensor of shape (..., A, B)
        A >= 2 rows (one row has no shift symmetry: its update is 0).
    eps, threshold : float
        As in :func:`row_norm`.

    Returns
    -------
    torch.Tensor of shape (..., A, B)
    """
    return center_rows(row_norm(center_rows(M), eps, threshold))


def centered_left_spectral(M):
    """Left-spectral map of the centred momentum, centred again.

    Parameters
    ----------
    M : torch.Tensor of shape (..., A, B)
        A router's momentum, A (experts) <= B (features).

    Returns
    -------
    torch.Tensor of shape (..., A, B)
        The partial isometry on the range of the centred ``M``.
    """
    return center_rows(left_spectral(center_rows(M)))


def hybrid(M, eps=1e-8, threshold=0.0, center=False, method="auto", orientation="row"):
    """The polar factor of the row-normalised momentum (row, then polar).

    Parameters
    ----------
    M : torch.Tensor of shape (..., A, B)
    eps, threshold : float
        As in :func:`row_norm`.
    center : bool, default=False
        Centre the rows before and after (heads with a shared shift).
    method : str, default="auto"
        As in :func:`polar`.
    orientation : {"row", "col"}, default="row"
        ``"col"``: normalise the columns instead (a SwiGLU output projection,
        whose columns are the hidden neurons); ``center`` is then not used.

    Returns
    -------
    torch.Tensor of shape (..., A, B)
        Equivariant under row permutations and right orthogonal maps
        (``"col"``: left orthogonal maps and column permutations).
    """
    if orientation == "col":
        return polar(col_norm(M, eps, threshold), method)
    if orientation != "row":
        raise ValueError(f"orientation must be 'row' or 'col', got {orientation!r}.")
    if center:
        W = center_rows(row_norm(center_rows(M), eps, threshold))
        return center_rows(polar(W, method))
    return polar(row_norm(M, eps, threshold), method)
