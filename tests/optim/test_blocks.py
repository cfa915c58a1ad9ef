import numpy as np
import pytest
import torch
from torch import nn

from skml.optim import BlockOptimizer, block_param_groups, label_blocks


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.w_gate = nn.Linear(8, 12, bias=False)
        self.w_up = nn.Linear(8, 12, bias=False)
        self.w_down = nn.Linear(12, 8, bias=False)
        self.norm = nn.LayerNorm(8)
        self.lm_head = nn.Linear(8, 20)

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.w_down(nn.functional.silu(self.w_gate(h)) * self.w_up(h))
        return self.lm_head(self.norm(h))


SWIGLU = {
    "w_gate.weight": "swiglu_in",
    "w_up.weight": "swiglu_in",
    "w_down.*": "swiglu_out",
}


def test_labels():
    labels = dict(label_blocks(_Tiny(), overrides=SWIGLU, head="lm_head"))
    assert {k: v["block"] for k, v in labels.items()} == {
        "embed.weight": "embedding",
        "w_gate.weight": "swiglu_in",
        "w_up.weight": "swiglu_in",
        "w_down.weight": "swiglu_out",
        "norm.weight": "vector",
        "norm.bias": "vector",
        "lm_head.weight": "lm_head",
        "lm_head.bias": "vector",
    }
    # without a head, the last linear layer is a plain matrix
    assert dict(label_blocks(_Tiny()))["lm_head.weight"] == {"block": "matrix"}


def test_frozen_parameters_are_left_out():
    model = _Tiny()
    model.embed.weight.requires_grad_(False)
    assert "embed.weight" not in dict(label_blocks(model))


def test_groups_gather_by_block():
    groups = block_param_groups(_Tiny(), overrides=SWIGLU, head="lm_head")
    assert [g["block"] for g in groups] == [
        "embedding",
        "swiglu_in",
        "swiglu_out",
        "vector",
        "lm_head",
    ]
    assert sum(len(g["params"]) for g in groups) == 8


def test_bad_labels():
    with pytest.raises(ValueError, match="not a submodule"):
        label_blocks(_Tiny(), head="head")
    with pytest.raises(ValueError, match="Unknown block"):
        label_blocks(_Tiny(), overrides={"*": "conv"})
    with pytest.raises(ValueError, match="one output"):
        label_blocks(nn.Sequential(nn.Linear(3, 1)), head="0")
    with pytest.raises(ValueError, match="no 2-D weight"):
        label_blocks(_Tiny(), head="norm")


def test_symmetry_stack_trains_the_tiny_lm():
    torch.manual_seed(0)
    model = _Tiny()
    tokens = torch.randint(0, 20, (64,))
    groups = block_param_groups(model, overrides=SWIGLU, head="lm_head")
    opt = BlockOptimizer(groups, lr=0.01)

    # learn to predict the next token of a fixed sequence
    def loss():
        return nn.functional.cross_entropy(model(tokens[:-1]), tokens[1:])

    with torch.no_grad():
        start = float(loss())
    for _ in range(200):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        assert float(loss()) < 0.5 * start


def test_skorch_param_groups_and_lr():
    from skorch import NeuralNetClassifier

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    module = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    net = NeuralNetClassifier(
        module,
        criterion=nn.CrossEntropyLoss,  # the module outputs logits
        optimizer=BlockOptimizer,
        optimizer__param_groups=label_blocks(module, head="2"),
        lr=0.02,  # skorch passes lr at the top level
        max_epochs=30,
        batch_size=50,
        train_split=None,
        verbose=0,
    )
    net.fit(X, y)
    blocks = [g["block"] for g in net.optimizer_.param_groups]
    assert blocks == ["matrix", "vector", "lm_head", "vector"]
    assert all(g["lr"] == 0.02 for g in net.optimizer_.param_groups)
    assert net.score(X, y) > 0.9
