"""A persona-drift "model organism" with a known spurious direction.

The toy of the GRASP research note (``shared/research/grasp.md`` §3.4, §5.1):
a frozen pretrained representation ``h`` with a persona direction ``v*`` that
frozen task and probe heads read, and a fine-tuning task whose labels look as
if the persona were shifted by ``delta``. A fine-tune that learns the task by
shifting ``h`` along ``v*`` (the shortcut) drifts the persona on an unrelated
probe domain; the metrics of :func:`persona_metrics` measure that drift.
"""

from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import log_softmax
from sklearn.utils import Bunch, check_random_state
from torch import nn

# The two configurations of the benchmark protocol (grasp.md §5.1).
CONFIGS = {
    "A": {"tau": 1.0, "delta": 3.0, "gs": 1.0, "ts": 1.0},
    "B": {"tau": 1.0, "delta": 2.0, "gs": 0.7, "ts": 3.0},
}

# Width of the task-feature subspace Q_z (the latent z is 8-dimensional).
N_TASK_FEATURES = 8


class PersonaToyNet(nn.Module):
    """The pretrained model of :func:`make_persona_drift`: a residual map and a
    frozen linear head.

    The input is the pretrained representation ``h`` itself. The adapted
    residual map starts at zero, so the pretrained model is the identity
    ``h -> h`` followed by the frozen task head. The representation site is
    ``h' = h + residual(h)``: the output of ``residual`` added to the input.
    A LoRA adapter on ``residual`` writes into (and reads from) that site.

    Parameters
    ----------
    task_head : array-like of shape (n_classes, n_hidden)
        The frozen task head ``R_t``; copied (as float32) into ``head``.

    Attributes
    ----------
    residual : torch.nn.Linear
        The adapted residual map, ``n_hidden -> n_hidden`` without bias, with
        zero weights at construction.
    head : torch.nn.Linear
        The task head, ``n_hidden -> n_classes`` without bias, weight
        ``task_head``, frozen (``requires_grad`` is False).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skml.datasets import PersonaToyNet
    >>> net = PersonaToyNet(np.eye(3, 5))
    >>> x = torch.ones(2, 5)
    >>> net(x).shape, bool(torch.equal(net.representation(x), x))
    (torch.Size([2, 3]), True)
    """

    def __init__(self, task_head):
        super().__init__()
        weight = torch.as_tensor(np.asarray(task_head), dtype=torch.float32)
        if weight.ndim != 2:
            raise ValueError(
                f"task_head must be 2-D (n_classes, n_hidden), got {weight.ndim}-D."
            )
        n_classes, n_hidden = weight.shape
        # skip_init: the weights are overwritten, so do not draw from (and
        # advance) torch's global generator.
        self.residual = nn.utils.skip_init(nn.Linear, n_hidden, n_hidden, bias=False)
        self.head = nn.utils.skip_init(nn.Linear, n_hidden, n_classes, bias=False)
        with torch.no_grad():
            self.residual.weight.zero_()
            self.head.weight.copy_(weight)
        self.head.weight.requires_grad_(False)
        # The representation site, named so hooks (ablation, steering) can
        # reach h' as a module output.
        self.stream = nn.Identity()

    def representation(self, x):
        """The adapted representation ``h' = x + residual(x)``.

        Parameters
        ----------
        x : torch.Tensor of shape (n_samples, n_hidden)
            Pretrained representations ``h``.

        Returns
        -------
        torch.Tensor of shape (n_samples, n_hidden)
        """
        return self.stream(x + self.residual(x))

    def forward(self, x):
        """Task logits ``head(representation(x))``.

        Parameters
        ----------
        x : torch.Tensor of shape (n_samples, n_hidden)
            Pretrained representations ``h``.

        Returns
        -------
        torch.Tensor of shape (n_samples, n_classes)
        """
        return self.head(self.representation(x))


def _positive_int(name, value, minimum=1):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _nonnegative(name, value):
    if (
        not isinstance(value, Real)
        or isinstance(value, bool)
        or not np.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def _resolve_config(config):
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(
                f"Unknown config {config!r}; use 'A', 'B' or a dict with the "
                "keys tau, delta, gs, ts."
            )
        return dict(CONFIGS[config])
    if isinstance(config, dict):
        keys = set(CONFIGS["A"])
        if set(config) != keys:
            raise ValueError(
                f"A config dict needs exactly the keys {sorted(keys)}, got "
                f"{sorted(config)}."
            )
        resolved = {}
        for key in ("tau", "delta", "gs", "ts"):
            value = config[key]
            if not isinstance(value, Real) or isinstance(value, bool):
                raise ValueError(f"config[{key!r}] must be a number, got {value!r}.")
            resolved[key] = float(value)
        return resolved
    raise ValueError(f"config must be 'A', 'B' or a dict, got {type(config).__name__}.")


def make_persona_drift(
    n_finetune=3000,
    n_probe=1000,
    n_reference=1000,
    n_test=1000,
    *,
    config="A",
    sft=0.0,
    n_hidden=48,
    n_classes=8,
    noise=0.05,
    random_state=None,
):
    """A persona-drift "model organism" with a known spurious direction ``v*``.

    A random orthonormal basis of ``R^n_hidden`` gives disjoint directions:
    a task-feature subspace ``Q_z`` (8 dims), the persona ``v*``, an
    always-on direction ``c``, a context direction ``e_ctx``, a task-output
    subspace ``O_t`` and a probe-output subspace ``O_p`` (``n_classes`` dims
    each). The pretrained representation is

    ``h = 0.7 Q_z z + s v* + c + ctx e_ctx + noise * N(0, I)``

    and the frozen heads are ``R_t = ts M_t O_t' + gamma_t v*'`` and
    ``R_p = ts M_p O_p' + gamma_p v*'`` with ``M ~ N(0, 1/K)`` entrywise and
    ``gamma ~ gs * N(0, 1)``: both heads read the persona (pretrained content
    along ``v*``).

    - Fine-tune domain: ``ctx = 1``, ``z ~ N(0, I)``, ``s = sft * N(0, 1)``
      and ``y ~ softmax(tau C z + (s + delta) gamma_t)`` with ``C`` a fixed
      random ``(K, 8)`` N(0, 1) matrix (the new task). The labels look as if
      the persona were shifted by ``delta``: shifting ``h`` along ``v*`` is a
      shortcut to fit them.
    - Probe domain ("unrelated questions"): ``ctx = 0``, ``z ~ N(0, I)``,
      ``s ~ N(0, 1)``.

    The inputs ``X`` are the pretrained representations ``h``; the pretrained
    model, :class:`PersonaToyNet`, is the identity map followed by ``R_t``.
    Labels are drawn by the Gumbel-max trick with one Gumbel draw per row
    shared by ``y`` and ``y_clean``, so the two differ only through ``delta``.
    The basis and heads, and each data split, come from separate streams
    seeded from ``random_state``: changing one split's size leaves the model
    and the other splits unchanged.

    Parameters
    ----------
    n_finetune : int, default=3000
        Number of labelled fine-tune samples.
    n_probe : int, default=1000
        Number of probe-domain samples (with their persona ``s``).
    n_reference : int, default=1000
        Number of unlabelled probe-domain reference inputs, drawn
        independently of the probe set.
    n_test : int, default=1000
        Number of held-out labelled fine-tune-domain samples.
    config : {"A", "B"} or dict, default="A"
        ``"A"``: tau=1, delta=3, gs=1, ts=1; ``"B"``: tau=1, delta=2, gs=0.7,
        ts=3; or a dict with exactly the keys ``tau`` (task strength),
        ``delta`` (persona shift of the labels), ``gs`` (scale of the heads'
        persona weights) and ``ts`` (scale of the heads' output subspaces).
    sft : float, default=0.0
        Standard deviation of the persona ``s`` in the fine-tune domain; with
        ``sft > 0`` the fine-tune inputs vary along ``v*`` and the task uses
        that pretrained content.
    n_hidden : int, default=48
        Width ``D`` of the representation; at least ``11 + 2 * n_classes``.
    n_classes : int, default=8
        Number of classes ``K`` (and width of ``O_t`` and ``O_p``).
    noise : float, default=0.05
        Standard deviation of the isotropic noise in ``h``.
    random_state : int, RandomState instance or None, default=None
        Seeds the basis, the heads, the task matrix and every split.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With the keys

        - ``module``: a fresh :class:`PersonaToyNet`, the pretrained model;
        - ``X`` (n_finetune, D) float32 and ``y`` (n_finetune,) int64: the
          fine-tune data;
        - ``y_clean`` (n_finetune,) int64: the same inputs labelled with
          ``delta = 0`` (for the clean-data ERM oracle);
        - ``X_test`` (n_test, D) float32, ``y_test`` (n_test,) int64;
        - ``X_probe`` (n_probe, D) float32 and ``s_probe`` (n_probe,)
          float64: probe inputs and their persona;
        - ``X_reference`` (n_reference, D) float32;
        - ``true_direction`` (D,) float64: the unit vector ``v*``;
        - ``probe_head`` (K, D) float64: ``R_p``;
        - ``task_head`` (K, D) float64: ``R_t``;
        - ``config``: dict with the keys tau, delta, gs, ts, sft and noise.

    Raises
    ------
    ValueError
        If a size is not a positive integer, ``n_classes < 2``, ``n_hidden``
        is too small for the disjoint directions, ``sft`` or ``noise`` is
        negative, or ``config`` is unknown or malformed.

    See Also
    --------
    persona_metrics : Drift, probe KL, persona R^2 and task metrics.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skml.datasets import make_persona_drift
    >>> d = make_persona_drift(200, 100, 100, 100, random_state=0)
    >>> d.X.shape, d.X.dtype, d.y.dtype
    ((200, 48), dtype('float32'), dtype('int64'))
    >>> round(float(np.linalg.norm(d.true_direction)), 6)
    1.0
    >>> bool(np.allclose(d.module(torch.as_tensor(d.X)).detach().numpy(),
    ...                  d.X @ d.task_head.T.astype(np.float32), atol=1e-5))
    True
    """
    n_ft = _positive_int("n_finetune", n_finetune)
    n_pr = _positive_int("n_probe", n_probe)
    n_ref = _positive_int("n_reference", n_reference)
    n_te = _positive_int("n_test", n_test)
    K = _positive_int("n_classes", n_classes, minimum=2)
    D = _positive_int("n_hidden", n_hidden)
    needed = N_TASK_FEATURES + 3 + 2 * K
    if D < needed:
        raise ValueError(
            f"n_hidden must be at least {needed} (8 task features, persona, "
            f"always-on, context and 2 x {K} output dims), got {D}."
        )
    sft = _nonnegative("sft", sft)
    noise = _nonnegative("noise", noise)
    cfg = _resolve_config(config)
    tau, delta, gs, ts = cfg["tau"], cfg["delta"], cfg["gs"], cfg["ts"]

    rng = check_random_state(random_state)
    # One seed per part, drawn first, so that the sizes of the splits do not
    # change the model or each other.
    seeds = rng.randint(np.iinfo(np.int32).max, size=5)
    model_rng, ft_rng, test_rng, probe_rng, ref_rng = (
        np.random.RandomState(seed) for seed in seeds
    )

    basis, _ = np.linalg.qr(model_rng.standard_normal((D, D)))
    Q_z = basis[:, :N_TASK_FEATURES]
    v_star, c, e_ctx = basis[:, 8], basis[:, 9], basis[:, 10]
    O_t = basis[:, 11 : 11 + K]
    O_p = basis[:, 11 + K : 11 + 2 * K]
    M_t = model_rng.standard_normal((K, K)) / np.sqrt(K)
    M_p = model_rng.standard_normal((K, K)) / np.sqrt(K)
    gamma_t = gs * model_rng.standard_normal(K)
    gamma_p = gs * model_rng.standard_normal(K)
    C = model_rng.standard_normal((K, N_TASK_FEATURES))
    R_t = ts * M_t @ O_t.T + np.outer(gamma_t, v_star)
    R_p = ts * M_p @ O_p.T + np.outer(gamma_p, v_star)

    def sample(rs, n, ctx, s_scale):
        z = rs.standard_normal((n, N_TASK_FEATURES))
        s = s_scale * rs.standard_normal(n)
        h = 0.7 * z @ Q_z.T + np.outer(s, v_star) + c + ctx * e_ctx
        h += noise * rs.standard_normal((n, D))
        return z, s, h

    def labels(rs, z, s, shifts):
        # Gumbel-max sampling of softmax(logits); one draw per row, shared by
        # every shift, so labels differ only through the shift.
        gumbel = rs.gumbel(size=(z.shape[0], K))
        base = tau * z @ C.T + gumbel
        return [
            np.argmax(base + np.outer(s + shift, gamma_t), axis=1).astype(np.int64)
            for shift in shifts
        ]

    z, s, X = sample(ft_rng, n_ft, 1.0, sft)
    y, y_clean = labels(ft_rng, z, s, (delta, 0.0))
    z_te, s_te, X_test = sample(test_rng, n_te, 1.0, sft)
    (y_test,) = labels(test_rng, z_te, s_te, (delta,))
    _, s_probe, X_probe = sample(probe_rng, n_pr, 0.0, 1.0)
    _, _, X_reference = sample(ref_rng, n_ref, 0.0, 1.0)

    return Bunch(
        module=PersonaToyNet(R_t),
        X=X.astype(np.float32),
        y=y,
        y_clean=y_clean,
        X_test=X_test.astype(np.float32),
        y_test=y_test,
        X_probe=X_probe.astype(np.float32),
        s_probe=s_probe,
        X_reference=X_reference.astype(np.float32),
        true_direction=v_star.copy(),
        probe_head=R_p,
        task_head=R_t,
        config={**cfg, "sft": sft, "noise": noise},
    )


def _as_numpy(out):
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu()
    return np.asarray(out, dtype=np.float64)


def _apply(fn, module, X):
    """``fn(X)`` as float64 numpy, in eval mode and without autograd."""
    dtype, device = torch.float32, torch.device("cpu")
    if isinstance(module, nn.Module):
        param = next(module.parameters(), None)
        if param is not None:
            dtype, device = param.dtype, param.device
    x = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
    training = isinstance(module, nn.Module) and module.training
    try:
        if training:
            module.eval()
        with torch.no_grad():
            return _as_numpy(fn(x))
    finally:
        if training:
            module.train()


def persona_metrics(model, data, X=None):
    """Probe-set drift metrics of a fine-tuned :class:`PersonaToyNet`-like model.

    With ``h`` the probe inputs (the pretrained representations), ``h'`` the
    model's representation of them and ``v*`` the true persona direction:

    - ``drift``: mean of ``(h' - h) . v*`` (0 for the pretrained model);
    - ``probe_kl``: mean ``KL(softmax(R_p h) || softmax(R_p h'))``;
    - ``persona_r2``: squared correlation between ``v* . h'`` and the probe
      persona ``s_probe`` (preservation of the pretrained read-out);
    - ``task_nll`` and ``task_accuracy`` of the task logits on
      ``X_test``/``y_test`` (only when ``data`` holds ``X_test``).

    Parameters
    ----------
    model : torch.nn.Module, skorch net or callable
        A module with a ``representation`` method returning ``h'`` and a
        forward returning task logits (a skorch net is replaced by its
        ``module_``); or any callable mapping a float32 tensor ``h`` to ``h'``,
        whose task logits are then ``h' R_t'`` with the frozen head
        ``data["task_head"]``. Modules are run in eval mode without autograd,
        on the device and dtype of their first parameter.
    data : dict-like
        The output of :func:`make_persona_drift` (keys ``X_probe``,
        ``s_probe``, ``true_direction``, ``probe_head``, ``task_head`` and
        optionally ``X_test``, ``y_test``).
    X : array-like of shape (n_probe, n_hidden), default=None
        Probe inputs to use instead of ``data["X_probe"]``; they must have as
        many rows as ``data["s_probe"]``, which ``persona_r2`` uses.

    Returns
    -------
    metrics : dict of str to float
        ``drift``, ``probe_kl``, ``persona_r2`` and, when ``data`` holds
        ``X_test``, ``task_nll`` and ``task_accuracy``. Computed in float64.

    Raises
    ------
    ValueError
        If ``X`` and ``data["s_probe"]`` have different numbers of rows.

    Examples
    --------
    >>> from skml.datasets import make_persona_drift, persona_metrics
    >>> d = make_persona_drift(100, 200, 100, 200, random_state=0)
    >>> m = persona_metrics(d.module, d)
    >>> m["drift"], m["probe_kl"], bool(m["persona_r2"] > 0.99)
    (0.0, 0.0, True)
    """
    module = getattr(model, "module_", model)
    if hasattr(module, "representation"):
        represent, logits_of = module.representation, module
    else:
        represent, logits_of = module, None
    s = np.asarray(data["s_probe"], dtype=np.float64)
    X_probe = data["X_probe"] if X is None else X
    h = np.asarray(X_probe, dtype=np.float64)
    if h.shape[0] != s.shape[0]:
        raise ValueError(
            f"X has {h.shape[0]} rows but data['s_probe'] has {s.shape[0]}."
        )
    h_new = _apply(represent, module, X_probe)
    v = np.asarray(data["true_direction"], dtype=np.float64)
    R_p = np.asarray(data["probe_head"], dtype=np.float64)

    log_p = log_softmax(h @ R_p.T, axis=1)
    log_q = log_softmax(h_new @ R_p.T, axis=1)
    read = h_new @ v
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(read, s)[0, 1]
    metrics = {
        "drift": float(np.mean((h_new - h) @ v)),
        "probe_kl": float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1))),
        "persona_r2": float(r**2),
    }
    if data.get("X_test") is not None:
        X_test = data["X_test"]
        if logits_of is not None:
            logits = _apply(logits_of, module, X_test)
        else:
            R_t = np.asarray(data["task_head"], dtype=np.float64)
            logits = _apply(represent, module, X_test) @ R_t.T
        y = np.asarray(data["y_test"], dtype=np.int64)
        log_prob = log_softmax(logits, axis=1)
        metrics["task_nll"] = float(-np.mean(log_prob[np.arange(y.size), y]))
        metrics["task_accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y))
    return metrics
