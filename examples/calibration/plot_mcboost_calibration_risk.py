"""
==============================================
The calibration-risk path of MCBoostRegressor
==============================================

Multicalibration boosting post-processes a model so that its predictions are
unbiased on subgroups and on level sets of the prediction. Ye & Li (2026)
stress that enforcing it trades calibration against risk and that early
stopping controls the trade-off. This example draws that path on the design
S3 of :func:`skml.datasets.make_multicalibration_regression`: a random forest
that is accurate (R^2 about 0.8) but pulls its extreme predictions toward the
mean. We run 60 rounds without early stopping, score every stage with
:meth:`~skml.calibration.MCBoostRegressor.staged_predict`, and mark the
number of rounds that the default (cross-validated) stopping rule picks,
and the default model itself: after the stop it rescales its correction on
the held-out rows of the selection folds (``unshrink``).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from skml.calibration import MCBoostRegressor
from skml.datasets import make_multicalibration_regression
from skml.metrics import multicalibration_error

data = make_multicalibration_regression(8000, design="S3", random_state=0)
fit_args = (data.X_audit, data.y_audit)
groups = {"groups": data.groups_audit}

chosen = MCBoostRegressor(data.estimator, random_state=0).fit(*fit_args, **groups)
# The path runs well past the chosen number of rounds.
n_path = max(60, 2 * chosen.n_iter_)
path = MCBoostRegressor(
    data.estimator, early_stopping=False, max_iter=n_path, random_state=0
)
path.fit(*fit_args, **groups)

mse, mce = [], []
for pred in path.staged_predict(data.X_test, groups=data.groups_test):
    mse.append(np.mean((data.y_test - pred) ** 2))
    mce.append(
        multicalibration_error(
            data.y_test, pred, groups=data.groups_test, X=data.X_test
        )
    )
print(f"rounds chosen by early stopping: {chosen.n_iter_}")
print(f"test MSE  base {mse[0]:.4f} -> chosen {mse[chosen.n_iter_]:.4f}")
print(f"test MCE  base {mce[0]:.2f} -> chosen {mce[chosen.n_iter_]:.2f} (sigma)")
own = chosen.predict(data.X_test, groups=data.groups_test)
own_mse = np.mean((data.y_test - own) ** 2)
own_mce = multicalibration_error(
    data.y_test, own, groups=data.groups_test, X=data.X_test
)
print(
    f"the default model, rescaled by unshrink_ = {np.round(chosen.unshrink_, 3)}: "
    f"test MSE {own_mse:.4f}, MCE {own_mce:.2f}"
)

# %%
# Test risk and multicalibration error along the rounds. Round 0 is the base
# model; the dashed line is the number of rounds the default stopping rule
# chose without looking at the test data, and the star the default model's
# own score (those rounds, rescaled).
rounds = np.arange(len(mse))
fig, ax = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
ax[0].plot(rounds, mse, marker="o")
ax[0].set(xlabel="rounds", ylabel="test MSE", title="risk")
ax[1].plot(rounds, mce, marker="o", color="C1")
ax[1].set(xlabel="rounds", ylabel="MCE (sigma scale)", title="multicalibration error")
for a in ax:
    a.axvline(chosen.n_iter_, color="k", linestyle="--", label="chosen T")
ax[0].plot(chosen.n_iter_, own_mse, "k*", markersize=12)
ax[1].plot(chosen.n_iter_, own_mce, "k*", markersize=12, label="default model")
ax[1].legend()
plt.show()
