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
