"""
======================================================
One gradient step: a spike and an amplified eigenvalue
======================================================

:class:`~skml.kernel_approximation.OneStepFeatureMap` draws a two-layer ReLU
network ``f(x) = a' relu(W0 x)`` and takes one large gradient step on its
first layer. On a single-index target ``y = g(<beta, x>) + noise`` (here
``g(z) = z + (z^2 - 1) / sqrt 2``, d = 100, N = 500 features, 2000 training
rows, all used by the step) the theory says:

- the update ``W1 - W0`` is close to rank one, along ``beta`` (left: its
  singular values, the top one standing out, and how well its top right
  singular vector matches ``beta``);
- so the rows of ``W1`` have a spiked covariance: their second moment
  along ``beta`` grows with the step while the one across stays put
  (middle);
- and the random-features kernel amplifies the eigenvalue of the
  target-aligned function ``<beta, x>`` (right: the spectrum of the
  features' empirical covariance before and after the step; the marked
  eigenvalue is the one whose eigenfunction correlates most with
  ``<beta, x>``).

Step sizes are relative, ``||eta G||_op = step_size ||W0||_op``; the
default is 8 (the research note's checks use 4). ``python -m skml bench
one_step --part spike`` prints the same numbers with the ridge test MSE.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import RidgeCV

from skml.benchmarks.one_step import ALPHAS, index_data, linear_eigenvalue
from skml.kernel_approximation import OneStepFeatureMap, SpikedRandomFeatures

d, N, n = 100, 500, 2000
X, y, _, B, noise_var = index_data("he1+he2", 2 * n, d, seed=0)
beta = B[:, 0]
Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
rng = np.random.default_rng(0)
V = rng.standard_normal((d, 20))
V = np.linalg.qr(V - np.outer(beta, beta @ V))[0].T  # 20 directions orthogonal to beta

steps = [0.0, 1.0, 2.0, 4.0, 8.0]
fits = {}
print("step  spike_ratio  |cos|  d*E(w.beta)^2  d*E(w.v)^2  eig ratio  ridge MSE")
for step in steps:
    fm = OneStepFeatureMap(N, step_size=step, random_state=0).fit(Xtr, ytr)
    W = fm.W_ / fm.scale_  # the rows as they act on the raw inputs
    along, across = d * np.mean((W @ beta) ** 2), d * np.mean((W @ V.T) ** 2)
    eig = linear_eigenvalue(fm, Xte, beta) / np.mean(linear_eigenvalue(fm, Xte, V))
    ridge = RidgeCV(alphas=ALPHAS).fit(fm.transform(Xtr), ytr)
    mse = np.mean((ridge.predict(fm.transform(Xte)) - yte) ** 2)
    cos = abs(fm.spike_direction_ @ beta) if step > 0 else np.nan
    fits[step] = (fm, along, across)
    print(
        f"{step:4.0f}  {fm.spike_ratio_:11.1f}  {cos:5.2f}  {along:13.2f}  "
        f"{across:10.2f}  {eig:9.2f}  {mse:.3f}"
    )
print(f"noise variance {noise_var[0]:.3f}; var(y_test) {np.var(yte):.3f}")

# %%
# The closed form: :class:`~skml.kernel_approximation.SpikedRandomFeatures`
# stretches the same initial rows along the Stein direction ``X'y / n``
# instead of taking the step.
spiked = SpikedRandomFeatures(N, direction="stein", random_state=0).fit(Xtr, ytr)
ridge = RidgeCV(alphas=ALPHAS).fit(spiked.transform(Xtr), ytr)
mse = np.mean((ridge.predict(spiked.transform(Xte)) - yte) ** 2)
print(
    f"SpikedRandomFeatures (theta=25): |cos(direction, beta)| "
    f"{abs(spiked.directions_[0] @ beta):.2f}, ridge MSE {mse:.3f}"
)

# %%
# The spectrum of the features' covariance, before and after the default step.
# For each eigenvector u of the centred features' covariance, ``Phi_c u`` is an
# eigenfunction evaluated on the test rows; we mark the one closest to
# ``<beta, x>``.
spectra = {}
for step in (0.0, 8.0):
    fm = fits[step][0]
    Phi = fm.transform(Xte)
    Phi -= Phi.mean(axis=0)
    lam, U = np.linalg.eigh(Phi.T @ Phi / len(Phi))
    lam, U = lam[::-1], U[:, ::-1]
    top = 40
    funcs = Phi @ U[:, :top]
    lin = (Xte - Xte.mean(axis=0)) @ beta
    corr = np.abs([np.corrcoef(funcs[:, j], lin)[0, 1] for j in range(top)])
    j = int(np.argmax(corr))
    spectra[step] = (lam[:top], j, corr[j])
    print(
        f"step {step:g}: top eigenvalues {np.round(lam[:5], 4)}; the one closest "
        f"to <beta, x> is number {j + 1} ({lam[j]:.4f}, |corr| {corr[j]:.2f}); "
        f"median of the top {top}: {np.median(lam[:top]):.4f}"
    )

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
ax = axes[0]
for step in (1.0, 4.0, 8.0):
    fm = fits[step][0]
    s = np.linalg.svd(fm.W_ - fm.W0_, compute_uv=False)
    ax.semilogy(np.arange(1, 21), s[:20], "o-", ms=3, label=f"step {step:g}")
ax.set_xlabel("index")
ax.set_ylabel("singular value of W1 - W0")
ax.set_title("the update is a spike")
ax.legend(fontsize=8)

ax = axes[1]
ax.semilogy(steps, [fits[s][1] for s in steps], "o-", label="along beta")
ax.semilogy(steps, [fits[s][2] for s in steps], "s-", label="across (mean of 20)")
ax.set_xlabel("relative step size")
ax.set_ylabel("d x mean (w . u)^2 over the rows")
ax.set_title("rows' second moment")
ax.legend(fontsize=8)

ax = axes[2]
for step, marker in ((0.0, "o"), (8.0, "s")):
    lam, j, c = spectra[step]
    (line,) = ax.semilogy(
        np.arange(1, len(lam) + 1), lam, marker, ms=3, label=f"step {step:g}"
    )
    ax.semilogy(
        j + 1,
        lam[j],
        "*",
        ms=14,
        color=line.get_color(),
        label=f"<beta,x> (|r|={c:.2f})",
    )
ax.set_xlabel("eigenvalue index")
ax.set_ylabel("eigenvalue of the features' covariance")
ax.set_title("the target-aligned eigenvalue is amplified")
ax.legend(fontsize=8)
fig.tight_layout()
