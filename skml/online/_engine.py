"""The online engine of :class:`~skml.online.COCOLearner`: losses, steps, algorithms.

Kernels, no sklearn: :class:`OnlineState` plays one round at a time from
the oracle values a round reveals (the loss gradient and the constraint
values and subgradients at the current iterate), so the estimator and the
benchmark's abstract instances (``skml/benchmarks/coco.py``) drive the same
code. The algorithms are those of ``shared/research/coco.md``: NP-OGD
(§1.2, with first-order cuts stored on violated rounds, §1.4), the switch
to Sinha-Vaze (§1.5), and the baselines of §1.6.
"""

import math

import numpy as np

from ._projection import InfeasibleConstraintsError, NestedCuts

ALGORITHMS = (
    "nested_projection",
    "switch",
    "sinha_vaze",
    "latest_only",
    "domain_only",
    "penalty",
)

# --------------------------------------------------------------------- losses
# Each returns the per-row loss and its derivative in the score, and has a
# curvature bound (second derivative in the score; 1 for the non-smooth ones,
# used only to size the first steps).


def _squared(s, y, epsilon):
    r = s - y
    return 0.5 * r * r, r


def _huber(s, y, epsilon):
    r = s - y
    a = np.abs(r)
    small = a <= epsilon
    value = np.where(small, 0.5 * r * r, epsilon * (a - 0.5 * epsilon))
    return value, np.where(small, r, epsilon * np.sign(r))


def _absolute(s, y, epsilon):
    r = s - y
    return np.abs(r), np.sign(r)


def _logistic(s, y, epsilon):
    z = y * s
    # log(1 + exp(-z)) and its derivative -y / (1 + exp(z)), overflow-safe.
    value = np.logaddexp(0.0, -z)
    return value, -y * np.exp(-np.logaddexp(0.0, z))


def _hinge(s, y, epsilon):
    margin = 1.0 - y * s
    return np.maximum(margin, 0.0), np.where(margin > 0, -y, 0.0)


LOSSES = {
    "squared": (_squared, 1.0),
    "huber": (_huber, 1.0),
    "absolute": (_absolute, 1.0),
    "logistic": (_logistic, 0.25),
    "hinge": (_hinge, 1.0),
}


def batch_loss(loss, X, y, w, fit_intercept, sample_weight, epsilon):
    """A round's loss: weighted mean over its rows, value and gradient in ``w``.

    ``w`` stacks the coefficients and, with ``fit_intercept``, the intercept.
    The ``alpha`` term is added by :class:`OnlineState`.

    Returns
    -------
    value : float
    grad : ndarray of shape (len(w),)
    curvature : float
        A bound on the loss's curvature along ``w`` for this round.
    """
    func, kappa = LOSSES[loss]
    d = X.shape[1]
    s = X @ w[:d]
    if fit_intercept:
        s = s + w[d]
    values, dscore = func(s, y, epsilon)
    n = X.shape[0]
    sw = np.ones(n) if sample_weight is None else sample_weight
    value = float(sw @ values) / n
    g = (sw * dscore) / n
    grad = np.empty_like(w)
    grad[:d] = g @ X
    if fit_intercept:
        grad[d] = g.sum()
    sq = np.einsum("ij,ij->i", X, X) + (1.0 if fit_intercept else 0.0)
    curvature = kappa * float(np.max(sw * sq))
    return value, grad, curvature


# ---------------------------------------------------------------- the engine


class OnlineState:
    """The state of one constrained online learner, advanced one round at a time.

    Parameters
    ----------
    dim : int
        Dimension of the iterate.
    algorithm : str
        One of :data:`ALGORITHMS`.
    alpha : float
        Strong convexity added to every round's loss, ``alpha/2 ||w||^2``.
    modulus : float or None
        Strong convexity of the rounds' losses as the step rules and
        Sinha-Vaze see it; None: ``alpha``. (The benchmark's instances pass
        the full gradient of their own strongly convex losses with
        ``alpha=0``.)
    step_size : {"auto", "optimal", "adagrad", "invscaling"} or float
        ``"optimal"``: ``1 / (alpha t + L_t)`` with ``L_t`` the largest
        curvature bound seen (the strongly convex schedule ``1/(alpha t)``
        once ``alpha t`` dominates); ``"adagrad"``: ``D / sqrt(sum ||g||^2)``;
        ``"invscaling"``: ``D / (G sqrt(t))``; a float: constant; ``"auto"``:
        ``"optimal"`` when ``alpha > 0``, else ``"adagrad"``.
    radius : float or None
        Box domain ``[-radius, radius]^dim``; None for none.
    horizon : int or None
        The horizon of Sinha-Vaze; None uses ``max(t, horizon_hint)``.
    penalty_weight : float
        The fixed penalty of ``algorithm="penalty"``.
    tol : float
        Feasibility tolerance of the projection; a constraint value at most
        ``tol`` adds no cut.
    device : torch.device or None
        Where large cut screens run.
    lazy : bool
        Lazy screening of stored cuts.
    store : {"violated", "all"}
        Store a cut for violated constraint values only (the paper's
        guarantees need no more), or for every value revealed, so that the
        model satisfies every (affine) constraint of the stream.
    """

    def __init__(
        self,
        dim,
        algorithm="nested_projection",
        alpha=1e-4,
        step_size="auto",
        radius=None,
        modulus=None,
        horizon=None,
        penalty_weight=1.0,
        tol=1e-9,
        device=None,
        lazy=True,
        store="violated",
    ):
        if algorithm not in ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}"
            )
        self.dim = dim
        self.algorithm = algorithm
        self.alpha = float(alpha)
        self.modulus = float(alpha if modulus is None else modulus)
        if step_size == "auto":
            step_size = "optimal" if self.modulus > 0 else "adagrad"
        if step_size == "optimal" and not self.modulus > 0:
            raise ValueError("step_size='optimal' needs alpha > 0 (it is 1/(alpha t)).")
        bounded = radius is not None and np.isfinite(radius)
        if step_size in ("adagrad", "invscaling") and not bounded:
            raise ValueError(
                f"step_size={step_size!r} scales with the domain's diameter: set "
                "domain_radius (or alpha > 0 for the strongly convex step)."
            )
        if algorithm in ("sinha_vaze", "switch") and not bounded:
            raise ValueError(
                f"algorithm={algorithm!r} (Sinha-Vaze) needs a bounded domain: "
                "set domain_radius."
            )
        self.step_size = step_size
        self.radius = float(radius) if bounded else math.inf
        self.diameter = 2.0 * self.radius * math.sqrt(dim) if bounded else math.inf
        self.horizon = horizon
        self.horizon_hint = 0
        self.penalty_weight = float(penalty_weight)
        self.tol = float(tol)
        self.store = store
        self.w = np.zeros(dim)
        self.t = 0
        self.curvature = 0.0
        self.lipschitz = 0.0
        self.grad_sq = 0.0
        self.movement = 0.0
        self.ccv = 0.0
        self.n_violations = 0
        self.max_residual = 0.0
        bound = np.full(dim, self.radius)
        self.cuts = NestedCuts(dim, -bound, bound, tol=tol, device=device, lazy=lazy)
        # Sinha-Vaze state (also the second phase of "switch").
        self.switched = algorithm == "sinha_vaze"
        self.switch_round = 0 if self.switched else None
        self.queue = 0.0
        self.sv_grad_sq = 0.0
        self.sv_t = 0

    # -- one round -----------------------------------------------------------
    def round(self, loss_grad, curvature, g_values, g_grads):
        """Play one round from what it revealed at the current iterate.

        Parameters
        ----------
        loss_grad : ndarray of shape (dim,)
            Gradient of the round's loss (without the ``alpha`` term).
        curvature : float
            Curvature bound of the round's loss (for ``"optimal"`` steps).
        g_values : ndarray of shape (k,)
            Constraint values ``g_{t,i}(w_t)`` (``<= 0`` is satisfied).
        g_grads : ndarray of shape (k, dim)
            Their subgradients at ``w_t``.

        Returns
        -------
        violation : float
            ``max(max_i g_{t,i}(w_t), 0)``, this round's share of the CCV.

        Raises
        ------
        InfeasibleConstraintsError
            The stored cuts and the domain have no common point; the state is
            left at the iterate before this round.
        """
        w = self.w
        grad = loss_grad + self.alpha * w
        violation = max(float(np.max(g_values)), 0.0) if len(g_values) else 0.0
        self.t += 1
        self.curvature = max(self.curvature, curvature + self.modulus)
        gnorm = math.sqrt(float(grad @ grad))
        self.lipschitz = max(self.lipschitz, gnorm)
        if len(g_values):
            self.lipschitz = max(
                self.lipschitz, float(np.max(np.linalg.norm(g_grads, axis=1)))
            )
        self.grad_sq += gnorm * gnorm
        if violation > 0:
            self.ccv += violation
            self.n_violations += 1

        algorithm = self.algorithm
        if algorithm == "switch" and not self.switched:
            # Nested projection while the CCV stays under sqrt(t) (1 + ln t).
            if self.ccv > math.sqrt(self.t) * (1.0 + math.log(self.t)):
                self.switched = True
                self.switch_round = self.t
        if self.switched:
            w_new = self._sinha_vaze(grad, violation, g_values, g_grads)
            residual = 0.0
        elif algorithm in ("nested_projection", "switch", "latest_only"):
            try:
                w_new, residual = self._project_step(grad, g_values, g_grads)
            except InfeasibleConstraintsError:
                if violation > 0:  # the round did not happen
                    self.ccv -= violation
                    self.n_violations -= 1
                raise
        elif algorithm == "domain_only":
            w_new = self._box(w - self._eta() * grad)
            residual = 0.0
        else:  # penalty: f + lambda * sum_i g_i^+
            hit = g_values > 0
            if np.any(hit):
                grad = grad + self.penalty_weight * g_grads[hit].sum(axis=0)
            w_new = self._box(w - self._eta() * grad)
            residual = 0.0
        if not np.all(np.isfinite(w_new)):
            t = self.t
            self.t -= 1  # the state stays at the last finite model
            if violation > 0:
                self.ccv -= violation
                self.n_violations -= 1
            raise FloatingPointError(f"the iterate diverged at round {t}")
        step = w_new - w
        self.movement += math.sqrt(float(step @ step))
        self.max_residual = max(self.max_residual, residual)
        self.w = w_new
        return violation

    def _eta(self):
        t = self.t
        rule = self.step_size
        if rule == "optimal":
            return 1.0 / (self.modulus * t + self.curvature)
        if rule == "adagrad":
            return self.diameter / math.sqrt(max(self.grad_sq, 1e-300))
        if rule == "invscaling":
            return self.diameter / (max(self.lipschitz, 1e-300) * math.sqrt(t))
        return float(rule)

    def _box(self, w):
        return np.clip(w, -self.radius, self.radius)

    def _project_step(self, grad, g_values, g_grads):
        w = self.w
        cuts = self.cuts
        if self.algorithm == "latest_only":
            # Memoryless: only this round's cuts.
            cuts.in_working[: cuts.n] = False
            cuts.n = 0
            cuts.working = []
        if self.store == "all":
            hit = np.arange(len(g_values))
        else:
            hit = np.flatnonzero(g_values > self.tol)
        n_before = cuts.n
        t = self.t
        for i in hit:
            s = g_grads[i]
            # First-order cut at w_t: g(w_t) + s.(x - w_t) <= 0.
            if not cuts.add(s, float(s @ w) - float(g_values[i])):
                if g_values[i] <= self.tol:
                    continue  # a constant constraint that holds
                self._rollback(n_before)
                raise InfeasibleConstraintsError(
                    f"round {t}: a constraint is violated (value "
                    f"{g_values[i]:.3g}) with a zero subgradient, so no model "
                    "satisfies it"
                )
        y = w - self._eta() * grad
        try:
            w_new, residual = cuts.project(y, w)
        except InfeasibleConstraintsError:
            self._rollback(n_before)
            raise InfeasibleConstraintsError(
                f"round {t}: the constraints seen so far (with the domain) "
                "have no common point; the model is kept at the last round's"
            ) from None
        return w_new, residual

    def _rollback(self, n_before):
        """Forget the cuts of a round that failed (the state stays at w_t)."""
        cuts = self.cuts
        cuts.in_working[n_before : cuts.n] = False
        cuts.n = n_before
        cuts.working = [i for i in cuts.working if i < n_before]
        for i in cuts.working:
            cuts.in_working[i] = True
        self.t -= 1

    def _sinha_vaze(self, grad, violation, g_values, g_grads):
        """Sinha-Vaze Algorithm 1 (§1.6): a Lyapunov surrogate, projection on X."""
        self.sv_t += 1
        G = max(self.lipschitz, 1e-12)
        D = self.diameter
        T = self.horizon if self.horizon is not None else max(self.t, self.horizon_hint)
        T = max(T - (self.switch_round or 0), 1)
        # The subgradient of max(0, g_t) at w_t: the most violated component's.
        g_grad = np.zeros(self.dim)
        if violation > 0:
            g_grad = g_grads[int(np.argmax(g_values))]
        if self.modulus > 0:  # strongly convex: beta = 1, Phi(Q) = Q^2
            V = 8.0 * G * G * math.log(T * math.e) / self.modulus
            self.queue += violation
            surrogate = V * grad + 2.0 * self.queue * g_grad
            eta = 1.0 / (self.sv_t * V * self.modulus)
        else:  # convex: beta = 1/(2GD), V = 1, Phi(Q) = exp(lambda Q) - 1
            beta = 1.0 / (2.0 * G * D)
            lam = 1.0 / (2.0 * math.sqrt(T))
            self.queue += beta * violation
            dphi = lam * math.exp(min(lam * self.queue, 700.0))
            surrogate = beta * grad + dphi * beta * g_grad
            self.sv_grad_sq += float(surrogate @ surrogate)
            eta = math.sqrt(2.0) * D / (2.0 * math.sqrt(max(self.sv_grad_sq, 1e-300)))
        return self._box(self.w - eta * surrogate)


# Per-row loss value and derivative in the score, as Python floats: the
# unconstrained pass below runs one row at a time and numpy's per-call cost
# would dominate. They match LOSSES above (tests/online/test_engine.py).
def _scalar_squared(s, y, eps):
    r = s - y
    return 0.5 * r * r, r


def _scalar_huber(s, y, eps):
    r = s - y
    if abs(r) <= eps:
        return 0.5 * r * r, r
    return eps * (abs(r) - 0.5 * eps), eps * math.copysign(1.0, r)


def _scalar_absolute(s, y, eps):
    r = s - y
    return abs(r), float(r > 0) - float(r < 0)


def _scalar_logistic(s, y, eps):
    z = y * s
    if z > 0:
        e = math.exp(-z)
        return math.log1p(e), -y * e / (1.0 + e)
    e = math.exp(z)
    return -z + math.log1p(e), -y / (1.0 + e)


def _scalar_hinge(s, y, eps):
    margin = 1.0 - y * s
    return (margin, -y) if margin > 0 else (0.0, 0.0)


SCALAR_LOSSES = {
    "squared": _scalar_squared,
    "huber": _scalar_huber,
    "absolute": _scalar_absolute,
    "logistic": _scalar_logistic,
    "hinge": _scalar_hinge,
}


def plain_rounds(state, loss, X, y, fit_intercept, sample_weight, epsilon):
    """Rounds of one row without constraints: projected OGD, row by row.

    The same steps as :meth:`OnlineState.round` with no constraint values
    and no stored cuts (every algorithm but Sinha-Vaze and the switch then
    reduces to a gradient step and the box), with a few numpy calls per row
    instead of a few dozen. The caller checks those conditions.

    Returns
    -------
    losses : ndarray of shape (n,)
        Each round's regularised loss at the model played.

    Raises
    ------
    FloatingPointError
        When the iterate stops being finite; the state keeps the last
        finite model, and the exception's ``losses`` attribute holds the
        losses of the rounds played before.
    """
    func = SCALAR_LOSSES[loss]
    kappa = LOSSES[loss][1]
    n, d = X.shape
    fi = 1.0 if fit_intercept else 0.0
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    row_sq = np.einsum("ij,ij->i", X, X) + fi
    curv = np.maximum.accumulate(
        np.maximum(kappa * sw * row_sq + state.modulus, state.curvature)
    )
    yl, swl, sql, curvl = y.tolist(), sw.tolist(), row_sq.tolist(), curv.tolist()
    w = state.w.copy()
    coef = w[:d]  # a view: updated in place with w
    alpha, modulus = state.alpha, state.modulus
    radius = state.radius
    boxed = math.isfinite(radius)
    rule = state.step_size
    losses = np.empty(n)
    t = state.t
    movement = 0.0
    grad_sq, lipschitz = state.grad_sq, state.lipschitz
    for i in range(n):
        x = X[i]
        s = float(x @ coef) + (float(w[d]) if fit_intercept else 0.0)
        value, ds = func(s, yl[i], epsilon)
        ds *= swl[i]
        sq = float(w @ w)
        losses[i] = value * swl[i] + 0.5 * alpha * sq
        # ||alpha w + ds x~||^2, x~ = (x, 1): the gradient's norm from scalars.
        gn2 = max(alpha * alpha * sq + 2.0 * alpha * ds * s + ds * ds * sql[i], 0.0)
        grad_sq += gn2
        lipschitz = max(lipschitz, math.sqrt(gn2))
        t += 1
        if rule == "optimal":
            eta = 1.0 / (modulus * t + curvl[i])
        elif rule == "adagrad":
            eta = state.diameter / math.sqrt(max(grad_sq, 1e-300))
        elif rule == "invscaling":
            eta = state.diameter / (max(lipschitz, 1e-300) * math.sqrt(t))
        else:
            eta = float(rule)
        old = w.copy()
        w *= 1.0 - eta * alpha
        coef -= (eta * ds) * x
        if fit_intercept:
            w[d] -= eta * ds
        if boxed:
            np.clip(w, -radius, radius, out=w)
            step = w - old
            moved = math.sqrt(float(step @ step))
        else:
            moved = eta * math.sqrt(gn2)
        if not (math.isfinite(moved) and math.isfinite(float(w.sum()))):
            state.w = old
            state.t = t - 1
            state.movement += movement
            state.cuts.odometer += movement
            exc = FloatingPointError(f"the iterate diverged at round {t}")
            exc.losses = losses[:i]
            raise exc
        movement += moved
    state.w = w
    state.t = t
    state.movement += movement
    state.cuts.odometer += movement
    state.grad_sq, state.lipschitz = grad_sq, lipschitz
    if n:
        state.curvature = max(state.curvature, float(curv[-1]))
    return losses
