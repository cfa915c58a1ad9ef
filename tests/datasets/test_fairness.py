"""make_fair_classification: the Zafar et al. generator."""

import numpy as np

from skml.datasets import make_fair_classification


def test_attribute_is_correlated_with_the_label_and_rotation_controls_it():
    X, y, s = make_fair_classification(20000, random_state=0)
    assert X.shape == (20000, 2)
    assert abs(y.mean() - 0.5) < 0.02
    strong = np.corrcoef(y, s)[0, 1]
    _, y2, s2 = make_fair_classification(20000, rotation=np.pi / 2, random_state=0)
    weak = np.corrcoef(y2, s2)[0, 1]
    assert strong > 0.4 and weak < strong


def test_seeded():
    a = make_fair_classification(100, random_state=3)
    b = make_fair_classification(100, random_state=3)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
