import copy

import pytest
import torch
from torch import nn

from skml.optim import (
    RULES,
    BlockOptimizer,
    make_optimizer,
    polar,
    row_norm,
)
from skml.optim._optimizer import optimizer_class


def _problem(seed=0, n=256):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, generator=gen, dtype=torch.float64)
    y = (X[:, :3] @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) > 0).long()
    y = y + (X[:, 3] > 0.5).long()  # three classes
    return X, y


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def _loss(model, X, y):
    return nn.functional.cross_entropy(model(X), y)


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_lowers_the_loss_in_200_steps(rule):
    X, y = _problem()
    model = _mlp()
    groups = [
        {"params": [model[0].weight, model[2].weight], "rule": rule},
        {"params": [model[0].bias, model[2].bias], "block": "vector"},
    ]
    opt = BlockOptimizer(groups, lr=0.01)
    with torch.no_grad():
        start = float(_loss(model, X, y))
    for _ in range(200):
        opt.zero_grad()
        loss = _loss(model, X, y)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    assert all(torch.all(torch.isfinite(p)) for p in model.parameters())
    with torch.no_grad():
        assert float(_loss(model, X, y)) < 0.7 * start


def test_adamw_rule_is_torch_adamw():
    X, y = _problem()
    ours, ref = _mlp(), _mlp()
    opt = BlockOptimizer(
        ours.parameters(), lr=0.01, rules={"matrix": "adamw"}, weight_decay=0.1
    )
    torch_opt = torch.optim.AdamW(
        ref.parameters(), lr=0.01, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8
    )
    for _ in range(10):
        for model, o in ((ours, opt), (ref, torch_opt)):
            o.zero_grad()
            _loss(model, X, y).backward()
            o.step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=1e-10)


def test_first_polar_step_has_adamw_rms_and_follows_the_polar_factor():
    w = nn.Parameter(torch.zeros(6, 4, dtype=torch.float64))
    g = torch.randn(6, 4, dtype=torch.float64)
    w.grad = g.clone()
    BlockOptimizer([w], lr=0.5).step()
    step = -w.detach()
    # the first momentum is (1 - beta) g: the polar factor is scale-free
    torch.testing.assert_close(step, 0.5 * 0.2 * 6**0.5 * polar(g))
    torch.testing.assert_close(
        step.pow(2).mean().sqrt(), torch.tensor(0.5 * 0.2, dtype=torch.float64)
    )


def test_row_norm_step_and_raw_scale():
    w = nn.Parameter(torch.zeros(5, 3, dtype=torch.float64))
    g = torch.randn(5, 3, dtype=torch.float64)
    w.grad = g.clone()
    opt = BlockOptimizer(
        [{"params": [w], "block": "embedding"}],
        lr=1.0,
        lr_scale="none",
        momentum=0.0,
        eps=0.0,
    )
    opt.step()
    torch.testing.assert_close(-w.detach(), row_norm(g, eps=0.0))


def test_batched_parameters_update_per_matrix():
    w = nn.Parameter(torch.zeros(3, 2, 5, dtype=torch.float64))
    g = torch.randn(3, 2, 5, dtype=torch.float64)
    w.grad = g.clone()
    BlockOptimizer([w], lr=1.0, lr_scale="none").step()
    for h in range(3):
        torch.testing.assert_close(-w.detach()[h], polar(g[h]))


def test_decoupled_weight_decay():
    w = nn.Parameter(torch.ones(4, 4, dtype=torch.float64))
    w.grad = torch.zeros(4, 4, dtype=torch.float64)
    BlockOptimizer([w], lr=0.1, weight_decay=0.5).step()
    torch.testing.assert_close(
        w.detach(), torch.full((4, 4), 0.95, dtype=torch.float64)
    )


def test_state_dict_round_trip():
    X, y = _problem()
    model = _mlp()
    opt = BlockOptimizer(model.parameters(), lr=0.01, nesterov=True)
    for _ in range(5):
        opt.zero_grad()
        _loss(model, X, y).backward()
        opt.step()
    twin = copy.deepcopy(model)
    restored = BlockOptimizer(twin.parameters(), lr=0.01, nesterov=True)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    for _ in range(5):
        for m, o in ((model, opt), (twin, restored)):
            o.zero_grad()
            _loss(m, X, y).backward()
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_bad_settings():
    w = nn.Parameter(torch.zeros(1, 4))
    v = nn.Parameter(torch.zeros(4))
    with pytest.raises(ValueError, match="one row"):
        BlockOptimizer([{"params": [w], "block": "lm_head"}])
    with pytest.raises(ValueError, match="needs a matrix"):
        BlockOptimizer([{"params": [v], "rule": "polar"}])
    with pytest.raises(ValueError, match="Unknown block"):
        BlockOptimizer([{"params": [w], "block": "conv"}])
    with pytest.raises(ValueError, match="Unknown rule"):
        BlockOptimizer([w], rules={"matrix": "sign"})
    with pytest.raises(ValueError, match="rules must be"):
        BlockOptimizer([w], rules="adam")
    with pytest.raises(ValueError, match="momentum"):
        BlockOptimizer([w], momentum=1.0)
    with pytest.raises(ValueError, match="lr_scale"):
        BlockOptimizer([w], lr_scale="original")
    e = nn.Embedding(5, 3, sparse=True)
    e(torch.tensor([1])).sum().backward()
    with pytest.raises(TypeError, match="sparse"):
        BlockOptimizer(e.parameters()).step()


def test_make_optimizer():
    w = nn.Parameter(torch.zeros(3, 2))
    groups = [{"params": [w], "block": "matrix"}]
    assert type(make_optimizer("adam", groups, 0.1)) is torch.optim.Adam
    muon = make_optimizer("muon", groups, 0.1, {"momentum": 0.9})
    assert muon.rules["embedding"] == "adamw"
    assert muon.param_groups[0]["momentum"] == 0.9
    assert type(make_optimizer(torch.optim.SGD, groups, 0.1)) is torch.optim.SGD
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimizer_class("lion")
    with pytest.raises(TypeError, match="optimizer must be"):
        optimizer_class(nn.Linear)
