"""Sliced transport plans: 1-D sorted matchings lifted to the ambient space."""

from dataclasses import dataclass, fields

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..utils import make_generator, resolve_device, to_numpy, to_tensor
from ._validation import check_weights, pairwise_cost


@dataclass
class SlicedPlans:
    """The per-slice 1-D plans behind a sliced reference plan.

    While computing, every field is a torch tensor on one device; fitted
    estimators keep the numpy form (:meth:`to_numpy`) and move it back with
    :meth:`to`. ``proj_s`` / ``proj_t`` are the sorted projections (L, n) /
    (L, m), ``order_s`` / ``order_t`` the sorting permutations, ``cdf_s`` /
    ``cdf_t`` the cumulative weights in sorted order, ``src`` / ``tgt`` /
    ``mass`` the COO triplets (L, K) of each slice's north-west-corner
    plan (K = n + m intervals of the merged cdfs; with uniform weights only
    the K < n + m of positive mass, the same for every slice, whose
    ``mass``, ``cdf_s`` and ``cdf_t`` are then read-only broadcast views),
    ``weights`` the (L,) softmax weights of the slices,
    ``slice_costs`` their (L,) lifted costs and ``directions`` the (d, L)
    unit directions.
    """

    directions: torch.Tensor | np.ndarray
    proj_s: torch.Tensor | np.ndarray
    proj_t: torch.Tensor | np.ndarray
    order_s: torch.Tensor | np.ndarray
    order_t: torch.Tensor | np.ndarray
    cdf_s: torch.Tensor | np.ndarray
    cdf_t: torch.Tensor | np.ndarray
    src: torch.Tensor | np.ndarray
    tgt: torch.Tensor | np.ndarray
    mass: torch.Tensor | np.ndarray
    weights: torch.Tensor | np.ndarray
    slice_costs: torch.Tensor | np.ndarray

    def dense(self, n, m, smoothing, a, b):
        """The (n, m) reference ``(1 - smoothing) sum_l w_l pi_l + smoothing a b'``.

        Tensor form only (``a``, ``b`` and the fields on one device).
        """
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
        """The tensor form on ``device``, from either form.

        Integer fields (orders, COO indices) come back as int64; floating
        fields keep their precision.
        """
        return SlicedPlans(
            **{f.name: _field_to(getattr(self, f.name), device) for f in fields(self)}
        )

    def to_numpy(self):
        """The numpy form (fields on the CPU), which pickles without torch devices."""
        return SlicedPlans(
            **{f.name: to_numpy(getattr(self, f.name)) for f in fields(self)}
        )


def _field_to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    value = np.asarray(value)
    # to_tensor keeps integers as int64; floats keep their own width.
    dtype = torch.float32 if value.dtype == np.float32 else torch.float64
    return to_tensor(value, device, dtype=dtype)


def _directions(d, n_projections, random_state, device, dtype):
    generator = make_generator(random_state)
    theta = torch.randn(d, n_projections, generator=generator, dtype=dtype)
    theta = theta / torch.linalg.norm(theta, dim=0, keepdim=True)
    return theta.to(device)


def covariance_directions(Xs, Xt, a, b, n_projections, random_state):
    """Unit directions drawn from N(0, S), S the pooled second moment of both
    clouds about their joint mean (each cloud weighs one half).

    Slices then fall where the clouds spread and differ, not uniformly over
    the sphere, which in d >= 10 wastes most slices on directions where
    every projection looks alike (the distributional slicing of Nguyen et
    al., 2021, with a fixed Gaussian law). The standard normal draws are
    those of :func:`_directions` with the same seed, mapped by S^(1/2).
    """
    theta = _directions(Xs.shape[1], n_projections, random_state, Xs.device, Xs.dtype)
    mean = 0.5 * (a @ Xs + b @ Xt)
    Zs, Zt = Xs - mean, Xt - mean
    S = 0.5 * ((Zs * a[:, None]).T @ Zs + (Zt * b[:, None]).T @ Zt)
    w, V = torch.linalg.eigh(S)
    shaped = (V * torch.sqrt(torch.clamp(w, min=0.0))) @ (V.T @ theta)
    norm = torch.linalg.norm(shaped, dim=0, keepdim=True)
    # constant clouds (S = 0) keep the uniform directions
    ok = norm > torch.finfo(Xs.dtype).eps * max(float(w.max()), 0.0) ** 0.5
    return torch.where(ok, shaped / torch.where(ok, norm, 1.0), theta)


def draw_directions(law, Xs, Xt, a, b, n_projections, random_state):
    """Slice directions of the law named by a public ``directions`` option:
    ``"uniform"`` on the sphere or ``"covariance"``
    (:func:`covariance_directions`), from the same standard normal draws.

    Raises ValueError for another name.
    """
    if law == "uniform":
        return _directions(
            Xs.shape[1], n_projections, random_state, Xs.device, Xs.dtype
        )
    if law == "covariance":
        return covariance_directions(Xs, Xt, a, b, n_projections, random_state)
    raise ValueError(f'directions must be "uniform" or "covariance", got {law!r}.')


def compute_sliced_plans(
    Xs,
    Xt,
    a,
    b,
    *,
    n_projections,
    beta,
    metric,
    random_state,
    directions=None,
    cost=None,
):
    """Per-slice north-west-corner plans and their softmax(-beta cost) weights.

    Works on torch tensors (any device). For uniform weights and n = m each
    slice plan is the permutation matching sorted ranks; in general it is the
    monotone 1-D plan on the sorted supports. ``cost``, the (n, m) ground
    cost matrix when the caller holds it, gives the lifted costs by lookup
    (one gather instead of forming the pairs' differences in every slice;
    equal up to rounding).
    """
    plans = slice_plans(
        Xs,
        Xt,
        a,
        b,
        n_projections=n_projections,
        random_state=random_state,
        directions=directions,
    )
    src, tgt, m = plans.src, plans.tgt, Xt.shape[0]
    # Lifted (ambient) cost of each slice's plan.
    if cost is None:
        cost = _pair_costs(Xs, Xt, src, tgt, metric).reshape(src.shape)
    else:
        cost = cost.reshape(-1)[src * m + tgt]
    plans.slice_costs = torch.sum(plans.mass * cost, dim=1)
    plans.weights = slice_weights(plans.slice_costs, beta)
    return plans


def slice_plans(Xs, Xt, a, b, *, n_projections, random_state, directions=None):
    """:func:`compute_sliced_plans` without the lifted costs and weights
    (``slice_costs`` and ``weights`` are None), for a caller that computes
    them in its own order."""
    n, m = Xs.shape[0], Xt.shape[0]
    if directions is None:
        theta = _directions(
            Xs.shape[1], n_projections, random_state, Xs.device, Xs.dtype
        )
    else:
        # the directions of an earlier call: the same slices, rebuilt
        theta = directions
        n_projections = theta.shape[1]
    # Sorting rows of a contiguous copy is faster than sorting the transposed
    # view (22 against 33 ms at 256 x 2,000 in a dev check); same values.
    ps, order_s = torch.sort((Xs @ theta).T.contiguous(), dim=1, stable=True)
    pt, order_t = torch.sort((Xt @ theta).T.contiguous(), dim=1, stable=True)
    # Uniform weights (the usual samples) give every slice the same cdfs,
    # hence the same merged breakpoints: merge once and drop the intervals
    # of zero mass (half of them when n = m) before any gather.
    uniform = bool(torch.all(a == a[0])) and bool(torch.all(b == b[0]))
    rows = 1 if uniform else n_projections
    cdf_s = _cdf(a[order_s[:rows]])
    cdf_t = _cdf(b[order_t[:rows]])
    rank_s, rank_t, mass = _merge_ranks(cdf_s, cdf_t, n, m)
    if uniform:
        live = torch.nonzero(mass[0] > 0).squeeze(1)
        rank_s, rank_t = rank_s[0, live], rank_t[0, live]
        mass = mass[:, live].expand(n_projections, -1)
        cdf_s = cdf_s.expand(n_projections, -1)
        cdf_t = cdf_t.expand(n_projections, -1)
        src, tgt = order_s[:, rank_s], order_t[:, rank_t]
    else:
        src = torch.gather(order_s, 1, rank_s)
        tgt = torch.gather(order_t, 1, rank_t)
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
        weights=None,
        slice_costs=None,
    )


def quantile_embedding(order, cdf, weights):
    """Each point's quantile on every slice: the (n, L) midpoints of its cdf
    interval, ``cdf_before + w / 2`` (``(rank + 1/2) / n`` for uniform
    weights).

    ``order`` and ``cdf`` are a slice table's sorting permutations and
    cumulative weights in sorted order, (L, n) each; ``weights`` the (n,)
    point weights.
    """
    mid = cdf - 0.5 * weights[order]
    return torch.empty_like(mid).scatter_(1, order, mid).T.contiguous()


def slice_quantiles(X, weights, directions):
    """:func:`quantile_embedding` of one cloud straight from its projections
    on ``directions`` (d, L), without the slices' plans."""
    proj, order = torch.sort((X @ directions).T.contiguous(), dim=1, stable=True)
    del proj
    return quantile_embedding(order, _cdf(weights[order]), weights)


def query_quantiles(proj, order, cdf, weights, t):
    """Quantiles of new projections ``t`` (L, q) on fitted slices: the
    midpoints of :func:`quantile_embedding` interpolated linearly between the
    sorted fitted projections ``proj`` (L, n), constant past the ends, so
    they are continuous in the point. Returns (q, L).
    """
    mid = cdf - 0.5 * weights[order]
    k, k1, lam = _enclosing(proj, t)
    out = (1 - lam) * torch.gather(mid, 1, k) + lam * torch.gather(mid, 1, k1)
    return out.T.contiguous()


def _enclosing(proj, t):
    """The sorted fitted projections ``proj`` (L, n) enclosing each of ``t``
    (L, q): their ranks ``k``, ``k1`` and the position ``lam`` in [0, 1]
    between them (clamped at the ends)."""
    n = proj.shape[1]
    k = torch.searchsorted(proj.contiguous(), t.contiguous(), right=True) - 1
    k = torch.clamp(k, 0, n - 1)
    k1 = torch.clamp(k + 1, max=n - 1)
    s0, s1 = torch.gather(proj, 1, k), torch.gather(proj, 1, k1)
    gap = s1 - s0
    lam = torch.where(gap > 0, (t - s0) / torch.where(gap > 0, gap, 1.0), 0.0)
    return k, k1, torch.clamp(lam, 0.0, 1.0)


def rank_log_tilt(U, V, sharpness):
    """``-sharpness * mean_l (U_il - V_jl)^2``: the log tilt of the soft-rank
    reference between quantile embeddings U (n, L) and V (m, L)."""
    return pairwise_cost(U, V).mul_(-sharpness / U.shape[1])


def slice_weights(slice_costs, beta):
    """``softmax(-beta cost_l / mean cost)`` over the slices.

    beta is relative: a slice 1/beta of the mean cost dearer weighs e^-1 less.
    """
    scale = torch.clamp(slice_costs.mean(), min=torch.finfo(slice_costs.dtype).tiny)
    return torch.softmax(-beta * slice_costs / scale, dim=0)


def _cdf(weights):
    """Cumulative weights of each row, capped at 1 and ending at 1.

    Capped: rounding can push a partial sum past the last one (which is set
    to 1), and the merge needs non-decreasing cdfs.
    """
    cdf = torch.clamp_(torch.cumsum(weights, dim=1), max=1.0)
    cdf[:, -1] = 1.0
    return cdf


def _merge_ranks(cdf_s, cdf_t, n, m):
    """Source and target ranks and mass of each interval of the merged cdfs.

    Each interval between consecutive breakpoints of the two cdfs carries
    one (i, j) pair. The source rank of an interval is the number of source
    breakpoints before it in the merged order (= searchsorted(cdf_s,
    midpoint) on every interval of positive mass, the only ones used; no
    binary searches).
    """
    points, merged = torch.sort(torch.cat([cdf_s, cdf_t], dim=1), dim=1)
    lower = torch.cat([points.new_zeros(points.shape[0], 1), points[:, :-1]], dim=1)
    mass = torch.clamp(points - lower, min=0.0)
    is_s = merged < n
    before_s = torch.cumsum(is_s, dim=1) - is_s.long()
    rank_s = torch.clamp(before_s, max=n - 1)
    rank_t = torch.clamp(torch.arange(n + m, device=cdf_s.device) - before_s, max=m - 1)
    return rank_s, rank_t, mass


def _pair_costs(Xs, Xt, src, tgt, metric):
    src, tgt = src.reshape(-1), tgt.reshape(-1)
    cost = Xs.new_empty(src.shape[0])
    # in chunks: the differences of all L (n + m) pairs at once would take
    # L (n + m) d floats (2 GB at n = m = 50,000, d = 10)
    step = max(1, 2**22 // max(Xs.shape[1], 1))
    for start in range(0, src.shape[0], step):
        stop = start + step
        diff = Xs[src[start:stop]] - Xt[tgt[start:stop]]
        cost[start:stop] = torch.sum(diff * diff, dim=1)
    return cost if metric == "sqeuclidean" else torch.sqrt(cost)


def query_reference_log(plans, q, weights, smoothing, forward):
    """Log reference row ``log R(x, .) / a(x)`` of query points ``x``.

    Each slice's monotone 1-D plan sends the cdf interval of a fitted point
    to the destination ranks it overlaps. A query point takes the interval
    interpolated linearly between the two fitted points whose projections
    enclose its own (clamped at the ends), so the row is continuous in the
    point and, on a fitted point, is that point's row of the sliced
    reference divided by its weight. The slices are averaged with their
    weights and mixed with the destination weights like the reference plan.

    Parameters
    ----------
    plans : SlicedPlans
        Tensor form, on the device of ``q``.
    q : torch.Tensor of shape (n_queries, d)
        Query points, in the source space when ``forward`` else in the target
        space.
    weights : torch.Tensor of shape (n_dest,)
        Destination weights (``b`` when ``forward``, else ``a``), summing to 1.
    smoothing : float
        The reference smoothing, in [0, 1].
    forward : bool
        Source to target (``True``) or target to source.

    Returns
    -------
    log_ref : torch.Tensor of shape (n_queries, n_dest)
        ``log`` of a row summing to 1 (``-inf`` where the reference is 0).
    """
    if forward:
        proj, cdf_q, cdf_d, order_d = (
            plans.proj_s,
            plans.cdf_s,
            plans.cdf_t,
            plans.order_t,
        )
    else:
        proj, cdf_q, cdf_d, order_d = (
            plans.proj_t,
            plans.cdf_t,
            plans.cdf_s,
            plans.order_s,
        )
    L = proj.shape[0]
    m = cdf_d.shape[1]
    t = (q @ plans.directions).T  # (L, n_queries)
    # The fitted points enclosing each projection, and the position between.
    k, k1, lam = _enclosing(proj, t)
    zero = cdf_q.new_zeros(L, 1)
    upper = cdf_q
    lower = torch.cat([zero, cdf_q[:, :-1]], dim=1)
    lo = (1 - lam) * torch.gather(lower, 1, k) + lam * torch.gather(lower, 1, k1)
    hi = (1 - lam) * torch.gather(upper, 1, k) + lam * torch.gather(upper, 1, k1)
    width = torch.clamp(hi - lo, min=torch.finfo(q.dtype).tiny)
    # Destination ranks whose cdf interval overlaps [lo, hi].
    d_lower = torch.cat([zero, cdf_d[:, :-1]], dim=1)
    # They run from the first whose cdf exceeds lo to the first whose cdf
    # reaches hi; counted exactly, as zero-weight ranks in between take
    # slots too.
    r0 = torch.searchsorted(cdf_d.contiguous(), lo.contiguous(), right=True)
    r0 = torch.clamp(r0, max=m - 1)
    r1 = torch.searchsorted(cdf_d.contiguous(), hi.contiguous())
    r1 = torch.clamp(r1, max=m - 1)
    window = max(int(torch.max(r1 - r0)) + 1, 1)
    ranks = torch.clamp(
        r0[:, :, None] + torch.arange(window, device=q.device), max=m - 1
    )
    c_hi = torch.gather(cdf_d, 1, ranks.reshape(L, -1)).reshape(ranks.shape)
    c_lo = torch.gather(d_lower, 1, ranks.reshape(L, -1)).reshape(ranks.shape)
    overlap = torch.minimum(c_hi, hi[:, :, None]) - torch.maximum(c_lo, lo[:, :, None])
    overlap = torch.clamp(overlap, min=0.0)
    # clamped duplicates of the last rank must not count twice
    dup = torch.zeros_like(overlap, dtype=torch.bool)
    dup[:, :, 1:] = ranks[:, :, 1:] == ranks[:, :, :-1]
    overlap = torch.where(dup, 0.0, overlap)
    mass = overlap / width[:, :, None] * plans.weights[:, None, None]
    dest_idx = torch.gather(order_d, 1, ranks.reshape(L, -1)).reshape(ranks.shape)
    ref = q.new_zeros(q.shape[0], m)
    ref.scatter_add_(
        1,
        dest_idx.permute(1, 0, 2).reshape(q.shape[0], -1),
        mass.permute(1, 0, 2).reshape(q.shape[0], -1),
    )
    ref = (1 - smoothing) * ref + smoothing * weights[None, :]
    return torch.log(ref)


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
    directions="uniform",
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
    directions : {"uniform", "covariance"}, default="uniform"
        How the slice directions are drawn: uniform on the sphere, or from
        the normal law whose covariance is the pooled second moment of both
        clouds (:class:`SROTransport`'s default, the same standard normal
        draws mapped by its square root), so that slices follow where the
        clouds spread and differ.
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
    rng = check_random_state(random_state)
    plans = compute_sliced_plans(
        Xs,
        Xt,
        a,
        b,
        n_projections=n_projections,
        beta=beta,
        metric=metric,
        random_state=rng,
        directions=draw_directions(directions, Xs, Xt, a, b, n_projections, rng),
    )
    return to_numpy(plans.dense(Xs.shape[0], Xt.shape[0], reference_smoothing, a, b))
