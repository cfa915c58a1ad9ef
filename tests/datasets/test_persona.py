import numpy as np
import pytest
import torch

from skml.datasets._persona import (
    CONFIGS,
    PersonaToyNet,
    make_persona_drift,
    persona_metrics,
)

SIZES = {"n_finetune": 300, "n_probe": 200, "n_reference": 100, "n_test": 150}


def _make(**kwargs):
    return make_persona_drift(**{**SIZES, "random_state": 0, **kwargs})


def _tv(a, b, k):
    pa = np.bincount(a, minlength=k) / a.size
    pb = np.bincount(b, minlength=k) / b.size
    return 0.5 * np.abs(pa - pb).sum()


def test_shapes_and_dtypes():
    d = _make(n_hidden=40, n_classes=6)
    for key, n in (
        ("X", 300),
        ("X_test", 150),
        ("X_probe", 200),
        ("X_reference", 100),
    ):
        assert d[key].shape == (n, 40) and d[key].dtype == np.float32, key
    for key, n in (("y", 300), ("y_clean", 300), ("y_test", 150)):
        assert d[key].shape == (n,) and d[key].dtype == np.int64, key
        assert d[key].min() >= 0 and d[key].max() < 6
    assert d.s_probe.shape == (200,) and d.s_probe.dtype == np.float64
    assert d.true_direction.shape == (40,) and d.true_direction.dtype == np.float64
    assert d.task_head.shape == d.probe_head.shape == (6, 40)
    assert d.task_head.dtype == d.probe_head.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(d.true_direction), 1.0)
    assert isinstance(d.module, PersonaToyNet)
    assert d.config == {**CONFIGS["A"], "sft": 0.0, "noise": 0.05}


def test_seeded_reproducibility():
    a, b, c = _make(), _make(), _make(random_state=1)
    for key in ("X", "y", "y_clean", "X_test", "y_test", "X_probe", "s_probe"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a.task_head, b.task_head)
    assert not np.array_equal(a.X, c.X)
    # each split has its own stream: resizing one leaves the others alone
    e = _make(n_test=10)
    np.testing.assert_array_equal(a.X, e.X)
    np.testing.assert_array_equal(a.X_probe, e.X_probe)
    np.testing.assert_array_equal(a.task_head, e.task_head)


def test_pretrained_module_is_identity_then_task_head():
    state = torch.random.get_rng_state()
    d = _make()
    # building the module does not draw from torch's global generator
    assert torch.equal(state, torch.random.get_rng_state())
    net = d.module
    assert not net.head.weight.requires_grad and net.residual.weight.requires_grad
    assert torch.count_nonzero(net.residual.weight) == 0
    with torch.no_grad():
        logits = net(torch.as_tensor(d.X)).numpy()
        rep = net.representation(torch.as_tensor(d.X)).numpy()
    np.testing.assert_array_equal(rep, d.X)
    np.testing.assert_allclose(logits, d.X @ d.task_head.T, rtol=1e-5, atol=1e-5)


def test_persona_orthogonal_to_other_subspaces():
    d = _make(noise=0.0, sft=1.0)
    v = d.true_direction
    # noiseless probe inputs carry s exactly along v* and nothing else there
    np.testing.assert_allclose(d.X_probe @ v, d.s_probe, atol=1e-5)
    # the heads see task features, c and e_ctx only through v*:
    # R h = (R v*) (v* . h) for noiseless inputs of either domain
    for X in (d.X_probe, d.X):
        for R in (d.task_head, d.probe_head):
            np.testing.assert_allclose(
                X @ R.T, np.outer(X @ v, R @ v), rtol=1e-4, atol=1e-4
            )
    # the output subspaces O_t and O_p are orthogonal to each other and to v*
    P = np.eye(v.size) - np.outer(v, v)
    np.testing.assert_allclose((d.task_head @ P) @ (d.probe_head @ P).T, 0, atol=1e-12)


def test_pretrained_metrics():
    d = _make()
    m = persona_metrics(d.module, d)
    assert set(m) == {"drift", "probe_kl", "persona_r2", "task_nll", "task_accuracy"}
    assert m["drift"] == 0.0 and m["probe_kl"] == 0.0
    assert m["persona_r2"] > 0.8
    assert all(isinstance(value, float) for value in m.values())


def test_labels_depend_on_persona_shift():
    d = _make(n_finetune=2000)
    assert _tv(d.y, d.y_clean, 8) > 0.15
    assert np.mean(d.y != d.y_clean) > 0.2
    # with no shift the two label sets coincide (shared Gumbel noise)
    d0 = _make(config={"tau": 1, "delta": 0, "gs": 1, "ts": 1})
    np.testing.assert_array_equal(d0.y, d0.y_clean)


def test_config_b_and_dict_configs():
    b = _make(config="B")
    assert b.config == {**CONFIGS["B"], "sft": 0.0, "noise": 0.05}
    same = _make(config=dict(CONFIGS["B"]))
    np.testing.assert_array_equal(b.y, same.y)
    np.testing.assert_array_equal(b.task_head, same.task_head)
    assert not np.array_equal(_make(config="A").task_head, b.task_head)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_hidden": 26},  # 11 + 2 * 8 = 27 are needed
        {"n_hidden": 20, "n_classes": 5},
        {"n_classes": 1},
        {"n_finetune": 0},
        {"sft": -1.0},
        {"noise": float("nan")},
        {"config": "C"},
        {"config": {"tau": 1, "delta": 3}},
        {"config": {"tau": 1, "delta": 3, "gs": 1, "ts": 1, "extra": 0}},
        {"config": 3},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        _make(**kwargs)


def test_smallest_width_works():
    d = _make(n_hidden=27)
    assert d.X.shape[1] == 27


def test_metrics_of_a_shifted_model():
    d = _make()
    v = torch.as_tensor(d.true_direction, dtype=torch.float32)
    net = d.module
    with torch.no_grad():
        # residual(h) = 0.5 v* (c . h): a constant shift on the probe domain
        c_dir = d.X_probe.mean(axis=0) - d.s_probe.mean() * d.true_direction
        c_dir = torch.as_tensor(c_dir / np.linalg.norm(c_dir) ** 2, dtype=torch.float32)
        net.residual.weight.copy_(0.5 * torch.outer(v, c_dir))
    m = persona_metrics(net, d)
    assert abs(m["drift"] - 0.5) < 0.05
    assert m["probe_kl"] > 0.01

    # a plain callable: logits come from the frozen task head
    def shift(x):
        return x + 0.5 * v

    m2 = persona_metrics(shift, d)
    assert abs(m2["drift"] - 0.5) < 1e-5
    np.testing.assert_allclose(m2["persona_r2"], m["persona_r2"], atol=0.05)

    class Wrapped:  # skorch-style: the module is ``module_``
        module_ = net

    assert persona_metrics(Wrapped(), d) == m
    assert net.training  # restored after the eval-mode pass


def test_metrics_without_test_set_and_with_X():
    d = _make()
    del d["X_test"]
    m = persona_metrics(d.module, d, X=d.X_probe[::-1].copy())
    assert set(m) == {"drift", "probe_kl", "persona_r2"}
    # reversed rows no longer match s_probe
    assert m["persona_r2"] < 0.2
    with pytest.raises(ValueError, match="rows"):
        persona_metrics(d.module, d, X=d.X_probe[:10])
