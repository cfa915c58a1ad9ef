"""The Sinkhorn solver of every transport function, with a reference measure.

It solves ``min_P <C, P> + eps * KL(P || R)`` over couplings of ``a`` and
``b``. ``R = a b'`` is entropic OT; any other reference coupling is SROT.

The plan is ``P_ij = R_ij exp((f_i + g_j - C_ij) / eps)``. A
:class:`TransportKernel` applies ``K_ij = R_ij exp(-C_ij / eps + u_i + v_j)``
to vectors, with the potentials ``u = f / eps``, ``v = g / eps`` absorbed
into it (stabilised Sinkhorn, Schmitzer 2019), so that the iterations are
matrix-vector products that cannot overflow. The kernel is either stored
(``lazy=False``: one pass over an n x m matrix per product, no exp) or
recomputed in row blocks from the points (``lazy=True``: O((n + m) d)
memory, one exp per entry and product). :func:`solve` runs epsilon scaling
and then over-relaxed Sinkhorn (Thibault et al. 2021; Lehmann et al. 2022)
whose relaxation factor is set from the observed convergence rate.
"""

import math
import warnings

import torch
from sklearn.exceptions import ConvergenceWarning

from ._sliced import _pair_costs
from ._validation import pairwise_cost

# Absorb the scalings into the kernel once they leave [e^-LIMIT, e^LIMIT].
_ABSORB_LIMIT = 30.0
# Epsilon scaling: divide eps by this factor per stage, from the cost range.
_EPS_FACTOR = 4.0
# Iterations and marginal tolerance of each warm-up stage.
_STAGE_ITER = 20
_STAGE_TOL = 1e-2
# Plain iterations at the target eps before the relaxation factor is first
# set, then re-estimated every _WINDOW iterations.
_PLAIN_WARMUP = 20
_WINDOW = 20
_MAX_OMEGA = 1.95
# Error growth (over the best of the last window) that halves omega - 1.
_BACKOFF = 10.0
# Bytes of one lazy kernel block on the CPU: a quarter of a 32 MB L3 cache.
# Dev microbenchmark (one fused lazy iteration, d = 10, 2 threads): 4.4 s
# against 6.3 s with 64 MB blocks at n = m = 50,000; 0.76 s against 1.08 s
# at 20,000. 4 MB and 16 MB blocks were slower than 8 MB at both sizes.
_CPU_BLOCK_BYTES = 2**23


def _budget_rows(m, memory_bytes, itemsize=8, device=None):
    """Rows per block so that a few (rows, m) temporaries fit the budget.

    On the CPU a block is also kept to about ``_CPU_BLOCK_BYTES``: the five
    passes over it (product, add, exp and two matrix-vector products) then
    run from the cache instead of main memory.
    """
    rows = int(memory_bytes // (4 * itemsize * max(m, 1)))
    if device is None or torch.device(device).type == "cpu":
        rows = min(rows, _CPU_BLOCK_BYTES // (itemsize * max(m, 1)))
    return max(1, min(rows, 1 << 20))


class TransportKernel:
    """``K = R * exp(-C / eps)`` with absorbed potentials, applied to vectors.

    The reference is either ``alpha a b' + (1 - alpha) S`` with S sparse
    (``sparse=(rows, cols, values)``; ``alpha=1`` and no S is entropic OT), or
    a dense ``log_ref``. The cost is either a stored ``cost`` matrix or the
    points ``X``, ``Y`` with ``metric`` (``lazy``: computed in row blocks).

    Parameters
    ----------
    a, b : torch.Tensor of shape (n,), (m,)
        Positive marginals.
    cost : torch.Tensor of shape (n, m), default=None
        The stored cost (dense mode).
    points : tuple (X, Y, metric), default=None
        The points (lazy mode); the cost of a block is computed from them.
    alpha : float, default=1.0
        Share of the product coupling in the reference.
    sparse : tuple of torch.Tensor, default=None
        ``(rows, cols, values)`` of the sparse part S (duplicates summed),
        a coupling of a and b, optionally followed by the entries' costs
        (looked up in ``cost`` or computed from ``points`` otherwise).
    log_ref : torch.Tensor of shape (n, m), default=None
        A dense log reference instead of ``alpha`` and ``sparse``.
    tilt : tuple (U, V, weight), default=None
        The soft-rank reference (with ``alpha=1`` and no ``sparse``): the
        quantile embeddings U (n, L) and V (m, L) of the points on the
        slices, and ``weight = eps * sharpness`` in cost units. The kernel's
        cost becomes ``C + weight * mean_l (U_il - V_jl)^2``, so at the
        target eps the reference is ``a_i b_j exp(-sharpness mean_l (U_il -
        V_jl)^2)``; the epsilon-scaling stages anneal the tilt with the cost
        (as entropic OT on the tilted cost), which carries the potentials
        across stages without rescaling them. The transport cost
        (``plan_cost``, ``plan_blocks``) stays ``C``. Dense mode stores the
        tilted cost; lazy mode adds the tilt block by block.
    memory : float, default=2**28
        Bytes for the temporaries of one lazy block; on the CPU a block is
        also kept to ``_CPU_BLOCK_BYTES`` (8 MB), which runs faster.
    """

    def __init__(
        self,
        a,
        b,
        *,
        cost=None,
        points=None,
        alpha=1.0,
        sparse=None,
        log_ref=None,
        tilt=None,
        memory=2**28,
    ):
        self.a, self.b = a, b
        self.log_a, self.log_b = torch.log(a), torch.log(b)
        self.cost = cost
        self.points = points
        self.lazy = cost is None
        # the kernel's cost: C, or C plus the soft-rank tilt
        self.kcost = cost
        self.tilt = None
        if tilt is not None:
            # the mean over slices folds into the factor of the products
            U, V, weight = tilt
            self.tilt = (U, V, weight / U.shape[1])
            if not self.lazy:
                self.kcost = pairwise_cost(U, V).mul_(self.tilt[2]).add_(cost)
        self.alpha = float(alpha)
        self.log_ref = log_ref
        self.n, self.m = a.shape[0], b.shape[0]
        self.block = (
            self.n if not self.lazy else _budget_rows(self.m, memory, device=a.device)
        )
        if sparse is not None and self.alpha < 1.0:
            rows, cols, values = sparse[:3]
            self.s_rows, self.s_cols = rows, cols
            self.s_base = (1.0 - self.alpha) * values.to(a.dtype)
            if len(sparse) > 3:
                self.s_cost = sparse[3]
            elif cost is not None:
                self.s_cost = cost[rows, cols]
            else:
                self.s_cost = _pair_costs(points[0], points[1], rows, cols, points[2])
            self._by_row = None
            # dense mode adds S into the stored kernel: one pass per product
            self.s_flat = None if self.lazy else rows * self.m + cols
        else:
            self.s_rows = None
        # S is folded into the stored kernel (dense mode) or scattered per
        # product (lazy mode)
        self.folded = self.s_rows is not None and not self.lazy
        self.eps = None
        self.u0 = torch.zeros_like(a)
        self.v0 = torch.zeros_like(b)
        self._dense = None
        self._buffer = None

    # ------------------------------------------------------------ blocks
    def cost_block(self, r0, r1):
        """Rows r0:r1 of the cost."""
        if not self.lazy:
            return self.cost[r0:r1]
        X, Y, metric = self.points
        return _block_cost(X[r0:r1], Y, metric)

    def _kernel_cost_block(self, r0, r1):
        """Rows r0:r1 of the kernel's cost (the tilt included)."""
        if not self.lazy:
            return self.kcost[r0:r1]
        C = self.cost_block(r0, r1)
        if self.tilt is not None:
            U, V, c = self.tilt
            C = C + c * _block_cost(U[r0:r1], V, "sqeuclidean")
        return C

    def _dense_block(self, r0, r1):
        """exp(log R_dense - C / eps + u0 + v0) on rows r0:r1 (without S)."""
        if self.lazy and self.log_ref is None and self.points[2] == "sqeuclidean":
            return self._lazy_sqeuclidean_block(r0, r1)
        out = self._log_dense_block(r0, r1)
        return None if out is None else out.exp_()

    def _lazy_sqeuclidean_block(self, r0, r1):
        # -|x - y|^2 / eps = (2 x.y - |x|^2 - |y|^2) / eps: one matrix
        # product into a reused buffer, one broadcast add, one exp.
        if self.alpha <= 0:
            return None
        X, Y, _ = self.points
        Xb = X[r0:r1]
        if self._buffer is None or self._buffer.shape[1] != self.m:
            self._buffer = X.new_empty(self.block, self.m)
        out = self._buffer[: r1 - r0]
        torch.addmm(self._col_term[None, :], Xb, Y.T, alpha=2.0 / self.eps, out=out)
        out += (self._row_term[r0:r1] - torch.sum(Xb * Xb, dim=1) / self.eps)[:, None]
        if self.tilt is not None:
            # the tilt's -c |u - v|^2 / eps, expanded like the cost's
            U, V, c = self.tilt
            Ub = U[r0:r1]
            out.addmm_(Ub, V.T, alpha=2.0 * c / self.eps)
            out -= (c * torch.sum(Ub * Ub, dim=1) / self.eps)[:, None]
        return out.exp_()

    def set_scale(self, eps, u0, v0):
        """Set eps and absorb the potentials ``u0``, ``v0`` (f / eps, g / eps)."""
        self.eps = float(eps)
        self.u0, self.v0 = u0, v0
        if self.lazy and self.log_ref is None and self.alpha > 0:
            Y = self.points[1]
            self._row_term = math.log(self.alpha) + self.log_a + u0
            self._col_term = self.log_b + v0 - torch.sum(Y * Y, dim=1) / self.eps
            if self.tilt is not None:
                V, c = self.tilt[1], self.tilt[2]
                self._col_term = self._col_term - c * torch.sum(V * V, dim=1) / self.eps
        if self.s_rows is not None:
            self.s_val = self.s_base * torch.exp(
                u0[self.s_rows] + v0[self.s_cols] - self.s_cost / self.eps
            )
        if not self.lazy:
            self._set_dense()

    def _set_dense(self):
        """Store the kernel, reusing its buffer (a fresh n x m allocation
        costs page faults), in three passes: scaled cost plus row terms,
        column terms, exp; the sparse part added last."""
        if self.log_ref is None and self.alpha <= 0 and not self.folded:
            self._dense = None
            return
        if self._dense is None:
            self._dense = self.kcost.new_empty(self.n, self.m)
        out = self._dense
        if self.log_ref is not None:
            torch.add(self.log_ref, self.kcost, alpha=-1.0 / self.eps, out=out)
            out += self.u0[:, None]
            out += self.v0[None, :]
            out.exp_()
        elif self.alpha > 0:
            row = math.log(self.alpha) + self.log_a + self.u0
            torch.add(row[:, None], self.kcost, alpha=-1.0 / self.eps, out=out)
            out += (self.log_b + self.v0)[None, :]
            out.exp_()
        else:
            out.zero_()
        if self.folded:
            out.view(-1).index_add_(0, self.s_flat, self.s_val)

    def mv(self, y):
        """``K y``."""
        if self.lazy:
            out = y.new_empty(self.n)
            for r0 in range(0, self.n, self.block):
                r1 = min(r0 + self.block, self.n)
                blk = self._dense_block(r0, r1)
                out[r0:r1] = 0.0 if blk is None else blk @ y
        else:
            out = self._dense @ y if self._dense is not None else y.new_zeros(self.n)
        if self.s_rows is not None and not self.folded:
            out.index_add_(0, self.s_rows, self.s_val * y[self.s_cols])
        return out

    def mv_scale_rmv(self, y, a, omega):
        """``K y``, the row scaling ``x = (a / K y) ** omega`` and ``K' x``,
        from one pass over the kernel's row blocks (lazy mode).

        A lazy kernel recomputes every block (one exp per entry) for each
        product; the rows of a block get their new scaling as soon as the
        block's ``K y`` is known, so the same block also gives its share of
        ``K' x``: one exp pass per Sinkhorn iteration instead of two. ``x``
        and ``K' x`` are only meaningful where ``a / K y`` is finite and
        positive (the caller checks ``K y``).
        """
        Ky = y.new_zeros(self.n)
        if self.s_rows is not None:
            Ky.index_add_(0, self.s_rows, self.s_val * y[self.s_cols])
        x = torch.empty_like(Ky)
        Ktx = y.new_zeros(self.m)
        for r0 in range(0, self.n, self.block):
            r1 = min(r0 + self.block, self.n)
            blk = self._dense_block(r0, r1)
            if blk is not None:
                Ky[r0:r1] += blk @ y
            x[r0:r1] = _relax(1.0, _ratio(a[r0:r1], Ky[r0:r1]), omega)
            if blk is not None:
                Ktx += x[r0:r1] @ blk
        if self.s_rows is not None:
            Ktx.index_add_(0, self.s_cols, self.s_val * x[self.s_rows])
        return Ky, x, Ktx

    def rmv(self, x):
        """``K' x``."""
        if self.lazy:
            out = x.new_zeros(self.m)
            for r0 in range(0, self.n, self.block):
                r1 = min(r0 + self.block, self.n)
                blk = self._dense_block(r0, r1)
                if blk is not None:
                    out += x[r0:r1] @ blk
        else:
            out = x @ self._dense if self._dense is not None else x.new_zeros(self.m)
        if self.s_rows is not None and not self.folded:
            out.index_add_(0, self.s_cols, self.s_val * x[self.s_rows])
        return out

    def _log_dense_block(self, r0, r1):
        """log of :meth:`_dense_block` (no exp), or None without a dense part."""
        C = self._kernel_cost_block(r0, r1)
        if self.log_ref is not None:
            out = self.log_ref[r0:r1] - C / self.eps
        elif self.alpha <= 0:
            return None
        else:
            out = C * (-1.0 / self.eps)
            out += (math.log(self.alpha) + self.log_a[r0:r1])[:, None]
            out += self.log_b[None, :]
        out += self.u0[r0:r1, None]
        out += self.v0[None, :]
        return out

    def _log_sparse(self, index, other, log_w, size):
        """log of the sparse part's product, reduced over ``index``."""
        t = torch.log(self.s_val) + log_w[other]
        top = torch.full((size,), -math.inf, dtype=t.dtype, device=t.device)
        top = top.scatter_reduce(0, index, t, reduce="amax")
        safe = torch.where(torch.isfinite(top), top, 0.0)
        total = torch.zeros_like(top).index_add_(0, index, torch.exp(t - safe[index]))
        return torch.log(total) + safe

    def log_mv(self, log_y):
        """``log(K exp(log_y))``, computed stably (no underflow)."""
        out = log_y.new_full((self.n,), -math.inf)
        step = self.block
        for r0 in range(0, self.n, step):
            r1 = min(r0 + step, self.n)
            blk = self._log_dense_block(r0, r1)
            if blk is not None:
                out[r0:r1] = torch.logsumexp(blk + log_y[None, :], dim=1)
        if self.s_rows is not None:
            sp = self._log_sparse(self.s_rows, self.s_cols, log_y, self.n)
            out = torch.logaddexp(out, sp)
        return out

    def log_rmv(self, log_x):
        """``log(K' exp(log_x))``, computed stably."""
        out = log_x.new_full((self.m,), -math.inf)
        step = self.block
        for r0 in range(0, self.n, step):
            r1 = min(r0 + step, self.n)
            blk = self._log_dense_block(r0, r1)
            if blk is not None:
                part = torch.logsumexp(blk + log_x[r0:r1, None], dim=0)
                out = torch.logaddexp(out, part)
        if self.s_rows is not None:
            sp = self._log_sparse(self.s_cols, self.s_rows, log_x, self.m)
            out = torch.logaddexp(out, sp)
        return out

    @property
    def stored(self):
        """Whether the whole kernel (sparse part included) is one stored matrix."""
        return not self.lazy and self._dense is not None

    def plan_cost(self, x, y):
        """``<C, P>`` of the plan ``x_i K_ij y_j`` of a stored kernel.

        In row blocks of about 2**17 entries, so that the product with the
        cost stays in cache: two reads of n x m and no n x m temporary.
        """
        rows = max(1, (1 << 17) // max(self.m, 1))
        buf = self._dense.new_empty(min(rows, self.n), self.m)
        total = 0.0
        for r0 in range(0, self.n, rows):
            r1 = min(r0 + rows, self.n)
            blk = torch.mul(self._dense[r0:r1], self.cost[r0:r1], out=buf[: r1 - r0])
            total += float(x[r0:r1] @ (blk @ y))
        return total

    def plan_images(self, x, y, Xs, Xt):
        """Row sums, column sums, ``P @ Xt`` and ``P' @ Xs`` of a stored
        kernel's plan ``x_i K_ij y_j``, from one product each way."""
        right = self._dense @ torch.cat([y[:, None] * Xt, y[:, None]], dim=1)
        # (W' K)' rather than K' W: 2x faster through BLAS at n = m = 2,000
        left = (torch.cat([x[None, :] * Xs.T, x[None, :]], dim=0) @ self._dense).T
        right *= x[:, None]
        left *= y[:, None]
        return right[:, -1], left[:, -1], right[:, :-1], left[:, :-1]

    def plan_blocks(self, x, y):
        """Yield ``(r0, r1, P[r0:r1], C[r0:r1])``: the plan ``x_i K_ij y_j``."""
        step = self.n if not self.lazy else self.block
        for r0 in range(0, self.n, step):
            r1 = min(r0 + step, self.n)
            blk = self._dense if not self.lazy else self._dense_block(r0, r1)
            P = (
                blk.clone() if blk is not None and not self.lazy else blk
            )  # the stored kernel must survive
            if P is None:
                P = x.new_zeros(r1 - r0, self.m)
            if self.s_rows is not None and not self.folded:
                if self._by_row is None:
                    # the entries sorted by row, to slice out each block's
                    self._by_row = torch.argsort(self.s_rows)
                    self._sorted_rows = self.s_rows[self._by_row]
                lo, hi = torch.searchsorted(
                    self._sorted_rows, torch.tensor([r0, r1], device=x.device)
                ).tolist()
                inside = self._by_row[lo:hi]
                P.index_put_(
                    (self.s_rows[inside] - r0, self.s_cols[inside]),
                    self.s_val[inside],
                    accumulate=True,
                )
            P *= x[r0:r1, None]
            P *= y[None, :]
            yield r0, r1, P, self.cost_block(r0, r1)


def _block_cost(X, Y, metric):
    sq = torch.addmm(torch.sum(Y * Y, dim=1)[None, :], X, Y.T, alpha=-2.0)
    sq += torch.sum(X * X, dim=1)[:, None]
    sq.clamp_(min=0.0)
    return sq if metric == "sqeuclidean" else sq.sqrt_()


def solve(
    kernel,
    eps,
    *,
    max_iter=2000,
    tol=1e-5,
    solver="overrelaxed",
    epsilon_scaling=True,
    span=None,
    init=None,
    warn=True,
):
    """Sinkhorn on a :class:`TransportKernel`: epsilon scaling, then the
    target eps with (over-relaxed) matrix-scaling iterations.

    Parameters
    ----------
    kernel : TransportKernel
    eps : float
        Target regularisation (absolute, cost units).
    max_iter : int, default=2000
        All iterations together, warm-up stages included.
    tol : float, default=1e-5
        Stop when both marginals are within ``tol`` in L1 norm (the share of
        the mass that is misplaced, as a and b sum to 1).
    solver : {"overrelaxed", "sinkhorn"}, default="overrelaxed"
        Over-relaxed or plain Sinkhorn at the target eps.
    epsilon_scaling : bool, default=True
        Anneal eps from ``span`` (the cost range) down to ``eps``.
    span : float, default=None
        Starting eps of the annealing (required with ``epsilon_scaling``).
    init : tuple of torch.Tensor, default=None
        Potentials ``(f, g)`` in cost units to start from.
    warn : bool, default=True
        Emit a ConvergenceWarning when ``tol`` is not reached.

    Returns
    -------
    dict
        ``f``, ``g`` (potentials in cost units), ``x``, ``y`` (the final
        scalings on the kernel as left set), ``n_iter``, ``err``,
        ``converged``, ``omega``, ``errors`` (the error after each
        iteration at the target eps).
    """
    a, b = kernel.a, kernel.b
    f = torch.zeros_like(a) if init is None else init[0].clone()
    g = torch.zeros_like(b) if init is None else init[1].clone()
    total = 0
    if epsilon_scaling and span is not None:
        stage = max(float(span), eps)
        while stage > 2 * eps and total < max_iter:
            budget = min(_STAGE_ITER, max_iter - total)
            out = _iterate(kernel, stage, f, g, budget, _STAGE_TOL, "sinkhorn")
            f, g, total = out["f"], out["g"], total + out["n_iter"]
            stage /= _EPS_FACTOR
    out = _iterate(kernel, eps, f, g, max(max_iter - total, 0), tol, solver)
    out["n_iter"] += total
    converged = out["err"] <= tol
    out["converged"] = converged
    if warn and not converged:
        warnings.warn(
            f"Sinkhorn did not converge: it stopped after {out['n_iter']} iterations "
            f"(max_iter) with marginal error {out['err']:.2e} > tol={tol:g}; "
            "increase max_iter, tol or reg.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return out


def _iterate(kernel, eps, f, g, max_iter, tol, solver):
    """Sinkhorn at one eps from potentials f, g (cost units)."""
    a, b = kernel.a, kernel.b
    kernel.set_scale(eps, f / eps, g / eps)
    ones_a, ones_b = torch.ones_like(a), torch.ones_like(b)
    x, y = ones_a, ones_b
    omega = 1.0
    row_err = None  # the rows of the starting scalings are not measured
    Ktx = kernel.rmv(x)
    errors = []
    it = 0
    while True:
        q = _ratio(b, Ktx)
        fine = _usable(q)
        col_err = float(torch.sum(torch.abs(y * Ktx - b))) if fine else math.inf
        err = math.inf if row_err is None else max(row_err, col_err)
        errors.append(err)
        if err <= tol or it >= max_iter:
            break
        if solver == "overrelaxed" and it >= _PLAIN_WARMUP and it % _WINDOW == 0:
            omega = _omega(errors[-_WINDOW - 1 :], omega)
        elif omega > 1.0 and err > _BACKOFF * min(errors[-_WINDOW:]):
            # the relaxation diverges: fall back halfway to plain Sinkhorn
            omega = 1.0 + (omega - 1.0) / 2
        if fine:
            y = _relax(y, q, omega)
        else:
            # K' x underflowed or overflowed: an exact log-domain half step
            kernel.set_scale(eps, kernel.u0 + torch.log(x), kernel.v0 + torch.log(y))
            step = _log_ratio(kernel.log_b, kernel.log_rmv(torch.zeros_like(a)))
            _check_step(step)
            kernel.set_scale(eps, kernel.u0, kernel.v0 + step)
            x, y = ones_a, ones_b
        if kernel.lazy or _far(y):
            kernel.set_scale(eps, kernel.u0 + torch.log(x), kernel.v0 + torch.log(y))
            x, y = ones_a, ones_b
        if kernel.lazy:
            # x is 1 here (absorbed): one pass gives K y, the new x and K' x
            Ky, x_new, Ktx = kernel.mv_scale_rmv(y, a, omega)
            q = _ratio(a, Ky)
            if _usable(q):
                row_err = float(torch.sum(torch.abs(x_new * Ky - a)))
                kernel.set_scale(eps, kernel.u0 + torch.log(x_new), kernel.v0)
                it += 1
                continue
        else:
            Ky = kernel.mv(y)
            q = _ratio(a, Ky)
        if _usable(q):
            x = _relax(x, q, omega)
            row_err = float(torch.sum(torch.abs(x * Ky - a)))
        else:
            kernel.set_scale(eps, kernel.u0 + torch.log(x), kernel.v0 + torch.log(y))
            step = _log_ratio(kernel.log_a, kernel.log_mv(torch.zeros_like(b)))
            _check_step(step)
            kernel.set_scale(eps, kernel.u0 + step, kernel.v0)
            x, y = ones_a, ones_b
            row_err = 0.0  # exact after a full c-transform
        if kernel.lazy or _far(x):
            kernel.set_scale(eps, kernel.u0 + torch.log(x), kernel.v0 + torch.log(y))
            x, y = ones_a, ones_b
        Ktx = kernel.rmv(x)
        it += 1
    return {
        "f": eps * (kernel.u0 + torch.log(x)),
        "g": eps * (kernel.v0 + torch.log(y)),
        "x": x,
        "y": y,
        "n_iter": it,
        "err": err,
        "omega": omega,
        "errors": errors,
    }


def _ratio(weights, product):
    """``weights / product``, 1 on zero-weight points (their kernel row is 0)."""
    return torch.where(weights > 0, weights / product, 1.0)


def _log_ratio(log_weights, log_product):
    return torch.where(torch.isfinite(log_weights), log_weights - log_product, 0.0)


def _usable(ratio):
    """A scaling update ``a / (K y)`` that is positive and finite."""
    return bool(torch.all(torch.isfinite(ratio))) and bool(torch.all(ratio > 0))


def _check_step(step):
    if not bool(torch.all(torch.isfinite(step))):
        raise ValueError(
            "Sinkhorn produced NaN or infinite values: some point has no "
            "admissible partner; increase reg or check the reference."
        )


def _relax(x, target, omega):
    if omega == 1.0:
        return target
    return x ** (1.0 - omega) * target**omega


def _far(x):
    return float(torch.max(torch.abs(torch.log(x)))) > _ABSORB_LIMIT


def _omega(window, omega):
    """Relaxation factor from the convergence rate over the last window.

    Over-relaxed Sinkhorn behaves locally like SOR on a consistently
    ordered system (Lehmann et al. 2022): the observed rate ``rho`` at
    ``omega`` gives the plain rate ``theta = (rho + omega - 1)^2 / (rho
    omega^2)`` (Young's relation), whose optimal factor is ``2 / (1 +
    sqrt(1 - theta))``.
    """
    first, last = window[0], window[-1]
    if not (0 < last < first < math.inf):
        return omega
    rho = (last / first) ** (1.0 / (len(window) - 1))
    theta = (rho + omega - 1.0) ** 2 / (rho * omega**2)
    if not 0.0 < theta < 1.0:
        return omega
    return min(_MAX_OMEGA, 2.0 / (1.0 + math.sqrt(1.0 - theta)))


def sinkhorn_log(
    a,
    b,
    C,
    reg,
    log_R=None,
    *,
    max_iter=2000,
    tol=1e-9,
    epsilon_scaling=True,
    solver="overrelaxed",
    warn=True,
):
    """Dense Sinkhorn for ``min <C, P> + reg KL(P || R)`` (torch tensors).

    Parameters
    ----------
    a, b : torch.Tensor of shape (n,), (m,)
        Marginals summing to 1 (zeros allowed: those rows and columns get no
        mass).
    C : torch.Tensor of shape (n, m)
        Cost.
    reg : float
        Regularisation strength (absolute, same unit as C).
    log_R : torch.Tensor of shape (n, m), default=None
        Log of the reference coupling; ``None`` means ``a b'`` (entropic OT).
        ``-inf`` entries are allowed (the plan is zero there).
    max_iter, tol, epsilon_scaling, solver, warn
        As in :func:`solve`.

    Returns
    -------
    dict
        ``plan``, ``f``, ``g`` (potentials in cost units: the plan is
        ``R * exp((f_i + g_j - C_ij) / reg)``), ``n_iter``, ``err``,
        ``converged``.
    """
    rows, cols = a > 0, b > 0
    if not (bool(rows.all()) and bool(cols.all())):
        # Zero-weight points carry no mass: solve on the support, pad back.
        sub = sinkhorn_log(
            a[rows],
            b[cols],
            C[rows][:, cols],
            reg,
            None if log_R is None else log_R[rows][:, cols],
            max_iter=max_iter,
            tol=tol,
            epsilon_scaling=epsilon_scaling,
            solver=solver,
            warn=warn,
        )
        plan = C.new_zeros(C.shape)
        plan[torch.nonzero(rows)[:, 0][:, None], torch.nonzero(cols)[:, 0][None, :]] = (
            sub["plan"]
        )
        f, g = torch.zeros_like(a), torch.zeros_like(b)
        f[rows], g[cols] = sub["f"], sub["g"]
        return {**sub, "plan": plan, "f": f, "g": g}
    kernel = TransportKernel(a, b, cost=C, log_ref=log_R)
    span = None
    if epsilon_scaling:
        finite = C if log_R is None else C[torch.isfinite(log_R)]
        span = float(finite.max() - finite.min()) if finite.numel() else 0.0
    out = solve(
        kernel,
        reg,
        max_iter=max_iter,
        tol=tol,
        solver=solver,
        epsilon_scaling=epsilon_scaling,
        span=span,
        warn=False,
    )
    plan = dense_plan(kernel, out["x"], out["y"])
    if not torch.all(torch.isfinite(plan)):
        raise ValueError(
            "Sinkhorn produced NaN or infinite values in the transport plan; "
            "increase reg (the regularisation is too small for this cost)."
        )
    if warn and not out["converged"]:
        warnings.warn(
            f"Sinkhorn did not converge in {out['n_iter']} iterations (marginal "
            f"error {out['err']:.2e} > tol={tol:g}); increase max_iter or reg.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return {**out, "plan": plan}


def dense_plan(kernel, x, y):
    """The whole (n, m) plan of a dense kernel and its scalings (a lazy
    kernel's blocks share one buffer)."""
    return torch.cat([P for _, _, P, _ in kernel.plan_blocks(x, y)], dim=0)


def next_reference(P, a, b, smoothing):
    """The proximal refinement's next reference ``(1 - s) P + s a b'``."""
    return (1 - smoothing) * P + smoothing * (a[:, None] * b[None, :])


def plan_from_potentials(a, b, C, log_R, f, g, reg):
    """``R exp((f_i + g_j - C_ij) / reg)`` on the support of ``a b'``.

    The plan :func:`sinkhorn_log` returns, rebuilt from its potentials (zero
    on rows and columns of zero weight).
    """
    plan = torch.exp(log_R + (f[:, None] + g[None, :] - C) / reg)
    return torch.where((a[:, None] > 0) & (b[None, :] > 0), plan, 0.0)


def entropic_cost(plan, C, log_R, reg):
    """``<C, P> + reg * KL(P || R)`` of a plan (torch)."""
    positive = plan > 0
    kl = torch.sum(plan[positive] * (torch.log(plan[positive]) - log_R[positive]))
    return torch.sum(C * plan) + reg * kl
