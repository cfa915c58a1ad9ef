"""Head Diversity Index (HDI) and principal angles between head subspaces."""

import numpy as np
from scipy.linalg import subspace_angles


def _bases(projections, rank_tol=1e-10):
    """Orthonormal bases (d, r_h) of the row spaces of each W_h (d_k, d)."""
    bases = []
    for W in projections:
        U, s, _ = np.linalg.svd(np.asarray(W, dtype=float).T, full_matrices=False)
        keep = s > rank_tol * max(s.max(initial=0.0), np.finfo(float).tiny)
        bases.append(U[:, keep])
    return bases


def head_diversity_index(projections):
    """Head Diversity Index of a set of projection heads, with its parts.

    For heads with row spaces of orthonormal bases ``Q_h`` (d x d_k), the
    overlap of two heads is ``s_hg = tr(P_h P_g) / d_k`` (``P_h = Q_h Q_h'``),
    the mean squared cosine of their principal angles, and

    ``HDI = 1 - mean_{h < g} s_hg``,

    the mean squared sine of the principal angles: 0 when all heads span the
    same subspace, 1 when they are mutually orthogonal. It is invariant to
    rescaling or rotating a head inside its subspace. The definition is the
    project's reconstruction (research note ``nw_nfm.md`` A.2.5, marked
    *[derived]*): the paper calls HDI "a computable spectral measure of
    inter-head decorrelation" without a formula in its abstract. The spectral
    form ``1 - (||sum_h P_h||_F^2 - H d_k) / (H (H - 1) d_k)`` gives the same
    number from one d x d matrix.

    Parameters
    ----------
    projections : array-like of shape (n_heads, head_dim, n_features)
        The heads' projection matrices.

    Returns
    -------
    hdi : float
        The index; NaN for a single head.
    hdi_max : float
        Its largest attainable value, ``1 - max(0, H d_k / d - 1) / (H - 1)``
        (below 1 when the heads cannot all be orthogonal).
    overlap : ndarray of shape (n_heads, n_heads)
        The pairwise overlaps ``s_hg`` (1 on the diagonal).
    angles : ndarray of shape (n_heads, n_heads, head_dim)
        Principal angles in radians, ascending (0 padded past a head's rank).

    Examples
    --------
    >>> import numpy as np
    >>> from skml.attention import head_diversity_index
    >>> blocks = np.eye(4).reshape(2, 2, 4)  # two orthogonal 2-D heads
    >>> float(head_diversity_index(blocks)[0])
    1.0
    >>> float(head_diversity_index(np.stack([blocks[0], 3 * blocks[0]]))[0])
    0.0
    """
    projections = np.asarray(projections, dtype=float)
    if projections.ndim != 3:
        raise ValueError(
            "projections must have shape (n_heads, head_dim, n_features), got "
            f"{projections.shape}."
        )
    H, d_k, d = projections.shape
    bases = _bases(projections)
    overlap = np.ones((H, H))
    angles = np.zeros((H, H, d_k))
    for h in range(H):
        for g in range(h + 1, H):
            Qh, Qg = bases[h], bases[g]
            k = max(Qh.shape[1], Qg.shape[1], 1)
            s = np.sum((Qh.T @ Qg) ** 2) / k if Qh.size and Qg.size else 0.0
            overlap[h, g] = overlap[g, h] = s
            if Qh.size and Qg.size:
                theta = np.sort(subspace_angles(Qh, Qg))
                angles[h, g, : theta.size] = angles[g, h, : theta.size] = theta
    if H < 2:
        return float("nan"), float("nan"), overlap, angles
    hdi = 1.0 - overlap[np.triu_indices(H, 1)].mean()
    hdi_max = 1.0 - max(0.0, H * d_k / d - 1.0) / (H - 1)
    return float(hdi), float(hdi_max), overlap, angles
