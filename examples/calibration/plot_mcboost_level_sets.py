"""
=================================================
Level sets that a group-only audit cannot see
=================================================

In the design S2 of :func:`skml.datasets.make_multicalibration_regression`
the base model over-disperses one group and under-disperses the other: each
group's mean residual is about zero, so an audit over the groups alone
(multiaccuracy) finds nothing, while the group x level-set cells are far off.
The table of mean residuals per group and decile of the prediction shows it,
before and after :class:`~skml.calibration.MCBoostRegressor`.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from skml.calibration import MCBoostRegressor
from skml.datasets import make_multicalibration_regression
from skml.metrics import multicalibration_error

data = make_multicalibration_regression(8000, design="S2", random_state=0)
group_only = MCBoostRegressor(
    data.estimator, auditor="groups", bucket_strategy="none", random_state=0
)
bucketed = MCBoostRegressor(
    data.estimator,
    auditor="ridge",
    bucket_strategy="quantile",
    n_knots=0,
    learning_rate=0.5,
    random_state=0,
)
default = MCBoostRegressor(data.estimator, random_state=0)
models = {"group-only audit": group_only, "10 buckets": bucketed, "default": default}
preds = {"base": data.estimator.predict(data.X_test)}
for name, model in models.items():
    model.fit(data.X_audit, data.y_audit, groups=data.groups_audit)
    preds[name] = model.predict(data.X_test, groups=data.groups_test)

# %%
fig, axes = plt.subplots(1, 4, figsize=(11, 2.8), layout="constrained", sharey=True)
for ax, (name, pred) in zip(axes, preds.items()):
    details = multicalibration_error(
        data.y_test, pred, groups=data.groups_test[:, 0], return_details=True
    )
    table = details.table["mean_residual"][1:]  # rows a = 0, a = 1; not "all"
    image = ax.imshow(table, cmap="RdBu", vmin=-1.2, vmax=1.2, aspect="auto")
    ax.set(title=f"{name}\nworst cell {np.nanmax(np.abs(table)):.2f}", xlabel="decile")
    ax.set_yticks([0, 1], ["a = 0", "a = 1"])
fig.colorbar(image, ax=axes, label="mean residual")
plt.show()
