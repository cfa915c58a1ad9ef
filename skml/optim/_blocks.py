"""Block labels of a module's parameters, for :class:`BlockOptimizer`."""

import fnmatch

from torch import nn

from ._optimizer import BLOCKS, _check_label, infer_block


def label_blocks(module, overrides=None, head=None):
    """The block label of every trainable parameter of a module.

    Parameters
    ----------
    module : torch.nn.Module
    overrides : dict of str to str, default=None
        ``{pattern: block}``: parameters whose name matches a shell-style
        pattern (:mod:`fnmatch`; the first matching pattern wins) get that
        block, e.g. ``{"*.w_gate.weight": "swiglu_in"}``.
    head : str, default=None
        Name of the submodule that is the softmax head (the final linear
        layer of a classifier or language model): its weight is
        ``"lm_head"``. A regression head is not one: its single output has
        no shift symmetry.

    Returns
    -------
    list of (str, dict)
        ``(name, {"block": label})`` per trainable parameter, in the module's
        order: ``nn.Embedding`` weights are ``"embedding"``, the head's weight
        ``"lm_head"``, other parameters of 2 or more dimensions ``"matrix"``,
        the rest ``"vector"``. The list is skorch's
        ``optimizer__param_groups`` format as it is.

    Examples
    --------
    >>> from torch import nn
    >>> from skml.optim import label_blocks
    >>> model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 3))
    >>> label_blocks(model, head="2")
    [('0.weight', {'block': 'embedding'}), ('2.weight', {'block': 'lm_head'}), \
('2.bias', {'block': 'vector'})]
    """
    overrides = dict(overrides or {})
    for label in overrides.values():
        _check_label(label, BLOCKS, "block")
    modules = dict(module.named_modules())
    if head is not None and head not in modules:
        raise ValueError(f"head {head!r} is not a submodule of the module.")
    kinds = {}
    for name, sub in modules.items():
        prefix = f"{name}." if name else ""
        if isinstance(sub, (nn.Embedding, nn.EmbeddingBag)):
            kinds[prefix + "weight"] = "embedding"
        if head is not None and name == head:
            weight = getattr(sub, "weight", None)
            if weight is None or weight.ndim != 2:
                raise ValueError(f"head {head!r} has no 2-D weight.")
            if weight.shape[0] < 2:
                raise ValueError(
                    f"head {head!r} has one output: a softmax head needs two or "
                    "more (a one-output head has no shift symmetry); leave head=None."
                )
            kinds[prefix + "weight"] = "lm_head"
    labels = []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        block = kinds.get(name, infer_block(param))
        for pattern, label in overrides.items():
            if fnmatch.fnmatchcase(name, pattern):
                block = label
                break
        labels.append((name, {"block": block}))
    return labels


def block_param_groups(module, overrides=None, head=None):
    """Torch parameter groups of a module, one per block label.

    Parameters
    ----------
    module : torch.nn.Module
    overrides, head
        As in :func:`label_blocks`.

    Returns
    -------
    list of dict
        ``{"params": [...], "block": label}`` in order of first appearance,
        ready for :class:`BlockOptimizer`.

    Examples
    --------
    >>> from torch import nn
    >>> from skml.optim import block_param_groups
    >>> groups = block_param_groups(nn.Linear(3, 2))
    >>> [(g["block"], len(g["params"])) for g in groups]
    [('matrix', 1), ('vector', 1)]
    """
    params = dict(module.named_parameters())
    groups = {}
    for name, spec in label_blocks(module, overrides, head):
        groups.setdefault(spec["block"], []).append(params[name])
    return [{"params": p, "block": block} for block, p in groups.items()]
