"""Numeric kernels of the nonlinear factor model (tensors in, tensors out).

The model is ``x_ij = f(u_i . v_j + w_j) + noise`` on the observed entries
``(rows[e], cols[e], x[e])``; ``f`` is a monotone link given as a callable
``link(z) -> (f(z), f'(z))`` on tensors. Nothing here validates input or
knows about scikit-learn; :mod:`._nonlinear_factor` holds the estimator.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import lsq_linear

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Entries per chunk: keeps the (entries x knots) temporaries near 100 MB.
_CHUNK = 1 << 19
# Bins of the index for the link's Gram matrix.
_LINK_BINS = 8192


@dataclass
class Observed:
    """The observed entries of a matrix in coordinate form."""

    rows: torch.Tensor
    cols: torch.Tensor
    x: torch.Tensor
    n_rows: int
    n_cols: int

    @classmethod
    def from_dense(cls, X):
        """From a dense tensor with NaN at the missing entries."""
        mask = ~torch.isnan(X)
        rows, cols = mask.nonzero(as_tuple=True)
        return cls(rows, cols, X[rows, cols], X.shape[0], X.shape[1])


# ------------------------------------------------------------------ links


def _pieces(z, knots, bandwidth):
    """Steps, right ramps and left ramps at every knot (the design columns)."""
    t = (z[:, None] - knots[None, :]) / bandwidth
    cdf = 0.5 * torch.erfc(-t / _SQRT2)
    pdf = torch.exp(-0.5 * t * t) * _INV_SQRT2PI
    # ramp(t) = s (t Phi(t) + phi(t)) rises with slope Phi(t): convex;
    # its mirror s (t Phi(-t) - phi(t)) = s t - ramp(t) rises with slope
    # Phi(-t): concave.
    ramp = bandwidth * (t * cdf + pdf)
    return torch.cat([cdf, ramp, bandwidth * t - ramp], dim=1)


def n_link_coef(n_knots):
    """Length of ``coef``: intercept, slope, then steps and two kinds of ramps."""
    return 2 + 3 * n_knots


def monotone_basis(z, knots, bandwidth):
    """Design ``[1, z, steps, right ramps, left ramps]`` of the monotone link."""
    pieces = _pieces(z, knots, bandwidth)
    return torch.cat([torch.ones_like(z)[:, None], z[:, None], pieces], dim=1)


def _chunk(width):
    return max(1, (1 << 23) // max(width, 1))


def monotone_link(z, coef, knots, bandwidth):
    """``f(z) = b + a z + sum_m [beta_m S_m(z) + gamma_m R_m(z) + delta_m L_m(z)]``.

    ``S_m`` is a smooth step ``Phi((z - c_m) / s)``, ``R_m`` a convex ramp
    (slope ``Phi``), ``L_m`` a concave ramp (slope ``Phi(-.)``);
    ``coef = [b, a, beta, gamma, delta]``. With every coefficient after ``b``
    non-negative, ``f' >= a`` everywhere, not only on a grid. Returns
    ``f(z)`` and ``f'(z)``.
    """
    m = len(knots)
    beta, gamma, delta = coef[2 : 2 + m], coef[2 + m : 2 + 2 * m], coef[2 + 2 * m :]
    # With ramp = s (t Phi + phi) and mirror = (z - c) - ramp, one erfc and
    # one exp per entry and knot give both the value and the slope.
    net = gamma - delta
    base = coef[0] - knots @ delta
    lean = coef[1] + delta.sum()
    value = torch.empty_like(z)
    slope = torch.empty_like(z)
    step = _chunk(len(knots))
    for s in range(0, z.shape[0], step):
        part = z[s : s + step]
        t = (part[:, None] - knots[None, :]) / bandwidth
        cdf = 0.5 * torch.erfc(-t / _SQRT2)
        pdf = torch.exp(-0.5 * t * t) * _INV_SQRT2PI
        value[s : s + step] = (
            base + lean * part + cdf @ beta + (bandwidth * (t * cdf + pdf)) @ net
        )
        slope[s : s + step] = lean + pdf @ (beta / bandwidth) + cdf @ net
    return value, slope


def tabulate_link(link, low, high, resolution=None, n_nodes=2049):
    """A fast stand-in for ``link`` on ``[low, high]``: cubic Hermite pieces.

    Evaluating the monotone link costs one ``erfc`` and one ``exp`` per
    entry and knot, and the fit evaluates it several times per iteration
    on every observed entry. Between ``n_nodes`` nodes the Hermite cubic of
    the values and slopes is within ``h^4 / 384`` times the fourth
    derivative of the link; beyond the ends it continues linearly with the
    end slopes, which is exact for the monotone link once ``[low, high]``
    reaches several bandwidths past the outer knots. With ``resolution``
    (the narrowest feature of the link, e.g. its smallest bandwidth), the
    nodes are at most a tenth of it apart (up to 131,073 nodes).
    """
    n_nodes = tabulation_size(low, high, resolution, n_nodes)
    device = link_device(link)
    nodes = torch.linspace(low, high, n_nodes, dtype=torch.float64, device=device)
    values, slopes = link(nodes)
    h = (high - low) / (n_nodes - 1)

    def tabulated(z):
        pos = (z - low) / h
        i = pos.floor().clamp(0, n_nodes - 2).long()
        u = (pos - i).clamp(0.0, 1.0)
        f0, f1, d0, d1 = values[i], values[i + 1], slopes[i], slopes[i + 1]
        u2 = u * u
        u3 = u2 * u
        value = (
            (2 * u3 - 3 * u2 + 1) * f0
            + (u3 - 2 * u2 + u) * h * d0
            + (3 * u2 - 2 * u3) * f1
            + (u3 - u2) * h * d1
        )
        slope = (
            (6 * u2 - 6 * u) * (f0 - f1) / h
            + (3 * u2 - 4 * u + 1) * d0
            + (3 * u2 - 2 * u) * d1
        )
        below, above = z < low, z > high
        value = torch.where(below, values[0] + slopes[0] * (z - low), value)
        value = torch.where(above, values[-1] + slopes[-1] * (z - high), value)
        slope = torch.where(below, slopes[0], torch.where(above, slopes[-1], slope))
        return value, slope

    return tabulated


def tabulation_size(low, high, resolution=None, n_nodes=2049):
    """Nodes :func:`tabulate_link` uses: a tenth of ``resolution`` apart."""
    if resolution is not None and resolution > 0:
        needed = int(math.ceil(10.0 * (high - low) / resolution)) + 1
        n_nodes = min(max(n_nodes, needed), (1 << 17) + 1)
    return n_nodes


def link_device(link):
    """Device of a link callable's tensor parameters (CPU when it has none)."""
    keywords = getattr(link, "keywords", None) or {}
    for value in keywords.values():
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


def identity_link(z):
    """``f(z) = z``."""
    return z, torch.ones_like(z)


def link_knots(z, n_knots, n_tail, bandwidth_scale):
    """Knots and per-knot bandwidths for the index values ``z``.

    ``n_knots`` knots at the quantiles ``(m - 1/2) / M`` of ``z``, where the
    data are, plus ``n_tail`` evenly spaced knots on each side between the
    outer quantile knots and the extremes, so that convex or concave links
    (``exp``, ``z^3``) can keep bending in their tails. Each bandwidth is
    ``bandwidth_scale`` times the local knot spacing, never below the
    central one.
    """
    levels = (torch.arange(n_knots, dtype=z.dtype, device=z.device) + 0.5) / n_knots
    ordered = torch.sort(z).values
    central = ordered[(levels * (len(z) - 1)).round().long()]
    spread = float(ordered[-1] - ordered[0]) or 1.0
    gap = float(torch.diff(central).median()) if n_knots > 1 else spread
    width = max(bandwidth_scale * gap, 1e-3 * spread)
    low, high = float(ordered[0]), float(ordered[-1])
    parts, widths = [central], [torch.full_like(central, width)]
    if n_tail:
        grid = torch.arange(1, n_tail + 1, dtype=z.dtype, device=z.device) / n_tail
        left = float(central[0]) - (float(central[0]) - low) * grid.flip(0)
        right = float(central[-1]) + (high - float(central[-1])) * grid
        parts = [left, central, right]
        widths = [
            torch.full_like(
                left, max(width, bandwidth_scale * (float(central[0]) - low) / n_tail)
            ),
            widths[0],
            torch.full_like(
                right,
                max(width, bandwidth_scale * (high - float(central[-1])) / n_tail),
            ),
        ]
    return torch.cat(parts), torch.cat(widths)


def fit_monotone_link(z, x, n_knots, n_tail, bandwidth_scale, alpha, slope_min):
    """Exact link block: bounded ridge least squares over the observed entries.

    Minimises ``mean((x - B theta)^2) + alpha |theta[1:]|^2`` subject to
    ``a >= slope_min`` and the other weights ``>= 0`` (the "projection" of
    projected BCD), with the knots of :func:`link_knots`.

    Returns
    -------
    coef, knots, bandwidth : tensors on ``z``'s device
    loss : float
        The minimised objective.
    """
    knots, bandwidth = link_knots(z, n_knots, n_tail, bandwidth_scale)
    k = n_link_coef(len(knots))
    # The design depends on an entry only through z: pool the entries into
    # narrow bins of z (bin-mean z, count, sum of x), so the Gram matrix
    # costs O(bins k^2) instead of O(entries k^2). Rows inside a bin differ
    # by at most 1/_LINK_BINS of the index range.
    centers, counts, sums = _pool(z, x, _LINK_BINS)
    B = monotone_basis(centers, knots, bandwidth)
    gram = (B.T * counts) @ B / len(z)
    rhs = B.T @ sums / len(z)
    gram, rhs = gram.cpu().numpy(), rhs.cpu().numpy()
    gram[np.arange(1, k), np.arange(1, k)] += alpha
    sq = float(x.pow(2).mean())
    coef = _bounded_quadratic(gram, rhs, slope_min)
    loss = float(coef @ gram @ coef - 2 * coef @ rhs + sq)
    coef = torch.as_tensor(coef, dtype=z.dtype, device=z.device)
    return coef, knots, bandwidth, loss


def _pool(z, x, n_bins):
    """Bin-mean index, count and sum of ``x`` over ``n_bins`` equal bins of ``z``."""
    low, high = float(z.min()), float(z.max())
    width = (high - low) / n_bins or 1.0
    bins = ((z - low) / width).floor().clamp(0, n_bins - 1).long()
    counts = torch.zeros(n_bins, dtype=z.dtype, device=z.device).index_add_(
        0, bins, torch.ones_like(z)
    )
    zsum = torch.zeros_like(counts).index_add_(0, bins, z)
    xsum = torch.zeros_like(counts).index_add_(0, bins, x)
    keep = counts > 0
    return zsum[keep] / counts[keep], counts[keep], xsum[keep]


def _bounded_quadratic(gram, rhs, slope_min):
    """``argmin t'Gt - 2 r't`` with ``t[0]`` free, ``t[1] >= slope_min``, rest >= 0."""
    k = len(rhs)
    jitter = 1e-12 * np.trace(gram) / k
    L = np.linalg.cholesky(gram + jitter * np.eye(k))
    target = np.linalg.solve(L, rhs)
    lower = np.r_[-np.inf, slope_min, np.zeros(k - 2)]
    upper = np.full(k, np.inf)
    return lsq_linear(L.T, target, bounds=(lower, upper), method="bvls").x


def link_inverse(x, link, low, high, n_steps=60):
    """Invert a non-decreasing link by bisection on ``[low, high]``.

    Values beyond ``f(low)`` or ``f(high)`` map to the ends of the bracket.
    """
    lo = torch.full_like(x, low)
    hi = torch.full_like(x, high)
    for _ in range(n_steps):
        mid = 0.5 * (lo + hi)
        below = link(mid)[0] < x
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    # A NaN compares False everywhere: give it back as NaN, not a bracket end.
    return torch.where(torch.isnan(x), x, 0.5 * (lo + hi))


# ---------------------------------------------------------------- factors


def index(obs, U, V, w):
    """``z_e = u_{rows[e]} . v_{cols[e]} + w_{cols[e]}`` on the observed entries."""
    return (U[obs.rows] * V[obs.cols]).sum(1) + w[obs.cols]


def block_losses(theta, block, feats, offset, x, link, ridge, n_blocks):
    """Per-block ``sum_e (f(z_e) - x_e)^2 + sum_k ridge_k theta_k^2``."""
    z = (theta[block] * feats).sum(1) + offset
    value, slope = link(z)
    resid = value - x
    loss = torch.zeros(n_blocks, dtype=x.dtype, device=x.device)
    loss.index_add_(0, block, resid * resid)
    return loss + (theta * theta * ridge).sum(1), resid, slope


def gauss_newton_step(
    theta, block, feats, offset, x, link, ridge, n_halvings=8, active=None
):
    """One damped Gauss-Newton step per block (row of ``theta``), batched.

    Block ``b`` owns the entries with ``block[e] == b`` and the model
    ``z_e = theta_b . feats_e + offset_e``; every block's problem is
    separable, so each takes its own step length (halved until its loss
    does not increase). Rows outside ``active`` are left unchanged.

    Returns
    -------
    theta : tensor
        The updated parameters.
    loss : tensor
        Each block's loss after the step.
    """
    n_blocks, q = theta.shape
    loss, resid, slope = block_losses(
        theta, block, feats, offset, x, link, ridge, n_blocks
    )
    g = slope[:, None] * feats
    grad = torch.zeros_like(theta).index_add_(0, block, g * resid[:, None])
    grad += ridge * theta
    hess = torch.zeros(n_blocks, q * q, dtype=x.dtype, device=x.device)
    for s in range(0, len(x), _CHUNK):
        part = g[s : s + _CHUNK]
        hess.index_add_(
            0, block[s : s + _CHUNK], (part[:, :, None] * part[:, None, :]).flatten(1)
        )
    hess = hess.view(n_blocks, q, q) + torch.diag_embed(ridge.expand(n_blocks, q))
    # A floor on the diagonal keeps blocks with fewer entries than parameters solvable.
    scale = hess.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-300)
    hess += torch.diag_embed((1e-10 * scale)[:, None].expand(n_blocks, q))
    step = -torch.linalg.solve(hess, grad[:, :, None])[:, :, 0]
    if active is not None:
        step[~active] = 0.0
    length = torch.ones(n_blocks, dtype=x.dtype, device=x.device)
    best, best_loss = theta, loss
    todo = torch.ones(n_blocks, dtype=torch.bool, device=x.device)
    for _ in range(n_halvings):
        trial = theta + length[:, None] * step
        trial_loss = block_losses(
            trial, block, feats, offset, x, link, ridge, n_blocks
        )[0]
        better = todo & (trial_loss <= loss)
        best = torch.where(better[:, None], trial, best)
        best_loss = torch.where(better, trial_loss, best_loss)
        todo &= ~better
        if not bool(todo.any()):
            break
        length = torch.where(todo, 0.5 * length, length)
    return best, best_loss


def gradient_step(theta, block, feats, offset, x, link, ridge):
    """One gradient step on all blocks, Armijo backtracking on the sum.

    The first trial step is ``1 / L`` with ``L = max f'^2 * max_b sum_{e in
    b} |feats_e|^2 + max ridge``, a bound on every block's curvature.
    """
    n_blocks = theta.shape[0]
    loss, resid, slope = block_losses(
        theta, block, feats, offset, x, link, ridge, n_blocks
    )
    energy = torch.zeros(n_blocks, dtype=x.dtype, device=x.device)
    energy.index_add_(0, block, (feats * feats).sum(1))
    lipschitz = float(slope.pow(2).max()) * float(energy.max()) + float(ridge.max())
    grad = torch.zeros_like(theta).index_add_(
        0, block, (slope * resid)[:, None] * feats
    )
    grad += ridge * theta
    total = float(loss.sum())
    step = 1.0 / max(lipschitz, 1e-300)
    sq = float((grad * grad).sum())
    for _ in range(30):
        trial = theta - step * grad
        trial_loss = block_losses(
            trial, block, feats, offset, x, link, ridge, n_blocks
        )[0]
        if float(trial_loss.sum()) <= total - 0.5 * step * sq:
            return trial, trial_loss
        step *= 0.5
    return theta, loss


def clip_row_norms(U, factor):
    """Incoherence projection: row norms at most ``factor * |U|_F / sqrt(n)``."""
    if factor is None:
        return U
    bound = factor * torch.linalg.norm(U) / math.sqrt(U.shape[0])
    norms = torch.linalg.norm(U, dim=1, keepdim=True)
    return U * torch.clamp(bound / norms.clamp_min(1e-300), max=1.0)


def rotate_and_balance(U, V):
    """Prediction-preserving rotation and balance: ``U'U = V'V = diag(sigma)``.

    Columns come out by decreasing strength with a deterministic sign (the
    largest entry of each column of ``U`` positive, as sklearn's
    ``svd_flip``); ``U V'`` is unchanged.
    """
    Qu, Ru = torch.linalg.qr(U)
    Qv, Rv = torch.linalg.qr(V)
    A, sigma, Bt = torch.linalg.svd(Ru @ Rv.T)
    root = sigma.sqrt()
    U, V = Qu @ A * root, Qv @ Bt.T * root
    pick = U.abs().argmax(0)
    signs = torch.sign(U[pick, torch.arange(U.shape[1], device=U.device)])
    signs[signs == 0] = 1.0
    return U * signs, V * signs, sigma


def top_singular(M, rank, generator, n_power=4):
    """Leading ``rank`` singular triplets of a dense matrix (randomised when large)."""
    if min(M.shape) <= max(200, 4 * rank):
        A, s, Bt = torch.linalg.svd(M, full_matrices=False)
        return A[:, :rank], s[:rank], Bt[:rank].T
    k = min(rank + 10, min(M.shape))
    probe = torch.randn(
        M.shape[1], k, dtype=M.dtype, device=M.device, generator=generator
    )
    Q = torch.linalg.qr(M @ probe).Q
    for _ in range(n_power):
        Q = torch.linalg.qr(M @ torch.linalg.qr(M.T @ Q).Q).Q
    A, s, Bt = torch.linalg.svd(Q.T @ M, full_matrices=False)
    return (Q @ A)[:, :rank], s[:rank], Bt[:rank].T


def normal_scores(x):
    """``Phi^-1((rank - 1/2) / k)`` of each value: invariant to any increasing map."""
    ranks = torch.empty_like(x)
    ranks[torch.argsort(x)] = torch.arange(len(x), dtype=x.dtype, device=x.device)
    p = (ranks + 0.5) / len(x)
    return _SQRT2 * torch.special.erfinv(2 * p - 1)


def spectral_start(obs, values, rank, fit_intercept, generator):
    """Rank-``rank`` start from the zero-filled, 1/p-rescaled residual matrix.

    ``values`` are the observed entries on the index scale (the data, their
    link inverse or their normal scores); per-column means become the
    intercepts.
    """
    n, p = obs.n_rows, obs.n_cols
    w = torch.zeros(p, dtype=values.dtype, device=values.device)
    if fit_intercept:
        counts = torch.zeros_like(w).index_add_(0, obs.cols, torch.ones_like(values))
        w.index_add_(0, obs.cols, values)
        w /= counts.clamp_min(1.0)
    M = torch.zeros(n, p, dtype=values.dtype, device=values.device)
    M[obs.rows, obs.cols] = values - w[obs.cols]
    M *= (n * p) / len(values)
    A, s, B = top_singular(M, rank, generator)
    root = s.sqrt()
    return A * root, B * root, w


def predict_dense(U, V, w, link):
    """``f(U V' + w)`` as a dense matrix, computed in row chunks."""
    out = torch.empty(U.shape[0], V.shape[0], dtype=U.dtype, device=U.device)
    step = max(1, _CHUNK // max(V.shape[0], 1))
    for s in range(0, U.shape[0], step):
        z = U[s : s + step] @ V.T + w
        out[s : s + step] = link(z.reshape(-1))[0].view(z.shape)
    return out


def fold_in(obs, V, w, link, ridge, start, max_iter=100, tol=1e-10):
    """Row factors of new rows with loadings, intercepts and link fixed.

    Batched Gauss-Newton from ``start``; a row stops moving once its loss
    changes by less than ``tol`` relatively, so each row's answer does not
    depend on which other rows are in the batch. ``ridge``: a number, or one
    per component (:func:`factor_prior_ridge`).

    Returns
    -------
    U : tensor (n_rows, rank)
    n_iter : int
    """
    U = start.clone()
    feats = V[obs.cols]
    offset = w[obs.cols]
    ridge = torch.as_tensor(ridge, dtype=V.dtype, device=V.device)
    ridge = ridge.expand(V.shape[1]).clone()
    active = torch.ones(obs.n_rows, dtype=torch.bool, device=V.device)
    loss = block_losses(U, obs.rows, feats, offset, obs.x, link, ridge, obs.n_rows)[0]
    n_iter = 0
    while n_iter < max_iter and bool(active.any()):
        U, new = gauss_newton_step(
            U, obs.rows, feats, offset, obs.x, link, ridge, active=active
        )
        active &= (loss - new).abs() > tol * loss.abs().clamp_min(1e-300)
        loss = new
        n_iter += 1
    return U, n_iter


def _component_variance(A):
    """Mean square of each column of ``A``, floored at 1e-12 of the largest.

    A component below the floor is numerically absent; the floor keeps the
    ridges derived from it finite. When every column is zero (one row, whose
    factors centring moves into the intercepts) the floor is one: the index
    has unit spread, and no component is there to shrink.
    """
    s2 = (A * A).mean(0)
    largest = float(s2.max())
    floor = 1e-12 * largest if largest > 0 else 1.0
    return s2.clamp_min(max(floor, torch.finfo(A.dtype).tiny))


def _noise_variance(obs, U, V, w, link, fit_intercept):
    """Residual sum of squares over its degrees of freedom.

    The degrees of freedom are the observed entries minus the factors',
    loadings' and intercepts' parameters, at least one.
    """
    z = index(obs, U, V, w)
    resid = link(z)[0] - obs.x
    n, p, r = obs.n_rows, obs.n_cols, V.shape[1]
    dof = max(len(obs.x) - (n + p) * r - (p if fit_intercept else 0), 1)
    return (resid * resid).sum() / dof


def factor_prior_ridge(obs, U, V, w, link, fit_intercept=True):
    """Ridge per component of a Gaussian prior on new rows' factors.

    The prior is ``u ~ N(0, diag(s2))`` with ``s2_k`` the mean square of the
    fitted factors' column ``k`` and the noise variance ``sigma2`` the
    residual sum of squares over its degrees of freedom (observed entries
    minus the factors', loadings' and intercepts' parameters, at least one),
    so the maximum a posteriori fold-in has ridge ``sigma2 / s2_k``. A row
    with few observed entries then stays near the typical row instead of
    fitting its entries exactly along a weak component, where its missing
    entries would be extrapolated without bound.
    """
    sigma2 = _noise_variance(obs, U, V, w, link, fit_intercept)
    return sigma2 / _component_variance(U)


def fit_prior_ridge(obs, U, V, w, link, fit_intercept=True):
    """Ridge per component on both factor blocks of the fit (empirical Bayes).

    Gaussian priors ``u_i ~ N(0, diag(s2u))`` on the rows' factors and
    ``v_j ~ N(0, diag(s2v))`` on the loadings, with the variances the mean
    squares of the current ``U`` and ``V`` and ``sigma2`` the noise variance
    of :func:`factor_prior_ridge`, give the ridges ``sigma2 n / |U_k|^2`` and
    ``sigma2 p / |V_k|^2``. Minimised over the balance ``U_k c, V_k / c``
    (which leaves the predictions unchanged), their penalty is that of one
    ridge ``sigma2 sqrt(n p) / (|U_k| |V_k|)`` on both blocks, which is what
    this returns: the balanced normalisation then keeps the penalty at its
    minimum. Weak components are shrunk hard, strong ones barely.
    """
    sigma2 = _noise_variance(obs, U, V, w, link, fit_intercept)
    return sigma2 / (_component_variance(U) * _component_variance(V)).sqrt()
