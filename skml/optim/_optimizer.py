"""``BlockOptimizer``: one update rule per weight block, one torch optimizer."""

import math

import torch

from . import _maps

BLOCKS = (
    "matrix",
    "embedding",
    "lm_head",
    "router",
    "swiglu_in",
    "swiglu_out",
    "vector",
)
RULES = (
    "polar",
    "right_spectral",
    "left_spectral",
    "row_norm",
    "col_norm",
    "centered_row_norm",
    "centered_left_spectral",
    "hybrid",
    "hybrid_col",
    "adamw",
)
# The symmetry-compatible rule of each block (Lau and Su 2026, section 1.2 of
# the research note): the update map equivariant under the block's group.
SYMMETRY_RULES = {
    "matrix": "polar",
    "embedding": "row_norm",
    "lm_head": "centered_row_norm",
    "router": "centered_left_spectral",
    "swiglu_in": "row_norm",
    "swiglu_out": "col_norm",
    "vector": "adamw",
}
# Keller Jordan's recipe: polar on hidden matrices, AdamW elsewhere.
MUON_RULES = {
    "matrix": "polar",
    "embedding": "adamw",
    "lm_head": "adamw",
    "router": "adamw",
    "swiglu_in": "polar",
    "swiglu_out": "polar",
    "vector": "adamw",
}
_PRESETS = {"symmetry": SYMMETRY_RULES, "muon": MUON_RULES}
# AdamW's update RMS in practice (Liu et al. 2025, "Muon is scalable"; the
# constant of torch.optim.Muon's adjust_lr_fn="match_rms_adamw").
ADAMW_RMS = 0.2
_CENTERED = ("centered_row_norm", "centered_left_spectral")


def resolve_rules(rules):
    """The block -> rule table of a preset name or a dict of overrides.

    Parameters
    ----------
    rules : {"symmetry", "muon"} or dict
        A preset, or a dict of ``{block: rule}`` laid over the symmetry
        table.

    Returns
    -------
    dict
        A rule for every block.
    """
    if isinstance(rules, str):
        if rules not in _PRESETS:
            raise ValueError(
                f"rules must be 'symmetry', 'muon' or a dict, got {rules!r}."
            )
        return dict(_PRESETS[rules])
    if not isinstance(rules, dict):
        raise TypeError(f"rules must be a str or a dict, got {type(rules).__name__}.")
    table = dict(SYMMETRY_RULES)
    for block, rule in rules.items():
        _check_label(block, BLOCKS, "block")
        _check_label(rule, RULES, "rule")
        table[block] = rule
    return table


def _check_label(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}; expected one of {list(allowed)}.")


def infer_block(param):
    """``"matrix"`` for a parameter of 2 or more dimensions, else ``"vector"``."""
    return "matrix" if param.ndim >= 2 else "vector"


def as_matrices(tensor):
    """The matrix view a map works on: 2-D as is, 3-D as a batch of
    matrices (heads, experts), higher as ``(shape[0], -1)`` (convolution
    kernels, as Muon flattens them)."""
    if tensor.ndim <= 3:
        return tensor
    return tensor.reshape(tensor.shape[0], -1)


def rms_scale(rule, shape):
    """Factor that brings a rule's update to AdamW's RMS (full rank).

    A polar factor of an A x B matrix has RMS ``1 / sqrt(max(A, B))``; unit
    rows of length B have RMS ``1 / sqrt(B)``; unit columns ``1 / sqrt(A)``.
    """
    A, B = shape[-2], shape[-1]
    if rule in ("row_norm", "centered_row_norm"):
        return ADAMW_RMS * math.sqrt(B)
    if rule == "col_norm":
        return ADAMW_RMS * math.sqrt(A)
    return ADAMW_RMS * math.sqrt(max(A, B))


class BlockOptimizer(torch.optim.Optimizer):
    """Symmetry-compatible optimizer: each weight block updated by its rule.

    Every parameter group may carry a ``block`` label (one of ``"matrix"``,
    ``"embedding"``, ``"lm_head"``, ``"router"``, ``"swiglu_in"``,
    ``"swiglu_out"``, ``"vector"``; unlabelled parameters are ``"matrix"``
    with 2 or more dimensions, else ``"vector"``) and a ``rule`` that
    overrides the table. Matrix rules apply their map to the momentum
    (an exponential moving average of the gradients, as in the authors'
    code), 3-D parameters as batches of matrices; the ``"adamw"`` rule is
    AdamW. :func:`label_blocks` and :func:`block_param_groups` label a
    module's parameters.

    Parameters
    ----------
    params : iterable of torch.Tensor or of dict
        Parameters or parameter groups (torch's format; groups may set
        ``block``, ``rule`` and any of the options below).
    lr : float, default=1e-3
        Learning rate in AdamW's units: with ``lr_scale="match_rms_adamw"``
        every rule's update has AdamW's typical RMS (0.2) times ``lr``, so
        a learning rate tuned for AdamW carries over (AdamW's first steps
        are larger, about ``lr`` per weight, so short runs may want a
        larger ``lr``).
    rules : {"symmetry", "muon"} or dict, default="symmetry"
        ``"symmetry"``: polar for matrices, row norm for embeddings, centred
        row norm for softmax heads, centred left-spectral for routers, row
        and column norm for SwiGLU input and output projections, AdamW for
        vectors. The rules are ``"polar"``, ``"right_spectral"``,
        ``"left_spectral"``, ``"row_norm"``, ``"col_norm"``,
        ``"centered_row_norm"``, ``"centered_left_spectral"``, ``"hybrid"``
        (polar of the row norm), ``"hybrid_col"`` (polar of the column norm)
        and ``"adamw"``. ``"muon"``: polar for matrix and SwiGLU blocks, AdamW for the
        rest. A dict overrides entries of the symmetry table.
    momentum : float, default=0.95
        EMA factor of the momentum of the matrix rules.
    nesterov : bool, default=False
        Apply the map to ``(1 - momentum) g + momentum m`` (Muon's Nesterov
        form) instead of ``m``.
    weight_decay : float, default=0.0
        Decoupled: ``p <- p (1 - lr weight_decay)`` before the update.
    lr_scale : {"match_rms_adamw", "none"}, default="match_rms_adamw"
        ``"none"``: the raw maps (unit rows, unit singular values).
    polar_method : {"auto", "svd", "newton_schulz"}, default="auto"
        How ``polar`` and ``hybrid`` compute the polar factor.
    row_threshold : float, default=0.0
        Stale-row threshold of the row and column norms (see
        :func:`skml.optim.row_norm`); 0 is the authors' rule.
    betas : tuple of float, default=(0.9, 0.95)
        AdamW's moment factors for the ``"adamw"`` rule.
    eps : float, default=1e-8
        AdamW's denominator term and the norms' offset.

    Notes
    -----
    The maps and the block table follow the authors' code (see the module
    docstring of :mod:`skml.optim`). Two choices are this implementation's:
    the RMS matching (the authors tune one learning rate per block, from
    7.5e-4 to 1.0), and exact SVD or ``eigh`` inverse square roots, which are
    cheap and deterministic at the sizes skml trains.

    Examples
    --------
    >>> import torch
    >>> from skml.optim import BlockOptimizer, block_param_groups
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    ... )
    >>> opt = BlockOptimizer(block_param_groups(model, head="2"), lr=0.01)
    >>> [(g["block"], opt.rule_of(g, g["params"][0])) for g in opt.param_groups]
    [('embedding', 'row_norm'), ('lm_head', 'centered_row_norm'), ('vector', 'adamw')]
    >>> x, y = torch.randint(0, 10, (16, 2)), torch.randint(0, 3, (16,))
    >>> loss = torch.nn.functional.cross_entropy(model(x), y)
    >>> loss.backward()
    >>> opt.step()
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        *,
        rules="symmetry",
        momentum=0.95,
        nesterov=False,
        weight_decay=0.0,
        lr_scale="match_rms_adamw",
        polar_method="auto",
        row_threshold=0.0,
        betas=(0.9, 0.95),
        eps=1e-8,
    ):
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
        if lr_scale not in ("match_rms_adamw", "none"):
            raise ValueError(
                f"lr_scale must be 'match_rms_adamw' or 'none', got {lr_scale!r}."
            )
        if polar_method not in ("auto", "svd", "newton_schulz"):
            raise ValueError(f"Unknown polar_method {polar_method!r}.")
        if not 0.0 <= row_threshold < 1.0:
            raise ValueError(f"row_threshold must be in [0, 1), got {row_threshold}.")
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}.")
        self.rules = resolve_rules(rules)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "lr_scale": lr_scale,
            "polar_method": polar_method,
            "row_threshold": row_threshold,
            "betas": tuple(betas),
            "eps": eps,
            "block": None,
            "rule": None,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        """Add a group, checking its block, rule and parameter shapes."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["block"] is not None:
            _check_label(group["block"], BLOCKS, "block")
        if group["rule"] is not None:
            _check_label(group["rule"], RULES, "rule")
        for p in group["params"]:
            rule = self.rule_of(group, p)
            if rule != "adamw" and p.ndim < 2:
                raise ValueError(
                    f"rule {rule!r} needs a matrix, but a parameter of shape "
                    f"{tuple(p.shape)} has it; label it 'vector' or use 'adamw'."
                )
            if rule in _CENTERED and as_matrices(p).shape[-2] < 2:
                raise ValueError(
                    f"rule {rule!r} centres the rows, but a parameter of shape "
                    f"{tuple(p.shape)} has one row: its update would be 0 (a "
                    "one-output head has no shift symmetry); label it 'matrix'."
                )

    def rule_of(self, group, param):
        """The rule that updates ``param`` of ``group``."""
        if group["rule"] is not None:
            return group["rule"]
        return self.rules[group["block"] or infer_block(param)]

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient.

        Parameters
        ----------
        closure : callable, default=None
            Re-evaluates the model and returns the loss.

        Returns
        -------
        loss : torch.Tensor or None
            The closure's loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise TypeError("BlockOptimizer does not support sparse gradients.")
                rule = self.rule_of(group, p)
                if group["weight_decay"]:
                    p.mul_(1.0 - group["lr"] * group["weight_decay"])
                if rule == "adamw":
                    self._adamw(p, group)
                else:
                    self._matrix(p, group, rule)
        return loss

    def _adamw(self, p, group):
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        t = float(state["step"])
        g = p.grad
        state["exp_avg"].lerp_(g, 1.0 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denom = (state["exp_avg_sq"] / (1.0 - beta2**t)).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1.0 - beta1**t))

    def _matrix(self, p, group, rule):
        state = self.state[p]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        beta = group["momentum"]
        buf.lerp_(p.grad, 1.0 - beta)
        m = p.grad.lerp(buf, beta) if group["nesterov"] else buf
        M = as_matrices(m)
        U = _apply(rule, M, group)
        scale = 1.0
        if group["lr_scale"] == "match_rms_adamw":
            scale = rms_scale(rule, M.shape)
        p.add_(U.reshape(p.shape), alpha=-group["lr"] * scale)


def _apply(rule, M, group):
    eps, tau = group["eps"], group["row_threshold"]
    if rule == "polar":
        return _maps.polar(M, group["polar_method"])
    if rule in ("hybrid", "hybrid_col"):
        orientation = "col" if rule == "hybrid_col" else "row"
        return _maps.hybrid(
            M, eps, tau, method=group["polar_method"], orientation=orientation
        )
    if rule == "row_norm":
        return _maps.row_norm(M, eps, tau)
    if rule == "col_norm":
        return _maps.col_norm(M, eps, tau)
    if rule == "centered_row_norm":
        return _maps.centered_row_norm(M, eps, tau)
    if rule == "right_spectral":
        return _maps.right_spectral(M)
    if rule == "left_spectral":
        return _maps.left_spectral(M)
    return _maps.centered_left_spectral(M)


# The names an estimator's ``optimizer`` parameter accepts.
OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "muon", "symmetry")
_TORCH = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}


def optimizer_class(spec):
    """The optimizer class and extra keyword arguments an ``optimizer``
    parameter names: a torch optimizer for ``"adam"``, ``"adamw"`` and
    ``"sgd"``, :class:`BlockOptimizer` with its preset for ``"muon"`` and
    ``"symmetry"``, or the given :class:`torch.optim.Optimizer` subclass.

    Parameters
    ----------
    spec : str or type

    Returns
    -------
    cls : type
    extra : dict
        ``{"rules": spec}`` for the presets, else empty.
    """
    if isinstance(spec, str):
        if spec in _PRESETS:
            return BlockOptimizer, {"rules": spec}
        if spec in _TORCH:
            return getattr(torch.optim, _TORCH[spec]), {}
        raise ValueError(
            f"Unknown optimizer {spec!r}; expected one of {list(OPTIMIZER_NAMES)} "
            "or a torch.optim.Optimizer subclass."
        )
    if isinstance(spec, type) and issubclass(spec, torch.optim.Optimizer):
        return spec, {}
    raise TypeError(
        f"optimizer must be a name or a torch.optim.Optimizer subclass, got {spec!r}."
    )


def make_optimizer(spec, groups, lr, optimizer_kwargs=None):
    """The optimizer an estimator's ``optimizer`` parameter names.

    Parameters
    ----------
    spec : str or type
        See :func:`optimizer_class`.
    groups : list of dict
        Parameter groups with a ``block`` label each; optimizers other than
        :class:`BlockOptimizer` get them without it.
    lr : float
    optimizer_kwargs : dict, default=None
        Further keyword arguments of the optimizer (they override the
        preset's ``rules``).

    Returns
    -------
    torch.optim.Optimizer

    Examples
    --------
    >>> import torch
    >>> from skml.optim import make_optimizer
    >>> w = torch.nn.Parameter(torch.zeros(3, 2))
    >>> opt = make_optimizer("symmetry", [{"params": [w], "block": "matrix"}], 0.1)
    >>> type(opt).__name__, opt.rules["matrix"]
    ('BlockOptimizer', 'polar')
    """
    cls, extra = optimizer_class(spec)
    kwargs = {**extra, **(optimizer_kwargs or {})}
    if not issubclass(cls, BlockOptimizer):
        groups = [{k: v for k, v in g.items() if k != "block"} for g in groups]
    return cls(groups, lr=lr, **kwargs)
