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


LOSSES = {"squared": _Squared, "poisson": _Poisson, "log_loss": _LogLoss}
