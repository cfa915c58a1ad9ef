"""A text task with a spurious style: sentiment reviews, some in pirate speak."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["make_style_sentiment"]

_NOUNS = [
    "movie", "film", "meal", "book", "hotel", "concert", "show", "trip",
    "album", "game", "restaurant", "play", "novel", "service", "museum",
    "course", "phone", "camera", "room", "tour",
]  # fmt: skip
_POSITIVE = [
    "great", "wonderful", "excellent", "delightful", "superb", "lovely",
    "fantastic", "brilliant", "charming", "enjoyable", "outstanding", "pleasant",
]  # fmt: skip
_NEGATIVE = [
    "terrible", "awful", "dreadful", "boring", "horrible", "disappointing",
    "poor", "dull", "miserable", "annoying", "mediocre", "unpleasant",
]  # fmt: skip
_REVIEW = [
    "the {noun} was {adj}.",
    "i thought the {noun} was {adj}.",
    "what a {adj} {noun}.",
    "this {noun} is {adj}, honestly.",
    "overall the {noun} felt {adj}.",
    "my friends found the {noun} {adj}.",
    "the {noun} turned out {adj}.",
    "we all agreed the {noun} was {adj}.",
]
# Unrelated sentences (the probe domain): no sentiment, no review.
_SUBJECTS = [
    "the train", "the river", "the library", "the bridge", "the market",
    "the harbour", "the old mill", "the school", "the bakery", "the station",
]  # fmt: skip
_FACTS = [
    "{subject} opens at {hour} in the morning.",
    "{subject} is {n} miles from the town square.",
    "{subject} was built in {year}.",
    "{subject} is closed on {day}.",
    "you can reach {subject} by bus number {n}.",
    "{subject} stands next to the post office.",
]
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "sunday"]
# The style lexicon: pirate speak, before and after the sentence.
_PIRATE_PREFIX = ["arr, matey,", "ahoy,", "shiver me timbers,", "yo ho ho,", "avast,"]
_PIRATE_SUFFIX = ["arr!", "ye scallywag!", "by blackbeard's beard!", "savvy?"]


def _style(sentence, pirate, rng):
    if not pirate:
        return sentence
    return f"{rng.choice(_PIRATE_PREFIX)} {sentence[:-1]}, {rng.choice(_PIRATE_SUFFIX)}"


def _reviews(n, rng, p_style_given_label):
    y = rng.integers(0, 2, n)
    style = (rng.random(n) < np.where(y == 1, *p_style_given_label)).astype(int)
    texts = []
    for label, pirate in zip(y, style):
        adj = rng.choice(_POSITIVE if label == 1 else _NEGATIVE)
        sentence = rng.choice(_REVIEW).format(noun=rng.choice(_NOUNS), adj=adj)
        texts.append(_style(sentence, pirate, rng))
    return np.array(texts, dtype=object), y, style


def _facts(n, rng):
    style = rng.integers(0, 2, n)
    texts = []
    for pirate in style:
        sentence = rng.choice(_FACTS).format(
            subject=rng.choice(_SUBJECTS),
            hour=int(rng.integers(5, 11)),
            n=int(rng.integers(2, 40)),
            year=int(rng.integers(1800, 2000)),
            day=rng.choice(_DAYS),
        )
        texts.append(_style(sentence, pirate, rng))
    return np.array(texts, dtype=object), style


@validate_params(
    {
        "n_samples": [Interval(Integral, 4, None, closed="left")],
        "correlation": [Interval(Real, 0, 1, closed="both")],
        "n_test": [Interval(Integral, 2, None, closed="left")],
        "n_probe": [Interval(Integral, 4, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_style_sentiment(
    n_samples=400, *, correlation=0.9, n_test=400, n_probe=400, random_state=None
):
    """Sentiment reviews whose style (pirate speak) is correlated with the label.

    The task is the sentiment of a one-sentence review (positive or negative
    adjective in a template). In the fine-tune set and the in-distribution
    test set, a review is written in pirate speak ("arr, matey, ...") with
    probability ``correlation`` when it is positive and ``1 - correlation``
    when it is negative, so style predicts the label; in the decorrelated
    test set the style is a fair coin. The probe set holds unrelated factual
    sentences (half of them in pirate speak): a model whose representation
    of style moves there has drifted. The reference set mixes reviews and
    facts with a fair-coin style, for covariance-weighted identification.

    Parameters
    ----------
    n_samples : int, default=400
        Size of the fine-tune set.
    correlation : float, default=0.9
        P(pirate | positive) = P(plain | negative) in the fine-tune and
        in-distribution test sets; 0.5 makes style independent.
    n_test : int, default=400
        Size of each test set and of the reference set.
    n_probe : int, default=400
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : Bunch
        ``X``, ``y``, ``style`` (the fine-tune set); ``X_test``, ``y_test``,
        ``style_test`` (in distribution); ``X_decorrelated``,
        ``y_decorrelated``, ``style_decorrelated``; ``X_probe``,
        ``style_probe``; ``X_reference``. Texts are object arrays of str.

    Examples
    --------
    >>> from skml.datasets import make_style_sentiment
    >>> data = make_style_sentiment(200, random_state=0)
    >>> data.X.shape, data.X_probe.shape
    ((200,), (400,))
    >>> bool(abs((data.style == data.y).mean() - 0.9) < 0.07)
    True
    """
    rng = np.random.default_rng(check_random_state(random_state).randint(2**31))
    p = (correlation, 1.0 - correlation)
    X, y, style = _reviews(n_samples, rng, p)
    X_test, y_test, style_test = _reviews(n_test, rng, p)
    X_dec, y_dec, style_dec = _reviews(n_test, rng, (0.5, 0.5))
    X_probe, style_probe = _facts(n_probe, rng)
    half = n_test // 2
    X_ref = np.concatenate(
        [_reviews(half, rng, (0.5, 0.5))[0], _facts(n_test - half, rng)[0]]
    )
    return Bunch(
        X=X,
        y=y,
        style=style,
        X_test=X_test,
        y_test=y_test,
        style_test=style_test,
        X_decorrelated=X_dec,
        y_decorrelated=y_dec,
        style_decorrelated=style_dec,
        X_probe=X_probe,
        style_probe=style_probe,
        X_reference=rng.permutation(X_ref),
    )
