"""LoRALinear and the peft-style target selection of add_lora."""

import math
import re

import pytest
import torch
from torch import nn

from skml.finetune._lora import (
    LoRALinear,
    add_lora,
    freeze_except_lora,
    lora_factors,
    lora_layers,
)


def _randomise(layer, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_A.weight.copy_(torch.randn(layer.lora_A.weight.shape, generator=g))
        layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(6, 6)
        self.v = nn.Linear(6, 6)
        self.mlp = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 6))
        self.norm = nn.LayerNorm(6)

    def forward(self, x):
        return self.norm(x + self.mlp(self.q(x) + self.v(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


LINEARS = [
    "blocks.0.q",
    "blocks.0.v",
    "blocks.0.mlp.0",
    "blocks.0.mlp.2",
    "blocks.1.q",
    "blocks.1.v",
    "blocks.1.mlp.0",
    "blocks.1.mlp.2",
    "head",
]


def test_identity_at_init_and_freezes_base():
    base = nn.Linear(5, 3)
    layer = LoRALinear(base, r=2)
    x = torch.randn(4, 5)
    assert torch.equal(layer(x), base(x))
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    assert torch.count_nonzero(layer.lora_A.weight) > 0
    assert not any(p.requires_grad for p in base.parameters())
    assert layer.lora_A.weight.requires_grad and layer.lora_B.weight.requires_grad
    assert layer.base_layer is base
    assert (layer.in_features, layer.out_features) == (5, 3)
    assert layer.lora_A.weight.shape == (2, 5)
    assert layer.lora_B.weight.shape == (3, 2)
    assert layer.lora_A.bias is None and layer.lora_B.bias is None
    assert layer.weight is base.weight and layer.bias is base.bias


def test_kaiming_init_bound_and_generator():
    # peft: kaiming_uniform_(a=sqrt(5)) -> U(-1/sqrt(in), 1/sqrt(in)).
    base = nn.Linear(400, 3)
    a = LoRALinear(base, r=8, generator=torch.Generator().manual_seed(1))
    bound = 1 / math.sqrt(400)
    w = a.lora_A.weight
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.9 * bound
    b = LoRALinear(nn.Linear(400, 3), r=8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.lora_A.weight, b.lora_A.weight)


def test_generator_leaves_global_rng_alone():
    base = nn.Linear(7, 3)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    LoRALinear(base, r=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(3), expected)


def test_delta_weight_is_the_change_of_the_effective_weight():
    base = nn.Linear(5, 3).double()
    layer = LoRALinear(base, r=2, lora_alpha=3.0)
    assert layer.lora_A.weight.dtype == torch.float64
    _randomise(layer)
    x = torch.randn(10, 5, dtype=torch.float64)
    delta = layer.delta_weight()
    assert delta.shape == (3, 5)
    assert torch.count_nonzero(delta) > 0
    torch.testing.assert_close(layer(x) - base(x), x @ delta.T)
    torch.testing.assert_close(delta, 1.5 * layer.lora_B.weight @ layer.lora_A.weight)


@pytest.mark.parametrize(
    "r, alpha, rslora, expected",
    [
        (4, None, False, 1.0),
        (4, None, True, 2.0),  # 4 / sqrt(4)
        (4, 8, False, 2.0),
        (16, 8, True, 2.0),  # 8 / sqrt(16)
        (2, 1, False, 0.5),
    ],
)
def test_scaling(r, alpha, rslora, expected):
    layer = LoRALinear(nn.Linear(3, 3), r=r, lora_alpha=alpha, use_rslora=rslora)
    assert layer.scaling == pytest.approx(expected)
    assert layer.lora_alpha == (r if alpha is None else alpha)


def test_invalid_construction():
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.ReLU())
    with pytest.raises(ValueError, match="r must be"):
        LoRALinear(nn.Linear(2, 2), r=0)
    with pytest.raises(ValueError, match="lora_alpha"):
        LoRALinear(nn.Linear(2, 2), lora_alpha=-1.0)


def test_gradients_reach_only_the_factors():
    layer = LoRALinear(nn.Linear(4, 3), r=2)
    _randomise(layer)
    layer(torch.randn(5, 4)).sum().backward()
    assert layer.base_layer.weight.grad is None
    assert layer.lora_A.weight.grad is not None
    assert layer.lora_B.weight.grad is not None


def _wrapped_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]


@pytest.mark.parametrize(
    "target, expected",
    [
        (["q"], ["blocks.0.q", "blocks.1.q"]),
        (
            ["q", "mlp.2"],
            ["blocks.0.q", "blocks.0.mlp.2", "blocks.1.q", "blocks.1.mlp.2"],
        ),
        (("blocks.1.v",), ["blocks.1.v"]),
        (
            r"blocks\.\d+\.(q|v)",
            ["blocks.0.q", "blocks.0.v", "blocks.1.q", "blocks.1.v"],
        ),
        # A regex that also matches containers selects only the Linear layers.
        (
            r"blocks\.0.*",
            ["blocks.0.q", "blocks.0.v", "blocks.0.mlp.0", "blocks.0.mlp.2"],
        ),
        ("all-linear", LINEARS),
    ],
)
def test_add_lora_selects_exactly_the_matched_names(target, expected):
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(3, 6)
    before = model(x)
    out = add_lora(model, target, r=2)
    assert list(out) == expected
    assert _wrapped_names(model) == expected
    assert all(model.get_submodule(n) is out[n] for n in expected)
    for name in LINEARS:
        if name not in expected:
            assert type(model.get_submodule(name)) is nn.Linear
    torch.testing.assert_close(model(x), before)  # B = 0: same function
    assert lora_layers(model) == out


def test_suffix_does_not_match_a_partial_component():
    model = Net()
    # "0" is a suffix of "blocks.0" (a Block) and "blocks.0.mlp.0" (a Linear).
    with pytest.raises(ValueError, match=r"'blocks\.0'.*not an nn.Linear.*Block"):
        add_lora(model, ["0"])
    # "lock" is not a component-wise suffix of anything.
    with pytest.raises(ValueError, match="'lock' matches no module"):
        add_lora(model, ["lock"])


def test_bad_targets_list_the_linear_layers():
    model = Net()
    listing = ", ".join(LINEARS)
    with pytest.raises(ValueError, match=re.escape(listing)) as info:
        add_lora(model, ["q", "k_proj"])
    assert "'k_proj'" in str(info.value)
    with pytest.raises(ValueError, match="no nn.Linear matches") as info:
        add_lora(model, r"nothing.*")
    assert listing in str(info.value)
    with pytest.raises(ValueError, match="not an nn.Linear.*LayerNorm"):
        add_lora(model, ["norm"])
    with pytest.raises(ValueError, match="not an nn.Linear"):
        add_lora(model, r"blocks\.0\.norm")
    with pytest.raises(ValueError, match="target_modules"):
        add_lora(model, [])
    with pytest.raises(ValueError, match="target_modules"):
        add_lora(model, 3)
    # Nothing was wrapped by the failed calls.
    assert _wrapped_names(model) == []


def test_add_lora_does_not_wrap_twice():
    model = Net()
    first = add_lora(model, ["q"], r=2)
    second = add_lora(model, "all-linear", r=3)
    assert list(second) == LINEARS
    for name, layer in first.items():
        assert second[name] is layer
        assert layer.r == 2
        assert isinstance(layer.base_layer, nn.Linear)
    # The factors of existing wrappers are never targets themselves.
    assert _wrapped_names(model) == LINEARS
    with pytest.raises(ValueError, match="'lora_A' matches no module"):
        add_lora(model, ["lora_A"])


def test_add_lora_generator_is_reproducible():
    a, b = Net(), Net()
    la = add_lora(a, "all-linear", r=2, generator=torch.Generator().manual_seed(3))
    lb = add_lora(b, "all-linear", r=2, generator=torch.Generator().manual_seed(3))
    for name in LINEARS:
        assert torch.equal(la[name].lora_A.weight, lb[name].lora_A.weight)
    assert not torch.equal(
        la["blocks.0.q"].lora_A.weight, la["blocks.0.v"].lora_A.weight
    )


def test_add_lora_skips_multihead_attention_out_proj():
    model = nn.Sequential(nn.MultiheadAttention(4, 2), nn.Linear(4, 4))
    assert list(add_lora(model, "all-linear")) == ["1"]
    with pytest.raises(ValueError, match="MultiheadAttention"):
        add_lora(model, ["out_proj"])


def test_add_lora_on_a_bare_linear_raises():
    with pytest.raises(ValueError, match="LoRALinear"):
        add_lora(nn.Linear(3, 3), "all-linear")


def test_freeze_except_lora():
    model = Net()
    add_lora(model, ["q", "v"], r=2)
    freeze_except_lora(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert all(n.endswith(("lora_A.weight", "lora_B.weight")) for n in trainable)
    assert len(trainable) == 2 * 4
    freeze_except_lora(model, also=("head",))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable
    assert "blocks.0.mlp.0.weight" not in trainable
    assert "blocks.0.q.base_layer.weight" not in trainable
    assert len(trainable) == 2 * 4 + 2
    with pytest.raises(ValueError, match="classifier"):
        freeze_except_lora(model, also=["classifier"])


class _PeftStyleLinear(nn.Module):
    """peft's LoRA layer by its attributes: dicts of factors by adapter name."""

    def __init__(self, base, adapters):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.scaling = {}
        for name, (r, alpha) in adapters.items():
            self.lora_A[name] = nn.Linear(base.in_features, r, bias=False)
            self.lora_B[name] = nn.Linear(r, base.out_features, bias=False)
            nn.init.normal_(self.lora_B[name].weight)
            self.scaling[name] = alpha / r
        self.active_adapters = [next(iter(adapters))]


def test_lora_factors_reads_peft_style_layers_and_ours():
    torch.manual_seed(0)
    model = nn.Sequential(
        _PeftStyleLinear(nn.Linear(5, 4), {"default": (2, 4), "other": (3, 3)}),
        nn.Linear(4, 4),
    )
    add_lora(model, ["1"], r=2, lora_alpha=6)
    found = lora_factors(model)
    assert list(found) == ["0", "1"]
    A, B, scaling = found["0"]
    assert torch.equal(A, model[0].lora_A["default"].weight) and scaling == 2.0
    A, B, scaling = lora_factors(model, adapter_name="other")["0"]
    assert A.shape == (3, 5) and B.shape == (4, 3) and scaling == 1.0
    assert found["1"][2] == 3.0
    with pytest.raises(ValueError, match="no adapter 'missing'"):
        lora_factors(model, adapter_name="missing")


def test_lora_factors_of_a_real_peft_model_feed_identification():
    peft = pytest.importorskip("peft")
    from skml.finetune import identify_spurious_directions

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    model = peft.get_peft_model(
        base, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["0"])
    )
    layer = model.get_submodule("base_model.model.0")
    v = torch.zeros(6)
    v[3] = 1.0
    with torch.no_grad():  # a rank-1 update that writes along v
        layer.lora_B["default"].weight.copy_(torch.outer(v, torch.tensor([1.0, 0.0])))
    factors = lora_factors(model)
    assert list(factors) == ["base_model.model.0"]
    found = identify_spurious_directions(factors)
    direction = found.directions["base_model.model.0"][0]
    assert abs(direction @ v.numpy()) == pytest.approx(1.0)
