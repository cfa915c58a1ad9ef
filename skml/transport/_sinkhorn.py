"""The one log-domain Sinkhorn solver, with a reference measure.

It solves ``min_P <C, P> + reg * KL(P || R)`` over couplings of ``a`` and ``b``.
``R = a b'`` is entropic OT; any other reference coupling is SROT.
"""

import math
import warnings

import torch
from sklearn.exceptions import ConvergenceWarning

# Below this range of the log-kernel, exp() cannot underflow in float64 and
# the (much faster) matrix-vector form of the iterations is safe.
_SCALING_SAFE_RANGE = 500.0


def sinkhorn_log(
    a,
    b,
    C,
    reg,
    log_R=None,
    *,
    max_iter=1000,
    tol=1e-9,
    epsilon_scaling=True,
    check_every=10,
    warn=True,
):
    """Sinkhorn iterations for ``min <C, P> + reg KL(P || R)`` (torch tensors).

    Parameters
    ----------
    a, b : torch.Tensor of shape (n,), (m,)
        Marginals summing to 1.
    C : torch.Tensor of shape (n, m)
        Cost.
    reg : float
        Regularisation strength (absolute, same unit as C).
    log_R : torch.Tensor of shape (n, m), default=None
        Log of the reference coupling; ``None`` means ``a b'`` (entropic OT).
        ``-inf`` entries are allowed (the plan is zero there).
    max_iter : int, default=1000
        Iterations at the target ``reg`` (the epsilon-scaling warm-up stages
        have their own small budget).
    tol : float, default=1e-9
        Stop when the L1 violation of the row marginals (the columns are exact
        after each update) falls below ``tol``.
    epsilon_scaling : bool, default=True
        Anneal reg from the cost's range down to ``reg`` (warm starts).
    check_every : int, default=10
        Iterations between marginal checks.
    warn : bool, default=True
        Emit a ConvergenceWarning when ``tol`` is not reached.

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
            check_every=check_every,
            warn=warn,
        )
        plan = C.new_zeros(C.shape)
        plan[torch.nonzero(rows)[:, 0][:, None], torch.nonzero(cols)[:, 0][None, :]] = (
            sub["plan"]
        )
        f, g = torch.zeros_like(a), torch.zeros_like(b)
        f[rows], g[cols] = sub["f"], sub["g"]
        return {**sub, "plan": plan, "f": f, "g": g}
    log_a, log_b = torch.log(a), torch.log(b)
    if log_R is None:
        log_R = log_a[:, None] + log_b[None, :]
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    total_iter = 0
    if epsilon_scaling:
        finite = torch.isfinite(log_R)
        span = (
            float((C[finite].max() - C[finite].min()).item()) if finite.any() else 0.0
        )
        eps = max(span, reg)
        while eps > 2 * reg:
            f, g, it, _ = _iterate(
                log_a, log_b, C, eps, log_R, f, g, 50, 1e-3, check_every
            )
            total_iter += it
            eps /= 4.0
    f, g, it, err = _iterate(
        log_a, log_b, C, reg, log_R, f, g, max_iter, tol, check_every
    )
    total_iter += it
    plan = torch.exp(log_R + (f[:, None] + g[None, :] - C) / reg)
    if not torch.all(torch.isfinite(plan)):
        raise ValueError(
            "Sinkhorn produced NaN or infinite values in the transport plan; "
            "increase reg (the regularisation is too small for this cost)."
        )
    converged = err <= tol
    if warn and not converged:
        warnings.warn(
            f"Sinkhorn did not converge in {max_iter} iterations (marginal error "
            f"{err:.2e} > tol={tol:g}); increase max_iter or reg.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return {
        "plan": plan,
        "f": f,
        "g": g,
        "n_iter": total_iter,
        "err": err,
        "converged": converged,
    }


def _iterate(log_a, log_b, C, eps, log_R, f, g, max_iter, tol, check_every):
    """Sinkhorn at one epsilon; potentials f, g in cost units (warm start)."""
    ell = log_R - C / eps  # log-kernel
    finite = torch.isfinite(ell)
    lo = float(ell[finite].min()) if finite.any() else 0.0
    hi = float(ell[finite].max()) if finite.any() else 0.0
    u, v = f / eps, g / eps
    if hi - lo < _SCALING_SAFE_RANGE and bool(finite.all()):
        return _iterate_scaling(
            log_a, log_b, ell, hi, eps, u, v, max_iter, tol, check_every
        )
    err = math.inf
    it = 0
    for it in range(1, max_iter + 1):
        v = log_b - torch.logsumexp(ell + u[:, None], dim=0)
        u = log_a - torch.logsumexp(ell + v[None, :], dim=1)
        if it % check_every == 0 or it == max_iter:
            # after the u update rows are exact; measure the columns
            col = torch.exp(torch.logsumexp(ell + u[:, None] + v[None, :], dim=0))
            err = float(torch.sum(torch.abs(col - torch.exp(log_b))))
            if not math.isfinite(err):
                break
            if err <= tol:
                break
    return u * eps, v * eps, it, err


def _iterate_scaling(log_a, log_b, ell, shift, eps, u, v, max_iter, tol, check_every):
    """Matrix-vector Sinkhorn, with potentials re-absorbed before overflow."""
    # P_ij = exp(ell_ij + u_i + v_j) = x_i K_ij y_j with the warm-start
    # potentials folded into K, so that the scalings x, y start at 1.
    a, b = torch.exp(log_a), torch.exp(log_b)
    cu, cv = u.max(), v.max()
    K = torch.exp(ell - shift + (u - cu)[:, None] + (v - cv)[None, :])
    base_u = u - cu - shift / 2
    base_v = v - cv - shift / 2
    x = torch.ones_like(a)
    y = torch.ones_like(b)
    err = math.inf
    it = 0
    for it in range(1, max_iter + 1):
        y = b / (K.T @ x)
        x = a / (K @ y)
        if it % check_every == 0 or it == max_iter:
            col = y * (K.T @ x)
            err = float(torch.sum(torch.abs(col - b)))
            if not math.isfinite(err) or err <= tol:
                break
            if float(x.abs().max()) > 1e100 or float(y.abs().max()) > 1e100:
                # absorb the scalings before they overflow
                K = K * x[:, None] * y[None, :]
                base_u = base_u + torch.log(x)
                base_v = base_v + torch.log(y)
                x, y = torch.ones_like(x), torch.ones_like(y)
    u = base_u + torch.log(x)
    v = base_v + torch.log(y)
    return u * eps, v * eps, it, err


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
