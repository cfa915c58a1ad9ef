import numpy as np
import pytest

from skml.attention import head_diversity_index


def _random_heads(rng, H, k, d):
    return rng.normal(size=(H, k, d))


def test_identical_heads_have_zero_hdi():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, 5))
    heads = np.stack([W, 3.0 * W, -W])  # same row space, rescaled
    hdi, _, overlap, angles = head_diversity_index(heads)
    assert hdi == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(overlap, 1.0, atol=1e-12)
    np.testing.assert_allclose(angles, 0.0, atol=1e-6)


def test_orthogonal_heads_have_unit_hdi():
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(9, 9)))
    heads = Q.T.reshape(3, 3, 9)
    hdi, hdi_max, overlap, angles = head_diversity_index(heads)
    assert hdi == pytest.approx(1.0)
    assert hdi_max == pytest.approx(1.0)
    np.testing.assert_allclose(angles[0, 1], np.pi / 2)


def test_invariant_to_rotation_inside_each_subspace():
    rng = np.random.default_rng(2)
    heads = _random_heads(rng, 4, 2, 6)
    rotated = np.stack([rng.normal(size=(2, 2)) @ W for W in heads])
    assert head_diversity_index(rotated)[0] == pytest.approx(
        head_diversity_index(heads)[0]
    )


def test_pairwise_and_spectral_forms_agree():
    rng = np.random.default_rng(3)
    H, k, d = 5, 3, 7
    heads = _random_heads(rng, H, k, d)
    hdi, hdi_max, _, angles = head_diversity_index(heads)
    S = np.zeros((d, d))
    for W in heads:
        Q, _ = np.linalg.qr(W.T)
        S += Q @ Q.T
    lam = np.linalg.eigvalsh(S)
    spectral = 1 - (np.sum(lam**2) - H * k) / (H * (H - 1) * k)
    assert hdi == pytest.approx(spectral)
    # mean squared sine of the principal angles
    iu = np.triu_indices(H, 1)
    assert hdi == pytest.approx(np.mean(np.sin(angles[iu]) ** 2))
    # H d_k > d: the heads cannot all be orthogonal
    assert hdi <= hdi_max + 1e-12 < 1


def test_single_head_and_bad_shape():
    assert np.isnan(head_diversity_index(np.ones((1, 2, 3)))[0])
    with pytest.raises(ValueError, match="n_heads, head_dim, n_features"):
        head_diversity_index(np.ones((2, 3)))
