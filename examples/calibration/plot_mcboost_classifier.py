"""
=====================================================
Calibrating predicted probabilities on two subgroups
=====================================================

A logistic regression that does not see a group indicator is calibrated on
average but not inside each group when the group changes the log-odds. Here
the positive rate of group 1 is shifted up and flattened; the base model
averages the two groups. :class:`~skml.calibration.MCBoostClassifier`
post-processes the base probabilities in logit space so that they are
calibrated on each audited group and on level sets of the prediction.

The figure shows reliability curves (observed positive rate against the
mean predicted probability, per decile of the prediction) for each group,
before and after; the printed table gives each group's mean predicted
probability minus its observed positive rate on the test split.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression

from skml.calibration import MCBoostClassifier

rng = np.random.default_rng(0)
n = 12000
X = rng.normal(size=(n, 3))
group = (rng.random(n) < 0.3).astype(int)
logit = 1.5 * X[:, 0] - X[:, 1] + np.where(group == 1, 0.8 - 0.7 * X[:, 0], 0.0)
y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
train, audit, test = np.split(rng.permutation(n), [n // 3, 2 * n // 3])

base = LogisticRegression().fit(X[train], y[train])
model = MCBoostClassifier(base, random_state=0)
model.fit(X[audit], y[audit], groups=group[audit])
probs = {
    "base": base.predict_proba(X[test])[:, 1],
    "MCBoostClassifier": model.predict_proba(X[test], groups=group[test])[:, 1],
}
for name, p in probs.items():
    gaps = [
        p[group[test] == g].mean() - y[test][group[test] == g].mean() for g in (0, 1)
    ]
    print(f"{name:<18} mean(p) - rate: group 0 {gaps[0]:+.3f}, group 1 {gaps[1]:+.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), sharey=True, layout="constrained")
for ax, (name, p) in zip(axes, probs.items()):
    for g, color in ((0, "tab:blue"), (1, "tab:orange")):
        rows = group[test] == g
        pg, yg = p[rows], y[test][rows]
        edges = np.quantile(pg, np.linspace(0, 1, 11))
        bins = np.clip(np.searchsorted(edges, pg, side="right") - 1, 0, 9)
        mean_p = [pg[bins == b].mean() for b in range(10)]
        rate = [yg[bins == b].mean() for b in range(10)]
        ax.plot(mean_p, rate, "o-", color=color, label=f"group {g}")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_title(name)
    ax.set_xlabel("mean predicted probability")
axes[0].set_ylabel("observed positive rate")
axes[0].legend()
plt.show()
