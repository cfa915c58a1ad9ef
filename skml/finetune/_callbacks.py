"""skorch callbacks for GRASP fine-tuning."""

from skorch.callbacks import Callback

from ._projection import (
    SIDES,
    orthonormal,
    project_lora_gradients,
    reproject_lora_parameters,
)


def _lora_layer_names(module):
    # Duck-typed, so any layer with lora_A and lora_B submodules qualifies.
    return [
        name
        for name, sub in module.named_modules()
        if hasattr(sub, "lora_A") and hasattr(sub, "lora_B")
    ]


class GRASPProjection(Callback):
    """Keep LoRA updates of a skorch net out of given directions (GRASP).

    For each named LoRA layer the callback projects the gradients of its
    factors off the layer's directions after the backward pass
    (``on_grad_computed``), and, with ``reproject=True``, projects the
    factors themselves after the optimizer step (``on_batch_end``): Adam's
    element-wise scaling moves the parameters out of the subspace even when
    the gradients are projected. At the start of training the factors are
    projected once, so that ``lora_A`` starts inside the subspace on the
    input side. The frozen base weights, and the forward pass, are left as
    they are: pretrained content along the directions is preserved, only new
    writing (output side) or reading (input side) is blocked. See
    ``shared/research/grasp.md`` §1.3.

    Parameters
    ----------
    directions : dict of str to array-like of shape (k, d)
        Directions per LoRA layer, keyed by the layer's qualified name in
        ``net.module_`` (as in ``named_modules()``); rows need not be
        orthonormal (they are orthonormalised by QR).
    side : {"output", "input", "both"} or dict of str to str, default="output"
        Which factor to constrain: ``"output"`` (``lora_B``, no new writing
        along the directions; ``d`` = out features), ``"input"`` (``lora_A``,
        no new reading of them; ``d`` = in features) or ``"both"`` (a square
        map). A dict gives the side per layer name.
    reproject : bool, default=True
        Re-project the factors after every training step. Needed for
        optimizers that are not linear in the gradient (Adam, AdamW);
        harmless with SGD.

    Attributes
    ----------
    layers_ : dict of str to torch.nn.Module or None
        The resolved LoRA layers (None before training).
    directions_ : dict of str to torch.Tensor or None
        Orthonormal directions per layer, on the layer's device and dtype.
    sides_ : dict of str to str or None
        The side per layer.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skml.finetune import GRASPProjection
    >>> from skml.finetune._projection import projected_component
    >>> class Tiny(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lora_A = nn.Linear(3, 2, bias=False)
    ...         self.lora_B = nn.Linear(2, 3, bias=False)
    ...     def forward(self, x):
    ...         return x + self.lora_B(self.lora_A(x))
    >>> class Net:  # the attributes of a skorch net that the callback uses
    ...     module_ = nn.Sequential(Tiny())
    >>> net = Net()
    >>> cb = GRASPProjection({"0": [[1.0, 1.0, 0.0]]}, side="input").initialize()
    >>> cb.on_train_begin(net)
    >>> projected_component(net.module_[0], cb.directions_["0"], "input") < 1e-7
    True
    """

    def __init__(self, directions, side="output", reproject=True):
        self.directions = directions
        self.side = side
        self.reproject = reproject

    def initialize(self):
        """(Re)set the derived state; called by skorch when the net is
        initialised.

        Returns
        -------
        self : GRASPProjection
        """
        self.layers_ = None
        self.directions_ = None
        self.sides_ = None
        return self

    def _side_of(self, name):
        side = (
            self.side.get(name, "output") if isinstance(self.side, dict) else self.side
        )
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r} for {name!r}.")
        return side

    def _resolve(self, net):
        """Find the layers in ``net.module_`` and put the directions on them."""
        if not isinstance(self.directions, dict):
            raise ValueError(
                "directions must be a dict {LoRA layer name: (k, d) array}, got "
                f"{type(self.directions).__name__}."
            )
        if isinstance(self.side, dict):
            unknown = sorted(set(self.side) - set(self.directions))
            if unknown:
                raise ValueError(f"side names layers without directions: {unknown}.")
        modules = dict(net.module_.named_modules())
        available = _lora_layer_names(net.module_)
        missing = [name for name in self.directions if name not in available]
        if missing:
            raise ValueError(
                f"No LoRA layer named {missing} in net.module_; the LoRA layers "
                f"present are {available}."
            )
        layers, directions, sides = {}, {}, {}
        for name, dirs in self.directions.items():
            layer = modules[name]
            side = self._side_of(name)
            # lora_B on the output side, lora_A otherwise; both share one
            # device and dtype in practice.
            like = layer.lora_B.weight if side == "output" else layer.lora_A.weight
            layers[name] = layer
            directions[name] = orthonormal(dirs, dtype=like.dtype, device=like.device)
            sides[name] = side
        self.layers_, self.directions_, self.sides_ = layers, directions, sides

    def _reproject_all(self):
        for name, layer in self.layers_.items():
            reproject_lora_parameters(layer, self.directions_[name], self.sides_[name])

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """Resolve the layers and project their factors once.

        Parameters
        ----------
        net : skorch.NeuralNet
            The net being trained; its ``module_`` holds the LoRA layers.
        X, y : object, default=None
            Unused, passed by skorch.
        **kwargs : dict
            Unused, passed by skorch.

        Returns
        -------
        None

        Raises
        ------
        ValueError
            If a name in ``directions`` is not a LoRA layer of
            ``net.module_`` (the message lists those present), a side is
            unknown or the directions' width does not match a layer.
        """
        self._resolve(net)
        self._reproject_all()

    def on_grad_computed(
        self, net, named_parameters, batch=None, training=False, **kwargs
    ):
        """Project the LoRA gradients off the directions (training only).

        Parameters
        ----------
        net : skorch.NeuralNet
            The net being trained.
        named_parameters : iterable
            Unused (the layers are found by name); passed by skorch.
        batch : object, default=None
            Unused, passed by skorch.
        training : bool, default=False
            Whether this is a training step; nothing is done otherwise.
        **kwargs : dict
            Unused, passed by skorch.

        Returns
        -------
        None
        """
        if not training:
            return
        if getattr(self, "layers_", None) is None:
            # train_step called outside fit: resolve lazily.
            self._resolve(net)
        for name, layer in self.layers_.items():
            project_lora_gradients(layer, self.directions_[name], self.sides_[name])

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        """Re-project the LoRA factors after the optimizer step.

        Only when ``reproject`` is True and the batch was a training batch.

        Parameters
        ----------
        net : skorch.NeuralNet
            The net being trained.
        batch : object, default=None
            Unused, passed by skorch.
        training : bool, default=False
            Whether the batch was a training batch.
        **kwargs : dict
            Unused (the step's loss and predictions), passed by skorch.

        Returns
        -------
        None
        """
        if not (self.reproject and training):
            return
        if getattr(self, "layers_", None) is None:
            self._resolve(net)
        self._reproject_all()
