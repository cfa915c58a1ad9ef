"""Identification of spurious directions from LoRA factors."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from skml.finetune._identify import (
    IdentificationWarning,
    _cov_sqrt_times,
    identify_spurious_directions,
    lora_factors_svd,
    projector,
)
from skml.finetune._lora import LoRALinear


def _unit(rng, d):
    x = rng.normal(size=d)
    return x / np.linalg.norm(x)


def _abs_cos(a, b):
    return abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.mark.parametrize("out, inp, r", [(7, 9, 3), (12, 5, 4), (6, 6, 1)])
@pytest.mark.parametrize("scaling", [0.5, -2.0])
def test_lora_factors_svd_matches_dense_svd(out, inp, r, scaling):
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(r, inp)), rng.normal(size=(out, r))
    dense = scaling * B @ A
    U, S, V = lora_factors_svd(A, B, scaling)
    Ud, Sd, Vtd = np.linalg.svd(dense)
    assert U.shape == (out, r) and S.shape == (r,) and V.shape == (inp, r)
    assert U.dtype == S.dtype == V.dtype == np.float64
    np.testing.assert_allclose(S, Sd[:r], rtol=1e-10)
    assert np.all(np.diff(S) <= 0)
    for j in range(r):
        assert _abs_cos(U[:, j], Ud[:, j]) == pytest.approx(1, abs=1e-8)
        assert _abs_cos(V[:, j], Vtd[j]) == pytest.approx(1, abs=1e-8)
    np.testing.assert_allclose(U @ np.diag(S) @ V.T, dense, atol=1e-10)
    np.testing.assert_allclose(U.T @ U, np.eye(r), atol=1e-12)
    np.testing.assert_allclose(V.T @ V, np.eye(r), atol=1e-12)


def test_lora_factors_svd_rank_above_width():
    # r = 4 > in = 3: at most 3 singular directions exist.
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(4, 3)), rng.normal(size=(6, 4))
    U, S, V = lora_factors_svd(A, B, 1.0)
    assert U.shape == (6, 3) and S.shape == (3,) and V.shape == (3, 3)
    np.testing.assert_allclose(U @ np.diag(S) @ V.T, B @ A, atol=1e-10)


def test_lora_factors_svd_accepts_tensors_and_checks_shapes():
    layer = LoRALinear(nn.Linear(5, 4), r=2)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    U, S, V = lora_factors_svd(layer.lora_A.weight, layer.lora_B.weight, layer.scaling)
    dense = layer.delta_weight().detach().double().numpy()
    np.testing.assert_allclose(U @ np.diag(S) @ V.T, dense, atol=1e-6)
    with pytest.raises(ValueError, match="same r"):
        lora_factors_svd(np.ones((2, 5)), np.ones((4, 3)), 1.0)


def _planted(rng, out=20, inp=15, r=4, strength=5.0, noise=0.05):
    """Factors of strength * u v^T plus a small rank-(r-1) noise update."""
    u, v = _unit(rng, out), _unit(rng, inp)
    B = np.column_stack([strength * u, noise * rng.normal(size=(out, r - 1))])
    A = np.vstack([v, noise * rng.normal(size=(r - 1, inp))])
    return A, B, u, v


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svd_recovers_a_planted_rank_one_component(seed):
    rng = np.random.default_rng(seed)
    A, B, u, v = _planted(rng)
    # Mix the factors: B A is invariant under B -> B M, A -> M^{-1} A.
    M = rng.normal(size=(4, 4)) + 3 * np.eye(4)
    A, B = np.linalg.solve(M, A), B @ M
    layers = {"fc": (A, B, 0.7)}
    out = identify_spurious_directions(layers, side="output")
    inp = identify_spurious_directions(layers, side="input")
    assert out.directions["fc"].shape == (1, 20)
    assert inp.directions["fc"].shape == (1, 15)
    assert _abs_cos(out.directions["fc"][0], u) >= 0.99
    assert _abs_cos(inp.directions["fc"][0], v) >= 0.99
    assert out.explained_ratio["fc"] > 0.99
    assert out.side["fc"] == "output" and inp.side["fc"] == "input"
    assert out.singular_values["fc"].shape == (4,)


def test_k_directions_orthonormal_and_ratio():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(4, 10)), rng.normal(size=(8, 4))
    res = identify_spurious_directions({"a": (A, B, 1.0)}, n_directions=3)
    D = res.directions["a"]
    assert D.shape == (3, 8)
    np.testing.assert_allclose(D @ D.T, np.eye(3), atol=1e-12)
    S = np.linalg.svd(B @ A, compute_uv=False)[:4]
    np.testing.assert_allclose(res.singular_values["a"], S, rtol=1e-10)
    assert res.explained_ratio["a"] == pytest.approx((S[:3] ** 2).sum() / (S**2).sum())


def test_accepts_lora_linear_and_side_dict():
    torch.manual_seed(0)
    layers = {
        "w": LoRALinear(nn.Linear(6, 5), r=2),
        "r": LoRALinear(nn.Linear(5, 7), r=2),
    }
    for layer in layers.values():
        with torch.no_grad():
            layer.lora_B.weight.normal_()
    res = identify_spurious_directions(
        layers, side={"w": "output", "r": "input"}, min_explained=0
    )
    assert res.directions["w"].shape == (1, 5)
    assert res.directions["r"].shape == (1, 5)
    assert res.side == {"w": "output", "r": "input"}
    dense = layers["r"].delta_weight().detach().double().numpy()
    v1 = np.linalg.svd(dense)[2][0]
    assert _abs_cos(res.directions["r"][0], v1) == pytest.approx(1, abs=1e-6)
    with pytest.raises(ValueError, match="side has no entry"):
        identify_spurious_directions(layers, side={"w": "output"})
    with pytest.raises(ValueError, match="side of layer"):
        identify_spurious_directions(layers, side="residual")


def test_both_side_uses_output_directions_and_needs_square():
    rng = np.random.default_rng(0)
    A, B, u, _ = _planted(rng, out=10, inp=10)
    both = identify_spurious_directions({"m": (A, B, 1.0)}, side="both")
    out = identify_spurious_directions({"m": (A, B, 1.0)}, side="output")
    np.testing.assert_allclose(both.directions["m"], out.directions["m"])
    assert both.side["m"] == "both"
    A, B, _, _ = _planted(rng, out=10, inp=8)
    with pytest.raises(ValueError, match="square"):
        identify_spurious_directions({"m": (A, B, 1.0)}, side="both")


def _weighted_setup(side, n_ref=4000, seed=0):
    """dW = 1.0 w1 a^T + 0.3 w2 b^T with reference variance 100 along w2.

    The raw SVD picks w1 (larger weight); weighting by the reference
    covariance picks w2 (10 * 0.3 = 3 > 1 * 1).
    """
    rng = np.random.default_rng(seed)
    d = 8
    w1, w2, a, b = np.eye(d)[0], np.eye(d)[1], np.eye(d)[2], np.eye(d)[3]
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]  # rotate off the axes
    w1, w2, a, b = Q @ w1, Q @ w2, Q @ a, Q @ b
    if side == "input":  # the factor is what the map reads
        B, A = np.column_stack([a, 0.3 * b]), np.vstack([w1, w2])
    else:
        B, A = np.column_stack([w1, 0.3 * w2]), np.vstack([a, b])
    X = rng.normal(size=(n_ref, d)) + 5.0  # the mean must not matter
    X += np.outer(rng.normal(size=n_ref) * np.sqrt(99.0), w2)
    return {"m": (A, B, 1.0)}, {"m": X}, w1, w2


@pytest.mark.parametrize("side", ["output", "input"])
def test_cov_weighted_picks_the_high_variance_direction(side):
    layers, reference, w1, w2 = _weighted_setup(side)
    raw = identify_spurious_directions(layers, side=side, min_explained=0)
    weighted = identify_spurious_directions(
        layers, side=side, identify="cov_weighted", reference=reference
    )
    assert _abs_cos(raw.directions["m"][0], w1) >= 0.99
    assert _abs_cos(weighted.directions["m"][0], w2) >= 0.99
    assert _abs_cos(weighted.directions["m"][0], w1) <= 0.1
    assert weighted.singular_values["m"][0] == pytest.approx(3.0, rel=0.1)


def test_cov_sqrt_both_routes_agree():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 10)) @ rng.normal(size=(10, 10))
    M = rng.normal(size=(10, 3))
    svd_route, norm = _cov_sqrt_times(X, M)  # n < d: thin SVD of X
    Xc = X - X.mean(axis=0)
    w, Q = np.linalg.eigh(Xc.T @ Xc / 5)
    root = Q @ np.diag(np.sqrt(np.clip(w, 0, None))) @ Q.T
    # Rank 5 < 10: eigh's round-off eigenvalues (~1e-15) survive the clip as
    # ~3e-8 square roots, hence atol 1e-6.
    np.testing.assert_allclose(svd_route, root @ M, atol=1e-6)
    assert norm == pytest.approx(np.sqrt(w.max()))
    X = np.vstack([X, rng.normal(size=(20, 10))])
    eigh_route, _ = _cov_sqrt_times(X, M)  # n >= d: eigh
    Xc = X - X.mean(axis=0)
    cov = Xc.T @ Xc / (len(X) - 1)
    np.testing.assert_allclose(eigh_route.T @ eigh_route, M.T @ cov @ M, rtol=1e-8)


def test_cov_weighted_reference_errors():
    layers, reference, _, _ = _weighted_setup("output", n_ref=50)
    with pytest.raises(ValueError, match="reference activations for layer 'm'"):
        identify_spurious_directions(layers, identify="cov_weighted")
    with pytest.raises(ValueError, match="reference activations for layer 'm'"):
        identify_spurious_directions(
            layers, identify="cov_weighted", reference={"other": reference["m"]}
        )
    with pytest.raises(ValueError, match=r"shape \(n_ref, 8\)"):
        identify_spurious_directions(
            layers, identify="cov_weighted", reference={"m": reference["m"][:, :5]}
        )
    # A constant reference has no variance along anything.
    with pytest.raises(ValueError, match="no variance"):
        identify_spurious_directions(
            layers, identify="cov_weighted", reference={"m": np.ones((30, 8))}
        )


def test_global_pool_equals_per_module_for_one_layer():
    rng = np.random.default_rng(0)
    A, B, _, _ = _planted(rng)
    for k in (1, 2):
        per = identify_spurious_directions({"m": (A, B, 1.0)}, n_directions=k)
        glob = identify_spurious_directions(
            {"m": (A, B, 1.0)}, n_directions=k, pool="global", min_explained=0
        )
        # Same subspace (signs and bases within it may differ).
        np.testing.assert_allclose(
            projector(glob.directions["m"]), projector(per.directions["m"]), atol=1e-8
        )
        assert glob.explained_ratio["m"] == pytest.approx(per.explained_ratio["m"])


def test_global_pool_shares_one_direction():
    rng = np.random.default_rng(1)
    u = _unit(rng, 12)
    layers = {}
    for i, strength in enumerate([4.0, 3.0, 5.0]):
        # Same written direction, random signs, different reads.
        sign = -1.0 if i % 2 else 1.0
        B = np.column_stack([sign * strength * u, 0.3 * rng.normal(size=(12, 2))])
        A = np.vstack([_unit(rng, 7 + i), 0.3 * rng.normal(size=(2, 7 + i))])
        layers[f"l{i}"] = (A, B, 1.0)
    res = identify_spurious_directions(layers, pool="global")
    first = res.directions["l0"]
    for name in layers:
        np.testing.assert_array_equal(res.directions[name], first)
        assert 0.9 < res.explained_ratio[name] <= 1.0
    assert _abs_cos(first[0], u) >= 0.99
    layers["bad"] = (rng.normal(size=(3, 7)), rng.normal(size=(5, 3)), 1.0)
    with pytest.raises(ValueError, match="one side width"):
        identify_spurious_directions(layers, pool="global")


def test_warning_for_a_flat_spectrum():
    rng = np.random.default_rng(0)
    # Orthonormal factors: all r singular values equal, ratio 1/r.
    A = np.linalg.qr(rng.normal(size=(20, 4)))[0].T
    B = np.linalg.qr(rng.normal(size=(16, 4)))[0]
    with pytest.warns(IdentificationWarning, match="'flat'.*0.250") as record:
        res = identify_spurious_directions({"flat": (A, B, 1.0)})
    assert "spurious_directions=" in str(record[0].message)
    assert "identify='cov_weighted'" in str(record[0].message)
    assert res.explained_ratio["flat"] == pytest.approx(0.25)
    # A dominated spectrum does not warn.
    A2, B2, _, _ = _planted(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentificationWarning)
        identify_spurious_directions({"m": (A2, B2, 1.0)})


@pytest.mark.parametrize("k", [0, 5, -1, 1.0, True, "auto"])
def test_bad_n_directions(k):
    rng = np.random.default_rng(0)
    layers = {"m": (rng.normal(size=(4, 6)), rng.normal(size=(6, 4)), 1.0)}
    with pytest.raises(ValueError, match="n_directions"):
        identify_spurious_directions(layers, n_directions=k)


def test_zero_update_raises():
    layer = LoRALinear(nn.Linear(5, 4), r=2)  # B = 0: untrained
    with pytest.raises(ValueError, match="did not change layer 'fc'"):
        identify_spurious_directions({"fc": layer})


def test_other_invalid_parameters():
    rng = np.random.default_rng(0)
    layers = {"m": (rng.normal(size=(2, 6)), rng.normal(size=(6, 2)), 1.0)}
    for kwargs, match in [
        ({"identify": "pca"}, "identify"),
        ({"pool": "mean"}, "pool"),
        ({"min_explained": 1.5}, "min_explained"),
    ]:
        with pytest.raises(ValueError, match=match):
            identify_spurious_directions(layers, **kwargs)
    with pytest.raises(ValueError, match="non-empty dict"):
        identify_spurious_directions({})
    with pytest.raises(ValueError, match="LoRALinear or an"):
        identify_spurious_directions({"m": nn.Linear(2, 2)})


def test_projector():
    rng = np.random.default_rng(0)
    D = rng.normal(size=(2, 6))
    P = projector(D)
    assert P.dtype == np.float64 and P.shape == (6, 6)
    np.testing.assert_allclose(P, P.T, atol=1e-14)
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    np.testing.assert_allclose(D @ P, 0, atol=1e-12)
    assert np.trace(P) == pytest.approx(4)
    # Dependent rows: only their span (dimension 2) is removed.
    P_dep = projector(np.vstack([D, D[0] + 2 * D[1]]))
    np.testing.assert_allclose(P_dep, P, atol=1e-10)
    np.testing.assert_allclose(projector(D[0]), projector(3 * D[:1]), atol=1e-12)
    with pytest.raises(ValueError, match="all zero"):
        projector(np.zeros((1, 4)))
