"""
==================================================
Choosing the number of heads and their dimension
==================================================

Under a fixed budget ``D = H * d_k`` the paper derives the best split
between the number of heads H and their dimension d_k, with d_k growing like
``log n``. :class:`~skml.attention.NWAttentionRegressor` (with the paper's
Nadaraya-Watson heads, ``degree=0``) reads the split from the data by
default: ``head_allocation="spectrum"`` takes as many heads as the gradient
outer product has relevant directions. ``head_allocation="scaling_law"``
(``d_k = round(0.5 * ln(n D))``) and ``"cv"`` (every divisor pair scored on a
holdout) are the alternatives.

Here D = 8 on an additive target with four relevant directions (d = 8): we
fit every divisor pair at two training sizes and mark the pairs the three
automatic rules choose. The full check (d = 16, D = 16, n from 250 to 2000)
is part of ``python -m skml bench nw_attention``.
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skml.attention import NWAttentionRegressor
from skml.datasets import make_multi_index_regression

D = 8
X, y, f, _ = make_multi_index_regression(1800, 8, 4, random_state=0)
Xte, fte = X[800:], f[800:]
pairs = [(D // k, k) for k in (1, 2, 4, 8)]

fig, ax = plt.subplots(figsize=(5, 3.5))
for n, color in ((200, "tab:blue"), (800, "tab:orange")):
    mse = []
    for H, k in pairs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = NWAttentionRegressor(H, k, degree=0, random_state=0)
            model.fit(X[:n], y[:n])
        mse.append(np.mean((model.predict(Xte) - fte) ** 2))
    ax.plot([k for _, k in pairs], mse, "o-", color=color, label=f"n = {n}")
    for rule, marker in (("spectrum", "D"), ("scaling_law", "s"), ("cv", "^")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            auto = NWAttentionRegressor(
                budget=D, head_allocation=rule, degree=0, random_state=0
            ).fit(X[:n], y[:n])
        auto_mse = np.mean((auto.predict(Xte) - fte) ** 2)
        ax.scatter(
            auto.head_dim_,
            auto_mse,
            marker=marker,
            s=90,
            color=color,
            edgecolor="k",
            zorder=3,
        )
        print(
            f"n = {n}: {rule} chose H = {auto.n_heads_}, d_k = {auto.head_dim_}, "
            f"test MSE {auto_mse:.4f}"
        )
    print(f"n = {n}: test MSE per d_k {dict(zip([k for _, k in pairs], mse))}")
ax.set_xscale("log", base=2)
ax.set_xlabel("head dimension d_k (H = 8 / d_k)")
ax.set_ylabel("test MSE to the noiseless target")
ax.set_title("diamonds: spectrum, squares: scaling law, triangles: cv")
ax.legend()
fig.tight_layout()
plt.show()
