"""The numeric core of :class:`SROTransport`: references, candidates, solves.

Tensors in, tensors out; the estimator keeps the sklearn plumbing.
"""

import math

import torch

from ._sinkhorn import TransportKernel, solve
from ._sliced import (
    _pair_costs,
    draw_directions,
    quantile_embedding,
    slice_plans,
    slice_quantiles,
    slice_weights,
)

# Candidate references of beta="auto" / reference_smoothing="auto": (beta,
# smoothing) pairs, tried with entropic OT (the fallback) by transport cost.
# Sharp cheapest slices win at large reg, a uniform average at mid reg, a
# reference half-way to the product coupling at small reg, and one 97% of
# the way there at the smallest, where only a slight tilt of entropic OT
# still lowers the cost (options study and grid of the SROT benchmark).
AUTO_PAIRS = ((100.0, 0.001), (3.0, 0.001), (3.0, 0.5), (3.0, 0.97))
# Sharpness of the soft-rank candidates of "auto" (nats per unit of mean
# squared quantile gap): the milder one wins at the smallest reg, the sharper
# one from reg 0.03 up (grid of the SROT benchmark, d = 2, 10 and 50).
AUTO_SHARPNESS = (100.0, 1000.0)
# Above this many points a side, "auto" chooses on a subsample of this size
# and solves the chosen reference once on all points.
SELECT_POINTS = 2000
# Pairs of points sampled for the median cost when n * m is larger.
MEDIAN_PAIRS = 100_000
# Bytes for the temporaries of one block of a lazy kernel.
BLOCK_MEMORY = 2**28
# Elements (slices x (n + m)) sorted at once while building the sliced
# reference: a dozen temporaries of this size, about 200 MB in all. All 256
# slices at once up to n + m = 8,192 (one sort of (256, n) is about twice as
# fast as sixteen of (16, n)); 16 slices at a time from n + m = 131,072.
_SLICE_ELEMENTS = 2**21


def median_cost(Xs, Xt, metric, rng):
    """Median ground cost over all pairs, or over a seeded sample of pairs.

    Computed from the points, the same way for dense and lazy fits.
    """
    n, m = Xs.shape[0], Xt.shape[0]
    if n * m <= MEDIAN_PAIRS:
        i = torch.arange(n, device=Xs.device).repeat_interleave(m)
        j = torch.arange(m, device=Xs.device).repeat(n)
    else:
        flat = torch.as_tensor(
            rng.randint(0, n * m, MEDIAN_PAIRS), device=Xs.device, dtype=torch.int64
        )
        i, j = flat // m, flat % m
    diff = Xs[i] - Xt[j]
    cost = torch.sum(diff * diff, dim=1)
    if metric != "sqeuclidean":
        cost = torch.sqrt(cost)
    med = float(torch.median(cost))
    if not med > 0:
        med = float(cost.mean())
    return med if med > 0 else 1.0


def cost_span(Xs, Xt, metric):
    """An upper bound of the cost range: the squared diagonal of the joint box."""
    both = torch.cat([Xs, Xt])
    diag2 = float(torch.sum((both.max(0).values - both.min(0).values) ** 2))
    return diag2 if metric == "sqeuclidean" else math.sqrt(diag2)


class SlicedReference:
    """The slices' 1-D plans as the COO entries of a sparse reference.

    Built a few slices at a time, so that the sorting temporaries stay
    O(chunk (n + m)) rather than O(L (n + m)) (2.5 GB at n = m = 50,000 and
    256 slices); only the entries of positive mass are kept. ``sparse(beta)``
    gives the ``(rows, cols, values)`` of the expected sliced plan with slice
    weights ``softmax(-beta cost_l / mean cost)`` (and the entries' costs
    when ``cost`` was given). The entries are sorted by
    their flat index ``i m + j`` once: every rescaling of a dense kernel
    adds them into an n x m matrix, which is 3-4x faster in memory order
    than in slice order (n = m = 2,000, 256 slices: 8 ms instead of 30).
    Duplicate (i, j) pairs of different slices stay separate entries (7% of
    them in that case; summing them would need a sum per ``beta``).
    Without ``directions``, ``law`` says how they are drawn: ``"uniform"`` on
    the sphere or ``"covariance"`` (:func:`covariance_directions`).
    ``quantiles=True`` also keeps the points' quantiles on the slices
    (``quantiles``, for the soft-rank reference); ``entries=False`` keeps
    only those (no sparse entries, no ``sparse``).
    """

    def __init__(
        self,
        Xs,
        Xt,
        a,
        b,
        *,
        n_projections,
        metric,
        seed,
        directions=None,
        cost=None,
        law="uniform",
        quantiles=False,
        entries=True,
    ):
        if directions is None:
            directions = draw_directions(law, Xs, Xt, a, b, n_projections, seed)
        self.directions = directions
        n_slices, m = directions.shape[1], Xt.shape[0]
        flat, mass, slices = [], [], []
        quant_s, quant_t = [], []
        chunk = max(16, _SLICE_ELEMENTS // (Xs.shape[0] + m))
        if not entries:
            # the soft-rank reference alone: the sorts, not the slices' plans
            self.quantiles = tuple(
                torch.cat(
                    [
                        slice_quantiles(X, w, directions[:, k : k + chunk])
                        for k in range(0, n_slices, chunk)
                    ],
                    dim=1,
                )
                for X, w in ((Xs, a), (Xt, b))
            )
            return
        for start in range(0, n_slices, chunk):
            plans = slice_plans(
                Xs,
                Xt,
                a,
                b,
                n_projections=None,
                random_state=None,
                directions=directions[:, start : start + chunk],
            )
            if quantiles:
                quant_s.append(quantile_embedding(plans.order_s, plans.cdf_s, a))
                quant_t.append(quantile_embedding(plans.order_t, plans.cdf_t, b))
            index = plans.src * m + plans.tgt
            keep = plans.mass > 0
            if bool(keep.all()):
                # uniform weights: only intervals of positive mass came back
                flat.append(index.reshape(-1))
                mass.append(plans.mass.reshape(-1))
                ids = torch.arange(start, start + index.shape[0], device=Xs.device)
                slices.append(ids.repeat_interleave(index.shape[1]))
            else:
                flat.append(index[keep])
                mass.append(plans.mass[keep])
                slices.append(torch.nonzero(keep)[:, 0] + start)
            del plans, keep, index
        # (n, L) and (m, L) quantiles of the points on the slices (the soft-rank
        # reference), or None
        self.quantiles = (
            (torch.cat(quant_s, dim=1), torch.cat(quant_t, dim=1))
            if quantiles
            else None
        )
        flat, order = torch.sort(torch.cat(flat))
        self.rows = torch.div(flat, m, rounding_mode="floor")
        self.cols = flat - self.rows * m
        self.mass = torch.cat(mass)[order]
        self.slice_of = torch.cat(slices)[order]
        del order
        # Lifted costs looked up in memory order (4x faster than per slice).
        self.looked_up = cost is not None
        self.costs = (
            cost.reshape(-1)[flat]
            if cost is not None
            else _pair_costs(Xs, Xt, self.rows, self.cols, metric)
        )
        self.slice_costs = torch.zeros(
            n_slices, dtype=Xs.dtype, device=Xs.device
        ).index_add_(0, self.slice_of, self.mass * self.costs)

    def weights(self, beta):
        return slice_weights(self.slice_costs, beta)

    def sparse(self, beta):
        values = self.mass * self.weights(beta)[self.slice_of]
        if self.looked_up:
            # the entries' costs are the kernel's: no second lookup
            return self.rows, self.cols, values, self.costs
        return self.rows, self.cols, values


def make_kernel(a, b, *, C, points, smoothing, sparse, tilt=None):
    """A dense (``C`` given) or lazy (``points``) kernel of one reference."""
    if C is not None:
        return TransportKernel(a, b, cost=C, alpha=smoothing, sparse=sparse, tilt=tilt)
    return TransportKernel(
        a,
        b,
        points=points,
        alpha=smoothing,
        sparse=sparse,
        tilt=tilt,
        memory=BLOCK_MEMORY,
    )


def solve_reference(
    a, b, eps, *, C, points, span, smoothing, sparse, init, solver_options, tilt=None
):
    """Solve one reference; warm starts skip the epsilon scaling.

    ``tilt``: the soft-rank reference's ``(U, V, sharpness)``.
    """
    if tilt is not None:
        # the kernel takes the tilt in cost units at the target eps
        tilt = (tilt[0], tilt[1], tilt[2] * eps)
    kernel = make_kernel(
        a, b, C=C, points=points, smoothing=smoothing, sparse=sparse, tilt=tilt
    )
    out = solve(
        kernel,
        eps,
        span=span,
        epsilon_scaling=init is None,
        init=init,
        warn=False,
        **solver_options,
    )
    return kernel, out


def plan_summary(kernel, out, Xs, Xt):
    """Transport cost and barycentric images, in one pass over the plan."""
    x, y = out["x"], out["y"]
    if kernel.stored:
        # no n x m plan formed: two products and one pass with the cost
        row_mass, col_mass, src_img, tgt_img = kernel.plan_images(x, y, Xs, Xt)
        cost = kernel.plan_cost(x, y)
        return cost, _normalise(src_img, row_mass), _normalise(tgt_img, col_mass)
    cost = 0.0
    row_mass = Xs.new_zeros(Xs.shape[0])
    col_mass = Xs.new_zeros(Xt.shape[0])
    src_img = Xs.new_zeros(Xs.shape[0], Xt.shape[1])
    tgt_img = Xs.new_zeros(Xt.shape[0], Xs.shape[1])
    for r0, r1, P, Cb in kernel.plan_blocks(x, y):
        cost += float(torch.sum(P * Cb))
        row_mass[r0:r1] = P.sum(1)
        col_mass += P.sum(0)
        src_img[r0:r1] = P @ Xt
        tgt_img += P.T @ Xs[r0:r1]
    return cost, _normalise(src_img, row_mass), _normalise(tgt_img, col_mass)


def transport_cost(kernel, out):
    """``<C, P>`` of a solve's plan."""
    if kernel.stored:
        return kernel.plan_cost(out["x"], out["y"])
    return sum(
        float(torch.sum(P * Cb))
        for _, _, P, Cb in kernel.plan_blocks(out["x"], out["y"])
    )


def _normalise(images, mass):
    return torch.where(
        mass[:, None] > 0, images / torch.where(mass > 0, mass, 1.0)[:, None], torch.nan
    )


def is_rank(key):
    """Whether a candidate key is a soft-rank reference ``("rank", sharpness)``
    rather than a mixture ``(beta, smoothing)``."""
    return key is not None and key[0] == "rank"


def candidate_reference(key, sliced):
    """``solve_reference``'s keywords for a candidate key."""
    if is_rank(key):
        U, V = sliced.quantiles
        return {"smoothing": 1.0, "sparse": None, "tilt": (U, V, key[1])}
    beta, smoothing = key
    return {"smoothing": smoothing, "sparse": sliced.sparse(beta), "tilt": None}


def select_reference(a, b, eps, *, C, points, span, sliced, candidates, solver_options):
    """Solve entropic OT and each candidate; keep the one of least transport
    cost (entropic OT on ties: it is the fallback).

    A candidate is a mixture ``(beta, smoothing)`` or a soft-rank reference
    ``("rank", sharpness)`` (``sliced`` then holds the quantile embeddings).
    Returns the chosen key (``None`` for entropic OT), the transport cost of
    every candidate, the total iterations and the chosen solve's potentials
    ``(f, g)`` (a warm start for the final solve).
    """
    kernel, eot = solve_reference(
        a,
        b,
        eps,
        C=C,
        points=points,
        span=span,
        smoothing=1.0,
        sparse=None,
        init=None,
        solver_options=solver_options,
    )
    costs = {None: transport_cost(kernel, eot)}
    potentials = {None: (eot["f"], eot["g"])}
    n_iter = eot["n_iter"]
    del kernel
    for key in candidates:
        if is_rank(key):
            # entropic OT on the tilted cost: its own annealing
            init = None
        else:
            # Off the slices the reference is `smoothing` times entropic
            # OT's, so its potentials start from entropic OT's shifted by
            # -eps log(s) / 2.
            shift = -0.5 * eps * math.log(key[1])
            init = (eot["f"] + shift, eot["g"] + shift)
        kernel, out = solve_reference(
            a,
            b,
            eps,
            C=C,
            points=points,
            span=span,
            init=init,
            solver_options=solver_options,
            **candidate_reference(key, sliced),
        )
        n_iter += out["n_iter"]
        if out["converged"]:
            costs[key] = transport_cost(kernel, out)
            potentials[key] = (out["f"], out["g"])
        del kernel
    best = min(costs, key=lambda key: (costs[key], key is not None))
    return best, costs, n_iter, potentials[best]


def extend_potentials(f_sub, rows, Xs, Xt, a, b, eps, *, metric, smoothing, tilt=None):
    """Potentials on all points from those of a subsample's solve.

    ``g`` on every target point is the c-transform of the subsample's
    ``f`` (through the product part of the reference, with the soft-rank
    ``tilt`` (U, V, sharpness) of all points when given), then ``f`` on
    every source point the c-transform of that ``g``: a warm start that
    skips the epsilon scaling on the full problem (multiscale Sinkhorn).
    """
    a_sub = a[rows] / a[rows].sum()
    part_tilt = whole_tilt = None
    if tilt is not None:
        U, V, sharpness = tilt
        part_tilt, whole_tilt = (U[rows], V, sharpness * eps), (U, V, sharpness * eps)
    part = TransportKernel(
        a_sub,
        b,
        points=(Xs[rows], Xt, metric),
        alpha=1.0,
        tilt=part_tilt,
        memory=BLOCK_MEMORY,
    )
    part.set_scale(eps, f_sub / eps, torch.zeros_like(b))
    g = eps * (part.log_b - part.log_rmv(torch.zeros_like(a_sub)))
    whole = TransportKernel(
        a,
        b,
        points=(Xs, Xt, metric),
        alpha=1.0,
        tilt=whole_tilt,
        memory=BLOCK_MEMORY,
    )
    whole.set_scale(eps, torch.zeros_like(a), g / eps)
    f = eps * (whole.log_a - whole.log_mv(torch.zeros_like(b)))
    # off the slices the reference is `smoothing` times the product's
    shift = -0.5 * eps * math.log(smoothing) if smoothing < 1 else 0.0
    return torch.nan_to_num(f, neginf=0.0) + shift, g + shift
