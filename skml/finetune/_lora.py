"""A native LoRA adapter for ``nn.Linear`` with HuggingFace peft's naming and
scaling, so GRASP needs neither peft nor transformers.

``LoRALinear`` mirrors peft's ``lora.Linear``: the frozen layer is
``base_layer``, the factors are ``lora_A`` (``r x in``, Kaiming-uniform) and
``lora_B`` (``out x r``, zero), and the update is ``scaling * B @ A`` with
``scaling = lora_alpha / r`` (``lora_alpha / sqrt(r)`` for rsLoRA).
``add_lora`` selects layers with peft's ``target_modules`` rules.
"""

import math
import re
from numbers import Integral, Real

import torch
from torch import nn

__all__ = [
    "LoRALinear",
    "add_lora",
    "freeze_except_lora",
    "lora_factors",
    "lora_layers",
]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update, as in peft.

    The output is ``base_layer(x) + scaling * lora_B(lora_A(x))``. ``lora_B``
    starts at zero, so a fresh wrapper computes exactly what the wrapped layer
    computes.

    Parameters
    ----------
    base_layer : torch.nn.Linear
        The layer to adapt. Its parameters are frozen (``requires_grad_(False)``)
        and it is kept, not copied.
    r : int, default=4
        Rank of the update.
    lora_alpha : float or None, default=None
        Numerator of the scaling; None means ``r`` (scaling 1 without rsLoRA).
    use_rslora : bool, default=False
        Use rank-stabilised scaling ``lora_alpha / sqrt(r)`` instead of
        ``lora_alpha / r``.
    generator : torch.Generator or None, default=None
        Random generator for the Kaiming-uniform initialisation of ``lora_A``.
        None draws from torch's global generator, as peft does.

    Attributes
    ----------
    base_layer : torch.nn.Linear
        The frozen pretrained layer.
    lora_A : torch.nn.Linear
        ``in_features -> r`` map without bias (weight ``r x in_features``).
    lora_B : torch.nn.Linear
        ``r -> out_features`` map without bias (weight ``out_features x r``),
        initialised to zero.
    r : int
        Rank of the update.
    lora_alpha : float
        The scaling numerator (``r`` when None was passed).
    use_rslora : bool
        Whether the scaling is rank-stabilised.
    scaling : float
        ``lora_alpha / r`` or ``lora_alpha / sqrt(r)``.

    Examples
    --------
    >>> import torch
    >>> from skml.finetune._lora import LoRALinear
    >>> base = torch.nn.Linear(5, 3)
    >>> layer = LoRALinear(base, r=2, lora_alpha=4)
    >>> layer.scaling
    2.0
    >>> x = torch.randn(7, 5)
    >>> bool(torch.equal(layer(x), base(x)))  # B = 0 at initialisation
    True
    """

    def __init__(
        self, base_layer, r=4, lora_alpha=None, use_rslora=False, generator=None
    ):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(
                f"base_layer must be a torch.nn.Linear, got {type(base_layer).__name__}"
            )
        if isinstance(r, bool) or not isinstance(r, Integral) or r < 1:
            raise ValueError(f"r must be a positive int, got {r!r}")
        if lora_alpha is not None and (
            isinstance(lora_alpha, bool)
            or not isinstance(lora_alpha, Real)
            or not math.isfinite(lora_alpha)
            or lora_alpha <= 0
        ):
            raise ValueError(
                f"lora_alpha must be a positive number or None, got {lora_alpha!r}"
            )
        r = int(r)
        self.base_layer = base_layer
        base_layer.requires_grad_(False)
        self.r = r
        self.lora_alpha = r if lora_alpha is None else lora_alpha
        self.use_rslora = bool(use_rslora)
        self.scaling = float(
            self.lora_alpha / math.sqrt(r) if use_rslora else self.lora_alpha / r
        )

        weight = base_layer.weight
        factory = {"device": weight.device, "dtype": weight.dtype}
        # skip_init: nn.Linear's own reset_parameters would draw from the
        # global generator even when `generator` is given.
        self.lora_A = nn.utils.skip_init(
            nn.Linear, base_layer.in_features, r, bias=False, **factory
        )
        self.lora_B = nn.utils.skip_init(
            nn.Linear, r, base_layer.out_features, bias=False, **factory
        )
        self._init_lora_weights(generator)

    def _init_lora_weights(self, generator):
        weight = self.lora_A.weight
        # Draw on the generator's device and in a dtype uniform_ supports on
        # every device, then copy into the (possibly half-precision) weight.
        device = weight.device if generator is None else generator.device
        dtype = weight.dtype if weight.dtype == torch.float64 else torch.float32
        init = torch.empty(weight.shape, device=device, dtype=dtype)
        # peft's default: the Kaiming-uniform init of nn.Linear, a = sqrt(5).
        nn.init.kaiming_uniform_(init, a=math.sqrt(5), generator=generator)
        with torch.no_grad():
            self.lora_A.weight.copy_(init)
            self.lora_B.weight.zero_()

    @property
    def in_features(self):
        """int: Input width of the wrapped layer."""
        return self.base_layer.in_features

    @property
    def out_features(self):
        """int: Output width of the wrapped layer."""
        return self.base_layer.out_features

    @property
    def weight(self):
        """torch.Tensor: The frozen pretrained weight (not the adapted one).

        Exposed, as peft does, for code that reads ``layer.weight`` (its dtype
        or device) from the layer it wrapped.
        """
        return self.base_layer.weight

    @property
    def bias(self):
        """torch.Tensor or None: The frozen pretrained bias."""
        return self.base_layer.bias

    def forward(self, x):
        """Pretrained output plus the scaled low-rank update.

        Parameters
        ----------
        x : torch.Tensor of shape (..., in_features)
            Inputs.

        Returns
        -------
        torch.Tensor of shape (..., out_features)
            ``base_layer(x) + scaling * lora_B(lora_A(x))``.
        """
        return self.base_layer(x) + self.scaling * self.lora_B(self.lora_A(x))

    def delta_weight(self):
        """The dense update ``scaling * B @ A``, for tests and diagnostics.

        Identification works on the factors (``lora_factors_svd``) and never
        forms this ``out x in`` matrix.

        Returns
        -------
        torch.Tensor of shape (out_features, in_features)
            The change of the effective weight; ``forward(x) - base_layer(x)``
            equals ``x @ delta_weight().T``. It keeps the autograd graph.

        Examples
        --------
        >>> import torch
        >>> from skml.finetune._lora import LoRALinear
        >>> layer = LoRALinear(torch.nn.Linear(4, 3), r=2)
        >>> layer.delta_weight().shape
        torch.Size([3, 4])
        >>> bool((layer.delta_weight() == 0).all())
        True
        """
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    def extra_repr(self):
        return (
            f"r={self.r}, lora_alpha={self.lora_alpha}, "
            f"use_rslora={self.use_rslora}, scaling={self.scaling:g}"
        )


def _candidate_modules(module):
    """``(name, submodule)`` pairs that a target may select, in module order.

    The root and the internals of existing ``LoRALinear`` wrappers (their
    ``base_layer``, ``lora_A``, ``lora_B``) are left out, so wrapping twice and
    wrapping a wrapper's factors cannot happen.
    """
    wrapped = []
    out = []
    for name, sub in module.named_modules():
        if name == "" or any(name.startswith(w + ".") for w in wrapped):
            continue
        if isinstance(sub, LoRALinear):
            wrapped.append(name)
        out.append((name, sub))
    return out


def _inside_mha(module, name):
    # nn.MultiheadAttention reads out_proj.weight directly, bypassing forward.
    parent = module.get_submodule(name.rpartition(".")[0])
    return isinstance(parent, nn.MultiheadAttention)


def _is_adaptable(module, name, sub):
    return isinstance(sub, LoRALinear) or (
        isinstance(sub, nn.Linear) and not _inside_mha(module, name)
    )


def _suffix_match(name, target):
    return name == target or name.endswith("." + target)


def _select(module, target_modules):
    """Names of the Linear layers (or existing wrappers) ``target_modules`` picks."""
    candidates = _candidate_modules(module)
    linear_names = [n for n, s in candidates if _is_adaptable(module, n, s)]
    available = ", ".join(linear_names) if linear_names else "(none)"

    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            selected = linear_names
        else:
            try:
                pattern = re.compile(target_modules)
            except re.error as exc:
                raise ValueError(
                    f"target_modules={target_modules!r} is not a valid regular "
                    f"expression: {exc}"
                ) from exc
            matched = [(n, s) for n, s in candidates if pattern.fullmatch(n)]
            # A regex may also match containers (".*attention.*"); it selects
            # the Linear layers among its matches.
            selected = [n for n, s in matched if _is_adaptable(module, n, s)]
            if not selected and matched:
                name, sub = matched[0]
                raise ValueError(
                    f"target_modules={target_modules!r} matches {name!r}, which "
                    f"is not an nn.Linear (it is a {type(sub).__name__}) and no "
                    f"nn.Linear; the module's Linear layers are: {available}"
                )
    elif isinstance(target_modules, (list, tuple, set, frozenset)):
        targets = list(target_modules)
        if not targets or not all(isinstance(t, str) for t in targets):
            raise ValueError(
                "target_modules must be a non-empty list of str, a regex str or "
                f"'all-linear', got {target_modules!r}"
            )
        selected_set = set()
        for target in targets:
            matched = [(n, s) for n, s in candidates if _suffix_match(n, target)]
            if not matched:
                raise ValueError(
                    f"target_modules entry {target!r} matches no module; the "
                    f"module's Linear layers are: {available}"
                )
            for name, sub in matched:
                if not _is_adaptable(module, name, sub):
                    what = (
                        "the out_proj of an nn.MultiheadAttention, which reads "
                        "its weight directly"
                        if isinstance(sub, nn.Linear)
                        else f"a {type(sub).__name__}"
                    )
                    raise ValueError(
                        f"target_modules entry {target!r} matches {name!r}, "
                        f"which is not an nn.Linear that LoRA can wrap (it is "
                        f"{what}); the module's Linear layers are: {available}"
                    )
                selected_set.add(name)
        selected = [n for n in linear_names if n in selected_set]
    else:
        raise ValueError(
            "target_modules must be a list of str, a regex str or 'all-linear', "
            f"got {target_modules!r}"
        )

    if not selected:
        raise ValueError(
            f"no nn.Linear matches target_modules={target_modules!r}; the "
            f"module's Linear layers are: {available}"
        )
    return selected


def add_lora(
    module, target_modules, r=4, lora_alpha=None, use_rslora=False, generator=None
):
    """Wrap, in place, the selected ``nn.Linear`` layers of ``module`` in LoRA.

    Selection follows peft's ``target_modules``: a list (or tuple) of names
    selects every qualified name ``n`` with ``n == t`` or
    ``n.endswith("." + t)`` for an entry ``t``; a single string is a regular
    expression that must ``re.fullmatch`` the qualified name; ``"all-linear"``
    selects every ``nn.Linear``. Layers that are already ``LoRALinear`` are not
    wrapped twice, and the ``out_proj`` of an ``nn.MultiheadAttention`` (which
    bypasses its forward) is never selected.

    Parameters
    ----------
    module : torch.nn.Module
        The model to adapt; modified in place.
    target_modules : list of str, str or "all-linear"
        Which Linear layers to adapt (see above).
    r : int, default=4
        LoRA rank.
    lora_alpha : float or None, default=None
        Scaling numerator; None means ``r``.
    use_rslora : bool, default=False
        Rank-stabilised scaling ``lora_alpha / sqrt(r)``.
    generator : torch.Generator or None, default=None
        Generator for the ``lora_A`` initialisations, drawn in module order.

    Returns
    -------
    dict of str to LoRALinear
        The selected layers by qualified name, in module order. A selected
        layer that was already a ``LoRALinear`` is returned as it was (its rank
        and scaling unchanged).

    Raises
    ------
    ValueError
        If nothing is selected, a list entry matches no module, or a list entry
        names a module that is not an ``nn.Linear``. The message lists the
        module's Linear layers.

    Examples
    --------
    >>> import torch
    >>> from skml.finetune._lora import add_lora
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    ... )
    >>> list(add_lora(model, ["0"], r=2))
    ['0']
    >>> type(model[0]).__name__, type(model[2]).__name__
    ('LoRALinear', 'Linear')
    >>> list(add_lora(model, "all-linear", r=2))  # "0" is not wrapped twice
    ['0', '2']
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module)}")
    if isinstance(module, (nn.Linear, LoRALinear)):
        raise ValueError(
            "module is itself an nn.Linear and cannot be replaced in place; "
            "wrap it with LoRALinear(module) instead"
        )
    out = {}
    for name in _select(module, target_modules):
        sub = module.get_submodule(name)
        if not isinstance(sub, LoRALinear):
            sub = LoRALinear(
                sub,
                r=r,
                lora_alpha=lora_alpha,
                use_rslora=use_rslora,
                generator=generator,
            )
            parent_name, _, child_name = name.rpartition(".")
            # setattr re-registers the child under the same key, which also
            # covers the digit names of Sequential and ModuleList.
            setattr(module.get_submodule(parent_name), child_name, sub)
        out[name] = sub
    return out


def lora_layers(module):
    """The ``LoRALinear`` wrappers inside ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        A model, typically after ``add_lora``.

    Returns
    -------
    dict of str to LoRALinear
        Wrappers by qualified name, in module order (``""`` if ``module`` is
        itself a ``LoRALinear``).

    Examples
    --------
    >>> import torch
    >>> from skml.finetune._lora import add_lora, lora_layers
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    >>> _ = add_lora(model, "all-linear", r=1)
    >>> list(lora_layers(model))
    ['0', '1']
    """
    return {n: m for n, m in module.named_modules() if isinstance(m, LoRALinear)}


def lora_factors(module, adapter_name=None):
    """The LoRA factors ``(A, B, scaling)`` of every adapted layer.

    Reads skml's :class:`LoRALinear` and HuggingFace peft's LoRA layers alike
    (a ``PeftModel`` or any module holding them), so the directions of an
    adapter trained elsewhere can be identified with
    :func:`~skml.finetune.identify_spurious_directions`, which takes the
    result as ``layers``. peft itself is not needed: its layers are read by
    their attributes (``lora_A`` and ``lora_B`` dicts of Linear maps by
    adapter name, ``scaling`` a dict).

    Parameters
    ----------
    module : torch.nn.Module
    adapter_name : str or None, default=None
        The peft adapter to read; None: the layer's only (or first active)
        adapter. Ignored for :class:`LoRALinear`.

    Returns
    -------
    dict of str to tuple
        Qualified layer name -> ``(A, B, scaling)``: ``A`` of shape
        ``(r, in_features)`` and ``B`` of shape ``(out_features, r)``
        (detached tensors) and the float scaling, so the update is
        ``scaling * B @ A``.

    Examples
    --------
    >>> import torch
    >>> from skml.finetune import add_lora, lora_factors
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    >>> _ = add_lora(model, ["0"], r=2, lora_alpha=4)
    >>> A, B, scaling = lora_factors(model)["0"]
    >>> tuple(A.shape), tuple(B.shape), scaling
    ((2, 3), (3, 2), 2.0)
    """
    out = {}
    for name, layer in module.named_modules():
        if isinstance(layer, LoRALinear):
            out[name] = (
                layer.lora_A.weight.detach(),
                layer.lora_B.weight.detach(),
                float(layer.scaling),
            )
        elif isinstance(getattr(layer, "lora_A", None), nn.ModuleDict) and isinstance(
            getattr(layer, "lora_B", None), nn.ModuleDict
        ):
            names = list(layer.lora_A.keys())
            if not names:
                continue
            if adapter_name is None:
                active = getattr(layer, "active_adapters", None) or names
                key = next((a for a in active if a in layer.lora_A), names[0])
            elif adapter_name in layer.lora_A:
                key = adapter_name
            else:
                raise ValueError(
                    f"layer {name!r} has no adapter {adapter_name!r}; it has "
                    + ", ".join(map(repr, names))
                )
            out[name] = (
                layer.lora_A[key].weight.detach(),
                layer.lora_B[key].weight.detach(),
                float(layer.scaling[key]),
            )
    return out


def freeze_except_lora(module, also=()):
    """Make only the LoRA factors (and the modules in ``also``) trainable.

    Parameters
    ----------
    module : torch.nn.Module
        The model; its ``requires_grad`` flags are changed in place.
    also : str or iterable of str, default=()
        Qualified names of submodules whose parameters stay trainable too, such
        as a new classification head (peft's ``modules_to_save``). Every
        parameter under such a submodule is made trainable, including the base
        layer of a ``LoRALinear`` inside it.

    Returns
    -------
    torch.nn.Module
        ``module``.

    Raises
    ------
    ValueError
        If a name in ``also`` is not a submodule of ``module``.

    Examples
    --------
    >>> import torch
    >>> from skml.finetune._lora import add_lora, freeze_except_lora
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    >>> _ = add_lora(model, ["0"], r=1)
    >>> _ = freeze_except_lora(model, also=["1"])
    >>> [n for n, p in model.named_parameters() if p.requires_grad]
    ['0.lora_A.weight', '0.lora_B.weight', '1.weight', '1.bias']
    """
    if isinstance(also, str):
        also = [also]
    keep = []
    for name in also:
        try:
            keep.append(module.get_submodule(name))
        except AttributeError as exc:
            raise ValueError(
                f"also={name!r} is not a submodule of the module: {exc}"
            ) from exc
    module.requires_grad_(False)
    for layer in lora_layers(module).values():
        layer.lora_A.requires_grad_(True)
        layer.lora_B.requires_grad_(True)
    for sub in keep:
        sub.requires_grad_(True)
    return module
