"""Exact Euclidean projection onto a growing set of half-spaces (and a box).

Kernels for :class:`~skml.online.COCOLearner`: arrays in, arrays out, no
sklearn. The nested feasible set of NP-OGD is stored as first-order cuts
``a_i . w <= c_i`` (``shared/research/coco.md`` §1.4); projecting onto their
intersection with a box domain is a least-distance program, solved exactly
through one non-negative least squares problem (Lawson and Hanson, ch. 23)
on a working set of cuts, the others being screened lazily with a movement
odometer so that most rounds never look at most cuts.
"""

import math

import numpy as np
import torch
from scipy.optimize import nnls


class InfeasibleConstraintsError(ValueError):
    """The stored constraints (with the domain) have no common point."""


def _active_set(y, A, c, h, max_iter=8):
    """Projection by a few primal-dual active-set passes, or None.

    Starts from the rows ``y`` violates (``h > 0``), which in an online run
    are nearly always the active set; gives up (None) after ``max_iter``
    changes or on a singular system, and the caller solves the NNLS form.
    """
    S = h > 0
    lam = np.zeros(len(c))
    for _ in range(max_iter):
        As = A[S]
        try:
            lam_s = np.linalg.solve(As @ As.T, As @ y - c[S])
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(lam_s)):
            return None
        if np.any(lam_s < 0):
            idx = np.flatnonzero(S)
            S[idx[np.argmin(lam_s)]] = False
            continue
        w = y - As.T @ lam_s
        viol = A @ w - c
        viol[S] = -np.inf
        j = int(np.argmax(viol))
        if viol[j] <= 1e-12:
            lam[S] = lam_s
            return w, lam
        S[j] = True
    return None


def ldp_project(y, A, c, tol=1e-10):
    """Euclidean projection of ``y`` onto ``{w : A w <= c}``.

    A few active-set passes from the rows ``y`` violates settle most calls
    (their result is checked against the optimality conditions); otherwise
    the projection is solved as the least-distance program ``min ||z||``
    subject to ``-A z >= A y - c`` through one NNLS problem, then polished
    on its active set so that active constraints hold to rounding.

    Parameters
    ----------
    y : ndarray of shape (d,)
    A : ndarray of shape (m, d)
        Rows with unit norm (the caller normalises cuts).
    c : ndarray of shape (m,)
    tol : float, default=1e-10
        Infeasibility threshold on the NNLS residual (see Notes).

    Returns
    -------
    w : ndarray of shape (d,)
    multipliers : ndarray of shape (m,)
        Non-negative; positive on the active constraints.

    Raises
    ------
    InfeasibleConstraintsError
        When the constraints have no common point.

    Notes
    -----
    With ``E = [-A^T; (A y - c)^T]`` and ``f = e_{d+1}``, the NNLS residual
    ``r = E u - f`` satisfies ``||r||^2 = 1 / (1 + ||z||^2)`` when the
    system is feasible, so a residual below ``tol`` means either no common
    point or one farther than ``1 / tol`` from ``y``.
    """
    m, d = A.shape
    h = A @ y - c
    if m == 0 or np.all(h <= 0):
        return y.copy(), np.zeros(m)
    E = np.empty((d + 1, m))
    E[:d] = -A.T
    E[d] = h
    f = np.zeros(d + 1)
    f[d] = 1.0
    u, _ = nnls(E, f, maxiter=50 * (m + d + 1))
    r = E @ u - f
    if not (np.linalg.norm(r) > tol and r[d] < 0):
        raise InfeasibleConstraintsError("the constraints have no common point")
    z = -r[:d] / r[d]
    # Multipliers of the projection: lambda = u / (-r_d) (KKT of the LDP).
    lam = u / (-r[d])
    active = lam > 0
    w = y + z
    if active.any() and np.max(A[active] @ w - c[active], initial=0.0) > 1e-13:
        # Polish: solve the equality-constrained projection on the active set.
        Aa = A[active]
        try:
            lam_a = np.linalg.solve(Aa @ Aa.T, Aa @ y - c[active])
        except np.linalg.LinAlgError:
            lam_a = None
        if lam_a is not None and np.all(lam_a >= 0) and np.all(np.isfinite(lam_a)):
            w_pol = y - Aa.T @ lam_a
            if np.max(A @ w_pol - c) <= max(np.max(A @ w - c), 0.0) + 1e-12:
                lam = np.zeros(m)
                lam[active] = lam_a
                return w_pol, lam
    return w, lam


def _most_violated(idx, slack, tol, k):
    """The (at most ``k``) cuts of ``idx`` most violated (slack below ``-tol``)."""
    bad = np.flatnonzero(slack < -tol)
    if len(bad) > k:
        bad = bad[np.argpartition(slack[bad], k)[:k]]
    return idx[bad]


class NestedCuts:
    """A growing set of unit cuts ``a_i . w <= c_i`` inside a box, projected exactly.

    Each round, :meth:`project` returns the exact projection of a point onto
    the box intersected with every stored cut. It solves the projection on a
    working set (the cuts active at the previous round and the new ones),
    then checks the other cuts and adds any that the trial point violates,
    until none is. A cut is checked only when the total movement of the
    iterate since its last check (the odometer) could have used up its
    slack, so cuts far from the iterate are skipped (§1.4d).

    Parameters
    ----------
    dim : int
    lower, upper : ndarray of shape (dim,)
        The box domain; ``-inf``/``inf`` for none.
    tol : float
        Feasibility tolerance (absolute, cuts have unit normals).
    device : torch.device or None
        Where large screens (many cuts times ``dim``) run, in torch.
    lazy : bool, default=True
        Screen with the odometer; ``False`` checks every cut every round.
    """

    # Screens at least this large (cuts x dim) run in torch on ``device``.
    TORCH_SCREEN = 1_000_000
    # Cuts entering the working set per solve: the most violated few, since a
    # step usually crosses many faces of which only a dozen end up active.
    ENTER = 64

    def __init__(self, dim, lower, upper, tol=1e-9, device=None, lazy=True):
        self.dim = dim
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.tol = tol
        self.device = device
        self.lazy = lazy
        self.A = np.empty((16, dim))
        self.c = np.empty(16)
        # A cut must be re-checked once the odometer passes its key.
        self.key = np.empty(16)
        self.in_working = np.zeros(16, dtype=bool)
        self.n = 0
        self.odometer = 0.0
        self.working = []  # indices of cuts in the working set
        self.n_checked = 0  # cut checks performed (for the benchmark)

    @property
    def cuts(self):
        """The stored cuts, ``(A, c)`` views of shape ``(n, dim)`` and ``(n,)``."""
        return self.A[: self.n], self.c[: self.n]

    def add(self, a, c):
        """Store the cut ``a . w <= c`` (normalised) in the working set.

        Returns
        -------
        bool
            False where ``a`` is zero (nothing to store; the caller decides
            whether a zero normal with a positive value is infeasible).
        """
        norm = float(np.linalg.norm(a))
        if not norm > 0:
            return False
        if self.n == self.A.shape[0]:
            size = 2 * self.A.shape[0]
            self.A = np.resize(self.A, (size, self.dim))
            self.c = np.resize(self.c, size)
            self.key = np.resize(self.key, size)
            self.in_working = np.resize(self.in_working, size)
        i = self.n
        self.A[i] = a / norm
        self.c[i] = c / norm
        self.key[i] = -np.inf
        self.in_working[i] = True
        self.working.append(i)
        self.n += 1
        return True

    def _slacks(self, idx, w):
        """``c_i - a_i . w`` for the cuts ``idx`` (torch on ``device`` when large)."""
        if len(idx) * self.dim >= self.TORCH_SCREEN and self.device is not None:
            A = torch.as_tensor(self.A[idx], device=self.device)
            wt = torch.as_tensor(w, device=self.device)
            return self.c[idx] - (A @ wt).cpu().numpy()
        return self.c[idx] - self.A[idx] @ w

    def project(self, y, w_now):
        """Exact projection of ``y`` onto the box and all stored cuts.

        Parameters
        ----------
        y : ndarray of shape (dim,)
            The point after the gradient step.
        w_now : ndarray of shape (dim,)
            The current iterate (inside the set before this round's cuts);
            the odometer measures movement from it.

        Returns
        -------
        w : ndarray of shape (dim,)
        residual : float
            Largest violation of a stored cut at ``w`` among those checked
            (0 when all hold).
        """
        n = self.n
        if n == 0:  # only the box: projection is clipping
            w = np.clip(y, self.lower, self.upper)
            diff = w - w_now
            self.odometer += math.sqrt(float(diff @ diff))
            return w, 0.0
        tol = self.tol
        outside = ~self.in_working[:n]
        # Seed the working set with the cuts that y itself violates: most
        # rounds then need one solve.
        cand = self._candidates(y, w_now, outside)
        if len(cand):
            slack = self._slacks(cand, y)
            self._enter(_most_violated(cand, slack, tol, self.ENTER), outside)
        box_hi = y > self.upper + tol
        box_lo = y < self.lower - tol
        for _ in range(10 * (n + 2 * self.dim) + 10):
            work = np.asarray(self.working, dtype=np.intp)
            A, c = self._system(work, box_hi, box_lo)
            w, lam = ldp_project(y, A, c)
            cand = self._candidates(w, w_now, outside)
            slack = self._slacks(cand, w) if len(cand) else np.empty(0)
            bad = slack < -tol
            new_hi = (w > self.upper + tol) & ~box_hi
            new_lo = (w < self.lower - tol) & ~box_lo
            if not (bad.any() or new_hi.any() or new_lo.any()):
                break
            self._enter(_most_violated(cand, slack, tol, self.ENTER), outside)
            box_hi |= new_hi
            box_lo |= new_lo
        else:  # pragma: no cover - the active-set loop adds a cut per pass
            raise RuntimeError("the working-set projection did not settle")
        # Clip rounding at box faces the solve made active.
        w = np.clip(w, self.lower, self.upper)
        self.odometer += float(np.linalg.norm(w - w_now))
        # Keep the active cuts; the rest leave the working set with a fresh key.
        m = len(work)
        active = lam[:m] > 0
        drop = work[~active]
        self.in_working[drop] = False
        self.working = work[active].tolist()
        recheck = np.concatenate([cand, drop])
        residual = 0.0
        if len(recheck):
            slack = self._slacks(recheck, w)
            self.key[recheck] = self.odometer + np.maximum(slack, 0.0)
            residual = float(-slack.min())
        if active.any():
            keep = work[active]
            residual = max(residual, float(np.max(self.A[keep] @ w - self.c[keep])))
        return w, max(residual, 0.0)

    def _candidates(self, w, w_now, outside):
        """Cuts outside the working set that the move to ``w`` could break."""
        n = self.n
        if not self.lazy:
            cand = np.flatnonzero(outside)
        else:
            reach = self.odometer + float(np.linalg.norm(w - w_now)) + self.tol
            cand = np.flatnonzero((self.key[:n] <= reach) & outside)
        self.n_checked += len(cand)
        return cand

    def _enter(self, idx, outside):
        """Move cuts ``idx`` into the working set."""
        if len(idx):
            self.in_working[idx] = True
            outside[idx] = False
            self.working.extend(idx.tolist())

    def _system(self, work, box_hi, box_lo):
        """The working cuts and the active box faces as one ``(A, c)``."""
        if not (box_hi.any() or box_lo.any()):
            return self.A[work], self.c[work]
        eye = np.eye(self.dim)
        A = np.concatenate([self.A[work], eye[box_hi], -eye[box_lo]])
        c = np.concatenate([self.c[work], self.upper[box_hi], -self.lower[box_lo]])
        return A, c

    def max_violation(self, w):
        """Largest violation of any stored cut at ``w`` (full check, for tests)."""
        A, c = self.cuts
        if self.n == 0:
            return 0.0
        return max(float(np.max(A @ w - c)), 0.0)


def project_onto_polytope(y, A, c, radius=None, tol=1e-10, chunk=64):
    """Exact projection of ``y`` onto ``{A w <= c}`` and the box, for many rows.

    A working set grows with the ``chunk`` most violated rows until none is
    violated; used for hindsight comparators over a whole stream's
    constraints.

    Parameters
    ----------
    y : ndarray of shape (d,)
    A : ndarray of shape (m, d)
    c : ndarray of shape (m,)
    radius : float or None, default=None
        Box ``[-radius, radius]^d``.
    tol : float, default=1e-10
    chunk : int, default=64

    Returns
    -------
    w : ndarray of shape (d,)
    """
    d = len(y)
    norms = np.linalg.norm(A, axis=1)
    keep = norms > 0
    if np.any(~keep & (c < 0)):
        raise InfeasibleConstraintsError("a zero row has a negative offset")
    A = A[keep] / norms[keep, None]
    c = c[keep] / norms[keep]
    if radius is not None:
        eye = np.eye(d)
        A = np.concatenate([A, eye, -eye])
        c = np.concatenate([c, np.full(2 * d, float(radius))])
    work = np.zeros(len(c), dtype=bool)
    w = y.copy()
    for _ in range(len(c) + 1):
        slack = c - A @ w
        bad = np.flatnonzero((slack < -tol) & ~work)
        if len(bad) == 0:
            return w
        if len(bad) > chunk:
            bad = bad[np.argpartition(slack[bad], chunk)[:chunk]]
        work[bad] = True
        w, _ = ldp_project(y, A[work], c[work])
    return w  # pragma: no cover - each pass adds a row
