"""MCBoostRegressor against its baselines and Meta's MCGrad.

Datasets: the synthetic designs S1-S3 (``make_multicalibration_regression``)
and the RAND Health Insurance Experiment (``load_randhie``, log1p doctor
visits). Every dataset is split 50% / 25% / 25%: the base model
(HistGradientBoostingRegressor, or the design's own) is fitted on the first
part, every post-processor on the audit part, and all are scored on the test
part with the same metric: ``skml.metrics.multicalibration_error`` (MCE,
sigma scale, segments from the audit groups and 3-quantile bins of the
features, depth 3), test MSE, and the worst group x bucket mean residual.
All methods receive the same precomputed base predictions.

Each dataset is a part (``python -m skml bench mcboost --part S2``); seeds
0-9, or 0-1 with ``--quick``. MCGrad runs when installed and is otherwise
recorded as a skipped peer.
"""

import logging
import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression

from ..calibration import MCBoostRegressor
from ..datasets import load_randhie, make_multicalibration_regression
from ..metrics import multicalibration_error, worst_group_bucket_residual
from ..utils import format_table, progress
from ._common import (
    Benchmark,
    Part,
    count_warnings,
    data_rows,
    device_name,
    meta_line,
    status_lines,
)

DATASETS = ("S1", "S2", "S3", "randhie")
SEEDS, QUICK_SEEDS = tuple(range(10)), (0, 1)
MCGRAD = "MCGrad (RegressionMCGrad)"
MCGRAD_INSTALL = "pip install --no-deps mcgrad lightgbm psutil"
COLUMNS = [
    "dataset",
    "method",
    "mse",
    "mse_ratio",
    "mce_sigma",
    "mce_ratio",
    "worst_cell",
    "rounds",
    "fit_s",
    "seeds",
]


def _split(dataset, seed):
    """Train/audit/test splits, audit and test groups, and base predictions."""
    if dataset == "randhie":
        data = load_randhie()
        rng = np.random.RandomState(seed)
        perm = rng.permutation(len(data.target))
        n = len(perm)
        tr, au, te = perm[: n // 2], perm[n // 2 : 3 * n // 4], perm[3 * n // 4 :]
        X, y, G = data.data, data.target, data.groups
        base = HistGradientBoostingRegressor(random_state=seed).fit(X[tr], y[tr])
        return {
            "X_audit": X[au],
            "y_audit": y[au],
            "g_audit": G[au],
            "X_test": X[te],
            "y_test": y[te],
            "g_test": G[te],
            "b_audit": base.predict(X[au]),
            "b_test": base.predict(X[te]),
            "f_test": None,
        }
    data = make_multicalibration_regression(8000, design=dataset, random_state=seed)
    return {
        "X_audit": data.X_audit,
        "y_audit": data.y_audit,
        "g_audit": data.groups_audit,
        "X_test": data.X_test,
        "y_test": data.y_test,
        "g_test": data.groups_test,
        "b_audit": data.estimator.predict(data.X_audit),
        "b_test": data.estimator.predict(data.X_test),
        "f_test": data.f_test,
    }


def _ours(**params):
    def fit_predict(d, seed, device):
        model = MCBoostRegressor(random_state=seed, device=device, **params)
        # ConvergenceWarnings are counted by the benchmark framework.
        start = time.perf_counter()
        model.fit(
            d["X_audit"],
            d["y_audit"],
            groups=d["g_audit"],
            base_predictions=d["b_audit"],
        )
        elapsed = time.perf_counter() - start
        pred = model.predict(
            d["X_test"], groups=d["g_test"], base_predictions=d["b_test"]
        )
        return pred, elapsed, model.n_iter_

    return fit_predict


def _isotonic(per_group):
    def fit_predict(d, seed, device):
        start = time.perf_counter()
        iso = IsotonicRegression(out_of_bounds="clip").fit(d["b_audit"], d["y_audit"])
        pred = iso.predict(d["b_test"])
        if per_group:
            # Disjoint cells of the group indicators, each with its own fit.
            cell_a = d["g_audit"] @ (2 ** np.arange(d["g_audit"].shape[1]))
            cell_t = d["g_test"] @ (2 ** np.arange(d["g_test"].shape[1]))
            for cell in np.unique(cell_a):
                rows = cell_a == cell
                if rows.sum() < 20:
                    continue
                fit = IsotonicRegression(out_of_bounds="clip")
                fit.fit(d["b_audit"][rows], d["y_audit"][rows])
                pred[cell_t == cell] = fit.predict(d["b_test"][cell_t == cell])
        return pred, time.perf_counter() - start, None

    return fit_predict


def _mcgrad():
    try:
        import pandas as pd
        from mcgrad.methods import RegressionMCGrad
    except ImportError:
        return None
    logging.getLogger("mcgrad").setLevel(logging.ERROR)

    def frame(X, G, base, y=None):
        cols = {f"x{j}": X[:, j] for j in range(X.shape[1])}
        cols.update({f"g{j}": G[:, j].astype(int) for j in range(G.shape[1])})
        cols["base"] = base
        if y is not None:
            cols["y"] = y
        return pd.DataFrame(cols)

    def fit_predict(d, seed, device):
        num = [f"x{j}" for j in range(d["X_audit"].shape[1])]
        cat = [f"g{j}" for j in range(d["g_audit"].shape[1])]
        train = frame(d["X_audit"], d["g_audit"], d["b_audit"], d["y_audit"])
        test = frame(d["X_test"], d["g_test"], d["b_test"])
        model = RegressionMCGrad(random_state=seed)
        start = time.perf_counter()
        model.fit(
            train,
            "base",
            "y",
            categorical_feature_column_names=cat,
            numerical_feature_column_names=num,
        )
        elapsed = time.perf_counter() - start
        pred = model.predict(test, "base", cat, num)
        return pred, elapsed, model.num_rounds_trained

    return fit_predict


def methods():
    """The compared methods: name -> fit_predict(split, seed, device)."""
    out = {
        # E[y | x] itself, on the synthetic designs: the metric's noise floor.
        "oracle E[y|x]": lambda d, seed, device: (d["f_test"], 0.0, None),
        "base": lambda d, seed, device: (d["b_test"], 0.0, 0),
        "isotonic": _isotonic(per_group=False),
        "group isotonic": _isotonic(per_group=True),
        "MCBoost (default)": _ours(),
        # The bucketed form the theory analyses: 10 quantile level sets,
        # linear ridge auditor in each.
        "MCBoost 10 buckets, linear": _ours(bucket_strategy="quantile", n_knots=0),
        # R mcboost's defaults (2 buckets, eta 1, 5 rounds, no early stopping,
        # linear auditor, worst-bucket update), reproduced as a configuration.
        "mcboost-R config": _ours(
            bucket_strategy="quantile",
            n_knots=0,
            n_buckets=2,
            learning_rate=1.0,
            max_iter=5,
            early_stopping=False,
            interactions=False,
            update="worst",
            alpha=1.0,
        ),
        # LSBoost: all buckets each round, 10 equal-width level sets,
        # improvement-threshold stopping approximated by holdout stopping.
        "LSBoost config": _ours(
            bucket_strategy="uniform", n_knots=0, learning_rate=1.0, interactions=False
        ),
        "group-only (multiaccuracy)": _ours(auditor="groups", bucket_strategy="none"),
    }
    mcgrad = _mcgrad()
    if mcgrad is not None:
        out[MCGRAD] = mcgrad
    return out


def _evaluate(d, pred):
    return {
        "mse": float(np.mean((d["y_test"] - pred) ** 2)),
        "mce_sigma": float(
            multicalibration_error(d["y_test"], pred, groups=d["g_test"], X=d["X_test"])
        ),
        "worst_cell": float(
            worst_group_bucket_residual(d["y_test"], pred, groups=d["g_test"])
        ),
    }


def run_dataset(dataset, seeds, device="cpu", compared=None):
    """One dataset: a row per method, averaged over the seeds.

    Parameters
    ----------
    dataset : str
        One of ``DATASETS``.
    seeds : list of int
        The seeds (each one split and fit).
    device : str, default="cpu"
        Device of the skml estimators.
    compared : dict, default=None
        ``name -> fit_predict``; default :func:`methods`.

    Returns
    -------
    rows : list of dict
    """
    device = device_name(device)
    compared = methods() if compared is None else compared
    results = {}
    for seed in progress(seeds, desc=f"mcboost {dataset}"):
        d = _split(dataset, seed)
        for name, fit_predict in compared.items():
            pred, elapsed, rounds = fit_predict(d, seed, device)
            if pred is None:
                continue
            scores = _evaluate(d, pred)
            scores.update(fit_s=elapsed, rounds=rounds)
            results.setdefault(name, []).append(scores)
    base = results["base"]
    rows = []
    for name in compared:
        if name not in results:
            continue
        per_seed = results[name]
        row = {"dataset": dataset, "method": name, "seeds": len(per_seed)}
        for key in ("mse", "mce_sigma", "worst_cell", "fit_s"):
            row[key] = float(np.mean([s[key] for s in per_seed]))
        rounds = [s["rounds"] for s in per_seed if s["rounds"] is not None]
        row["rounds"] = float(np.mean(rounds)) if rounds else None
        # Ratios to the base model, per seed, then averaged.
        row["mse_ratio"] = float(
            np.mean([s["mse"] / b["mse"] for s, b in zip(per_seed, base)])
        )
        row["mce_ratio"] = float(
            np.mean([s["mce_sigma"] / b["mce_sigma"] for s, b in zip(per_seed, base)])
        )
        rows.append(row)
    return rows


def _dataset_part(dataset):
    def part(ctx, seeds):
        if ctx.params.get("seeds") is not None:
            seeds = ctx.params["seeds"]
        compared = methods()
        if MCGRAD not in compared:
            ctx.skip_peer("MCGrad", f"not installed: {MCGRAD_INSTALL}")
        return run_dataset(dataset, seeds, ctx.device, compared)

    return part


BENCHMARK = Benchmark(
    "mcboost",
    [
        Part(
            ds,
            _dataset_part(ds),
            full={"seeds": SEEDS},
            quick={"seeds": QUICK_SEEDS},
            help=(
                "RAND HIE, log1p doctor visits"
                if ds == "randhie"
                else f"synthetic design {ds} (make_multicalibration_regression)"
            ),
        )
        for ds in DATASETS
    ],
    description="MCBoostRegressor against its baselines and MCGrad",
)


def run(quick=False, device="cpu", parts=None, seeds=None):
    """Run the benchmark; one row per (dataset, method), averaged over seeds.

    Parameters
    ----------
    quick : bool, default=False
        Two seeds instead of ten.
    device : str or torch.device, default="cpu"
        Device of the skml estimators (``"auto"``: a GPU when there is one).
    parts : list of str, default=None
        The datasets to run, a subset of ``DATASETS`` (all by default).
    seeds : list of int, default=None
        Overrides the seeds.

    Returns
    -------
    rows : list of dict
        The framework's rows (see :mod:`skml.benchmarks._common`) and one
        row per (dataset, method).
    """
    return BENCHMARK.run(
        quick=quick, device=device, parts=parts, params={"seeds": seeds}
    )


def acceptance(rows):
    """Per dataset: MCE and MSE ratios to the base model, and against MCGrad.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`run`.

    Returns
    -------
    str
    """
    rows = data_rows(rows)
    by = {(r["dataset"], r["method"]): r for r in rows}
    datasets = sorted({r["dataset"] for r in rows}, key=list(DATASETS).index)
    lines = []
    ours = "MCBoost (default)"
    peer = MCGRAD
    wins = 0
    for ds in datasets:
        o = by[(ds, ours)]
        line = (
            f"{ds}: MCE ratio to base {o['mce_ratio']:.3f} "
            f"(cut {100 * (1 - o['mce_ratio']):.0f}%), MSE ratio to base "
            f"{o['mse_ratio']:.4f}"
        )
        if (ds, peer) in by:
            p = by[(ds, peer)]
            better = o["mce_sigma"] <= p["mce_sigma"] and o["mse"] <= 1.01 * p["mse"]
            wins += better
            line += (
                f"; vs MCGrad: MCE {o['mce_sigma']:.2f} vs {p['mce_sigma']:.2f}, "
                f"MSE {o['mse']:.4f} vs {p['mse']:.4f}, fit time ratio "
                f"{o['fit_s'] / p['fit_s']:.3f} -> {'no worse' if better else 'worse'}"
            )
        lines.append(line)
    if any((ds, peer) in by for ds in datasets):
        lines.append(
            f"MCE no worse than MCGrad at MSE within 1%: {wins}/{len(datasets)}"
        )
    return "\n".join(lines)


def report(rows):
    """The run's status, the table, then the per-dataset summary."""
    head = "\n".join(meta_line(rows) + status_lines(rows))
    table = format_table(data_rows(rows), columns=COLUMNS)
    return head + "\n" + table + "\n\n" + acceptance(rows)


def demo():
    """One row for ``python -m skml demo``: design S2, one seed.

    The baseline is the strongest peer at hand: MCGrad when it is installed,
    otherwise per-group isotonic recalibration (scikit-learn).
    """
    start = time.perf_counter()
    d = _split("S2", 0)
    peer, name = _mcgrad(), "MCGrad"
    if peer is None:
        peer, name = _isotonic(per_group=True), "group isotonic"
    with count_warnings():
        pred, _, _ = _ours()(d, 0, "cpu")
        peer_pred, _, _ = peer(d, 0, "cpu")
    return {
        "estimator": "MCBoostRegressor",
        "task": "multicalibration of a distorted model (S2)",
        "metric": f"MCE sigma (lower is better; baseline: {name})",
        "skml": _evaluate(d, pred)["mce_sigma"],
        "baseline": _evaluate(d, peer_pred)["mce_sigma"],
        "seconds": time.perf_counter() - start,
    }
