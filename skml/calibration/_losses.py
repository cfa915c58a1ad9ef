"""Losses of the form D_phi(y, psi(F)): link, residual, Newton weight, risk.

Every update of the booster is a Newton step in link space: the auditor fits
the working response ``(y - p) / h`` with weights ``w * h``, where ``h`` is the
loss's second derivative in link space. For squared error ``h = 1`` and this is
plain residual fitting.
"""

import torch

_EPS = 1e-12


class _Squared:
    name = "squared"
    # the score F is in the target's units
    identity_link = True

    @staticmethod
    def gradient(y, p):
        """Minus the loss's derivative in link space, per unit weight."""
        return y - p

    @staticmethod
    def link(p):
        return p

    @staticmethod
    def inverse(F):
        return F

    @staticmethod
    def hessian(p):
        return torch.ones_like(p)

    @staticmethod
    def risk(y, p, w):
        return float(torch.sum(w * (y - p) ** 2) / torch.sum(w))


class _Poisson:
    name = "poisson"
    identity_link = False
    gradient = _Squared.gradient

    @staticmethod
    def link(p):
        return torch.log(p)

    @staticmethod
    def inverse(F):
        # Bounded exponent: an audit step can never overflow to inf.
        return torch.exp(torch.clamp(F, max=80.0))

    @staticmethod
    def hessian(p):
        return torch.clamp(p, min=1e-8)

    @staticmethod
    def risk(y, p, w):
        # Half Poisson deviance, the Bregman divergence of u log u - u.
        p = torch.clamp(p, min=_EPS)
        ylogy = torch.where(y > 0, y * torch.log(torch.clamp(y, min=_EPS) / p), 0.0)
        return float(2 * torch.sum(w * (ylogy - y + p)) / torch.sum(w))


class _LogLoss:
    name = "log_loss"
    identity_link = False
    gradient = _Squared.gradient

    @staticmethod
    def link(p):
        p = torch.clamp(p, 1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)

    @staticmethod
    def inverse(F):
        return torch.sigmoid(F)

    @staticmethod
    def hessian(p):
        return torch.clamp(p * (1 - p), min=1e-6)

    @staticmethod
    def risk(y, p, w):
        p = torch.clamp(p, 1e-12, 1 - 1e-12)
        loss = -(y * torch.log(p) + (1 - y) * torch.log1p(-p))
        return float(torch.sum(w * loss) / torch.sum(w))


class Pinball:
    """The pinball (quantile) loss at level ``tau``, identity link.

    Not a Bregman divergence: its "residual" is the coverage residual
    ``tau - 1{y < p}`` (BatchGCP/BatchMVP), the Newton weight is 1 and a
    tree auditor's leaf values are refitted as the leaf's weighted
    ``tau``-quantile of ``y - p`` (:func:`leaf_quantiles`).
    """

    name = "quantile"
    identity_link = True

    def __init__(self, tau):
        self.tau = tau

    link = staticmethod(_Squared.link)
    inverse = staticmethod(_Squared.inverse)
    hessian = staticmethod(_Squared.hessian)

    def gradient(self, y, p):
        return self.tau - (y < p).to(p.dtype)

    def risk(self, y, p, w):
        r = y - p
        loss = torch.maximum(self.tau * r, (self.tau - 1) * r)
        return float(torch.sum(w * loss) / torch.sum(w))


def leaf_quantiles(r, w, leaf, n_leaves, tau):
    """Weighted ``tau``-quantile of ``r`` in every leaf (0 for empty leaves).

    Parameters
    ----------
    r, w : Tensor of shape (n,)
    leaf : Tensor of shape (n,)
        Leaf index of every row.
    n_leaves : int
    tau : float

    Returns
    -------
    Tensor of shape (n_leaves,)
    """
    # One sort by (leaf, r): the rows of each leaf are contiguous and sorted.
    order = torch.argsort(r)
    order = order[torch.argsort(leaf[order], stable=True)]
    r, w, leaf = r[order], w[order], leaf[order]
    total = torch.bincount(leaf, w, n_leaves)
    cum = torch.cumsum(w, 0)
    start = torch.cumsum(total, 0) - total
    # Within-leaf cumulative weight; the first row reaching tau * total.
    within = cum - start[leaf]
    reached = within >= tau * total[leaf] - 1e-12 * total[leaf]
    big = torch.iinfo(torch.long).max
    pos = torch.where(reached, torch.arange(len(r), device=r.device), big)
    first = torch.full((n_leaves,), big, dtype=torch.long, device=r.device)
    first = first.scatter_reduce(0, leaf, pos, reduce="amin")
    out = torch.zeros(n_leaves, dtype=r.dtype, device=r.device)
    ok = (first < big) & (total > 0)
    out[ok] = r[first[ok]]
    return out


def score_scale(loss, f_std, y_std):
    """Scale of the standardised score ``u = (F - center) / scale``.

    The spread ``f_std`` of the base score. A constant base has none: with an
    identity link ``F`` is in the target's units, so the spread ``y_std`` of
    the target stands in (the fit then does not depend on those units); a
    log or logit score is unitless and keeps 1.
    """
    if f_std > 1e-12:
        return f_std
    if loss.identity_link and y_std > 1e-12:
        return y_std
    return 1.0


LOSSES = {"squared": _Squared, "poisson": _Poisson, "log_loss": _LogLoss}
