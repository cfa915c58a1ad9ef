"""
===================================================
Constraint violation: nested projection vs the rest
===================================================

Cumulative constraint violation (CCV) as the horizon grows, on two
instances of the benchmark (``python -m skml bench coco``):

- **B1**, the line of Vaze and Sinha's Lemma 6: ``f(x) = x^2`` and the
  constraint ``x >= 5`` every round, on ``[-10, 10]``;
- **B4**, ``d = 10``: each round one coordinate bound ``+-x_i <= 0.1 +
  0.9 / sqrt(t)``, a box that keeps shrinking, while the losses' targets
  lie outside it.

NP-OGD (``algorithm="nested_projection"``) projects each step onto every
constraint stored so far; "latest only" forgets all but the newest;
Sinha-Vaze is the Lyapunov-penalty method the paper improves on (run once
per horizon, as it needs it); "domain only" ignores the constraints.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from skml.benchmarks.coco import B1, B4, play

grid = [500, 1000, 2000, 5000, 10000]
algorithms = ["nested_projection", "latest_only", "sinha_vaze", "domain_only"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, (title, make) in zip(
    axes, [("B1 (d = 1)", lambda T: B1(T)), ("B4 (d = 10)", lambda T: B4(T, 10, 0))]
):
    for algorithm in algorithms:
        if algorithm == "sinha_vaze":
            ccv = [
                play(make(T), algorithm, T, horizon=T)["violations"].sum() for T in grid
            ]
        else:
            run = play(make(grid[-1]), algorithm, grid[-1])
            ccv = [run["violations"][:T].sum() for T in grid]
        ax.loglog(grid, np.maximum(ccv, 1e-3), "o-", label=algorithm)
    ax.set_title(title)
    ax.set_xlabel("rounds T")
    ax.set_ylabel("CCV")
axes[0].legend(fontsize=8)
fig.tight_layout()
