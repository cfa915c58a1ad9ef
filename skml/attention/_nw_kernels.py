"""Tensor kernels of :class:`~skml.attention.NWAttentionRegressor`.

The attention heads, their local polynomial fits, the leave-one-out (LOO)
training loop and the chunked prediction passes. Tensors in, tensors out:
nothing here converts from or to numpy, validates input or knows about
scikit-learn (as ``sklearn.kernel_ridge`` delegates to
``_solve_cholesky_kernel``). Every tensor a kernel creates lives on the
device of its inputs, so the caller only has to put the inputs on one device.

Shapes: ``H`` heads, ``k`` head dimension, ``d`` features, ``q`` queries,
``m`` keys, ``t`` targets.
"""

import math
from dataclasses import dataclass, field

import torch

from ..optim import make_optimizer

# Ridge on the local covariance of the local-linear fit, relative to its trace.
_LOCAL_RIDGE = 1e-3
# Ridge on the local slopes and curvatures: _SLOPE_PRIOR / n_eff^2, with
# n_eff = 1 / sum A^2 the attention's effective number of keys, in the
# kernel's unit width. Negligible where tens of keys carry the attention
# (1/400 at 20), dominant where one or two do: there (a query outside the
# training cloud, a tiny training set) a head falls back towards the
# Nadaraya-Watson average instead of extrapolating its polynomial. Without
# it, a fit on 24 rows of R's mtcars predicted negative fuel consumption;
# 1 / n_eff instead biased smooth targets (development checks on held-out
# real tables and on the benchmark's families).
_SLOPE_PRIOR = 1.0
# Kernel width of the gradient init: h^2 = median squared distance / this.
_OPG_WIDTH = 8.0


def _project(W, X):
    """(H, d_k, d) x (n, d) -> (H, n, d_k)."""
    return torch.einsum("hkd,nd->hnk", W, X)


def _key_cache(Zk):
    """Per-key quantities that every query chunk reuses.

    Computing them once also keeps same-sized temporaries from being
    allocated for every chunk, which fragmented the heap.
    """
    return Zk.transpose(1, 2).contiguous(), (Zk * Zk).sum(-1)[:, None, :]


def _logits(Zq, Zk, kernel, cache=None):
    """Attention logits (H, q, m) of projected queries and keys."""
    ZkT, zk_sq = _key_cache(Zk) if cache is None else cache
    dots = Zq @ ZkT
    if kernel == "gaussian":
        sq = (Zq * Zq).sum(-1)[:, :, None] + zk_sq - 2.0 * dots
        return -0.5 * torch.clamp(sq, min=0.0)
    return dots


def _local_slopes(A, Zk, Yk, mean):
    """Slopes of the attention-weighted least-squares fit of y on z.

    ``A`` (H, q, m) are the weights, ``Zk`` (H, m, k) the keys, ``Yk`` (m, t)
    the values and ``mean = A @ Yk``. Returns the slopes (H, q, k, t) and the
    weighted key means (H, q, k). A ridge relative to the local covariance's
    trace keeps near-singular neighbourhoods stable, and the prior
    ``_SLOPE_PRIOR / n_eff^2`` shrinks the slopes where few keys carry the
    weight.
    """
    H, m, k = Zk.shape
    t = Yk.shape[1]
    mz = A @ Zk
    zz = (Zk[:, :, :, None] * Zk[:, :, None, :]).reshape(H, m, k * k)
    S = (A @ zz).reshape(H, -1, k, k) - mz[..., :, None] * mz[..., None, :]
    zy = (Zk[:, :, :, None] * Yk[None, :, None, :]).reshape(H, m, k * t)
    Szy = (A @ zy).reshape(H, -1, k, t) - mz[..., :, None] * mean[..., None, :]
    trace = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1)
    ridge = _LOCAL_RIDGE * trace / k + _prior(A) + torch.finfo(S.dtype).eps
    eye = torch.eye(k, dtype=S.dtype, device=S.device)
    return torch.linalg.solve(S + ridge[..., None, None] * eye, Szy), mz


def _prior(A):
    """The slope prior's ridge per head and query: ``_SLOPE_PRIOR / n_eff^2``."""
    return _SLOPE_PRIOR * (A * A).sum(-1) ** 2


def _quadratic_features(Z):
    """[1, z, z_i z_j (i <= j)] of (H, n, k) points: (H, n, p)."""
    k = Z.shape[-1]
    i, j = torch.triu_indices(k, k, device=Z.device)
    ones = torch.ones(Z.shape[:-1] + (1,), dtype=Z.dtype, device=Z.device)
    return torch.cat([ones, Z, Z[..., i] * Z[..., j]], dim=-1)


def _shift_to(S, k):
    """The (p, p) maps T with ``P(u - s) = T(s) P(u)`` for the quadratic
    features P of :func:`_quadratic_features`, one per shift ``s`` (..., k)."""
    p = 1 + k + k * (k + 1) // 2
    T = torch.zeros(S.shape[:-1] + (p, p), dtype=S.dtype, device=S.device)
    T = T + torch.eye(p, dtype=S.dtype, device=S.device)
    T[..., 1 : 1 + k, 0] = -S
    i, j = torch.triu_indices(k, k)
    for r, (a, b) in enumerate(zip(i.tolist(), j.tolist())):
        # (u_a - s_a)(u_b - s_b) = u_a u_b - s_b u_a - s_a u_b + s_a s_b
        row = 1 + k + r
        T[..., row, 0] = S[..., a] * S[..., b]
        T[..., row, 1 + a] = T[..., row, 1 + a] - S[..., b]
        T[..., row, 1 + b] = T[..., row, 1 + b] - S[..., a]
    return T


def _local_quadratic(A, Zq, Zk, Yk):
    """Attention-weighted least-squares quadratic in z, evaluated at the query.

    The moments are taken about the keys' mean once for all queries (memory
    O(H m p^2), p = 1 + k + k (k + 1) / 2) and then re-expressed about each
    query, where the fit's constant term is the prediction and its ridge and
    slope prior shrink the other terms towards the local average.
    """
    H, m, k = Zk.shape
    t = Yk.shape[1]
    center = Zk.mean(1, keepdim=True)
    Pk = _quadratic_features(Zk - center)
    p = Pk.shape[-1]
    M = (A @ (Pk[..., :, None] * Pk[..., None, :]).reshape(H, m, p * p)).reshape(
        H, -1, p, p
    )
    b = (A @ (Pk[..., :, None] * Yk[None, :, None, :]).reshape(H, m, p * t)).reshape(
        H, -1, p, t
    )
    # ridge on each non-constant term, relative to its own local second
    # moment about the keys' mean (the terms have different units: z and
    # z_i z_j); then, about the query, the slope prior of the local-linear
    # fit, in the kernel's unit width
    diag = torch.diagonal(M, dim1=-2, dim2=-1).clone()
    diag[..., 0] = 0.0
    M = M + torch.diag_embed(_LOCAL_RIDGE * diag + torch.finfo(M.dtype).eps)
    T = _shift_to(Zq - center, k)
    M = T @ M @ T.transpose(-1, -2)
    prior = _prior(A)[..., None].expand(M.shape[:-1]).clone()
    prior[..., 0] = 0.0
    return torch.linalg.solve(M + torch.diag_embed(prior), T @ b)[..., 0, :]


def _heads(
    Zq, Zk, Yk, log_wk, kernel, degree, self_keys=None, self_shift=None, cache=None
):
    """Per-head predictions (H, q, t) and attention weights (H, q, m).

    ``log_wk`` (m,) are the keys' log weights. ``self_keys[i]`` is query i's
    own key index (-1 if none); its log weight is shifted by
    ``self_shift[i]`` (leave-one-out removes one copy of the row:
    ``log(max(w_i - 1, 0)) - log(w_i)``).
    """
    logits = _logits(Zq, Zk, kernel, cache) + log_wk
    if self_keys is not None:
        rows = torch.nonzero(self_keys >= 0)[:, 0]
        if rows.numel():
            H = Zq.shape[0]
            h_idx = torch.arange(H, device=Zq.device).repeat_interleave(rows.numel())
            r_idx = rows.repeat(H)
            c_idx = self_keys[rows].repeat(H)
            logits = logits.index_put(
                (h_idx, r_idx, c_idx), self_shift[rows].repeat(H), accumulate=True
            )
    A = torch.softmax(logits, dim=-1)
    mean = A @ Yk
    if degree == 0:
        return mean, A
    if degree == 2:
        return _local_quadratic(A, Zq, Zk, Yk), A
    # local linear: the local weighted regression slope, evaluated at the query
    slope, mz = _local_slopes(A, Zk, Yk, mean)
    pred = mean + ((Zq - mz)[..., :, None] * slope).sum(-2)
    return pred, A


def _predict_heads(
    Xq, W, Xk, Yk, log_wk, kernel, degree, chunk, omega=None, self_shift=None
):
    """The heads' predictions for queries Xq, ``chunk`` queries at a time.

    Memory is O(H chunk m) whatever the number of queries.

    Parameters
    ----------
    Xq : tensor of shape (q, d)
    W : tensor of shape (H, k, d)
        The heads' projections.
    Xk, Yk, log_wk : tensors of shape (m, d), (m, t), (m,)
        The keys, their values and log weights.
    kernel : {"gaussian", "dot"}
    degree : {0, 1, 2}
    chunk : int
        Queries per block.
    omega : tensor of shape (H,), default=None
        Head weights; when given, also return the spread: the second moment
        of the mixture of the heads' local distributions about the
        omega-weighted prediction (not clipped at 0).
    self_shift : tensor of shape (q,), default=None
        Leave-one-out: Xq are the keys themselves (q = m) and query i's own
        key gets its log weight shifted by ``self_shift[i]``.

    Returns
    -------
    preds : tensor of shape (H, q, t)
    spread : tensor of shape (q, t) or None
    """
    H, n_q, t = W.shape[0], Xq.shape[0], Yk.shape[1]
    preds = torch.empty((H, n_q, t), dtype=Yk.dtype, device=Yk.device)
    spread = None
    if omega is not None:
        spread = torch.empty((n_q, t), dtype=Yk.dtype, device=Yk.device)
    if self_shift is not None:
        self_keys = torch.arange(n_q, device=Xq.device)
    with torch.no_grad():
        Zk = _project(W, Xk)
        cache = _key_cache(Zk)
        Yk_sq = Yk**2
        for s in range(0, n_q, chunk):
            sl = slice(s, s + chunk)
            pred, A = _heads(
                _project(W, Xq[sl]),
                Zk,
                Yk,
                log_wk,
                kernel,
                degree,
                None if self_shift is None else self_keys[sl],
                None if self_shift is None else self_shift[sl],
                cache,
            )
            preds[:, sl] = pred
            if omega is not None:
                ens = torch.einsum("h,hqt->qt", omega, pred)
                # mixture of the heads' local distributions around ens
                m2 = A @ Yk_sq
                m1 = A @ Yk
                var = m2 - 2 * ens[None] * m1 + ens[None] ** 2
                spread[sl] = torch.einsum("h,hqt->qt", omega, var)
    return preds, spread


def _loo_heads(W, X, Y, log_w, shift, kernel, degree, chunk):
    """Each head's leave-one-out predictions (H, n, t) on the rows X.

    Row i attends to every row, itself with its log weight shifted by
    ``shift[i]`` (``-inf`` for a row of weight 1: plain leave-one-out).
    """
    return _predict_heads(X, W, X, Y, log_w, kernel, degree, chunk, None, shift)[0]


def _effective(V, k, bandwidth):
    """Projections W from the trained parameters V (H, k, d).

    ``bandwidth="learned"``: W = V. Otherwise the rows of each W_h are the
    orthonormalised rows of V_h divided by the bandwidth h (a float, or
    ``k ** 0.25`` for ``"sqrt_dk"``).
    """
    if bandwidth == "learned":
        return V
    h = k**0.25 if bandwidth == "sqrt_dk" else float(bandwidth)
    Q, R = torch.linalg.qr(V.transpose(1, 2))
    # sign-fix the QR so that W is a smooth function of V
    sign = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (Q * sign[:, None, :]).transpose(1, 2) / h


def _loss_terms(W, out, Xq, Yq, wq, Xk, Yk, log_wk, keys_of_q, shift, kernel, degree):
    """Weighted squared error of the calibrated head average on queries Xq."""
    Zq, Zk = _project(W, Xq), _project(W, Xk)
    pred, _ = _heads(Zq, Zk, Yk, log_wk, kernel, degree, keys_of_q, shift)
    ens = out[0] + out[1] * pred.mean(0)
    return (wq * ((ens - Yq) ** 2).mean(1)).sum()


def _penalty(W, diversity_penalty):
    """``diversity_penalty`` times the mean overlap of the heads' subspaces."""
    if diversity_penalty == 0 or W.shape[0] < 2:
        return W.new_zeros(())
    H, k, _ = W.shape
    G = W @ W.transpose(1, 2) + 1e-10 * torch.eye(k, dtype=W.dtype, device=W.device)
    P = W.transpose(1, 2) @ torch.linalg.solve(G, W)  # projectors (H, d, d)
    S = torch.einsum("hij,gji->hg", P, P) / k
    off = S.sum() - torch.diagonal(S).sum()
    return diversity_penalty * off / (H * (H - 1))


def _gradient_outer_product(X, Y, key_weight, query_weight):
    """Average outer product of local-linear gradients (OPG, Xia et al. 2002).

    Its leading eigenvectors span the directions that y depends on: a
    supervised start for the heads' projections.

    Parameters
    ----------
    X, Y : tensors of shape (n, d) and (n, t)
    key_weight : tensor of shape (n,)
        Positive weights of the rows in each local fit.
    query_weight : tensor of shape (n,)
        Weights of the rows' gradients in the average (summing to 1).

    Returns
    -------
    tensor of shape (d, d), on the device of X
    """
    n = X.shape[0]
    sq = torch.cdist(X, X) ** 2
    off = sq[~torch.eye(n, dtype=torch.bool, device=X.device)]
    h2 = float(torch.median(off)) / _OPG_WIDTH if off.numel() else 1.0
    logits = -sq / (2 * max(h2, 1e-12)) + torch.log(key_weight)[None, :]
    logits.fill_diagonal_(-math.inf)
    A = torch.softmax(logits, dim=1)
    slope, _ = _local_slopes(A[None], X[None], Y, (A @ Y)[None])
    slope = slope[0]
    return torch.einsum("i,idt,iet->de", query_weight, slope, slope)


@dataclass
class TrainResult:
    """What :func:`_train` returns.

    Attributes
    ----------
    V : tensor of shape (H, k, d)
        The trained parameters (detached).
    out : tensor of shape (2, t)
        The output layer's intercept (row 0) and scale (row 1).
    curve : list of float
        Training loss after each iteration (epoch).
    n_iter : int
    validation_scores : list of float
        Held-out loss before training and after each iteration (empty
        without a validation set).
    converged : bool
        False when ``max_iter`` iterations ran without meeting ``tol`` or
        the patience of early stopping.
    """

    V: torch.Tensor
    out: torch.Tensor
    curve: list = field(default_factory=list)
    n_iter: int = 0
    validation_scores: list = field(default_factory=list)
    converged: bool = True

    @property
    def diverged(self):
        """Whether training stopped on a non-finite loss."""
        return bool(self.curve) and not math.isfinite(self.curve[-1])


def _train(
    V0,
    X,
    Y,
    w,
    log_wk,
    shift,
    validation=None,
    *,
    kernel,
    degree,
    bandwidth,
    output,
    diversity_penalty,
    optimizer,
    learning_rate,
    batch_size,
    max_iter,
    tol,
    n_iter_no_change,
    chunk,
    seed=None,
    optimizer_kwargs=None,
):
    """Train the projections by minimising the leave-one-out squared error.

    The training rows are both the queries and the keys (each query leaves
    out one copy of itself).

    Parameters
    ----------
    V0 : tensor of shape (H, k, d)
        Initial parameters (not modified).
    X, Y : tensors of shape (n, d) and (n, t)
        Training rows.
    w : tensor of shape (n,)
        Query weights, summing to 1.
    log_wk, shift : tensors of shape (n,)
        Keys' log weights and each row's shift of its own key's log weight.
    validation : tuple of tensors (Xv, Yv, wv) or None, default=None
        Held-out queries (attending to every training row), scored before
        training and after each iteration: stop after ``n_iter_no_change``
        iterations without improvement and return the parameters kept at
        the best score.
    kernel, degree, bandwidth, output, diversity_penalty : settings
        As the estimator's parameters of the same names.
    optimizer : str or torch.optim.Optimizer subclass
        An L-BFGS subclass runs full-batch steps (strong Wolfe line search);
        any other optimizer (:func:`skml.optim.make_optimizer`: a name or a
        class) runs mini-batch epochs with ``lr=learning_rate``; V is the
        ``"matrix"`` block, the output layer the ``"vector"`` one.
    optimizer_kwargs : dict or None, default=None
        Further keyword arguments of the optimizer.
    learning_rate : float
    batch_size : int or None
        Queries per mini-batch step; None means all.
    max_iter : int
    tol : float
        Stop when the relative change of the loss is at most ``tol``.
    n_iter_no_change : int
    chunk : int
        Queries per block of the full-batch and validation losses.
    seed : int or None, default=None
        Seed of the mini-batch order (required by mini-batch optimizers).

    Returns
    -------
    TrainResult
        A non-finite loss ends training at once (``diverged``).
    """
    dev = X.device
    k = V0.shape[1]
    n = X.shape[0]
    self_keys = torch.arange(n, device=dev)
    # a contiguous copy: L-BFGS views the gradient (laid out like V) as flat
    V = V0.detach().clone(memory_format=torch.contiguous_format)
    V.requires_grad_(True)
    # output layer c + s * (head average), per target: MHA's W_O and bias
    out = torch.zeros((2, Y.shape[1]), dtype=V.dtype, device=dev)
    out[1] = 1.0
    params = [V]
    if output == "affine":
        params.append(out.requires_grad_(True))
    curve, scores = [], []
    if max_iter == 0:
        return TrainResult(V0, out.detach(), curve, 0, scores, True)

    def val_loss():
        Xv, Yv, wv = validation
        total = 0.0
        with torch.no_grad():
            W = _effective(V, k, bandwidth)
            for s in range(0, Xv.shape[0], chunk):
                sl = slice(s, s + chunk)
                total += float(
                    _loss_terms(
                        W,
                        out,
                        Xv[sl],
                        Yv[sl],
                        wv[sl],
                        X,
                        Y,
                        log_wk,
                        None,
                        None,
                        kernel,
                        degree,
                    )
                )
        return total

    def full_loss():
        # full batch in query chunks, gradients accumulated: O(chunk x n)
        total = 0.0
        for s in range(0, n, chunk):
            sl = slice(s, s + chunk)
            part = _loss_terms(
                _effective(V, k, bandwidth),
                out,
                X[sl],
                Y[sl],
                w[sl],
                X,
                Y,
                log_wk,
                self_keys[sl],
                shift[sl],
                kernel,
                degree,
            )
            part.backward()
            total += float(part.detach())
        pen = _penalty(_effective(V, k, bandwidth), diversity_penalty)
        if pen.requires_grad:
            pen.backward()
        return total + float(pen.detach())

    if _is_lbfgs(optimizer):
        opt = optimizer(
            params,
            **{
                "max_iter": 1,  # one iteration per step: loss_curve_, tol
                "max_eval": 25,  # (max_eval defaults to 1 then: no line search)
                "line_search_fn": "strong_wolfe",
                "history_size": 20,
                "tolerance_grad": 1e-10,
                "tolerance_change": 0.0,
                **(optimizer_kwargs or {}),
            },
        )

        def closure():
            opt.zero_grad()
            return torch.tensor(full_loss(), dtype=torch.float64)

        def one_iteration():
            return float(opt.step(closure))

    else:
        groups = [{"params": [V], "block": "matrix"}]
        if output == "affine":
            groups.append({"params": [out], "block": "vector"})
        opt = make_optimizer(optimizer, groups, learning_rate, optimizer_kwargs)
        batch = n if batch_size is None else min(batch_size, n)
        # a CPU generator: the same mini-batches on every device
        gen = torch.Generator(device="cpu").manual_seed(seed)

        def one_iteration():
            order = torch.randperm(n, generator=gen).to(dev)
            epoch = 0.0
            for s in range(0, n, batch):
                q = order[s : s + batch]
                opt.zero_grad()
                W = _effective(V, k, bandwidth)
                wq = w[q] / w[q].sum()
                loss = _loss_terms(
                    W, out, X[q], Y[q], wq, X, Y, log_wk, q, shift[q], kernel, degree
                )
                loss = loss + _penalty(W, diversity_penalty)
                loss.backward()
                opt.step()
                epoch += float(loss.detach()) * float(w[q].sum())
            return epoch

    converged = False
    # Snapshots are copies: the optimizer updates V and out in place.
    best = (math.inf, V0, out.detach().clone())
    if validation is not None:
        scores.append(val_loss())
        best = (scores[0], V0, out.detach().clone())
    stall = 0
    prev = None
    for _ in range(max_iter):
        loss = one_iteration()
        curve.append(loss)
        if not math.isfinite(loss):
            break
        if validation is not None:
            scores.append(val_loss())
            if scores[-1] < best[0]:
                best = (scores[-1], V.detach().clone(), out.detach().clone())
                stall = 0
            else:
                stall += 1
            if stall >= n_iter_no_change:
                converged = True
                break
        if prev is not None and abs(prev - loss) <= tol * max(abs(loss), 1e-12):
            converged = True
            break
        prev = loss
    if validation is not None:
        return TrainResult(best[1], best[2], curve, len(curve), scores, converged)
    return TrainResult(V.detach(), out.detach(), curve, len(curve), scores, converged)


def _is_lbfgs(optimizer):
    """Whether an optimizer spec runs the full-batch L-BFGS loop."""
    return isinstance(optimizer, type) and issubclass(optimizer, torch.optim.LBFGS)
