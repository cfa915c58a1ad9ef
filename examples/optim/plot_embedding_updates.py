"""
==============================================================
Row-normalised embedding updates against AdamW, on rare levels
==============================================================

A regression MLP with a categorical embedding: 300 levels drawn with
Zipf frequencies, so a few levels fill most batches and most levels are
rare. Three optimizers train it for the same number of steps, at the same
AdamW-unit learning rate (:class:`~skml.optim.BlockOptimizer` scales every
rule to AdamW's update RMS):

- AdamW everywhere;
- ``rules="muon"``: the polar update on the hidden matrices, AdamW on the
  embedding;
- ``rules="symmetry"``: the polar update on the hidden matrices and the row
  norm on the embedding table (its symmetry is a permutation of the levels
  times a rotation of the embedding space).

The left panel shows the validation error. The right panel shows how far
each level's embedding row moved in the last 100 steps, against how often
the level occurs. Row normalisation moves every row with a nonzero momentum
by the same amount, so rare levels keep moving along their decaying, stale
momentum; ``row_threshold`` (not used here) makes such rows move in
proportion to their momentum.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from skml.optim import BlockOptimizer, block_param_groups

rng = np.random.default_rng(0)
levels, n = 300, 6000
freq = 1.0 / np.arange(1, levels + 1) ** 1.1
freq /= freq.sum()
cat = rng.choice(levels, size=n, p=freq)
num = rng.normal(size=(n, 4))
effect = rng.normal(size=levels)
y = (
    effect[cat]
    + np.sin(2 * num[:, 0])
    + num[:, 1] * num[:, 2]
    + 0.3 * rng.normal(size=n)
)
cat_t, num_t = torch.as_tensor(cat), torch.as_tensor(num, dtype=torch.float32)
y_t = torch.as_tensor(y, dtype=torch.float32)
train, val = slice(0, 5000), slice(5000, n)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(levels, 8)
        self.hidden = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 64))
        self.out = nn.Linear(64, 1)

    def forward(self, c, x):
        h = torch.relu(self.hidden(torch.cat([self.embed(c), x], dim=1)))
        return self.out(h).squeeze(1)


def train_one(kind, steps=600, lr=3e-3, seed=0):
    torch.manual_seed(seed)
    model = Net()
    if kind == "AdamW":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95))
    else:
        opt = BlockOptimizer(block_param_groups(model), lr=lr, rules=kind)
    gen = torch.Generator().manual_seed(seed)
    curve, snapshot = [], None
    for step in range(steps):
        idx = torch.randint(0, 5000, (128,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(cat_t[idx], num_t[idx]), y_t[idx])
        loss.backward()
        opt.step()
        if step == steps - 100:
            snapshot = model.embed.weight.detach().clone()
        if step % 20 == 19:
            with torch.no_grad():
                pred = model(cat_t[val], num_t[val])
                curve.append(float(nn.functional.mse_loss(pred, y_t[val])))
    moved = torch.linalg.vector_norm(model.embed.weight.detach() - snapshot, dim=1)
    return np.array(curve), moved.numpy()


runs = {kind: train_one(kind) for kind in ("AdamW", "muon", "symmetry")}
counts = np.bincount(cat[train], minlength=levels)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for kind, (curve, moved) in runs.items():
    axes[0].plot(20 * np.arange(1, len(curve) + 1), curve, label=kind)
    seen = counts > 0
    axes[1].loglog(counts[seen], moved[seen] + 1e-6, ".", alpha=0.5, label=kind)
axes[0].set_xlabel("step")
axes[0].set_ylabel("validation MSE")
axes[0].set_ylim(0, None)
axes[0].legend()
axes[1].set_xlabel("training rows of the level")
axes[1].set_ylabel("row moved in the last 100 steps")
axes[1].legend()
fig.tight_layout()

for kind, (curve, _) in runs.items():
    print(f"{kind:>9}: final validation MSE {curve[-1]:.3f}")
