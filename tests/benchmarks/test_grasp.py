"""The GRASP benchmark's metrics and acceptance plumbing."""

import numpy as np
import pytest

from skml.benchmarks import grasp
from skml.datasets import make_persona_drift


def test_pretrained_metrics_are_the_reference():
    data = make_persona_drift(300, random_state=0)
    m = grasp.metrics(None, data)
    assert m["probe_drift"] == 0 and m["probe_kl"] == pytest.approx(0, abs=1e-12)
    assert m["persona_r2"] > 0.8


def test_oracle_grasp_leaves_the_probe_untouched():
    data = make_persona_drift(600, random_state=1)
    model, _ = grasp.fit_method("grasp_oracle", data, 0)
    m = grasp.metrics(model, data)
    assert abs(m["probe_drift"]) < 1e-5 and m["probe_kl"] < 1e-6
    assert m["identification_cos"] == pytest.approx(1.0)


def _row(method, drift, r2, nll):
    return {
        "part": "organism",
        "config": "A",
        "sft": 1.0,
        "seed": 0,
        "method": method,
        "probe_drift": drift,
        "persona_r2": r2,
        "task_nll": nll,
        "task_accuracy": 0.5,
        "probe_kl": 0.1,
        "seconds": 1.0,
    }


def test_acceptance_flags_a_dominating_baseline():
    rows = [
        _row("naive", 1.0, 0.2, 0.90),
        _row("grasp_cov", 0.1, 0.6, 0.91),
        _row("caft", 0.05, 0.7, 0.92),
    ]
    text = grasp.acceptance(rows)
    assert "dominated by: caft" in text and "FAIL" in text
    rows[2] = _row("caft", 0.05, 0.5, 0.92)
    assert "PASS" in grasp.acceptance(rows)
    assert np.isfinite(grasp.table(rows)[0]["abs_drift"])
