"""Sliced transport plans: 1-D sorted matchings lifted to the ambient space."""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..utils import make_generator, resolve_device, to_numpy, to_tensor
from ._validation import check_weights, pairwise_cost


@dataclass
class SlicedPlans:
    """The per-slice 1-D plans behind a sliced reference plan.

    Everything is a torch tensor on one device. ``proj_s`` / ``proj_t`` are
    the sorted projections (L, n) / (L, m), ``order_s`` / ``order_t`` the
    sorting permutations, ``cdf_s`` / ``cdf_t`` the cumulative weights in
    sorted order, ``src`` / ``tgt`` / ``mass`` the COO triplets (L, n + m) of
    each slice's north-west-corner plan, ``weights`` the (L,) softmax
    weights of the slices and ``directions`` the (d, L) unit directions.
    """

    directions: torch.Tensor
    proj_s: torch.Tensor
    proj_t: torch.Tensor
    order_s: torch.Tensor
    order_t: torch.Tensor
    cdf_s: torch.Tensor
    cdf_t: torch.Tensor
    src: torch.Tensor
    tgt: torch.Tensor
    mass: torch.Tensor
    weights: torch.Tensor
    slice_costs: torch.Tensor

    def dense(self, n, m, smoothing, a, b):
        """The (n, m) reference ``(1 - smoothing) sum_l w_l pi_l + smoothing a b'``."""
        R = a.new_zeros(n * m)
        flat = self.src * m + self.tgt
        R.index_add_(
            0, flat.reshape(-1), (self.mass * self.weights[:, None]).reshape(-1)
        )
        R = R.reshape(n, m) * (1.0 - smoothing)
        if smoothing > 0:
            R = R + smoothing * a[:, None] * b[None, :]
        return R

    def to(self, device):
        return SlicedPlans(**{k: v.to(device) for k, v in vars(self).items()})


def _directions(d, n_projections, random_state, device, dtype):
    generator = make_generator(random_state)
    theta = torch.randn(d, n_projections, generator=generator, dtype=dtype)
    theta = theta / torch.linalg.norm(theta, dim=0, keepdim=True)
    return theta.to(device)


def compute_sliced_plans(Xs, Xt, a, b, *, n_projections, beta, metric, random_state):
    """Per-slice north-west-corner plans and their softmax(-beta cost) weights.

    Works on torch tensors (any device). For uniform weights and n = m each
    slice plan is the permutation matching sorted ranks; in general it is the
    monotone 1-D plan on the sorted supports.
    """
    n, m = Xs.shape[0], Xt.shape[0]
    theta = _directions(Xs.shape[1], n_projections, random_state, Xs.device, Xs.dtype)
    ps, order_s = torch.sort((Xs @ theta).T, dim=1, stable=True)
    pt, order_t = torch.sort((Xt @ theta).T, dim=1, stable=True)
    cdf_s = torch.cumsum(a[order_s], dim=1)
    cdf_t = torch.cumsum(b[order_t], dim=1)
    cdf_s[:, -1] = 1.0
    cdf_t[:, -1] = 1.0
    # Breakpoints of the merged cdfs; each interval carries one (i, j) pair.
    points, _ = torch.sort(torch.cat([cdf_s, cdf_t], dim=1), dim=1)
    lower = torch.cat([points.new_zeros(n_projections, 1), points[:, :-1]], dim=1)
    mass = points - lower
    mid = 0.5 * (points + lower)
    rank_s = torch.clamp(torch.searchsorted(cdf_s, mid), max=n - 1)
    rank_t = torch.clamp(torch.searchsorted(cdf_t, mid), max=m - 1)
    src = torch.gather(order_s, 1, rank_s)
    tgt = torch.gather(order_t, 1, rank_t)
    mass = torch.clamp(mass, min=0.0)
    # Lifted (ambient) cost of each slice's plan.
    cost = _pair_costs(Xs, Xt, src, tgt, metric)
    slice_costs = torch.sum(mass * cost, dim=1)
    scale = torch.clamp(slice_costs.mean(), min=torch.finfo(Xs.dtype).tiny)
    # beta is relative: a slice 1/beta of the mean cost dearer weighs e^-1 less.
    weights = torch.softmax(-beta * slice_costs / scale, dim=0)
    return SlicedPlans(
        directions=theta,
        proj_s=ps,
        proj_t=pt,
        order_s=order_s,
        order_t=order_t,
        cdf_s=cdf_s,
        cdf_t=cdf_t,
        src=src,
        tgt=tgt,
        mass=mass,
        weights=weights,
        slice_costs=slice_costs,
    )


def _pair_costs(Xs, Xt, src, tgt, metric):
    diff = Xs[src.reshape(-1)] - Xt[tgt.reshape(-1)]
    if metric == "sqeuclidean":
        cost = torch.sum(diff * diff, dim=1)
    else:
        cost = torch.linalg.norm(diff, dim=1)
    return cost.reshape(src.shape)


def sliced_reference_plan(
    Xs,
    Xt,
    a=None,
    b=None,
    *,
    n_projections=64,
    beta=0.0,
    reference_smoothing=1e-2,
    metric="sqeuclidean",
    random_state=None,
    device="cpu",
):
    """Expected sliced transport plan, smoothed toward the product coupling.

    Each of ``n_projections`` random directions gives a 1-D optimal
    (monotone) plan between the projected clouds, lifted back to the points;
    the plans are averaged with weights ``softmax(-beta * cost_l / mean cost)``
    (``beta=0``: the expected sliced plan of Liu et al., large ``beta``: the
    cheapest slice), then mixed with the product coupling:
    ``R = (1 - reference_smoothing) * R_sliced + reference_smoothing * a b'``.
    The result is a coupling of ``a`` and ``b`` with full support when
    ``reference_smoothing > 0``.

    Parameters
    ----------
    Xs : array-like of shape (n, d)
        Source samples.
    Xt : array-like of shape (m, d)
        Target samples.
    a, b : array-like of shape (n,) and (m,), default=None
        Sample weights (uniform when ``None``); normalised to sum to 1.
    n_projections : int, default=64
        Number of random directions (slices).
    beta : float, default=0.0
        Inverse temperature of the softmax over slice costs, relative to
        their mean.
    reference_smoothing : float, default=1e-2
        Share of the product coupling mixed in, in [0, 1].
    metric : {"sqeuclidean", "euclidean"}, default="sqeuclidean"
        Ground cost of the slice costs.
    random_state : int, RandomState instance or None, default=None
        Seeds the directions.
    device : str, default="cpu"
        Torch device for the computation; the result is returned as numpy.

    Returns
    -------
    R : ndarray of shape (n, m)
        The reference coupling.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.transport import sliced_reference_plan
    >>> rng = np.random.default_rng(0)
    >>> R = sliced_reference_plan(rng.normal(size=(5, 2)), rng.normal(size=(5, 2)),
    ...                           random_state=0)
    >>> np.allclose(R.sum(axis=1), 0.2), np.allclose(R.sum(axis=0), 0.2)
    (True, True)
    """
    dev = resolve_device(device)
    Xs = to_tensor(np.asarray(Xs, dtype=np.float64), dev)
    Xt = to_tensor(np.asarray(Xt, dtype=np.float64), dev)
    if Xs.ndim != 2 or Xt.ndim != 2 or Xs.shape[1] != Xt.shape[1]:
        raise ValueError(
            f"Xs and Xt must be 2-D with the same number of columns; got shapes "
            f"{tuple(Xs.shape)} and {tuple(Xt.shape)}."
        )
    a = to_tensor(check_weights(a, Xs.shape[0], "a"), dev)
    b = to_tensor(check_weights(b, Xt.shape[0], "b"), dev)
    if not 0.0 <= reference_smoothing <= 1.0:
        raise ValueError(
            f"reference_smoothing must be in [0, 1], got {reference_smoothing}."
        )
    pairwise_cost(Xs[:1], Xt[:1], metric)  # validates the metric name
    plans = compute_sliced_plans(
        Xs,
        Xt,
        a,
        b,
        n_projections=n_projections,
        beta=beta,
        metric=metric,
        random_state=check_random_state(random_state),
    )
    return to_numpy(plans.dense(Xs.shape[0], Xt.shape[0], reference_smoothing, a, b))
