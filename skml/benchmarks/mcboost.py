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
from ..datasets import (
    load_cps1988,
    load_diamonds,
    load_randhie,
    make_multicalibration_regression,
)
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
from ._mcboost_extra import (
    INTERVAL_SEEDS,
    S4_RATE_SEEDS,
    S4_SEEDS,
    interval_rows,
    interval_summary,
    scale_rows,
    transfer_rate_summary,
    transfer_rows,
    transfer_summary,
)

HELP = {
    "randhie": "RAND HIE, log1p doctor visits (groups passed)",
    "diamonds": "ggplot2 diamonds, log price; cut and clarity unseen by the base",
    "cps1988": "AER CPS1988, log wage; ethnicity and region unseen by the base",
    "hidden": "S1's group as a column of X only, level-distorted base",
    "interaction": "miscalibration in an x5 x x6 cell, not named",
    "rare": "miscalibration in a rare level of a category column, not named",
}
DATASETS = (
    "S1",
    "S2",
    "S3",
    "randhie",
    "hidden",
    "interaction",
    "rare",
    "diamonds",
    "cps1988",
)
SEEDS, QUICK_SEEDS = tuple(range(10)), (0, 1)
MCGRAD = "MCGrad (RegressionMCGrad)"
MCGRAD_INSTALL = "pip install --no-deps mcgrad lightgbm psutil"
COLUMNS = [
    "dataset",
    "groups",
    "rows",
    "method",
    "mse",
    "mse_ratio",
    "mce_sigma",
    "mce_ratio",
    "worst_cell",
    "rounds",
    "fit_s",
    "time_vs_mcgrad",
    "seeds",
]


# Audit groups passed to the post-processors: "groups" (the fit argument),
# "columns" (group_features naming categorical columns of X) or "no" (the
# miscalibrated subgroup is left for the auditor to find).
GROUPS_PASSED = {
    "S1": "groups",
    "S2": "groups",
    "S3": "groups",
    "randhie": "groups",
    "hidden": "no",
    "interaction": "no",
    "rare": "no",
    "diamonds": "columns",
    "cps1988": "no",
}
# Rows of the synthetic designs (a quarter of them are audit rows); "hidden"
# has 10,000 audit rows, so the fit-time comparison applies to it.
N_ROWS = {"hidden": 40_000, "interaction": 16_000, "rare": 16_000}


def _one_hot(column):
    return (column[:, None] == np.unique(column)[None, :]).astype(np.float64)


def _biased_real(dataset, seed):
    """A real table, a base model that never saw two attributes and was
    trained where some of their levels were rare, audit and test splits."""
    rng = np.random.RandomState(seed)
    if dataset == "diamonds":
        data = load_diamonds()
        X, y = data.data, data.target
        # cut (col 6) and clarity (col 8) unseen; Fair/Good cuts and I1/SI2
        # clarities kept at 10% in the base model's training rows.
        unseen = [6, 8]
        rare = (X[:, 6] <= 1) | (X[:, 8] <= 1)
        n_audit = 12_000
    else:
        data = load_cps1988()
        X, y = data.data, data.target
        # ethnicity (col 2) and region (col 4) unseen; African Americans and
        # the south kept at 10% in the base model's training rows.
        unseen = [2, 4]
        rare = (X[:, 2] == 1) | (X[:, 4] == 2)
        n_audit = len(y) // 4
    perm = rng.permutation(len(y))
    n_train = len(y) // 2
    tr, au, te = (
        perm[:n_train],
        perm[n_train : n_train + n_audit],
        perm[n_train + n_audit :],
    )
    tr = tr[~rare[tr] | (rng.random_sample(len(tr)) < 0.1)]
    seen = [j for j in range(X.shape[1]) if j not in unseen]
    base = HistGradientBoostingRegressor(random_state=seed).fit(X[tr][:, seen], y[tr])
    G = np.hstack([_one_hot(X[:, j]) for j in unseen])
    return {
        "X_audit": X[au],
        "y_audit": y[au],
        "g_audit": G[au],
        "X_test": X[te],
        "y_test": y[te],
        "g_test": G[te],
        "b_audit": base.predict(X[au][:, seen]),
        "b_test": base.predict(X[te][:, seen]),
        "f_test": None,
        "group_features": unseen,
    }


def _split(dataset, seed):
    """Train/audit/test splits, audit and test groups, and base predictions."""
    if dataset in ("diamonds", "cps1988"):
        d = _biased_real(dataset, seed)
    elif dataset == "randhie":
        data = load_randhie()
        rng = np.random.RandomState(seed)
        perm = rng.permutation(len(data.target))
        n = len(perm)
        tr, au, te = perm[: n // 2], perm[n // 2 : 3 * n // 4], perm[3 * n // 4 :]
        X, y, G = data.data, data.target, data.groups
        base = HistGradientBoostingRegressor(random_state=seed).fit(X[tr], y[tr])
        d = {
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
    else:
        data = make_multicalibration_regression(
            N_ROWS.get(dataset, 8000), design=dataset, random_state=seed
        )
        d = {
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
    d["passed"] = GROUPS_PASSED[dataset]
    d.setdefault("group_features", None)
    return d


def _fit_groups(d, split):
    """The groups argument of fit/predict: None unless the design passes them."""
    return d[f"g_{split}"] if d["passed"] == "groups" else None


def _ours(**params):
    def fit_predict(d, seed, device):
        model = MCBoostRegressor(
            random_state=seed,
            device=device,
            group_features=d["group_features"],
            **params,
        )
        # ConvergenceWarnings are counted by the benchmark framework.
        start = time.perf_counter()
        model.fit(
            d["X_audit"],
            d["y_audit"],
            groups=_fit_groups(d, "audit"),
            base_predictions=d["b_audit"],
        )
        elapsed = time.perf_counter() - start
        pred = model.predict(
            d["X_test"], groups=_fit_groups(d, "test"), base_predictions=d["b_test"]
        )
        return pred, elapsed, model.n_iter_

    return fit_predict


def _isotonic(per_group):
    def fit_predict(d, seed, device):
        if per_group and d["passed"] == "no":
            # The subgroup is not named: a per-group fit has nothing to use.
            return None, None, None
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

    def frame(d, split):
        X, cols = d[f"X_{split}"], {}
        named = d["group_features"] or []
        for j in range(X.shape[1]):
            cols[f"x{j}"] = X[:, j].astype(int) if j in named else X[:, j]
        if d["passed"] == "groups":
            G = d[f"g_{split}"]
            cols.update({f"g{j}": G[:, j].astype(int) for j in range(G.shape[1])})
        cols["base"] = d[f"b_{split}"]
        if split == "audit":
            cols["y"] = d["y_audit"]
        return pd.DataFrame(cols)

    def fit_predict(d, seed, device):
        named = d["group_features"] or []
        p = d["X_audit"].shape[1]
        num = [f"x{j}" for j in range(p) if j not in named]
        cat = [f"x{j}" for j in named]
        if d["passed"] == "groups":
            cat += [f"g{j}" for j in range(d["g_audit"].shape[1])]
        train = frame(d, "audit")
        test = frame(d, "test")
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
        # The previous default: ridge auditor on [1, u, hinge(u), g, g u].
        "MCBoost ridge": _ours(
            auditor="ridge",
            learning_rate=0.5,
            max_iter=50,
            n_iter_no_change=4,
            risk_tolerance=0.0,
        ),
        # The bucketed form the theory analyses: 10 quantile level sets,
        # linear ridge auditor in each.
        "MCBoost 10 buckets, linear": _ours(
            auditor="ridge", bucket_strategy="quantile", n_knots=0, learning_rate=0.5
        ),
        # R mcboost's defaults (2 buckets, eta 1, 5 rounds, no early stopping,
        # linear auditor, worst-bucket update), reproduced as a configuration.
        "mcboost-R config": _ours(
            auditor="ridge",
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
            auditor="ridge",
            bucket_strategy="uniform",
            n_knots=0,
            learning_rate=1.0,
            interactions=False,
        ),
        "group-only (multiaccuracy)": _ours(
            auditor="groups", bucket_strategy="none", learning_rate=0.5
        ),
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
        rows_audit = len(d["y_audit"])
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
        row = {
            "dataset": dataset,
            "groups": GROUPS_PASSED[dataset],
            "rows": rows_audit,
            "method": name,
            "seeds": len(per_seed),
        }
        for key in ("mse", "mce_sigma", "worst_cell"):
            row[f"{key}_per_seed"] = [s[key] for s in per_seed]
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
    peer = next((r for r in rows if r["method"] == MCGRAD), None)
    for row in rows:
        row["time_vs_mcgrad"] = (
            row["fit_s"] / peer["fit_s"] if peer and row["fit_s"] else None
        )
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


S4_COLUMNS = [
    "shift",
    "seed",
    "span_share",
    "inside_span",
    "bias_estimate",
    "bias_bound",
    "true_ratio_bound",
    "realised_bias",
    "realised_se",
    "realised_ucb",
    "bound_holds",
    "within_2x_ucb",
    "within_2x_literal",
]
INTERVAL_COLUMNS = [
    "design",
    "seed",
    "group",
    "rows",
    "mcboost_cqr",
    "split_conformal",
    "mcboost_width",
    "split_width",
]
SCALE_COLUMNS = [
    "method",
    "rows",
    "features",
    "fit_s",
    "rounds",
    "data_mb",
    "peak_growth_mb",
    "growth_ratio",
]


def _tagged(kind, rows):
    for row in rows:
        row["part_kind"] = kind
    return rows


def _s4_part(ctx, seeds):
    return _tagged("S4", transfer_rows(seeds))


def _s4_rates_part(ctx, seeds):
    return _tagged("S4_rates", transfer_rows(seeds))


def _interval_part(ctx, seeds):
    return _tagged("intervals", interval_rows(seeds=seeds))


def _scale_part(ctx, n):
    peers = _mcgrad() is not None
    if not peers:
        ctx.skip_peer("MCGrad", f"not installed: {MCGRAD_INSTALL}")
    return _tagged("scale", scale_rows(n=n, peers=peers))


BENCHMARK = Benchmark(
    "mcboost",
    [
        Part(
            ds,
            _dataset_part(ds),
            full={"seeds": SEEDS},
            quick={"seeds": QUICK_SEEDS},
            help=HELP.get(
                ds, f"synthetic design {ds} (make_multicalibration_regression)"
            ),
        )
        for ds in DATASETS
    ]
    + [
        Part(
            "S4",
            _s4_part,
            full={"seeds": S4_SEEDS},
            quick={"seeds": S4_SEEDS},
            help="transfer_report on shifts inside / outside the audit span",
        ),
        Part(
            "S4_rates",
            _s4_rates_part,
            full={"seeds": S4_RATE_SEEDS},
            quick=False,
            help="S4 over 40 more seeds: how often each reading of the bound holds",
        ),
        Part(
            "intervals",
            _interval_part,
            full={"seeds": INTERVAL_SEEDS},
            quick={"seeds": INTERVAL_SEEDS},
            help="per-group coverage: quantile MCBoost + CQR vs split conformal",
        ),
        Part(
            "scale",
            _scale_part,
            full={"n": 1_000_000},
            quick={"n": 100_000},
            help="one default fit at 1,000,000 x 20: time and peak memory growth",
        ),
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
        The parts to run: datasets of ``DATASETS`` and "S4", "intervals",
        "scale" (all by default).
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


def _no_worse(ours, peer):
    """Ours no worse than the peer: lower mean, or a mean paired difference
    within two standard errors of zero (a tie within the seed spread)."""
    diff = np.asarray(ours) - np.asarray(peer)
    if diff.mean() <= 0:
        return True
    if len(diff) < 2:
        return False
    return diff.mean() <= 2 * diff.std(ddof=1) / np.sqrt(len(diff))


def acceptance(rows):
    """Per dataset: ratios to the base model, and against MCGrad.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`run`.

    Returns
    -------
    str
    """
    rows = data_rows(rows)
    by = {(r.get("dataset"), r.get("method")): r for r in rows if "dataset" in r}
    datasets = [ds for ds in DATASETS if (ds, "base") in by]
    lines = []
    ours, peer = "MCBoost (default)", MCGRAD
    n_ok = n_strict = n_peer = 0
    for ds in datasets:
        o = by[(ds, ours)]
        line = (
            f"{ds} (groups {o['groups']}, {o['rows']} audit rows): MCE ratio to "
            f"base {o['mce_ratio']:.3f}, MSE ratio to base {o['mse_ratio']:.4f}"
        )
        if (ds, peer) in by:
            n_peer += 1
            p = by[(ds, peer)]
            worst_ok = _no_worse(o["worst_cell_per_seed"], p["worst_cell_per_seed"])
            mce_ok = _no_worse(o["mce_sigma_per_seed"], p["mce_sigma_per_seed"])
            mse_ok = o["mse"] <= 1.02 * p["mse"]
            strict = (
                o["worst_cell"] < p["worst_cell"] and o["mce_sigma"] < p["mce_sigma"]
            )
            time_ok = o["rows"] < 10_000 or o["fit_s"] <= p["fit_s"]
            ok = worst_ok and mce_ok and mse_ok and time_ok
            n_ok += ok
            n_strict += strict
            line += (
                f"; vs MCGrad: worst cell {o['worst_cell']:.4f} vs "
                f"{p['worst_cell']:.4f} ({'ok' if worst_ok else 'WORSE'}), MCE "
                f"{o['mce_sigma']:.2f} vs {p['mce_sigma']:.2f} "
                f"({'ok' if mce_ok else 'WORSE'}), MSE ratio "
                f"{o['mse'] / p['mse']:.3f} ({'ok' if mse_ok else 'WORSE'}), fit "
                f"time ratio {o['fit_s'] / p['fit_s']:.2f}"
                f"{'' if time_ok else ' (SLOWER)'}"
                f"{'; strictly better on both' if strict else ''}"
            )
        lines.append(line)
    if n_peer:
        lines.append(
            f"acceptance 1-2 vs MCGrad: all criteria met on {n_ok}/{n_peer} "
            f"datasets; strictly better on worst cell and MCE on {n_strict}/{n_peer}"
        )
    extra = [r for r in rows if r.get("part_kind") == "S4"]
    if extra:
        lines.append(transfer_summary(extra))
    extra = [r for r in rows if r.get("part_kind") == "S4_rates"]
    if extra:
        lines.append(transfer_rate_summary(extra))
    extra = [r for r in rows if r.get("part_kind") == "intervals"]
    if extra:
        lines.append(interval_summary(extra))
    for r in rows:
        if r.get("part_kind") == "scale" and "fit_s" in r:
            lines.append(
                f"scale {r['method']}: {r['rows']:,} x {r['features']} rows, fit "
                f"{r['fit_s']:.1f} s, {r['rounds']} rounds, peak memory growth "
                f"{r['peak_growth_mb']:.0f} MB = {r['growth_ratio']:.2f}x the data "
                f"({r['data_mb']:.0f} MB)"
            )
    return "\n".join(lines)


def report(rows):
    """The run's status, the tables, then the per-dataset summary."""
    head = "\n".join(meta_line(rows) + status_lines(rows))
    data = data_rows(rows)
    parts = [head, format_table([r for r in data if "dataset" in r], columns=COLUMNS)]
    for kind, columns in (
        ("S4", S4_COLUMNS),
        ("intervals", INTERVAL_COLUMNS),
        ("scale", SCALE_COLUMNS),
    ):
        sub = [r for r in data if r.get("part_kind") == kind]
        if sub:
            parts.append(format_table(sub, columns=columns))
    return "\n\n".join(parts) + "\n\n" + acceptance(rows)


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
