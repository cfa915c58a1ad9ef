"""Input checks and the ground cost shared by the transport functions."""

import numpy as np
import torch

METRICS = ("sqeuclidean", "euclidean")


def check_weights(weights, n, name):
    """Validated histogram of length n (uniform if None), normalised to 1."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {w.shape}.")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative; got negative weights.")
    total = w.sum()
    if not total > 0:
        raise ValueError(f"{name} must have a positive sum; got all-zero weights.")
    return w / total


def pairwise_cost(X, Y, metric="sqeuclidean"):
    """Ground cost matrix between the rows of two torch tensors (differentiable).

    Parameters
    ----------
    X : torch.Tensor of shape (n, d)
    Y : torch.Tensor of shape (m, d)
    metric : {"sqeuclidean", "euclidean"}

    Returns
    -------
    torch.Tensor of shape (n, m)
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    # |x|^2 + |y|^2 - 2 x.y in three passes over the (n, m) result: the sum
    # of norms, the product added in place by BLAS (addmm), the clamp.
    sq = torch.sum(X * X, dim=1)[:, None] + torch.sum(Y * Y, dim=1)[None, :]
    sq = torch.addmm(sq, X, Y.T, alpha=-2.0)
    sq = torch.clamp_(sq, min=0.0)
    return sq if metric == "sqeuclidean" else torch.sqrt(sq)
