"""
Does calibration transfer to a shifted population?
==================================================

A model calibrated on groups is unbiased on any population that differs from
the audit population only along those groups, and may be biased on one that
shifts along something else. :func:`skml.calibration.transfer_report` tells
the two apart from unlabelled target features: it estimates the density ratio
with a cross-fitted classifier, measures how much of it lies in the span the
model was audited on, and bounds the target bias. Here the target rows are
labelled too, so the bound can be checked against the realised bias.
"""

import matplotlib.pyplot as plt
import numpy as np

from skml.calibration import MCBoostRegressor, transfer_report
from skml.datasets import make_covariate_shift_regression

strengths = [0.0, 0.5, 1.0, 1.5]
results = {"inside": [], "outside": []}
for shift in results:
    for strength in strengths:
        data = make_covariate_shift_regression(
            8000, shift=shift, strength=strength, random_state=0
        )
        # Audited on the group only: its span holds the group, not x4.
        model = MCBoostRegressor(
            data.estimator, auditor="groups", bucket_strategy="none", random_state=0
        ).fit(data.X_audit, data.y_audit, groups=data.groups_audit)
        rep = transfer_report(
            model,
            data.X_audit,
            data.y_audit,
            data.X_target,
            groups_source=data.groups_audit,
            groups_target=data.groups_target,
            random_state=0,
        )
        pred = model.predict(data.X_target, groups=data.groups_target)
        realised = float(np.mean(data.y_target - pred))
        results[shift].append((rep.bias_bound, abs(realised), rep.inside_span))
        print(
            f"{shift:7s} strength {strength:.1f}: span share {rep.span_share:.2f}, "
            f"inside {rep.inside_span}, bound {rep.bias_bound:.3f}, "
            f"realised |bias| {abs(realised):.3f}"
        )

fig, ax = plt.subplots(figsize=(6, 4))
for shift, color in (("inside", "tab:blue"), ("outside", "tab:red")):
    bound, realised, _ = zip(*results[shift], strict=True)
    ax.plot(strengths, bound, "--", color=color, label=f"{shift}: bound")
    ax.plot(strengths, realised, "o-", color=color, label=f"{shift}: realised |bias|")
ax.set_xlabel("shift strength")
ax.set_ylabel("target bias of the calibrated model")
ax.set_title("Shifts inside vs outside the audit span")
ax.legend()
fig.tight_layout()
plt.show()
