"""Numeric kernels of multicalibration boosting: tensors in, tensors out.

No scikit-learn and no input validation here; ``_mcboost.py`` validates,
converts and calls these on the resolved device.

The auditor's design is split into a static block, which depends on the
features and groups only, and a dynamic block, which depends on the current
score. With a constant Newton weight (squared loss) and one bucket, the
static block's Gram matrix is computed once per data split and each round
only adds the products with the few dynamic columns: on 12,000 rows with 12
two-valued group columns that is 28 columns a round instead of 585.
"""

import numpy as np
import torch

from ..utils import cell_sums

# Ridge penalties that alpha="gcv" chooses from, per bucket and round.
GCV_GRID = np.logspace(-2, 5, 15)


def bucket_edges(F, w, strategy, n_buckets):
    """Bucket edges on the link-space score F (level sets of the prediction).

    Quantile edges sit half-way between consecutive distinct scores, so a
    training row is never on an edge and rounding noise in the score cannot
    move it to another bucket. Zero-weight rows do not move edges.

    Parameters
    ----------
    F, w : Tensor of shape (n,)
    strategy : {"quantile", "uniform", "none"}
    n_buckets : int

    Returns
    -------
    Tensor of shape (n_edges,), sorted, ``n_edges <= n_buckets - 1``
    """
    m = 1 if strategy == "none" else n_buckets
    if m == 1:
        return F.new_empty(0)
    levels = torch.arange(1, m, device=F.device, dtype=F.dtype) / m
    F = F[w > 0]
    w = w[w > 0]
    if strategy == "quantile":
        values, inverse = torch.unique(F, return_inverse=True)
        if len(values) == 1:
            return F.new_empty(0)
        mass = torch.zeros_like(values).index_add_(0, inverse, w)
        cw = torch.cumsum(mass, 0)
        idx = torch.searchsorted(cw, levels * cw[-1])
        idx = torch.clamp(idx, max=len(values) - 2)
        edges = 0.5 * (values[idx] + values[idx + 1])
    else:
        lo, hi = F.min(), F.max()
        if not hi > lo:
            return F.new_empty(0)
        edges = lo + (hi - lo) * levels
    return torch.unique(edges)


def _hinges(u, knots):
    """relu(u_j - knot_jk) for every column j and its knots: (n, d * K)."""
    return torch.relu(u[:, :, None] - knots[None]).reshape(u.shape[0], -1)


def static_design(xs, G, knots, interactions):
    """The score-free columns of the ridge auditor: [1, x, hinge(x), g, g * x].

    Parameters
    ----------
    xs : Tensor of shape (n, d)
        Standardised features.
    G : Tensor of shape (n, g) or None
        Group indicators.
    knots : Tensor of shape (d, K) or None
        Hinge knots of each feature.
    interactions : bool
        Add the group x feature products.

    Returns
    -------
    Tensor of shape (n, p_static)
    """
    blocks = [xs.new_ones(xs.shape[0], 1), xs]
    if knots is not None:
        blocks.append(_hinges(xs, knots))
    if G is not None:
        blocks.append(G)
        if interactions:
            # Linear products only: hinge products cost n_knots times more
            # columns and did not help on the benchmark designs.
            blocks.append((G[:, :, None] * xs[:, None, :]).reshape(xs.shape[0], -1))
    return torch.cat(blocks, 1)


def dynamic_design(fs, G, knots, interactions):
    """The score's columns of the ridge auditor: [f, hinge(f), g * f].

    Parameters
    ----------
    fs : Tensor of shape (n,)
        Standardised link-space score.
    G : Tensor of shape (n, g) or None
    knots : Tensor of shape (K,) or None
        Hinge knots of the score.
    interactions : bool

    Returns
    -------
    Tensor of shape (n, p_dynamic)
    """
    u = fs[:, None]
    blocks = [u]
    if knots is not None:
        blocks.append(_hinges(u, knots[None]))
    if G is not None and interactions:
        blocks.append(G * u)
    return torch.cat(blocks, 1)


def weighted_gram(Z, W):
    """``Z' diag(W) Z``.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
    W : Tensor of shape (n,)

    Returns
    -------
    Tensor of shape (p, p)
    """
    return (Z * W[:, None]).T @ Z


def bucket_moments(Zs, Zd, z, W, bucket, m, static_gram=None):
    """Per-bucket weighted moments ``Z'WZ``, ``Z'Wz`` and ``z'Wz`` of ``Z = [Zs | Zd]``.

    One BLAS product per bucket on its contiguous rows: O(n p^2) in all. With
    one bucket and ``static_gram`` (``Zs'WZs`` under the same weights) only
    the blocks with the dynamic columns are computed, O(n p p_dynamic), and
    ``Z`` is never formed.

    Parameters
    ----------
    Zs : Tensor of shape (n, p_static)
    Zd : Tensor of shape (n, p_dynamic) or None
    z, W : Tensor of shape (n,)
        Working response and weights.
    bucket : Tensor of shape (n,), int64
    m : int
        Number of buckets.
    static_gram : Tensor of shape (p_static, p_static) or None

    Returns
    -------
    S2 : Tensor of shape (m, p, p)
    Sz : Tensor of shape (m, p)
    zz : Tensor of shape (m,)
    """
    if m == 1 and static_gram is not None:
        k = Zs.shape[1]
        Wz = W * z
        zz = torch.sum(Wz * z)[None]
        if Zd is None:
            return static_gram[None], (Zs.T @ Wz)[None], zz
        p = k + Zd.shape[1]
        WZd = Zd * W[:, None]
        S2 = Zs.new_empty(1, p, p)
        S2[0, :k, :k] = static_gram
        # (p_d, n) @ (n, k) runs about 1.6x faster than (k, n) @ (n, p_d)
        S2[0, k:, :k] = WZd.T @ Zs
        S2[0, :k, k:] = S2[0, k:, :k].T
        S2[0, k:, k:] = Zd.T @ WZd
        Sz = torch.cat([Wz @ Zs, Wz @ Zd])[None]
        return S2, Sz, zz
    Z = Zs if Zd is None else torch.cat([Zs, Zd], 1)
    p = Z.shape[1]
    if m == 1:
        ZW = Z * W[:, None]
        return (ZW.T @ Z)[None], (ZW.T @ z)[None], torch.sum(W * z * z)[None]
    order = torch.argsort(bucket, stable=True)
    counts = torch.bincount(bucket, minlength=m).tolist()
    Zo, Wo, zo = Z[order], W[order], z[order]
    S2 = Z.new_zeros(m, p, p)
    Sz = Z.new_zeros(m, p)
    zz = Z.new_zeros(m)
    start = 0
    for j, count in enumerate(counts):
        if count:
            rows = slice(start, start + count)
            ZjW = Zo[rows] * Wo[rows, None]
            S2[j] = ZjW.T @ Zo[rows]
            Sz[j] = ZjW.T @ zo[rows]
            zz[j] = torch.sum(Wo[rows] * zo[rows] ** 2)
        start += count
    return S2, Sz, zz


def scaled_cell_moments(C, cell, z, W, u):
    """Moments of :func:`bucket_moments` for ``Z = [c, u c]``, one bucket,
    where every row's ``c`` is one of a few distinct rows of ``C``.

    The affine step's design is ``[1, g, u, g u]``: within a cell of the
    group indicators it is ``c`` and ``u c`` with ``c = [1, g]`` fixed, so
    ``Z'WZ`` and ``Z'Wz`` follow from five per-cell sums of ``W``, ``W u``,
    ``W u^2``, ``W z`` and ``W u z``: O(n) instead of O(n p^2).

    Parameters
    ----------
    C : Tensor of shape (n_cells, q)
        The distinct rows ``c``.
    cell : Tensor of shape (n,), int64
        Each row's index into ``C``.
    z, W, u : Tensor of shape (n,)
        Working response, weights and the score column.

    Returns
    -------
    S2 : Tensor of shape (1, 2 q, 2 q)
    Sz : Tensor of shape (1, 2 q)
    zz : Tensor of shape (1,)
    """
    Wu, Wz = W * u, W * z
    # Statistics as rows: stacking and summing along the rows' axis is
    # contiguous (about half the time of the (n, 5) layout).
    columns = torch.stack([W, Wu, Wu * u, Wz, Wu * z])
    sums = columns.new_zeros(5, C.shape[0]).index_add_(1, cell, columns).T

    def gram(k):
        return (C * sums[:, k, None]).T @ C

    s0, s1, s2 = gram(0), gram(1), gram(2)
    S2 = torch.cat([torch.cat([s0, s1], 1), torch.cat([s1, s2], 1)], 0)
    Sz = torch.cat([C.T @ sums[:, 3], C.T @ sums[:, 4]])
    return S2[None], Sz[None], torch.sum(Wz * z)[None]


def ridge_from_moments(S2, Sz, zz, n_eff, alpha):
    """Weighted ridge fits of every bucket from its moments, one batched solve.

    Column 0 of the design is the intercept, which is not penalised: the
    other columns are centred within each bucket. ``alpha="gcv"`` picks each
    bucket's penalty from ``GCV_GRID`` by generalised cross-validation,
    through one batched eigendecomposition.

    Parameters
    ----------
    S2, Sz, zz : Tensor
        As returned by :func:`bucket_moments`.
    n_eff : Tensor of shape (m,)
        Each bucket's sum of sample weights (the GCV sample size).
    alpha : float or "gcv"

    Returns
    -------
    coef : Tensor of shape (m, p)
    gain : Tensor of shape (m,)
        Each bucket's Newton decrease (used to pick the worst bucket).
    """
    m, d = S2.shape[0], S2.shape[1]
    dtype, device = S2.dtype, S2.device
    # Column 0 is all ones, so S2[:, 0] holds the weighted sums of each column.
    S0 = torch.clamp(S2[:, 0, 0], min=1e-300)
    mean_Z = S2[:, 0, 1:] / S0[:, None]
    mean_z = Sz[:, 0] / S0
    A = S2[:, 1:, 1:] - S0[:, None, None] * mean_Z[:, :, None] * mean_Z[:, None, :]
    b = Sz[:, 1:] - S0[:, None] * mean_Z * mean_z[:, None]
    tss = zz - S0 * mean_z**2
    if isinstance(alpha, str):
        lam, Q = torch.linalg.eigh(A)
        lam = torch.clamp(lam, min=0.0)
        c2 = (Q.transpose(1, 2) @ b.unsqueeze(-1)).squeeze(-1) ** 2
        grid = torch.as_tensor(GCV_GRID, dtype=dtype, device=device)
        lam_g = lam[:, None, :] + grid[None, :, None]
        rss = tss[:, None] - torch.sum(
            c2[:, None, :] * (lam[:, None, :] + 2 * grid[None, :, None]) / lam_g**2, -1
        )
        df = 1.0 + torch.sum(lam[:, None, :] / lam_g, -1)
        n = n_eff[:, None]
        gcv = torch.clamp(rss, min=0.0) / torch.clamp(1.0 - df / n, min=1e-3) ** 2
        # Buckets with fewer rows than parameters take the strongest penalty.
        gcv = torch.where(df < n, gcv, torch.inf)
        gcv[:, -1] = torch.where(torch.isinf(gcv[:, -1]), 0.0, gcv[:, -1])
        penalty = grid[torch.argmin(gcv, dim=1)]
    else:
        penalty = torch.full((m,), float(alpha), dtype=dtype, device=device)
    eye = torch.eye(d - 1, dtype=dtype, device=device)
    # A tiny jitter keeps an all-constant bucket solvable at alpha = 0.
    A_reg = A + (penalty[:, None, None] + 1e-10) * eye
    # A_reg is symmetric positive definite: Cholesky, no pivoting.
    L, info = torch.linalg.cholesky_ex(A_reg)
    if bool((info != 0).any()):  # pragma: no cover - near-singular buckets
        slope = torch.linalg.lstsq(A_reg, b.unsqueeze(-1)).solution.squeeze(-1)
    else:
        slope = torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)
    intercept = mean_z - torch.sum(mean_Z * slope, dim=1)
    coef = torch.cat([intercept[:, None], slope], 1)
    gain = 0.5 * (torch.sum(b * slope, dim=1) + S0 * mean_z**2)
    return coef, gain


def batched_ridge(Z, z, W, w, bucket, m, alpha):
    """Weighted ridge fits of ``z`` on ``Z`` in every bucket.

    :func:`bucket_moments` followed by :func:`ridge_from_moments`.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Design; column 0 is the (unpenalised) intercept.
    z, W, w : Tensor of shape (n,)
        Working response, Newton weights and sample weights.
    bucket : Tensor of shape (n,), int64
    m : int
    alpha : float or "gcv"

    Returns
    -------
    coef : Tensor of shape (m, p)
    gain : Tensor of shape (m,)
    """
    S2, Sz, zz = bucket_moments(Z, None, z, W, bucket, m)
    n_eff = torch.zeros(m, dtype=Z.dtype, device=Z.device).index_add_(0, bucket, w)
    return ridge_from_moments(S2, Sz, zz, n_eff, alpha)


def apply_coef(Zs, Zd, coef, bucket):
    """Each row's design ``[Zs | Zd]`` times its bucket's coefficients: (n,)."""
    k = Zs.shape[1]
    if coef.shape[0] == 1:
        out = Zs @ coef[0, :k]
        return out if Zd is None else out + Zd @ coef[0, k:]
    scores = Zs @ coef[:, :k].T
    if Zd is not None:
        scores = scores + Zd @ coef[:, k:].T
    return torch.gather(scores, 1, bucket[:, None])[:, 0]


def cell_audit(r, w, G, bucket, m, min_fraction):
    """Audit every group x bucket cell with one matrix product.

    Returns the largest |sum w r| / sqrt(sum w^2 r^2) over cells holding at
    least ``min_fraction`` of the weight (a z-score of the cell's mean
    residual), the largest |sum w r| / sum w (HKRR's mass-weighted bias) and
    the number of cells audited.

    Parameters
    ----------
    r, w : Tensor of shape (n,)
        Residuals and sample weights.
    G : Tensor of shape (n, g) or None
    bucket : Tensor of shape (n,), int64
    m : int
    min_fraction : float

    Returns
    -------
    (float, float, int)
    """
    return audit_from_sums(cell_audit_sums(r, w, G, bucket, m), min_fraction)


def cell_audit_sums(r, w, G, bucket, m):
    """The sums :func:`cell_audit` reads: per cell ``sum w r``, ``sum (w r)^2``
    and ``sum w``, stacked as a Tensor of shape (3, 1 + g, m). Sums over row
    blocks add up (the out-of-core audit)."""
    ones = r.new_ones(len(r), 1)
    H = ones if G is None else torch.cat([ones, G], 1)
    wr = w * r
    return cell_sums(H, bucket, m, torch.stack([wr, wr * wr, w], 1))


def audit_from_sums(sums, min_fraction):
    """:func:`cell_audit`'s statistics from :func:`cell_audit_sums`."""
    S, V, M = sums
    # Row 0 of H is all ones: its cells hold the whole population's weight.
    total = torch.sum(M[0])
    live = (M >= min_fraction * total) & (V > 0)
    if not bool(live.any()):
        return 0.0, 0.0, 0
    z = torch.abs(S[live]) / torch.sqrt(V[live])
    return float(z.max()), float(torch.abs(S[live]).max() / total), int(live.sum())


def quantile_audit_path(r, w, G, level, n_buckets, min_fraction, cells=None):
    """:func:`cell_audit`'s z-score statistic for several scores at once,
    each on the quantile level sets of its own score.

    Row ``k`` gives ``cell_audit(r[k], w, G, bucketize(level[k], edges_k),
    ...)[0]`` with ``edges_k = bucket_edges(level[k], w, "quantile",
    n_buckets)``: the validation audit of a boosting path, one batch of
    rounds instead of one audit per round. Repeated edges are kept (their
    empty buckets are not audited), so every round has ``n_buckets``
    buckets.

    Parameters
    ----------
    r, level : Tensor of shape (R, n)
        Residuals and link-space scores, one row per round.
    w : Tensor of shape (n,)
    G : Tensor of shape (n, g) or None
    n_buckets : int
    min_fraction : float
    cells : (Tensor of shape (n_cells, 1 + g), Tensor of shape (n,)), optional
        The distinct rows of ``[1, G]`` and each row's index: the sums then
        go by (cell, bucket) key and reach the groups through one small
        product.

    Returns
    -------
    Tensor of shape (R,)
    """
    R, n = level.shape
    live = w > 0
    Fs, order = torch.sort(level[:, live], dim=1)
    cw = torch.cumsum(w[live][order], 1)
    if n_buckets > 1 and Fs.shape[1] > 0:
        levels = torch.arange(1, n_buckets, device=w.device, dtype=w.dtype)
        targets = (levels / n_buckets)[None] * cw[:, -1:]
        # The first score whose cumulative weight reaches the level, and
        # the next distinct score (bucket_edges' distinct-value steps; at
        # the largest distinct score, the one before it instead).
        v = torch.gather(Fs, 1, torch.searchsorted(cw, targets.contiguous()))
        above = torch.searchsorted(Fs, v, right=True)
        below = torch.searchsorted(Fs, v, right=False) - 1
        top = above >= Fs.shape[1]
        low = torch.where(top, torch.gather(Fs, 1, below.clamp(min=0)), v)
        last = Fs.shape[1] - 1
        high = torch.where(top, v, torch.gather(Fs, 1, above.clamp(max=last)))
        edges = 0.5 * (low + high)
        # One distinct score: one bucket (no edge is reached).
        single = Fs[:, :1] == Fs[:, -1:]
        edges = torch.where(single, torch.inf, edges)
        bucket = torch.sum(edges[:, None, :] <= level[:, :, None], -1)
    else:
        bucket = torch.zeros((R, n), dtype=torch.long, device=w.device)
    wr = w * r
    values = torch.stack([wr, wr * wr, w.expand(R, n)], 2)
    if cells:
        C, cell = cells
        key = (cell[None] * n_buckets + bucket)[:, :, None].expand(R, n, 3)
        per_cell = values.new_zeros(R, len(C) * n_buckets, 3)
        per_cell = per_cell.scatter_add_(1, key, values)
        per_cell = per_cell.reshape(R, len(C), n_buckets, 3)
        sums = torch.einsum("cj,rcbs->rsjb", C.to(w.dtype), per_cell)
    else:
        ones = w.new_ones(n, 1)
        H = ones if G is None else torch.cat([ones, G], 1)
        B = torch.nn.functional.one_hot(bucket, n_buckets).to(w.dtype)
        prod = (values[:, :, :, None] * B[:, :, None, :]).reshape(R, n, -1)
        sums = (H.T.to(w.dtype) @ prod).reshape(R, H.shape[1], 3, n_buckets)
        sums = sums.permute(0, 2, 1, 3)
    S, V, M = sums.permute(1, 0, 2, 3)
    total = torch.sum(M[:, 0], -1)
    ok = (M >= min_fraction * total[:, None, None]) & (V > 0)
    z = torch.where(ok, torch.abs(S) / torch.sqrt(torch.where(ok, V, 1.0)), 0.0)
    return torch.amax(z.reshape(R, -1), 1)


def unshrink_coefficients(F0, parts, y, w, loss, upper, max_iter=100):
    """Non-negative rescaling of a boosted correction's parts, by Newton steps.

    Minimises ``sum w loss(y, inverse(F0 + parts @ c))`` over ``c`` in the
    box ``[0, upper]``: a 2-parameter generalised linear fit. Each Newton
    step solves the box-constrained quadratic exactly by trying every
    free / at-0 / at-upper pattern of the coordinates (few parameters), and
    is halved until the risk does not rise (the loss is convex in ``c``, so
    the damped iteration cannot diverge).

    Parameters
    ----------
    F0 : Tensor of shape (n,)
        Link-space scores without the correction.
    parts : Tensor of shape (n, k)
        The correction's parts (link space); ``c = 1`` gives the path's score.
    y, w : Tensor of shape (n,)
    loss : loss object of ``_losses``
    upper : float
    max_iter : int, default=100
        Newton steps (one is exact for the squared loss; where the link is
        exponential and the parts are large, the damped steps are short).

    Returns
    -------
    ndarray of shape (k,)
    """
    k = parts.shape[1]
    c = np.ones(k)
    # Parts that vanish on these rows keep their coefficient: nothing
    # measures them.
    live = (torch.sum(w[:, None] * parts**2, 0) > 0).cpu().numpy()
    if not live.any():
        return c
    P = parts[:, live]

    def score(coef):
        return F0 + P @ torch.as_tensor(coef, dtype=P.dtype, device=P.device)

    F = score(c[live])
    risk = None if loss.name == "squared" else loss.risk(y, loss.inverse(F), w)
    for _ in range(max_iter):
        p = loss.inverse(F)
        h = w * loss.hessian(p)
        H = (P.T @ (h[:, None] * P)).cpu().numpy()
        g = (P.T @ (w * loss.gradient(y, p))).cpu().numpy()
        new = _box_quadratic(H, g + H @ c[live], upper)
        if risk is None:
            # Squared loss: the quadratic is the risk, one step is exact.
            c[live] = new
            break
        # Damped Newton: where the link is exponential a full step can
        # overshoot by orders of magnitude, so halve it until the risk does
        # not rise (the box is convex: every trial stays inside it).
        step, t = new - c[live], 1.0
        for _ in range(60):
            trial = new if t == 1.0 else c[live] + t * step
            F_trial = score(trial)
            value = loss.risk(y, loss.inverse(F_trial), w)
            # (a rise of rounding size is no rise: the full step's last
            # digits at the minimum)
            if value <= risk + 1e-12 * abs(risk):
                break
            t *= 0.5
        else:
            break  # no decrease along the Newton direction: at the minimum
        done = np.max(np.abs(trial - c[live])) < 1e-10
        c[live], F, risk = trial, F_trial, value
        if done:
            break
    return c


def _box_quadratic(H, b, upper):
    """argmin over ``0 <= c <= upper`` of ``c'Hc / 2 - b'c`` (small k)."""
    k = len(b)
    scale = max(float(np.trace(H)) / k, 1e-300)
    Hr = H + 1e-12 * scale * np.eye(k)
    best, best_value = np.clip(np.ones(k), 0, upper), np.inf
    for pattern in np.ndindex(*(3,) * k):
        # 0: free, 1: at 0, 2: at upper
        pattern = np.asarray(pattern)
        c = np.where(pattern == 2, upper, 0.0)
        free = pattern == 0
        if free.any():
            rhs = b[free] - Hr[np.ix_(free, ~free)] @ c[~free]
            c[free] = np.linalg.solve(Hr[np.ix_(free, free)], rhs)
            if np.any(c[free] < 0) or np.any(c[free] > upper):
                continue
        value = 0.5 * c @ Hr @ c - b @ c
        if value < best_value:
            best, best_value = c, value
    return best
