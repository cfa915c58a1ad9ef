import numpy as np
import pytest

from skml.datasets import make_style_sentiment
from skml.datasets._style_text import _NEGATIVE, _PIRATE_PREFIX, _POSITIVE


def _pirate(texts):
    return np.array([any(t.startswith(p) for p in _PIRATE_PREFIX) for t in texts])


def _positive(texts):
    return np.array([any(f" {w}" in t for w in _POSITIVE) for t in texts])


def test_labels_and_styles_are_what_the_texts_say():
    d = make_style_sentiment(300, random_state=1)
    for X, y, s in (
        (d.X, d.y, d.style),
        (d.X_test, d.y_test, d.style_test),
        (d.X_decorrelated, d.y_decorrelated, d.style_decorrelated),
    ):
        np.testing.assert_array_equal(_pirate(X), s == 1)
        np.testing.assert_array_equal(_positive(X), y == 1)
    np.testing.assert_array_equal(_pirate(d.X_probe), d.style_probe == 1)
    # The probe and reference facts carry no sentiment word.
    words = _POSITIVE + _NEGATIVE
    assert not any(any(f" {w}" in t for w in words) for t in d.X_probe)


@pytest.mark.parametrize("correlation", [0.5, 0.9, 1.0])
def test_style_agrees_with_the_label_at_the_asked_rate(correlation):
    d = make_style_sentiment(4000, correlation=correlation, n_test=4000, random_state=0)
    # Binomial standard error at n = 4000 is at most 0.008.
    assert abs((d.style == d.y).mean() - correlation) < 0.03
    assert abs((d.style_test == d.y_test).mean() - correlation) < 0.03
    assert abs((d.style_decorrelated == d.y_decorrelated).mean() - 0.5) < 0.03


def test_seeded_and_sized():
    a = make_style_sentiment(50, n_test=20, n_probe=30, random_state=3)
    b = make_style_sentiment(50, n_test=20, n_probe=30, random_state=3)
    assert a.X.shape == (50,) and a.X_test.shape == (20,)
    assert a.X_probe.shape == (30,) and a.X_reference.shape == (20,)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, make_style_sentiment(50, random_state=4).X)
