"""
=====================================================
Persona drift against task loss: GRASP and baselines
=====================================================

The persona-drift organism (:func:`~skml.datasets.make_persona_drift`,
configuration A, the fine-tune inputs varying along the persona): a
pretrained residual stream with a known "persona" direction that frozen
heads read, and fine-tune labels that look as if the persona were shifted.
A naive LoRA fine-tune learns the task partly by shifting the persona, and
the model then drifts on unrelated inputs.

Each point is one :class:`~skml.finetune.GRASPFineTuner` ``method`` (one
seed; the benchmark averages three): the task's held-out loss against the
mean drift of the representation along the true persona direction on the unrelated probe
inputs, and, in the right panel, how much of the pretrained persona content
a read-out still finds there (R²). GRASP (covariance-weighted
identification) removes the drift at the naive fine-tune's task loss and
keeps the pretrained content, which ablating the direction at inference
destroys.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from skml.benchmarks.grasp import fit_method, metrics
from skml.datasets import make_persona_drift

methods = ["naive", "caft", "caft_inference", "preventative", "grasp_svd", "grasp_cov"]
scores = {m: [] for m in methods}
for seed in (0,):
    data = make_persona_drift(config="A", sft=1.0, random_state=seed)
    for m in methods:
        scores[m].append(metrics(fit_method(m, data, seed)[0], data))

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for m in methods:
    nll = np.mean([s["task_nll"] for s in scores[m]])
    drift = np.mean([abs(s["probe_drift"]) for s in scores[m]])
    r2 = np.mean([s["persona_r2"] for s in scores[m]])
    axes[0].scatter(nll, drift, s=60, label=m)
    axes[1].scatter(nll, r2, s=60, label=m)
axes[0].set_xlabel("task NLL (held out)")
axes[0].set_ylabel("|probe drift| along the persona")
axes[1].set_xlabel("task NLL (held out)")
axes[1].set_ylabel("persona read-out R² on the probe")
axes[0].legend(fontsize=8)
fig.tight_layout()
